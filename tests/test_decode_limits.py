"""Bounded decoding (issue 13, item 6): the decoder learns the expected shape, dtype and a
size limit before it allocates, and a chunk that claims more than it may fails as
TPDEError, never MemoryError or ValueError.

The allocations that would go wrong run in a child process with an address-space cap
(RLIMIT_AS), so a regression fails the test instead of exhausting the machine.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import chunkfmt
import tpde
from tpde import _core

TESTS_DIR = str(Path(__file__).resolve().parent)
X = np.arange(100, dtype=np.float32).reshape(10, 10)
CHUNK = tpde.encode(X)


def with_shape(chunk: bytes, shape: tuple[int, ...]) -> bytes:
    """The chunk's header with another shape (same payload), CRCs resealed."""
    c = bytearray(chunk)
    hs = chunkfmt.header_size(c)
    c = c[:32] + b"".join(struct.pack("<Q", d) for d in shape) + c[hs - 4:]
    c[8] = len(shape)
    return chunkfmt.reseal(c, fix_payload_size=False)


def code_of(fn) -> str:
    with pytest.raises(tpde.TPDEError) as info:
        fn()
    assert "\n" not in str(info.value)
    return info.value.code


# --- the header: shapes no array can have --------------------------------------------------


@pytest.mark.parametrize("shape", [(0, 1 << 62), (1 << 62, 0), (0, (1 << 63) + 5), (3, 0, (1 << 64) - 1),
                                   (0, 1 << 40, 1 << 40)])
def test_zero_dimension_beside_a_huge_one_is_refused(shape):
    bad = with_shape(CHUNK, shape)
    assert code_of(lambda: tpde.read_header(bad)) == "too_large"
    assert code_of(lambda: tpde.decode(bad)) == "too_large"


def test_empty_arrays_with_sane_shapes_still_decode():
    for shape in [(0,), (0, 5), (7, 0, 3), (0, 1 << 20)]:
        x = np.zeros(shape, np.float32)
        y = tpde.decode(tpde.encode(x))
        assert y.shape == shape and y.dtype == np.float32


# --- the expected shape, dtype and size limit ----------------------------------------------


def test_expected_shape_and_dtype_decode_as_before():
    y = _core.decode(CHUNK, shape=(10, 10), dtype="float32", max_bytes=X.nbytes)
    assert y.tobytes() == X.tobytes() and y.shape == (10, 10)
    y = _core.decode(CHUNK, shape=[10, 10])  # any sequence of ints
    assert y.tobytes() == X.tobytes()


def test_other_shape_is_refused():
    assert code_of(lambda: _core.decode(CHUNK, shape=(100,))) == "bad_shape"
    assert code_of(lambda: _core.decode(CHUNK, shape=(10, 10, 1))) == "bad_shape"
    assert code_of(lambda: _core.decode(CHUNK, shape=())) == "bad_shape"


def test_other_dtype_is_refused():
    with pytest.raises(tpde.TPDEError) as info:
        _core.decode(CHUNK, dtype="int32")  # same itemsize, other dtype
    assert info.value.code == "bad_dtype"
    assert "float32" in str(info.value) and "int32" in str(info.value)
    bf16 = tpde.encode(np.arange(6, dtype=np.uint16), dtype="bfloat16")
    assert _core.decode(bf16, dtype="bfloat16").dtype == np.uint16
    assert code_of(lambda: _core.decode(bf16, dtype="uint16")) == "bad_dtype"
    assert code_of(lambda: _core.decode(CHUNK, dtype="float31")) == "bad_dtype"


def test_max_bytes():
    assert code_of(lambda: _core.decode(CHUNK, max_bytes=X.nbytes - 1)) == "too_large"
    assert _core.decode(CHUNK, max_bytes=X.nbytes).tobytes() == X.tobytes()
    with pytest.raises(tpde.TPDEError, match="max_bytes"):
        _core.decode(CHUNK, max_bytes=-1)


def test_limits_apply_with_out_too():
    out = np.empty(100, np.float32)
    assert code_of(lambda: _core.decode(CHUNK, out=out, shape=(100,))) == "bad_shape"
    assert code_of(lambda: _core.decode(CHUNK, out=out, dtype="int32")) == "bad_dtype"
    _core.decode(CHUNK, out=out, shape=(10, 10), dtype="float32")
    assert out.tobytes() == X.tobytes()


def test_a_bomb_with_limits_allocates_nothing():
    """A 4 GiB claim checked against the expected shape is refused before any allocation."""
    bomb = with_shape(CHUNK, (1 << 30,))
    tracemalloc.start()
    try:
        for kw in ({"shape": (10, 10)}, {"max_bytes": 1 << 20}):
            assert code_of(lambda kw=kw: _core.decode(bomb, **kw)) in ("bad_shape", "too_large")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# --- a bare decode of a bomb, under an address-space cap -----------------------------------------

BOMB_SCRIPT = textwrap.dedent(
    """
    import resource, struct, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    sys.path.insert(0, {tests!r})
    import numpy as np
    import tpde
    from test_decode_limits import with_shape, CHUNK
    codes = []
    for shape in [(1 << 34,), (1 << 32, 4), (1 << 31,), (3, 1 << 30)]:
        try:
            tpde.decode(with_shape(CHUNK, shape))
            codes.append("decoded")
        except tpde.TPDEError as e:
            codes.append(e.code)
        except BaseException as e:
            codes.append(type(e).__name__)
    print(" ".join(codes))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="RLIMIT_AS needs a POSIX system")
def test_bare_decode_of_a_bomb_is_a_tpde_error():
    """Chunks claiming 64 GiB (the format's limit) down to 8 GiB: `too_large`, not MemoryError."""
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT.format(tests=TESTS_DIR)], capture_output=True, text=True,
        timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["too_large"] * 4
