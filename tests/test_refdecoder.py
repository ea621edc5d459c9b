"""docs/format.md is complete: tests/refdecoder.py, written from it alone, decodes the frozen
vectors, random chunks of every kind, and mutated chunks exactly as the C++ core does
(same bytes, or the same error code)."""

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
CASES = sorted(p for p in VECTORS.iterdir() if p.is_dir() and p.name.startswith("v"))
BAD = json.loads((VECTORS / "bad" / "expected.json").read_text())


def npy_bytes(path: Path):
    return np.load(path).tobytes() if path.exists() else None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refdecoder_decodes_frozen_vector(case):
    config = json.loads((case / "config.json").read_text())
    chunk = (case / "encoded.bin").read_bytes()
    expected = npy_bytes(case / ("input.npy" if config["lossless"] else "decoded.npy"))
    got = refdecoder.decode(chunk, npy_bytes(case / "reference.npy"), npy_bytes(case / "prev_reference.npy"))
    assert got == expected


@pytest.mark.parametrize("name", sorted(BAD))
def test_refdecoder_rejects_bad_vector(name):
    spec = BAD[name]
    kw = {k: np.load(VECTORS / v).tobytes() for k, v in spec["decode_with"].items()}
    with pytest.raises(refdecoder.RefError) as info:
        refdecoder.decode((VECTORS / "bad" / name).read_bytes(), kw.get("reference"), kw.get("prev_reference"))
    assert info.value.code == spec["code"]


DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "int32",
          "uint32", "int64", "uint64", "bool"]


def random_case(rng: np.random.Generator):
    """A random array, reference, prev-reference and encode options, of a random kind."""
    name = DTYPES[rng.integers(len(DTYPES))]
    storage = np.uint16 if name == "bfloat16" else np.dtype(name)
    n = int(rng.choice([0, 1, 5, 37, 300]))
    kind = rng.integers(4)
    if name in ("float32", "float64", "float16", "bfloat16"):
        f = rng.standard_normal(n) * 10.0 ** rng.integers(-6, 3)
        if kind == 3:
            f = np.exp2(np.repeat(rng.integers(-15, 1, n // 8 + 1), 8)[:n]) * rng.uniform(1, 2, n)
        x = (f.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) if name == "bfloat16" else f.astype(storage)
    elif name == "bool":
        x = rng.random(n) < 0.2
    else:
        info = np.iinfo(storage)
        x = np.cumsum(rng.integers(-3, 4, n)).astype(storage) if kind < 2 else rng.integers(
            info.min, info.max, n, dtype=storage, endpoint=True)
    if kind == 1 and n:  # sparse
        x = np.where(rng.random(n) < 0.9, np.zeros(1, x.dtype), x).astype(x.dtype)
    ref = prev = None
    mode = rng.integers(3)
    if mode >= 1:
        ubits = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[x.itemsize]
        xb = x.view(ubits)
        step = rng.integers(-2, 3, n).astype(np.int64).astype(ubits)
        ref = np.where(rng.random(n) < 0.5, xb, xb - step).astype(ubits).view(x.dtype)
        if name == "bool":
            ref = ref.view(np.uint8) & np.uint8(1)
            ref = ref.view(np.bool_)
        if mode == 2:
            prev = np.where(rng.random(n) < 0.5, ref.view(ubits), ref.view(ubits) + step).astype(ubits).view(x.dtype)
            if name == "bool":
                prev = (prev.view(np.uint8) & np.uint8(1)).view(np.bool_)
    kwargs = {}
    if name in ("float32", "float64", "float16", "bfloat16") and rng.random() < 0.5:
        kwargs = {"abs_error": float(10.0 ** rng.integers(-6, 0))} if rng.random() < 0.5 else {
            "log_rel_error": float(2.0 ** -rng.integers(1, 20))}
    return name, x, ref, prev, kwargs


def both(chunk, ref, prev):
    """(outcome of tpde.decode, outcome of refdecoder.decode): bytes or an error code."""
    try:
        a = tpde.decode(chunk, reference=ref, prev_reference=prev).tobytes()
    except tpde.TPDEError as e:
        a = e.code
    try:
        b = refdecoder.decode(chunk, None if ref is None else ref.tobytes(), None if prev is None else prev.tobytes())
    except refdecoder.RefError as e:
        b = e.code
    return a, b


def test_refdecoder_agrees_on_random_chunks():
    rng = np.random.default_rng(99)
    kinds = set()
    for _ in range(250):
        name, x, ref, prev, kwargs = random_case(rng)
        dt = "bfloat16" if name == "bfloat16" else None
        chunk = tpde.encode(x, reference=ref, prev_reference=prev, dtype=dt, **kwargs)
        a, b = both(chunk, ref, prev)
        assert isinstance(a, bytes) and a == b, (name, kwargs, chunkfmt.scheme_names(chunk) if len(chunk) > 60 else "")
        info = chunkfmt.parse(chunk)
        kinds.add((info["lossy"] is not None, info["value_scheme"], info["position_scheme"]))
    # lossless: every value and position scheme; lossy: at least LogBucket/Inline
    assert {(False, 0, 0), (False, 1, 0), (False, 1, 1), (False, 2, 0), (False, 2, 1), (True, 1, 0)} <= kinds, kinds


def trending_case(rng: np.random.Generator, name: str, n: int):
    """(x, reference, prev_reference) where x continues the move from prev to reference."""
    f0 = rng.standard_normal(n) * 0.02
    move = rng.standard_normal(n) * 1e-3
    fs = [f0 + rng.uniform(1, 2) * move + rng.standard_normal(n) * 1e-5, f0 + move, f0]
    if name == "bfloat16":
        return [(np.asarray(f, np.float32).view(np.uint32) >> 16).astype(np.uint16) for f in fs]
    return [np.asarray(f).astype(name) for f in fs]


def test_refdecoder_agrees_on_extrapolated_chunks():
    """Chunks coded against an extrapolated reference (format 3), whole and mutated."""
    rng = np.random.default_rng(31)
    r = random.Random(31)
    extrapolated = 0
    for name in ("float32", "float16", "bfloat16"):
        for n in (40, 300, 3000):
            x, ref, prev = trending_case(rng, name, n)
            chunk = tpde.encode(x, reference=ref, prev_reference=prev, dtype="bfloat16" if name == "bfloat16" else None)
            extrapolated += chunkfmt.parse(chunk)["transform"] == 1
            assert both(chunk, ref, prev) == (x.tobytes(), x.tobytes())
            xp = chunkfmt.parse(chunk)["prefix_offset"]
            for _ in range(8):  # mutate the prefix and the extrapolation parameters most
                p = bytearray(chunk)
                j = r.randrange(xp, min(len(p), xp + 24))
                p[j] ^= 1 << r.randrange(8)
                a, b = both(chunkfmt.reseal(p), ref, prev)
                assert a == b
    assert extrapolated >= 6


def test_refdecoder_agrees_on_mutated_chunks():
    """Resealed mutations: both decoders give the same bytes or the same error code."""
    rng = np.random.default_rng(7)
    r = random.Random(7)
    agreed = {"bytes": 0, "error": 0}
    for _ in range(120):
        name, x, ref, prev, kwargs = random_case(rng)
        dt = "bfloat16" if name == "bfloat16" else None
        chunk = tpde.encode(x, reference=ref, prev_reference=prev, dtype=dt, **kwargs)
        hs = chunkfmt.header_size(chunk)
        for _ in range(5):
            p = bytearray(chunk[hs:])
            if not p:
                break
            for _ in range(r.randint(1, 3)):
                j = r.randrange(len(p))
                p[j] = r.choice([p[j] ^ (1 << r.randrange(8)), 0, 0xFF, r.randrange(256)])
            bad = chunkfmt.reseal(chunk[:hs] + bytes(p))
            a, b = both(bad, ref, prev)
            assert a == b, (name, kwargs, a if isinstance(a, str) else "bytes", b if isinstance(b, str) else "bytes")
            agreed["bytes" if isinstance(a, bytes) else "error"] += 1
    assert agreed["bytes"] > 50 and agreed["error"] > 50, agreed


def dense_decay_case(rng: np.random.Generator, name: str, n: int):
    """(x, reference): a dense second moment, every value decayed by one factor plus fresh
    squared gradients (no segment shows a common ratio)."""
    ref = (rng.standard_normal(n) * 1e-3) ** 2 + 1e-9
    x = ref * 0.98 + 0.02 * (rng.standard_normal(n) * 3e-4) ** 2
    if name == "bfloat16":
        return [(np.asarray(f, np.float32).view(np.uint32) >> 16).astype(np.uint16) for f in (x, ref)]
    return [np.asarray(f).astype(name) for f in (x, ref)]


def test_a_dense_decay_is_coded_against_the_scaled_reference_and_both_decoders_agree():
    """Whole chunks that moved by about one factor take transform 2 with every segment a
    candidate (the encoder's dense scale), with and without a prev-reference."""
    rng = np.random.default_rng(5)
    scaled = []
    for name in ("float32", "float16", "bfloat16"):
        for n in (300, 3000, 40_000):
            x, ref = dense_decay_case(rng, name, n)
            dt = "bfloat16" if name == "bfloat16" else None
            for prev in (None, ref):
                chunk = tpde.encode(x, reference=ref, prev_reference=prev, dtype=dt)
                if chunkfmt.parse(chunk)["transform"] == 2:
                    scaled.append((name, n, prev is None))
                assert both(chunk, ref, prev) == (x.tobytes(), x.tobytes())
    # float32 chunks of a few thousand values and more take it, with and without a prev-reference
    assert {("float32", n, alone) for n in (3000, 40_000) for alone in (True, False)} <= set(scaled)
