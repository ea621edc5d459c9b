"""The fast level (format 6, value scheme 3 FastPlanes; docs/format.md section 14): round
trips of every dtype and shape, the frozen fast vectors, the reference decoder on random and
mutated fast chunks, and the default level left untouched."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import chunkfmt
import refdecoder
import tpde

VECTORS = Path(__file__).resolve().parent / "vectors"
FAST_CASES = sorted(p for p in (VECTORS / "fast").iterdir() if p.is_dir())
BAD = json.loads((VECTORS / "bad" / "expected.json").read_text())

DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "int32",
          "uint32", "int64", "uint64", "bool"]
UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def make(rng: np.random.Generator, name: str, n: int):
    """A random array of dtype `name` (bf16 as uint16 bits) and a nearby reference."""
    if name == "bool":
        x = rng.random(n) < 0.3
        return x, np.where(rng.random(n) < 0.2, ~x, x)
    if name in ("float32", "float64", "float16", "bfloat16"):
        f = rng.standard_normal(n) * 0.02
        g = f * (1 + rng.standard_normal(n) * 1e-3)
        if name == "bfloat16":
            return [(np.asarray(v, np.float32).view(np.uint32) >> 16).astype(np.uint16) for v in (g, f)]
        return g.astype(name), f.astype(name)
    storage = np.dtype(name)
    x = rng.integers(np.iinfo(storage).min, np.iinfo(storage).max, n, dtype=storage, endpoint=True)
    ub = UNSIGNED[storage.itemsize]
    ref = (x.view(ub) - rng.integers(0, 3, n).astype(ub)).astype(ub).view(storage)
    return x, ref


def roundtrip(x, ref, dt):
    chunk = tpde.encode(x, reference=ref, dtype=dt, level="fast")
    header = tpde.read_header(chunk)
    assert header["version"] == 6
    assert header["mode"] == ("delta" if ref is not None else "standalone")
    y = tpde.decode(chunk, reference=ref)
    assert y.shape == x.shape
    assert np.ascontiguousarray(y).view(np.uint8).tobytes() == np.ascontiguousarray(x).view(np.uint8).tobytes()
    return chunk


@pytest.mark.parametrize("name", DTYPES)
def test_fast_roundtrip_every_dtype(name):
    rng = np.random.default_rng(len(name))
    dt = "bfloat16" if name == "bfloat16" else None
    for n in (0, 1, 31, 32, 33, 64, 65, 1000, 70_001):
        x, ref = make(rng, name, n)
        roundtrip(x, None, dt)
        roundtrip(x, ref, dt)


def test_fast_shapes_and_specials():
    rng = np.random.default_rng(3)
    roundtrip(np.float32(1.5).reshape(()), None, None)
    roundtrip(np.zeros((3, 0, 2), np.float32), None, None)
    x = (rng.standard_normal((64, 513)) * 0.02).astype(np.float32)
    roundtrip(x, None, None)
    roundtrip(x, np.zeros_like(x), None)
    specials = np.array([0x0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00001, 0xFFFFFFFF, 1], np.uint32)
    s = np.tile(specials, 5000).view(np.float32)
    roundtrip(s, None, None)
    roundtrip(s, s[::-1].copy(), None)
    roundtrip(np.full(100_000, 0.25, np.float32), None, None)  # constant planes


def test_fast_is_smaller_on_deltas_and_never_above_stored():
    rng = np.random.default_rng(5)
    ref = (rng.standard_normal(200_000) * 0.02).astype(np.float32)
    x = (ref * (1 + rng.standard_normal(200_000) * 1e-4)).astype(np.float32)
    delta = roundtrip(x, ref, None)
    alone = roundtrip(x, None, None)
    assert len(delta) < 0.6 * x.nbytes < len(alone)
    noise = rng.integers(0, 2**32, 5000, dtype=np.uint32).view(np.float32)
    chunk = roundtrip(noise, None, None)
    assert len(chunk) <= tpde.read_header(chunk)["header_size"] + 16 + noise.nbytes


def test_fast_ignores_prev_reference_and_rejects_lossy_and_unknown_levels():
    rng = np.random.default_rng(6)
    x, ref = make(rng, "float32", 500)
    chunk = tpde.encode(x, reference=ref, prev_reference=ref, level="fast")
    assert not tpde.read_header(chunk)["uses_prev_reference"]
    assert tpde.decode(chunk, reference=ref).tobytes() == x.tobytes()
    with pytest.raises(tpde.TPDEError) as e:
        tpde.encode(x, level="fast", abs_error=1e-3)
    assert e.value.code == "invalid_argument" and "fast" in str(e.value)
    with pytest.raises(tpde.TPDEError) as e:
        tpde.encode(x, level="turbo")
    assert e.value.code == "invalid_argument" and "level" in str(e.value)


def test_default_level_is_unchanged():
    rng = np.random.default_rng(8)
    x, ref = make(rng, "float32", 3000)
    for r in (None, ref):
        a = tpde.encode(x, reference=r)
        assert a == tpde.encode(x, reference=r, level="default")
        assert tpde.read_header(a)["version"] == tpde.FORMAT_VERSION == 5


def test_fast_vectors_exist():
    assert len(FAST_CASES) >= 10
    assert "version_6.bin" not in BAD  # valid since format 6
    assert sum(name.startswith("fast_") for name in BAD) >= 10
    modes = set()
    for case in FAST_CASES:
        modes |= set(json.loads((case / "config.json").read_text())["plane_modes"])
    assert modes == {0, 1, 2}


def load(case: Path):
    config = json.loads((case / "config.json").read_text())
    ref = np.load(case / "reference.npy") if (case / "reference.npy").exists() else None
    return config, np.load(case / "input.npy"), ref, (case / "encoded.bin").read_bytes()


@pytest.mark.parametrize("case", FAST_CASES, ids=[c.name for c in FAST_CASES])
def test_fast_vector_decodes_and_encodes_unchanged(case):
    config, x, ref, chunk = load(case)
    assert tpde.read_header(chunk)["version"] == config["format_version"] == 6
    y = tpde.decode(chunk, reference=ref)
    assert y.tobytes() == x.tobytes() and list(y.shape) == config["shape"]
    assert refdecoder.decode(chunk, None if ref is None else ref.tobytes()) == x.tobytes()
    dt = "bfloat16" if config["dtype"] == "bfloat16" else None
    assert tpde.encode(x, reference=ref, dtype=dt, **config["encode_kwargs"]) == chunk


def both(chunk, ref):
    try:
        a = tpde.decode(chunk, reference=ref).tobytes()
    except tpde.TPDEError as e:
        a = e.code
    try:
        b = refdecoder.decode(chunk, None if ref is None else ref.tobytes())
    except refdecoder.RefError as e:
        b = e.code
    return a, b


def test_refdecoder_agrees_on_random_and_mutated_fast_chunks():
    rng = np.random.default_rng(11)
    r = random.Random(11)
    seen = {"bytes": 0, "error": 0}
    modes = set()
    for k in range(60):
        name = DTYPES[k % len(DTYPES)]
        n = int(rng.choice([0, 1, 40, 97, 300, 700]))
        x, ref = make(rng, name, n)
        ref = ref if k % 2 else None
        chunk = tpde.encode(x, reference=ref, dtype="bfloat16" if name == "bfloat16" else None, level="fast")
        assert both(chunk, ref) == (x.tobytes(), x.tobytes())
        hs = chunkfmt.header_size(chunk)
        modes.add(chunk[hs])
        for _ in range(6):
            p = bytearray(chunk[hs:])
            if not p:
                break
            for _ in range(r.randint(1, 2)):
                j = r.randrange(len(p))
                p[j] = r.choice([p[j] ^ (1 << r.randrange(8)), 0, 0xFF])
            a, b = both(chunkfmt.reseal(chunk[:hs] + bytes(p)), ref)
            assert a == b, (name, n, a if isinstance(a, str) else "bytes", b if isinstance(b, str) else "bytes")
            seen["bytes" if isinstance(a, bytes) else "error"] += 1
    assert modes == {0, 3}
    assert seen["error"] > 100 and seen["bytes"] > 20, seen


SIMD_CHILD = r"""
import hashlib, sys
import numpy as np
import tpde
rng = np.random.default_rng(11)
digest = hashlib.sha256()
for n in (0, 1, 255, 256, 1000, 4099, 65_537, 1 << 20):
    for dtype, bits in (("float32", np.uint32), ("bfloat16", np.uint16)):
        ref = rng.standard_normal(n).astype(np.float32)
        x = ref.copy()
        moved = rng.random(n) < 0.4
        x[moved] += np.float32(1e-3) * rng.standard_normal(int(moved.sum())).astype(np.float32)
        if dtype == "bfloat16":
            ref, x = [(a.view(np.uint32) >> 16).astype(np.uint16) for a in (ref, x)]
        for reference in (None, ref):
            chunk = tpde.encode(x, reference=reference, dtype=dtype, level="fast")
            back = tpde.decode(chunk, reference=reference, dtype=dtype)
            assert back.tobytes() == x.tobytes(), (n, dtype)
            digest.update(chunk)
print(digest.hexdigest())
"""


def test_every_simd_path_writes_the_same_bytes_and_round_trips():
    import os
    import subprocess
    import sys

    digests = {}
    for cap in ("scalar", "ssse3", "avx2", "avx512"):
        env = dict(os.environ, TPDE_FAST_SIMD=cap)
        out = subprocess.run([sys.executable, "-c", SIMD_CHILD], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        digests[cap] = out.stdout.strip()
    assert len(set(digests.values())) == 1, digests
