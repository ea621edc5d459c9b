"""Writes small valid tpde chunks as fuzzing seeds: every dtype, standalone and delta
(with and without prev-reference), every value/position/context scheme the encoder picks,
the fast level's FastPlanes chunks, and edge shapes. Delta seeds are coded against the
same reference/prev-reference bytes that tests/fuzz/fuzz_decode.cpp passes to the
decoder, so their payloads decode.

    python tests/fuzz/make_seeds.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

import tpde

UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
DTYPES = {
    "float32": np.float32, "float64": np.float64, "float16": np.float16, "bfloat16": np.uint16,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64, "bool": np.bool_,
}


def fuzz_ref(nbytes: int) -> np.ndarray:
    """The reference bytes of the fuzz harness: byte i = (i * 167 + 60) mod 256."""
    i = np.arange(nbytes, dtype=np.uint64)
    return ((i * np.uint64(167) + np.uint64(60)) & np.uint64(0xFF)).astype(np.uint8)


def fuzz_prev(nbytes: int) -> np.ndarray:
    """The prev-reference bytes: reference byte XOR (i & 15) where i % 3 == 0."""
    i = np.arange(nbytes, dtype=np.uint64)
    flip = np.where(i % np.uint64(3) == 0, i & np.uint64(0x0F), np.uint64(0)).astype(np.uint8)
    return fuzz_ref(nbytes) ^ flip


def as_dtype(raw: np.ndarray, name: str, shape) -> np.ndarray:
    return raw.view(DTYPES[name]).reshape(shape)


def successor(rng, ref_bits: np.ndarray, changed: float) -> np.ndarray:
    """Small wrapping changes to some elements of an unsigned bit-pattern array."""
    steps = rng.integers(-40, 41, size=ref_bits.shape).astype(np.int64).astype(ref_bits.dtype)
    mask = rng.random(ref_bits.shape) < changed
    return np.where(mask, ref_bits + steps, ref_bits).astype(ref_bits.dtype)


def seeds():
    rng = np.random.default_rng(20261125)
    for name, storage in DTYPES.items():
        size = np.dtype(storage).itemsize
        dt_arg = "bfloat16" if name == "bfloat16" else None
        ub = UNSIGNED[size]
        for n, shape in [(48, (48,)), (96, (8, 12)), (5, (5,))]:
            # standalone: smooth, noisy, sparse
            if name in ("float32", "float64", "float16"):
                x = (rng.standard_normal(n) * 0.02).astype(storage)
            elif name == "bfloat16":
                x = (rng.standard_normal(n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
            elif name == "bool":
                x = rng.random(n) < 0.1
            else:
                x = np.cumsum(rng.integers(-2, 3, n)).astype(storage)
            yield f"{name}_std_{n}", tpde.encode(x.reshape(shape), dtype=dt_arg)
            sparse = np.where(rng.random(n) < 0.9, np.zeros(1, storage), x.reshape(-1)).reshape(shape)
            yield f"{name}_sparse_{n}", tpde.encode(sparse, dtype=dt_arg)
            # delta against the harness reference
            ref_bits = fuzz_ref(n * size).view(ub)
            prev = as_dtype(fuzz_prev(n * size), name, shape)
            ref = as_dtype(fuzz_ref(n * size), name, shape)
            for changed in (0.05, 0.6):
                new = successor(rng, ref_bits, changed)
                if name == "bool":
                    new = new & np.uint8(1) | (ref_bits & np.uint8(0xFE))
                x = new.view(storage).reshape(shape)
                yield f"{name}_delta_{n}_{changed}", tpde.encode(x, reference=ref, dtype=dt_arg)
                yield f"{name}_deltaprev_{n}_{changed}", tpde.encode(
                    x, reference=ref, prev_reference=prev, dtype=dt_arg)
    # lossy chunks (float dtypes): absolute and log-relative bounds, standalone and delta
    for name in ("float32", "float64", "float16", "bfloat16"):
        storage = DTYPES[name]
        size = np.dtype(storage).itemsize
        dt_arg = "bfloat16" if name == "bfloat16" else None
        n = 64
        if name == "bfloat16":
            x = (rng.standard_normal(n).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        else:
            x = (rng.standard_normal(n) * 0.02).astype(storage)
        ref = as_dtype(fuzz_ref(n * size), name, (n,))
        prev = as_dtype(fuzz_prev(n * size), name, (n,))
        for kw in ({"abs_error": 1e-3}, {"log_rel_error": 2.0**-6}):
            tag = "abs" if "abs_error" in kw else "rel"
            yield f"{name}_lossy_{tag}", tpde.encode(x, dtype=dt_arg, **kw)
            # (the encoder codes losslessly where the reference has NaN/inf: still a seed)
            yield f"{name}_lossy_{tag}_delta", tpde.encode(x, reference=ref, dtype=dt_arg, **kw)
            yield f"{name}_lossy_{tag}_deltaprev", tpde.encode(
                x, reference=ref, prev_reference=prev, dtype=dt_arg, **kw)
    # extrapolated references (format 3): values continuing the harness's prev -> ref move
    for name in ("float32", "float16", "bfloat16"):
        size = np.dtype(DTYPES[name]).itemsize
        ub = UNSIGNED[size]
        n = 512
        r = fuzz_ref(n * size).view(ub).astype(np.int64)
        q = fuzz_prev(n * size).view(ub).astype(np.int64)
        top = 1 << (8 * size - 1)
        same = (r >= top) == (q >= top)
        x = np.where(same, r + (r - q) * 3 // 4 + rng.integers(-2, 3, n), r) % (2 * top)
        chunk = tpde.encode(as_dtype(x.astype(ub).view(np.uint8), name, (n,)),
                            reference=as_dtype(fuzz_ref(n * size), name, (n,)),
                            prev_reference=as_dtype(fuzz_prev(n * size), name, (n,)),
                            dtype="bfloat16" if name == "bfloat16" else None)
        yield f"{name}_extrapolated", chunk
    # scaled reference rows (format 4): half the rows are the harness's reference times 0.3
    for name in ("float32", "float16", "bfloat16"):
        size = np.dtype(DTYPES[name]).itemsize
        rows, cols = 24, 32
        ref = as_dtype(fuzz_ref(rows * cols * size), name, (rows, cols))
        prev = as_dtype(fuzz_prev(rows * cols * size), name, (rows, cols))
        values = ref.view(np.float32 if size == 4 else np.float16) if name != "bfloat16" else \
            (ref.astype(np.uint32) << 16).view(np.float32)
        with np.errstate(all="ignore"):
            scaled = (values.astype(np.float64) * 0.3).astype(values.dtype)
        if name == "bfloat16":
            scaled = (scaled.view(np.uint32) >> 16).astype(np.uint16)
        x = ref.copy()
        x[::2] = scaled.view(x.dtype)[::2]
        chunk = tpde.encode(x, reference=ref, prev_reference=prev, dtype="bfloat16" if name == "bfloat16" else None)
        yield f"{name}_scaled_rows", chunk
    # lossy deltas quantized around a x reference (format 3 predictor): decaying moments
    # (coded against their own references; the decoder target reseals the fingerprints)
    for name in ("float32", "float64", "float16", "bfloat16"):
        n = 256
        m = [rng.standard_normal(n) * 0.01]
        for _ in range(2):
            m.append(0.3 * m[-1] + rng.standard_normal(n) * 0.01)
        if name == "bfloat16":
            prev, ref, x = ((v.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16) for v in m)
        else:
            prev, ref, x = (v.astype(DTYPES[name]) for v in m)
        yield f"{name}_lossy_predicted", tpde.encode(x, reference=ref, prev_reference=prev, abs_error=2e-3,
                                                     dtype="bfloat16" if name == "bfloat16" else None)
    # edge shapes and incompressible data
    yield "empty", tpde.encode(np.zeros((0,), np.float32))
    yield "empty3d", tpde.encode(np.zeros((2, 0, 3), np.int16))
    yield "scalar", tpde.encode(np.float64(1.5))
    yield "noise", tpde.encode(rng.integers(0, 256, 64, dtype=np.uint8))
    yield "ones8d", tpde.encode(np.ones((1, 1, 1, 1, 1, 1, 1, 3), np.int32))
    # larger chunks where the context schemes pay for their tables
    n = 2048
    blocks = np.repeat(10.0 ** rng.integers(-8, 8, n // 64), 64)
    yield "f32_prev_exponent", tpde.encode((blocks * rng.uniform(1, 2, n)).astype(np.float32))
    x = np.repeat(rng.integers(0, 2, n // 64) * 10**6, 64) + rng.integers(0, 3, n)
    yield "i32_neighbour", tpde.encode(np.cumsum(x).astype(np.int32))
    # the fast level (format 6, FastPlanes): rANS, raw and constant planes, standalone and
    # delta against the harness reference (more than 64 values: both rANS streams, the
    # vector rounds and the tail)
    for name in ("float32", "bfloat16", "float16", "int64", "uint8"):
        storage = DTYPES[name]
        size = np.dtype(storage).itemsize
        ub = UNSIGNED[size]
        dt_arg = "bfloat16" if name == "bfloat16" else None
        n = 1500
        ref = as_dtype(fuzz_ref(n * size), name, (n,))
        x = successor(rng, fuzz_ref(n * size).view(ub), 0.2).view(storage)
        yield f"{name}_fast_delta", tpde.encode(x, reference=ref, dtype=dt_arg, level="fast")
        if name in ("float32", "bfloat16"):
            f = (rng.standard_normal(n) * 0.02).astype(np.float32)
            alone = (f.view(np.uint32) >> 16).astype(np.uint16) if name == "bfloat16" else f
        else:
            alone = rng.integers(0, 4, n).astype(storage)
        yield f"{name}_fast_std", tpde.encode(alone, dtype=dt_arg, level="fast")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for name, chunk in seeds():
        tag = hashlib.sha1(chunk).hexdigest()[:8]
        (out / f"seed_{name}_{tag}").write_bytes(chunk)
        total += len(chunk)
    print(f"wrote seeds to {out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
