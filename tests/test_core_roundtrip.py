"""Bit-exact round trips of tpde.encode/decode for every dtype, mode and edge case.

Every comparison is on raw bytes, so NaN payloads, signed zeros and bool bytes count.
"""

from __future__ import annotations

import concurrent.futures
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chunkfmt
import tpde

# name -> (numpy storage dtype, dtype argument for tpde.encode, unsigned view dtype)
DTYPES = {
    "float32": (np.float32, None, np.uint32),
    "float64": (np.float64, None, np.uint64),
    "float16": (np.float16, None, np.uint16),
    "bfloat16": (np.uint16, "bfloat16", np.uint16),
    "int8": (np.int8, None, np.uint8),
    "int16": (np.int16, None, np.uint16),
    "int32": (np.int32, None, np.uint32),
    "int64": (np.int64, None, np.uint64),
    "uint8": (np.uint8, None, np.uint8),
    "uint16": (np.uint16, None, np.uint16),
    "uint32": (np.uint32, None, np.uint32),
    "uint64": (np.uint64, None, np.uint64),
    "bool": (np.bool_, None, np.uint8),
}
FLOATS = {"float32": (8, 23), "float64": (11, 52), "float16": (5, 10), "bfloat16": (8, 7)}
ALL = list(DTYPES)


def as_bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


def from_bits(name: str, bits: np.ndarray) -> np.ndarray:
    """Reinterpret an unsigned-integer array as the storage dtype of ``name``."""
    return bits.astype(DTYPES[name][2]).view(DTYPES[name][0])


def check_roundtrip(name, x, reference=None, prev_reference=None):
    """Encode, decode and compare bits, header and the size bound; return the chunk."""
    storage, dtype_arg, _ = DTYPES[name]
    chunk = tpde.encode(x, reference=reference, prev_reference=prev_reference, dtype=dtype_arg)
    assert isinstance(chunk, bytes)
    header = tpde.read_header(chunk)
    assert header["version"] == tpde.FORMAT_VERSION == 5
    assert header["dtype"] == name
    assert header["shape"] == tuple(x.shape)
    assert header["mode"] == ("standalone" if reference is None else "delta")
    assert header["uses_prev_reference"] == (prev_reference is not None)
    if reference is not None:
        assert header["reference_fingerprint"] == chunkfmt.crc32c(as_bits(reference))
    nbytes = x.size * x.itemsize
    # The Stored fallback bounds every chunk: header + 16-byte payload prefix + raw bytes.
    assert len(chunk) <= header["header_size"] + 16 + nbytes
    assert header["header_size"] + header["payload_size"] == len(chunk)
    y = tpde.decode(chunk, reference=reference, prev_reference=prev_reference)
    assert y.dtype == np.dtype(storage)
    assert y.shape == x.shape
    assert y.flags.c_contiguous
    assert as_bits(y) == as_bits(x)
    return chunk


def random_bits(rng, name, shape):
    """Uniformly random bit patterns (NaNs, infs, denormals included for floats)."""
    ubits = DTYPES[name][2]
    info = np.iinfo(ubits)
    return from_bits(name, rng.integers(0, info.max, size=shape, dtype=ubits, endpoint=True))


def typical(rng, name, shape):
    """Compressible data of the kind the codec is for."""
    if name in ("float32", "float64", "float16"):
        return (rng.standard_normal(shape) * 0.02).astype(DTYPES[name][0])
    if name == "bfloat16":
        f = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16)
    if name == "bool":
        return rng.random(shape) < 0.2
    info = np.iinfo(DTYPES[name][0])
    lo = max(int(info.min), -1000)
    return rng.integers(lo, min(int(info.max), 1000), size=shape).astype(DTYPES[name][0])


def perturb(rng, name, ref, changed=0.3):
    """A successor of ``ref``: small wrapping changes of the bit patterns at some positions."""
    ubits = DTYPES[name][2]
    r = np.ascontiguousarray(ref).view(ubits)
    step = rng.integers(-3, 4, size=r.shape).astype(np.int64).astype(ubits)  # wraps
    mask = rng.random(r.shape) < changed
    if name == "bool":
        out = np.where(mask, r ^ np.uint8(1), r).astype(np.uint8)
    else:
        out = np.where(mask, r + step, r).astype(ubits)
    return out.view(DTYPES[name][0])


def special_values(name) -> np.ndarray:
    """Edge bit patterns: NaN payloads, +-inf, +-0, denormals, extremes."""
    ubits = DTYPES[name][2]
    width = np.dtype(ubits).itemsize * 8
    if name in FLOATS:
        e, m = FLOATS[name]
        exp_all = ((1 << e) - 1) << m
        sign = 1 << (width - 1)
        pats = [
            0, sign,                                  # +0, -0
            exp_all, sign | exp_all,                  # +inf, -inf
            exp_all | (1 << (m - 1)),                 # quiet NaN
            exp_all | (1 << (m - 1)) | 1,             # quiet NaN with payload
            exp_all | 1,                              # signalling NaN
            sign | exp_all | ((1 << m) - 1),          # negative NaN, all payload bits
            1, sign | 1,                              # smallest denormals
            (1 << m) - 1, sign | ((1 << m) - 1),      # largest denormals
            1 << m,                                   # smallest normal
            exp_all - 1, sign | (exp_all - 1),        # largest finite
            ((1 << (e - 1)) - 1) << m,                # 1.0
        ]
        return np.array(pats, dtype=np.uint64).astype(ubits).view(DTYPES[name][0])
    if name == "bool":
        return np.array([0, 1, 1, 0, 0, 0, 1], dtype=np.uint8).view(np.bool_)
    info = np.iinfo(DTYPES[name][0])
    vals = [0, 1, -1, info.min, info.max, info.min + 1, info.max - 1] if info.min < 0 else [
        0, 1, 2, info.max, info.max - 1, info.max // 2, info.max // 2 + 1]
    return np.array(vals, dtype=object).astype(DTYPES[name][0])


# --- standalone -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("kind", ["random_bits", "typical"])
def test_standalone_random(name, kind):
    rng = np.random.default_rng(hash((name, kind)) % 2**32)
    x = random_bits(rng, name, (3000,)) if kind == "random_bits" else typical(rng, name, (3000,))
    check_roundtrip(name, x)


@pytest.mark.parametrize("name", ALL)
def test_standalone_special_values(name):
    sv = special_values(name)
    check_roundtrip(name, sv)
    # Repeated in a compressible context so the coded (not Stored) paths see them too.
    rng = np.random.default_rng(7)
    x = np.repeat(sv, 200)
    x = x[rng.permutation(x.size)]
    check_roundtrip(name, x)
    check_roundtrip(name, np.tile(sv, 300))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "shape", [(0,), (1,), (3, 0, 2), (1, 1, 1), (2, 3, 4, 5), (7, 13), (1,) * 32]
)
def test_shapes(name, shape):
    rng = np.random.default_rng(3)
    x = typical(rng, name, shape)
    x = np.asarray(x)  # 0-d stays 0-d
    chunk = check_roundtrip(name, x)
    assert tpde.read_header(chunk)["header_size"] == 32 + 8 * len(shape) + 4
    if x.size:
        ref = perturb(rng, name, x)
        check_roundtrip(name, x, reference=ref)
        check_roundtrip(name, x, reference=ref, prev_reference=perturb(rng, name, ref))


@pytest.mark.parametrize("name", ["float32", "bfloat16", "int64", "bool"])
def test_zero_d(name):
    rng = np.random.default_rng(3)
    x = np.asarray(typical(rng, name, ()))
    assert x.shape == ()
    check_roundtrip(name, x)
    check_roundtrip(name, x, reference=perturb(rng, name, x))


@pytest.mark.parametrize("name", ALL)
def test_zero_d_bits_survive(name):
    """Until 0-d shapes are kept, the single value must at least survive bit-exactly."""
    for v in special_values(name)[:4]:
        x = np.asarray(v)
        y = tpde.decode(tpde.encode(x, dtype=DTYPES[name][1]))
        assert y.size == 1 and as_bits(y) == as_bits(x)


@pytest.mark.parametrize("name", ALL)
def test_all_equal(name):
    sv = special_values(name)
    for v in sv[:6]:
        x = np.full((5000,), v, dtype=sv.dtype)
        chunk = check_roundtrip(name, x)
        if name not in FLOATS:
            assert len(chunk) < 5000 * x.itemsize // 4, "a constant chunk must compress"
        # A delta against an identical reference is (nearly) free.
        d = check_roundtrip(name, x, reference=x.copy())
        assert len(d) < 200


@pytest.mark.parametrize("name", ["float32", "bfloat16"])
def test_constant_floats_compress(name):
    one = special_values(name)[-1]  # 1.0
    x = np.full((5000,), one)
    assert len(tpde.encode(x, dtype=DTYPES[name][1])) < x.nbytes // 4


@pytest.mark.parametrize("name", ALL)
def test_non_contiguous_input(name):
    rng = np.random.default_rng(11)
    base = typical(rng, name, (40, 30))
    ref_base = perturb(rng, name, base)
    for view, ref in [
        (base[::2], ref_base[::2]),
        (base.T, ref_base.T),
        (base[3:27, ::3], ref_base[3:27, ::3]),
        (np.asfortranarray(base), np.asfortranarray(ref_base)),
    ]:
        chunk = tpde.encode(view, dtype=DTYPES[name][1])
        y = tpde.decode(chunk)
        assert y.shape == view.shape
        assert as_bits(y) == as_bits(view)
        d = tpde.encode(view, reference=ref, dtype=DTYPES[name][1])
        # The fingerprint is of the C-order bytes of the reference.
        assert tpde.read_header(d)["reference_fingerprint"] == chunkfmt.crc32c(as_bits(ref))
        assert as_bits(tpde.decode(d, reference=ref)) == as_bits(view)
        assert as_bits(tpde.decode(d, reference=np.ascontiguousarray(ref))) == as_bits(view)


# --- delta ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("changed", [0.0, 0.001, 0.3, 1.0])
def test_delta(name, changed):
    rng = np.random.default_rng(int(changed * 1000) + len(name))
    prev = typical(rng, name, (4000,))
    ref = perturb(rng, name, prev, changed)
    x = perturb(rng, name, ref, changed)
    d = check_roundtrip(name, x, reference=ref)
    dp = check_roundtrip(name, x, reference=ref, prev_reference=prev)
    if changed <= 0.001:
        assert len(d) < x.nbytes // 8 and len(dp) < x.nbytes // 8
    # A delta chunk does not decode against another reference (fingerprint check).
    if changed > 0:
        with pytest.raises(tpde.TPDEError):
            tpde.decode(d, reference=x)


@pytest.mark.parametrize("name", ALL)
def test_delta_random_bits(name):
    """Unrelated data and reference: wrapping differences over the full range."""
    rng = np.random.default_rng(5)
    x, ref, prev = (random_bits(rng, name, (2000,)) for _ in range(3))
    check_roundtrip(name, x, reference=ref)
    check_roundtrip(name, x, reference=ref, prev_reference=prev)
    sv = special_values(name)
    check_roundtrip(name, np.tile(sv, 50), reference=np.tile(sv[::-1], 50))


def trending(rng, name, n, rate=1.8):
    """(prev, ref, x) where x continues the move from prev to ref, in the dtype's storage."""
    f0 = rng.standard_normal(n) * 0.02
    move = rng.standard_normal(n) * 1e-3
    fs = [f0, f0 + move, f0 + rate * move + rng.standard_normal(n) * 1e-5]
    if name == "bfloat16":
        return [(np.asarray(f, np.float32).view(np.uint32) >> 16).astype(np.uint16) for f in fs]
    return [np.asarray(f).astype(DTYPES[name][0]) for f in fs]


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
def test_extrapolated_reference(name):
    """Values that keep moving are coded against an extrapolation of the reference: smaller,
    bit-exact, and only when the caller allows it."""
    rng = np.random.default_rng(11)
    prev, ref, x = trending(rng, name, 5000)
    chunk = check_roundtrip(name, x, reference=ref, prev_reference=prev)
    plain = tpde.encode(x, reference=ref, prev_reference=prev, dtype=DTYPES[name][1], extrapolate=False)
    assert chunkfmt.parse(chunk)["transform"] == 1
    assert chunkfmt.parse(plain)["transform"] == 0
    assert len(chunk) < 0.9 * len(plain)
    assert as_bits(tpde.decode(plain, reference=ref, prev_reference=prev)) == as_bits(x)
    # The prediction depends on prev_reference: another one is refused by its fingerprint.
    with pytest.raises(tpde.TPDEError, match="prev_reference"):
        tpde.decode(chunk, reference=ref, prev_reference=ref)


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
def test_extrapolated_reference_specials(name):
    """Sign changes, zeros, infinities and NaNs in the reference or prev-reference: bit-exact."""
    rng = np.random.default_rng(12)
    prev, ref, x = trending(rng, name, 4000)
    sv = special_values(name)
    for arr, at in ((prev, 0), (ref, 1), (x, 2)):
        arr[at::7][: sv.size] = sv[: arr[at::7].size]
    unsigned = np.uint16 if ref.itemsize == 2 else np.uint32
    ref.view(unsigned)[300:400] ^= unsigned(1 << (8 * ref.itemsize - 1))  # opposite signs to prev
    chunk = check_roundtrip(name, x, reference=ref, prev_reference=prev)
    assert chunkfmt.parse(chunk)["transform"] == 1


@pytest.mark.parametrize("name", ["float64", "int32", "int16"])
def test_no_extrapolation_outside_16_32_bit_floats(name):
    rng = np.random.default_rng(13)
    prev = typical(rng, name, (3000,))
    ref = perturb(rng, name, prev, 1.0)
    x = perturb(rng, name, ref, 1.0)
    assert chunkfmt.parse(check_roundtrip(name, x, reference=ref, prev_reference=prev))["transform"] == 0


def test_no_extrapolation_in_lossy_chunks():
    rng = np.random.default_rng(14)
    prev, ref, x = trending(rng, "float32", 3000)
    chunk = tpde.encode(x, reference=ref, prev_reference=prev, abs_error=1e-6)
    assert tpde.read_header(chunk)["lossy"] == "absolute"
    assert chunkfmt.parse(chunk)["transform"] == 0


def decaying_rows(rng, name, rows=64, cols=48, scale=0.1285, share=0.5):
    """(prev, ref, x, decayed rows): x is ref plus noise, except rows that only decayed
    (ref times scale, a few float32 ulps off, as repeated multiplications leave them)."""
    prev = rng.standard_normal((rows, cols)) * 0.02
    ref = prev * 0.97 + rng.standard_normal((rows, cols)) * 1e-3
    x = ref + rng.standard_normal((rows, cols)) * 1e-3
    decayed = rng.random(rows) < share
    scaled = (ref[decayed] * scale).astype(np.float32)
    x[decayed] = (scaled.view(np.uint32).astype(np.int64) + rng.integers(-2, 3, scaled.shape)).astype(
        np.uint32).view(np.float32)
    fs = [prev, ref, x]
    if name == "bfloat16":
        return [(np.asarray(f, np.float32).view(np.uint32) >> 16).astype(np.uint16) for f in fs] + [decayed]
    if name == "float16":
        return [np.asarray(f * 64).astype(np.float16) for f in fs] + [decayed]
    return [np.asarray(f).astype(np.float32) for f in fs] + [decayed]


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
def test_scaled_reference_rows(name):
    """Rows that only decayed are coded against the scaled reference (format 4, transform
    2): bit-exact, much smaller, the bitmap names those rows, and only when allowed."""
    rng = np.random.default_rng(21)
    prev, ref, x, decayed = decaying_rows(rng, name)
    chunk = check_roundtrip(name, x, reference=ref, prev_reference=prev)
    info = chunkfmt.parse(chunk)
    assert info["transform"] == 2
    assert abs(info["scaled"]["scale"] / 0.1285 - 1) < 2.0 ** -6
    assert info["scaled"]["segment"] == x.shape[1]
    selected = np.unpackbits(np.frombuffer(info["scaled"]["bitmap"], np.uint8), bitorder="little")[: x.shape[0]]
    assert (selected.astype(bool) <= decayed).all() and selected.sum() >= 0.8 * decayed.sum()
    plain = tpde.encode(x, reference=ref, prev_reference=prev, dtype=DTYPES[name][1], extrapolate=False)
    assert chunkfmt.parse(plain)["transform"] == 0
    assert len(chunk) < 0.85 * len(plain)
    with pytest.raises(tpde.TPDEError, match="prev_reference"):
        tpde.decode(chunk, reference=ref, prev_reference=ref)


def test_scaled_reference_specials_and_no_prev():
    """Zeros, subnormals, infinities and NaNs in scaled rows keep their reference; from
    format 5 a chunk without a prev-reference may scale rows too."""
    import refdecoder

    rng = np.random.default_rng(22)
    prev, ref, x, decayed = decaying_rows(rng, "float32")
    row = int(np.flatnonzero(decayed)[0])
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-40, 3e38], np.float32)
    ref[row, 5:5 + specials.size] = specials
    x[row, 5:5 + specials.size] = specials
    chunk = check_roundtrip("float32", x, reference=ref, prev_reference=prev)
    assert chunkfmt.parse(chunk)["transform"] == 2
    alone = check_roundtrip("float32", x, reference=ref)
    assert chunkfmt.parse(alone)["transform"] == 2
    assert not tpde.read_header(alone)["uses_prev_reference"]
    assert refdecoder.decode(alone, ref.tobytes()) == x.tobytes()
    plain = tpde.encode(x, reference=ref, extrapolate=False)
    assert chunkfmt.parse(plain)["transform"] == 0 and len(alone) < 0.85 * len(plain)


def test_delta_ignores_unneeded_references():
    rng = np.random.default_rng(1)
    ref = typical(rng, "float32", (500,))
    x = perturb(rng, "float32", ref)
    d = tpde.encode(x, reference=ref)  # no prev_reference context
    junk = typical(rng, "float32", (500,))
    assert as_bits(tpde.decode(d, reference=ref, prev_reference=junk)) == as_bits(x)
    s = tpde.encode(x)  # standalone: a reference passed to decode is not used
    assert as_bits(tpde.decode(s, reference=junk, prev_reference=junk)) == as_bits(x)


def test_bool_raw_bytes_kept():
    """bool is coded as bytes: values other than 0/1 survive bit-exactly."""
    raw = np.array([0, 1, 2, 255, 1, 0, 7] * 50, dtype=np.uint8)
    check_roundtrip("bool", raw.view(np.bool_))


def test_bfloat16_needs_dtype_and_matches_torch_bits():
    torch = pytest.importorskip("torch")
    t = torch.randn(1000, dtype=torch.float32).to(torch.bfloat16)
    bits = t.view(torch.int16).numpy().view(np.uint16)
    chunk = tpde.encode(bits, dtype="bfloat16")
    assert tpde.read_header(chunk)["dtype"] == "bfloat16"
    y = tpde.decode(chunk)
    assert y.dtype == np.uint16
    back = torch.from_numpy(y.view(np.int16).copy()).view(torch.bfloat16)
    assert torch.equal(back.view(torch.int16), t.view(torch.int16))
    # int16 bits work too (same width).
    assert as_bits(tpde.decode(tpde.encode(bits.view(np.int16), dtype="bfloat16"))) == as_bits(bits)


# --- scheme coverage: the inputs above must exercise every decoder path ----------------------


def _coverage_inputs():
    rng = np.random.default_rng(0)
    n = 65536
    out = []
    out.append(("uint8", rng.integers(0, 256, 4096, dtype=np.uint8), None, None))
    out.append(("float32", rng.standard_normal(4096).astype(np.float32), None, None))
    blocks = np.repeat(2.0 ** rng.integers(-15, 1, 64), 64)
    signs = rng.choice([-1.0, 1.0], 4096)
    out.append(("float32", (signs * blocks * rng.uniform(1, 2, 4096)).astype(np.float32), None, None))
    sparse = np.where(rng.random(4096) < 0.95, 0, rng.standard_normal(4096)).astype(np.float32)
    out.append(("float32", sparse, None, None))
    x = np.repeat(rng.integers(0, 2, 256) * 10**6, 64) + rng.integers(0, 3, 16384)
    out.append(("int32", np.cumsum(x).astype(np.int32), None, None))
    out.append(("int32", np.cumsum(rng.integers(-3, 4, 4096)).astype(np.int32), None, None))
    ref = (rng.standard_normal(n) * np.exp(rng.uniform(-10, 5, n))).astype(np.float32)
    new = (ref + 1e-4 * rng.standard_normal(n)).astype(np.float32)
    out.append(("float32", new, ref, None))
    ref4 = ref[:4096]
    new4 = np.where(rng.random(4096) < 0.999, ref4, new[:4096]).astype(np.float32)
    out.append(("float32", new4, ref4, None))
    ref = rng.uniform(1, 2, n).astype(np.float32)
    s = np.where(rng.random(n) < 0.5, 1e-7, 1e-2)
    prev = (ref * (1 + s * rng.standard_normal(n))).astype(np.float32)
    new = (ref * (1 + s * rng.standard_normal(n))).astype(np.float32)
    out.append(("float32", new, ref, prev))
    # Exponent and per-position change scale both matter: ref_exponent_prev_residual.
    ref = (2.0 ** rng.integers(-12, 0, n) * rng.uniform(1, 2, n)).astype(np.float32)
    s = np.where(rng.random(n) < 0.5, 1e-6, 1e-3) * np.abs(ref)
    prev = (ref + s * rng.standard_normal(n)).astype(np.float32)
    new = (ref + s * rng.standard_normal(n)).astype(np.float32)
    out.append(("float32", new, ref, prev))
    iref = rng.integers(-1000, 1000, n).astype(np.int64)
    s = np.where(rng.random(n) < 0.5, 1, 10**9)
    iprev = iref + (s * rng.standard_normal(n)).astype(np.int64)
    inew = iref + (s * rng.standard_normal(n)).astype(np.int64)
    out.append(("int64", inew, iref, iprev))
    return out


def test_every_scheme_is_exercised():
    seen = {"value": set(), "position": set(), "context": set()}
    for name, x, ref, prev in _coverage_inputs():
        chunk = check_roundtrip(name, x, reference=ref, prev_reference=prev)
        v, p, c = chunkfmt.scheme_names(chunk)
        seen["value"].add(v)
        if v != "stored":
            seen["position"].add(p)
            seen["context"].add(c)
    assert seen["value"] == {"stored", "log_bucket", "float_split"}, seen
    assert seen["position"] == {"inline", "elias_gaps"}, seen
    assert seen["context"] == set(chunkfmt.CONTEXT_SCHEMES.values()), seen


# --- API details ------------------------------------------------------------------------------


def test_deterministic_and_thread_safe():
    rng = np.random.default_rng(2)
    arrays = [typical(rng, "float32", (20000,)) for _ in range(8)]
    refs = [perturb(rng, "float32", a) for a in arrays]
    serial = [tpde.encode(a, reference=r) for a, r in zip(arrays, refs)]
    assert serial == [tpde.encode(a, reference=r) for a, r in zip(arrays, refs)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda ar: tpde.encode(ar[0], reference=ar[1]), zip(arrays, refs)))
        decoded = list(pool.map(lambda cr: tpde.decode(cr[0], reference=cr[1]), zip(serial, refs)))
    assert threaded == serial
    assert all(as_bits(d) == as_bits(a) for d, a in zip(decoded, arrays))


def test_decode_out_and_buffer_types():
    rng = np.random.default_rng(4)
    x = typical(rng, "float32", (10, 20))
    chunk = tpde.encode(x)
    out = np.empty((10, 20), np.float32)
    assert tpde.decode(chunk, out=out) is out
    assert as_bits(out) == as_bits(x)
    raw = np.empty(x.nbytes, np.uint8)  # any C-contiguous buffer of the right byte size
    assert tpde.decode(chunk, out=raw) is raw
    assert raw.tobytes() == as_bits(x)
    for buf in (bytearray(chunk), memoryview(chunk), np.frombuffer(chunk, np.uint8)):
        assert as_bits(tpde.decode(buf)) == as_bits(x)


def test_fingerprint_is_crc32c_of_bytes():
    assert chunkfmt.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    rng = np.random.default_rng(6)
    for name in ALL:
        x = random_bits(rng, name, (37,))
        assert tpde.fingerprint(x) == chunkfmt.crc32c(as_bits(x))
    assert tpde.fingerprint(np.zeros(0, np.float32)) == 0


def test_header_fields_match_independent_parse():
    rng = np.random.default_rng(8)
    ref = typical(rng, "float64", (6, 7))
    prev = perturb(rng, "float64", ref)
    x = perturb(rng, "float64", ref)
    chunk = tpde.encode(x, reference=ref, prev_reference=prev)
    info = chunkfmt.parse(chunk)
    h = tpde.read_header(chunk)
    assert info["magic"] == b"TPDE"
    assert info["dtype_code"] == chunkfmt.DTYPE_CODES["float64"]
    assert info["mode"] == 1 and info["flags"] == 1
    assert info["shape"] == (6, 7)
    assert info["reference_fingerprint"] == h["reference_fingerprint"] == chunkfmt.crc32c(as_bits(ref))
    assert info["prev_reference_fingerprint"] == chunkfmt.crc32c(as_bits(prev))
    assert info["header_crc"] == chunkfmt.crc32c(chunk[: info["header_size"] - 4])
    assert info["payload_crc"] == chunkfmt.crc32c(chunk[info["header_size"] :])
    assert json.dumps(h)  # JSON-serialisable


# --- property tests ---------------------------------------------------------------------------

# min_dims=1: 0-d arrays have their own test (test_zero_d).
_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=12)


@st.composite
def bit_arrays(draw, name, shape=None):
    """Arrays of raw bit patterns: compressible (base + small steps) with arbitrary outliers."""
    ubits = DTYPES[name][2]
    info = np.iinfo(ubits)
    if shape is None:
        shape = draw(_shapes)
    kind = draw(st.sampled_from(["steps", "raw", "const"]))
    if kind == "raw":
        bits = draw(hnp.arrays(ubits, shape, elements=st.integers(0, int(info.max))))
    else:
        base = draw(st.integers(0, int(info.max)))
        steps = draw(hnp.arrays(np.int64, shape, elements=st.integers(-4, 4)))
        if kind == "const":
            steps = np.zeros(shape, np.int64)
        bits = (np.uint64(base) + np.cumsum(steps.reshape(-1)).astype(np.uint64)).reshape(shape)
        bits = bits.astype(ubits)
        n_out = draw(st.integers(0, 3))
        flat = bits.reshape(-1)
        for _ in range(min(n_out, flat.size)):
            flat[draw(st.integers(0, flat.size - 1))] = draw(st.integers(0, int(info.max)))
    if name == "bool":
        bits = bits & np.uint8(1)
    return bits.view(DTYPES[name][0])


@st.composite
def delta_triples(draw, name):
    ref = draw(bit_arrays(name))
    ubits = DTYPES[name][2]
    info = np.iinfo(ubits)

    def successor(a):
        steps = draw(hnp.arrays(np.int64, a.shape, elements=st.sampled_from([0, 0, 0, 1, -1, 2, -5])))
        bits = (a.view(ubits).astype(np.uint64) + steps.astype(np.uint64)).astype(ubits)
        if draw(st.booleans()) and bits.size:
            bits.reshape(-1)[draw(st.integers(0, bits.size - 1))] = draw(st.integers(0, int(info.max)))
        if name == "bool":
            bits = bits & np.uint8(1)
        return bits.view(DTYPES[name][0])

    x = successor(ref)
    prev = draw(st.one_of(st.none(), st.just(ref).map(successor)))
    return x, ref, prev


_hyp = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", ALL)
@_hyp
@given(data=st.data())
def test_property_standalone(name, data):
    x = data.draw(bit_arrays(name))
    check_roundtrip(name, x)


@pytest.mark.parametrize("name", ALL)
@_hyp
@given(data=st.data())
def test_property_delta(name, data):
    x, ref, prev = data.draw(delta_triples(name))
    check_roundtrip(name, x, reference=ref, prev_reference=prev)


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
@_hyp
@given(data=st.data())
def test_property_extrapolated(name, data):
    """Trending triples (any slope, noise, size, with special values mixed in): bit-exact,
    and the reference decoder agrees, whether or not the encoder extrapolates."""
    import refdecoder

    n = data.draw(st.integers(1, 3000))
    slope = data.draw(st.floats(-3.0, 3.0))
    noise = data.draw(st.sampled_from([0.0, 1e-6, 1e-4, 1e-2]))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    f0 = rng.standard_normal(n) * 10.0 ** data.draw(st.integers(-6, 2))
    move = rng.standard_normal(n) * np.abs(f0).mean() * 0.01
    fs = [f0, f0 + move, f0 + move + slope * move + rng.standard_normal(n) * noise * np.abs(f0).mean()]
    if name == "bfloat16":
        prev, ref, x = ((np.asarray(f, np.float32).view(np.uint32) >> 16).astype(np.uint16) for f in fs)
    else:
        prev, ref, x = (np.asarray(f).astype(DTYPES[name][0]) for f in fs)
    if data.draw(st.booleans()):
        sv = special_values(name)
        for arr in (prev, ref, x):
            k = min(sv.size, n)
            arr[rng.integers(0, n, k)] = sv[:k]
    chunk = check_roundtrip(name, x, reference=ref, prev_reference=prev)
    assert refdecoder.decode(chunk, ref.tobytes(), prev.tobytes()) == x.tobytes()


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
@_hyp
@given(data=st.data())
def test_property_scaled_rows(name, data):
    """Rows that decayed by any factor (any row length, share, noise, with special values
    mixed in): bit-exact, and the reference decoder (exact fractions) agrees."""
    import refdecoder

    rows = data.draw(st.integers(1, 40))
    cols = data.draw(st.integers(1, 80))
    scale = data.draw(st.floats(2.0 ** -12, 1.9))
    share = data.draw(st.floats(0.0, 1.0))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    prev, ref, x, _ = decaying_rows(rng, name, rows, cols, scale, share)
    if data.draw(st.booleans()):
        sv = special_values(name)
        for arr in (prev, ref, x):
            k = min(sv.size, arr.size)
            arr.reshape(-1)[rng.integers(0, arr.size, k)] = sv[:k]
    if data.draw(st.booleans()):  # from format 5 scaled rows need no prev-reference
        chunk = check_roundtrip(name, x, reference=ref)
        assert refdecoder.decode(chunk, ref.tobytes()) == x.tobytes()
    else:
        chunk = check_roundtrip(name, x, reference=ref, prev_reference=prev)
        assert refdecoder.decode(chunk, ref.tobytes(), prev.tobytes()) == x.tobytes()


@pytest.mark.parametrize("dtype", ["float32", "uint16", "float64", "uint8", "V3"])
def test_count_changed_counts_items_whose_bits_differ(dtype):
    from tpde import _core

    rng = np.random.default_rng(7)
    n = 10_001
    ref = np.frombuffer(rng.bytes(n * np.dtype(dtype).itemsize), dtype=dtype).copy()
    data = ref.copy()
    raw = data.view(np.uint8)
    raw[rng.choice(raw.size, 500, replace=False)] ^= 0x10
    expected = int((data.view(np.uint8) != ref.view(np.uint8)).reshape(n, -1).any(axis=1).sum())
    assert _core.count_changed(data, ref) == expected > 0
    assert _core.count_changed(ref, ref) == 0
    with pytest.raises(tpde.TPDEError):
        _core.count_changed(data[:-1], ref)
