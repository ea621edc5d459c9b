"""One source for the version: pyproject.toml's `version`, which the C++ core (through CMake),
the package and CHANGELOG.md all repeat."""

import re
from pathlib import Path

import tpde
from tpde import _core

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_version() -> str:
    match = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match, "pyproject.toml has no version line"
    return match.group(1)


def test_versions_agree():
    assert tpde.__version__ == _core.__version__ == _pyproject_version()


def test_changelog_has_an_entry_for_the_version():
    assert f"## [{_pyproject_version()}]" in (ROOT / "CHANGELOG.md").read_text()
