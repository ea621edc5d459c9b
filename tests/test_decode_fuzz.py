"""Decoder fuzz with subprocess isolation and an address-space cap (issue 13).

A child process (tests/decode_fuzz_child.py) caps its address space with RLIMIT_AS and
decodes mutated chunks: headers claiming up to 64 GiB and more, zero dimensions beside
huge ones, other ndims and dtypes, payload flips and cuts. Each decode must give an array
that matches its header or raise TPDEError; a MemoryError, ValueError or crash fails the
test with the input that caused it.

The run is short by default (CI); set TPDE_FUZZ_SECONDS for a long one, e.g.
`TPDE_FUZZ_SECONDS=600 pytest tests/test_decode_fuzz.py` (TPDE_FUZZ_SEED picks the seed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = Path(__file__).resolve().parent / "decode_fuzz_child.py"
SECONDS = float(os.environ.get("TPDE_FUZZ_SECONDS", "6"))
SEED = int(os.environ.get("TPDE_FUZZ_SEED", "20261205"))
AS_LIMIT = 1 << 30  # 1 GiB: the child needs ~150 MB; any bigger allocation must be refused cleanly

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_AS needs a POSIX system")


def run_child(seed: int, seconds: float, workdir: Path, limit: int = AS_LIMIT) -> dict:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(CHILD), str(seed), str(seconds), str(workdir), str(limit)],
        capture_output=True, text=True, timeout=seconds + 120, env=env,
    )
    current = workdir / "current.bin"
    if proc.returncode < 0:
        pytest.fail(f"decoder crashed (signal {-proc.returncode}) on {current}: "
                    f"{current.read_bytes().hex() if current.exists() else '?'}")
    assert proc.stdout.strip(), f"child printed nothing; stderr: {proc.stderr[-2000:]}"
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, "non-TPDEError failures:\n" + "\n".join(counts["failure_list"])
    return counts


def test_hostile_chunks_under_an_address_space_cap(tmp_path):
    counts = run_child(SEED, SECONDS, tmp_path)
    assert counts["failures"] == 0
    assert counts["inputs"] >= 200, counts  # the run did real work
    assert counts["too_large"] > 0, counts  # headers claiming more than the cap were met and refused
    assert counts["decoded"] > 0 and counts["tpde_error"] > 0, counts


def test_the_child_reports_what_is_not_a_tpde_error(tmp_path):
    """The harness itself can fail: with an address space too small to build the seeds,
    the child must not report success."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(CHILD), "1", "1", str(tmp_path), str(64 << 20)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode != 0
