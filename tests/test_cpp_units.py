"""Builds the C++ unit tests and the fuzz-corpus replay with CMake and runs them under ctest,
so that one `python -m pytest` covers the C++ core too. The build directory is kept under
build/pytest-cpp, so later runs only recompile what changed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "pytest-cpp"


def _run(cmd, timeout):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed: C++ unit tests not built")
@pytest.mark.skipif(shutil.which("ctest") is None, reason="ctest is not installed: C++ unit tests not run")
@pytest.mark.parametrize("variant, flags", [("", []), ("-scalar", ["-DTPDE_NO_SIMD=ON"])],
                         ids=["x86-paths", "portable-scalar"])
def test_cpp_units_under_ctest(variant, flags):
    """Once as built for this machine, once with the portable scalar code that CPUs without
    SSE2 run (same tests: round trips, lossy chains, fuzz-corpus replay)."""
    build = BUILD.with_name(BUILD.name + variant)
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    _run(["cmake", "-S", str(ROOT), "-B", str(build), "-DTPDE_BUILD_TESTS=ON",
          "-DCMAKE_BUILD_TYPE=Release", *flags], timeout=300)
    _run(["cmake", "--build", str(build), "-j", jobs], timeout=600)
    out = _run(["ctest", "--test-dir", str(build), "--output-on-failure", "--timeout", "120"], timeout=600)
    assert "100% tests passed" in out, out
    assert "tpde_unit_tests" in out and "tpde_fuzz_replay" in out, out
