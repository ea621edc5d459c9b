"""On CI every optional test dependency must be installed: a test that skips for a missing
module there passes without testing anything (the S3 tests once did, for want of moto)."""

import importlib
import os

import pytest

MODULES = ["torch", "moto.server", "s3fs", "boto3", "lightning", "transformers", "matplotlib", "pytest_timeout"]


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="checked on CI (CI=true), where nothing may skip for this")
@pytest.mark.parametrize("module", MODULES)
def test_ci_installs_every_test_dependency(module):
    assert importlib.import_module(module) is not None
