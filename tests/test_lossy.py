"""Lossy mode through the Python API: the error bound, reconstruction == decode, idempotent
re-encoding, lossless fallback, and the size bound. Property tests draw raw bit patterns, so
subnormals, huge values, NaN and inf all occur."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chunkfmt
import tpde

# name -> (storage dtype, dtype argument, unsigned view, smallest normal, smallest subnormal)
FLOATS = {
    "float32": (np.float32, None, np.uint32, 2.0**-126, 2.0**-149),
    "float64": (np.float64, None, np.uint64, 2.0**-1022, 2.0**-1074),
    "float16": (np.float16, None, np.uint16, 2.0**-14, 2.0**-24),
    "bfloat16": (np.uint16, "bfloat16", np.uint16, 2.0**-126, 2.0**-133),
}


def values(name, a) -> np.ndarray:
    """float64 values of an array of ``name`` (bf16 bits are widened to fp32)."""
    if name == "bfloat16":
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def check_lossy(name, x, reference=None, *, abs_error=None, log_rel_error=None):
    storage, dt, ubits, min_normal, min_sub = FLOATS[name]
    kw = {"abs_error": abs_error} if abs_error is not None else {"log_rel_error": log_rel_error}
    chunk, recon = tpde.encode(x, reference=reference, dtype=dt, return_reconstruction=True, **kw)
    y = tpde.decode(chunk, reference=reference)
    assert y.tobytes() == np.ascontiguousarray(recon).tobytes(), "decode differs from the reconstruction"
    header = tpde.read_header(chunk)
    if header.get("lossy") is None:
        assert y.tobytes() == np.ascontiguousarray(x).tobytes(), "lossless fallback must be exact"
        return chunk, y
    assert header["lossy"] == ("absolute" if abs_error is not None else "log_relative")
    assert chunkfmt.parse(chunk)["flags"] & 2
    xv, yv = values(name, np.ascontiguousarray(x)), values(name, y)
    assert np.isfinite(xv).all(), "a chunk with non-finite values must be coded losslessly"
    err = np.abs(yv - xv)
    if abs_error is not None:
        allowed = np.full_like(xv, abs_error)
    else:  # tpde.hpp: "|decoded - x| <= bound * max(|x|, 2 x smallest normal)", sign bit kept
        allowed = log_rel_error * np.maximum(np.abs(xv), 2 * min_normal)
        assert (np.signbit(yv) == np.signbit(xv)).all(), "log-relative mode must keep the sign"
    bad = np.flatnonzero(~(err <= allowed * (1 + 1e-12)))
    assert bad.size == 0, f"bound violated at {bad[:5]}: x={xv[bad[:5]]} decoded={yv[bad[:5]]}"
    # Idempotent: re-encoding the reconstruction reproduces it exactly.
    _, recon2 = tpde.encode(recon, reference=reference, dtype=dt, return_reconstruction=True, **kw)
    assert np.ascontiguousarray(recon2).tobytes() == np.ascontiguousarray(recon).tobytes()
    return chunk, y


def to_storage(name, f: np.ndarray) -> np.ndarray:
    """float64 values -> the storage of ``name`` (bf16: truncated fp32 bits)."""
    if name == "bfloat16":
        return (f.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return f.astype(FLOATS[name][0])


def smooth(name, n, seed=0, scale=0.02):
    return to_storage(name, np.random.default_rng(seed).standard_normal(n) * scale)


@pytest.mark.parametrize("name", list(FLOATS))
@pytest.mark.parametrize("bound", [1e-2, 1e-4])
def test_absolute_bound_chain(name, bound):
    """Error feedback: each step is coded against the previous reconstruction."""
    rng = np.random.default_rng(1)
    truth = rng.standard_normal(5000) * 0.05
    prev_recon = None
    sizes = []
    for _ in range(4):
        truth = truth + rng.standard_normal(5000) * 1e-3
        chunk, prev_recon = check_lossy(name, to_storage(name, truth), prev_recon, abs_error=bound)
        sizes.append(len(chunk))
    if bound == 1e-2:
        assert max(sizes) < 5000 * np.dtype(FLOATS[name][0]).itemsize // 3


@pytest.mark.parametrize("name", list(FLOATS))
@pytest.mark.parametrize("r", [0.3, 2.0**-8])
def test_log_relative_bound_normal_values(name, r):
    x = to_storage(name, np.abs(np.random.default_rng(2).standard_normal(3000)) + 0.5)
    chunk, _ = check_lossy(name, x, log_rel_error=r)
    if r == 0.3:
        assert tpde.read_header(chunk)["lossy"] == "log_relative"
        assert len(chunk) < x.nbytes // 3


@pytest.mark.parametrize("name", list(FLOATS))
def test_non_finite_values_fall_back_to_lossless(name):
    x = smooth(name, 200, 3)
    if name == "bfloat16":
        x[5] = 0x7FC1  # NaN with payload
    else:
        x[5] = np.nan
        x[6] = -np.inf
    for kw in ({"abs_error": 1e-2}, {"log_rel_error": 0.1}):
        chunk, y = check_lossy(name, x, **kw)
        assert tpde.read_header(chunk).get("lossy") is None
        assert y.tobytes() == x.tobytes()


def test_integers_refuse_or_ignore_lossy():
    x = np.arange(100, dtype=np.int32)
    try:
        chunk = tpde.encode(x, abs_error=0.5)
    except tpde.TPDEError as e:
        assert e.code == "invalid_argument"
    else:
        assert tpde.decode(chunk).tobytes() == x.tobytes()


@pytest.mark.parametrize("n", [0, 1, 5])
def test_lossy_chunk_within_encode_bound(n):
    x = smooth("float32", n, 4)
    for kw in ({"abs_error": 1e-3}, {"log_rel_error": 2.0**-10}):
        chunk = tpde.encode(x, **kw)
        assert len(chunk) <= tpde.read_header(chunk)["header_size"] + 16 + x.nbytes


def test_log_relative_subnormals():
    """Below the smallest normal value the bound is absolute: r x smallest normal."""
    x = np.array([1e-39, 5e-40, 1e-40, 3.3e-41, 1e-42, 1.0], np.float32)
    check_lossy("float32", x, log_rel_error=0.25)


_hyp = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def float_bits(draw, name, n=None):
    ubits = FLOATS[name][2]
    if n is None:
        n = draw(st.integers(0, 40))
    info = np.iinfo(ubits)
    raw = draw(hnp.arrays(ubits, (n,), elements=st.integers(0, int(info.max))))
    # Mostly finite values, so that lossy chunks (not the lossless fallback) are checked.
    e, m = {"float32": (8, 23), "float64": (11, 52), "float16": (5, 10), "bfloat16": (8, 7)}[name]
    if draw(st.booleans()):
        exp_mask = np.array(((1 << e) - 1) << m, dtype=np.uint64).astype(ubits)
        finite = (raw & exp_mask) != exp_mask
        raw = np.where(finite, raw, raw & ~exp_mask).astype(ubits)
    return raw.view(FLOATS[name][0])


@pytest.mark.parametrize("name", list(FLOATS))
@_hyp
@given(data=st.data())
def test_property_lossy(name, data):
    x = data.draw(float_bits(name))
    ref = data.draw(st.one_of(st.none(), float_bits(name, x.size)))
    if data.draw(st.booleans()):
        kw = {"abs_error": 2.0 ** data.draw(st.integers(-40, 4))}
    else:
        kw = {"log_rel_error": 2.0 ** data.draw(st.integers(-30, -1))}
    check_lossy(name, x, ref, **kw)


@pytest.mark.parametrize("name", list(FLOATS))
def test_decaying_moment_is_quantized_around_scaled_reference(name):
    """An absolute delta with a prev-reference, on values that decay by a factor between
    saves (Adam's exp_avg), is quantized around a x reference (format 3 predictor 1): smaller
    than around the reference, within the bound, idempotent, and decoded alike by the
    reference decoder."""
    import refdecoder

    storage, dt, _, _, _ = FLOATS[name]
    rng = np.random.default_rng(21)
    m = [rng.standard_normal(4000) * 0.01]
    for _ in range(2):
        m.append(0.3 * m[-1] + rng.standard_normal(4000) * 0.01)
    prev, ref, x = (to_storage(name, v) for v in m)
    bound = 2e-3
    chunk, recon = tpde.encode(x, reference=ref, prev_reference=prev, dtype=dt, abs_error=bound,
                               return_reconstruction=True)
    plain = tpde.encode(x, reference=ref, prev_reference=prev, dtype=dt, abs_error=bound, extrapolate=False)
    lossy = chunkfmt.parse(chunk)["lossy"]
    assert lossy["predictor"] == 1 and chunkfmt.parse(plain)["lossy"]["predictor"] == 0
    a = lossy["coefficients"][0]
    assert 0.2 < a < 0.4 and lossy["coefficients"][1] == 0.0
    assert len(chunk) < 0.95 * len(plain)
    y = tpde.decode(chunk, reference=ref, prev_reference=prev)
    assert y.tobytes() == np.ascontiguousarray(recon).tobytes()
    assert np.abs(values(name, y) - values(name, x)).max() <= bound
    again = tpde.encode(recon, reference=ref, prev_reference=prev, dtype=dt, abs_error=bound)
    assert again == chunk  # a depends on the references only: re-encoding is idempotent
    assert refdecoder.decode(chunk, ref.tobytes(), prev.tobytes()) == y.tobytes()


def test_no_predictor_without_prev_or_for_log_relative_or_steady_values():
    rng = np.random.default_rng(22)
    ref = rng.standard_normal(3000).astype(np.float32)
    prev = (ref / 0.3).astype(np.float32)
    x = (0.3 * ref + rng.standard_normal(3000) * 0.01).astype(np.float32)
    no_prev = tpde.encode(x, reference=ref, abs_error=1e-3)
    log_rel = tpde.encode(np.abs(x), reference=np.abs(ref), prev_reference=np.abs(prev), log_rel_error=0.1)
    steady_prev = (ref - rng.standard_normal(3000) * 1e-4).astype(np.float32)  # a ~= 1: nothing to gain
    steady = tpde.encode(x, reference=ref, prev_reference=steady_prev, abs_error=1e-3)
    for chunk in (no_prev, log_rel, steady):
        assert chunkfmt.parse(chunk)["lossy"]["predictor"] == 0
