"""The decoder links without the encoder: configures a fresh CMake build in a temp dir,
builds only the decode-only program (tests/cpp/decode_only_main.cpp over the tpde_decode
library), runs it on frozen vectors, and checks that no encoder object was compiled or linked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd, timeout, cwd=ROOT):
    proc = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _has_compiler() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c)


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed: decode-only build not tested")
@pytest.mark.skipif(not _has_compiler(), reason="no C++ compiler: decode-only build not tested")
def test_decoder_builds_and_links_without_encoder(tmp_path):
    """tpde_decode_only decodes frozen vectors bit-exactly with no encoder code in the link."""
    build = tmp_path / "build"
    jobs = str(max(1, min(4, os.cpu_count() or 1)))
    _run(["cmake", "-S", str(ROOT), "-B", str(build), "-DTPDE_BUILD_TESTS=ON", "-DCMAKE_BUILD_TYPE=Release"],
         timeout=300)
    _run(["cmake", "--build", str(build), "--target", "tpde_decode_only", "-j", jobs], timeout=600)
    objects = [p.relative_to(build).as_posix() for p in build.rglob("*.o")]
    assert any("decode/decode.cpp" in o for o in objects), objects
    assert not [o for o in objects if "/encode/" in o or "tpde_encode" in o], objects
    link = build / "CMakeFiles" / "tpde_decode_only.dir" / "link.txt"
    if link.exists():  # Makefile generators: the link line names the libraries
        text = link.read_text()
        assert "tpde_decode" in text and "tpde_encode" not in text, text
    exe = next(p for p in build.rglob("tpde_decode_only") if p.is_file())
    out = _run([str(exe), str(ROOT / "tests" / "vectors")], timeout=120)
    assert "0 failures" in out and "decoded 13 vectors" in out, out
