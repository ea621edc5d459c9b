"""Bad input: every failure is a tpde.TPDEError (a ValueError) with the right .code and a
message that names the problem. Corruptions are resealed with fresh CRC32Cs (tests/chunkfmt.py)
where a check behind the checksums is the target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chunkfmt
import tpde

CODES = {
    "truncated", "bad_magic", "unsupported_version", "bad_dtype", "bad_shape", "checksum",
    "corrupt", "missing_reference", "reference_mismatch", "size_mismatch", "invalid_argument",
    "too_large",
}
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def expect(code, *words, fn, **kwargs):
    """Call ``fn`` and check it raises TPDEError with ``code`` and every word in its message."""
    with pytest.raises(tpde.TPDEError) as info:
        fn(**kwargs) if kwargs else fn()
    err = info.value
    assert isinstance(err, ValueError)
    assert err.code == code, f"expected {code}, got {err.code}: {err}"
    message = str(err).lower()
    for w in words:
        assert w.lower() in message, f"{w!r} not in message {str(err)!r}"
    return err


def decode_fn(chunk, **kw):
    return lambda: tpde.decode(chunk, **kw)


# --- chunks under test ------------------------------------------------------------------------

_rng = np.random.default_rng(1234)
INT_X = np.cumsum(_rng.integers(-3, 4, 300)).astype(np.int32)
SPARSE_X = np.where(_rng.random(300) < 0.95, 0, _rng.standard_normal(300)).astype(np.float32)
REF = _rng.standard_normal(300).astype(np.float32)
PREV = (REF + 1e-3 * _rng.standard_normal(300)).astype(np.float32)
DELTA_X = (REF + 1e-3 * _rng.standard_normal(300) * (_rng.random(300) < 0.3)).astype(np.float32)
NOISE = _rng.integers(0, 256, 100, dtype=np.uint8)

INT_CHUNK = tpde.encode(INT_X)  # log_bucket / inline
SPARSE_CHUNK = tpde.encode(SPARSE_X)  # float_split / elias gaps
DELTA_CHUNK = tpde.encode(DELTA_X, reference=REF, prev_reference=PREV)  # log_bucket, tails
DELTA_NOPREV = tpde.encode(DELTA_X, reference=REF)
STORED_CHUNK = tpde.encode(NOISE)
DELTA_KW = {"reference": REF, "prev_reference": PREV}


def test_fixture_chunks_have_the_intended_schemes():
    assert chunkfmt.scheme_names(INT_CHUNK)[:2] == ("log_bucket", "inline")
    assert chunkfmt.scheme_names(SPARSE_CHUNK)[:2] == ("float_split", "elias_gaps")
    assert chunkfmt.scheme_names(DELTA_CHUNK)[0] == "log_bucket"
    assert chunkfmt.parse(DELTA_CHUNK)["sections"]["tails"][2] > 0
    assert chunkfmt.scheme_names(STORED_CHUNK)[0] == "stored"
    for chunk, kw, x in [(INT_CHUNK, {}, INT_X), (SPARSE_CHUNK, {}, SPARSE_X),
                         (DELTA_CHUNK, DELTA_KW, DELTA_X), (STORED_CHUNK, {}, NOISE)]:
        assert tpde.decode(chunk, **kw).tobytes() == x.tobytes()
        # Resealing an intact chunk changes nothing: the helpers agree with the encoder.
        assert chunkfmt.reseal(chunk) == chunk


ALL_CHUNKS = [
    pytest.param(INT_CHUNK, {}, id="int"),
    pytest.param(SPARSE_CHUNK, {}, id="sparse"),
    pytest.param(DELTA_CHUNK, DELTA_KW, id="delta"),
    pytest.param(STORED_CHUNK, {}, id="stored"),
]


# --- truncation, extension, bit flips, random bytes -------------------------------------------


@pytest.mark.parametrize("chunk,kw", ALL_CHUNKS)
def test_truncated_at_every_length(chunk, kw):
    for n in range(len(chunk)):
        err = expect("truncated", fn=decode_fn(chunk[:n], **kw))
        assert "bytes" in str(err)
        with pytest.raises(tpde.TPDEError) as info:
            tpde.read_header(chunk[:n])
        assert info.value.code == "truncated"


@pytest.mark.parametrize("chunk,kw", ALL_CHUNKS)
def test_trailing_bytes(chunk, kw):
    for extra in (b"\x00", b"junk", bytes(100)):
        expect("corrupt", "trailing", fn=decode_fn(chunk + extra, **kw))


def _flip_expectation(chunk: bytes, byte: int, bit: int) -> set[str]:
    if byte < 4:
        return {"bad_magic"}
    if byte == 4:  # another version this build reads fails the header CRC instead
        return {"checksum"} if 1 <= chunk[4] ^ (1 << bit) <= tpde.FORMAT_VERSION else {"unsupported_version"}
    if byte == 8:
        ndim = chunk[8] ^ (1 << bit)
        if ndim > 32:
            return {"bad_shape"}
        return {"truncated"} if len(chunk) < 32 + 8 * ndim + 4 else {"checksum"}
    return {"checksum"}  # every other header byte and all payload bytes are CRC-covered


@pytest.mark.parametrize("chunk,kw", ALL_CHUNKS)
def test_every_bit_flip_is_detected(chunk, kw):
    for byte in range(len(chunk)):
        for bit in range(8):
            bad = bytearray(chunk)
            bad[byte] ^= 1 << bit
            with pytest.raises(tpde.TPDEError) as info:
                tpde.decode(bytes(bad), **kw)
            assert info.value.code in _flip_expectation(chunk, byte, bit), (byte, bit, info.value)


def test_checksum_messages_name_header_or_payload():
    hs = chunkfmt.header_size(INT_CHUNK)
    bad = bytearray(INT_CHUNK)
    bad[12] ^= 1
    expect("checksum", "header", "crc32c", fn=decode_fn(bytes(bad)))
    bad = bytearray(INT_CHUNK)
    bad[hs + 20] ^= 0x10
    expect("checksum", "payload", "crc32c", fn=decode_fn(bytes(bad)))
    # The header alone still parses: the payload CRC is checked by decode, not read_header.
    assert tpde.read_header(bytes(bad))["shape"] == INT_X.shape


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"TPDE\x01" + b),
    st.binary(min_size=3, max_size=40).map(lambda b: b"TPDE\x01" + b[:3] + bytes([b[0] % 4]) + b[3:]),
))
def test_fuzz_arbitrary_bytes_only_raise_tpde_error(data):
    for kw in ({}, {"reference": REF}, DELTA_KW):
        try:
            tpde.decode(data, **kw)
        except tpde.TPDEError as e:
            assert e.code in CODES
            assert str(e)
        else:  # pragma: no cover - would need a CRC collision
            pytest.fail("random bytes decoded")
    try:
        tpde.read_header(data)
    except tpde.TPDEError as e:
        assert e.code in CODES


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_fuzz_mutated_chunks_only_raise_tpde_error(data):
    """Unsealed mutations of real chunks: every change is caught, by CRC or structure."""
    chunk, kw = data.draw(st.sampled_from([(INT_CHUNK, {}), (SPARSE_CHUNK, {}), (DELTA_CHUNK, DELTA_KW)]))
    bad = bytearray(chunk)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(bad) - 1))
        bad[i] = data.draw(st.integers(0, 255))
    if bytes(bad) == chunk:
        return
    with pytest.raises(tpde.TPDEError) as info:
        tpde.decode(bytes(bad), **kw)
    assert info.value.code in CODES - {"missing_reference", "size_mismatch", "invalid_argument"}


# --- header fields behind a valid CRC ---------------------------------------------------------


@pytest.mark.parametrize("version", [0, 7, 255])
def test_unknown_format_version(version):
    bad = chunkfmt.patch(INT_CHUNK, 4, "<B", version)
    assert chunkfmt.parse(bad)["header_crc"] == chunkfmt.crc32c(bad[: chunkfmt.header_size(bad) - 4])
    err = expect("unsupported_version", f"version {version}", fn=decode_fn(bad))
    assert "1 to 6" in str(err)  # says which versions this build reads
    expect("unsupported_version", fn=lambda: tpde.read_header(bad))


def test_bad_magic():
    for magic in (b"TPDF", b"\x00\x00\x00\x00", b"tpde", b"PK\x03\x04"):
        expect("bad_magic", "magic", fn=decode_fn(magic + INT_CHUNK[4:]))


@pytest.mark.parametrize("code", [0, 14, 15, 200, 255])
def test_unknown_dtype_code(code):
    expect("bad_dtype", f"dtype code {code}", fn=decode_fn(chunkfmt.patch(INT_CHUNK, 5, "<B", code)))


def test_dtype_code_of_other_width_is_caught():
    # A stored chunk re-labelled with another width fails the stored-size check.
    bad = chunkfmt.patch(STORED_CHUNK, 5, "<B", chunkfmt.DTYPE_CODES["int16"])
    expect("corrupt", "stored", fn=decode_fn(bad))


def test_bad_mode_and_flags():
    expect("corrupt", "mode", fn=decode_fn(chunkfmt.patch(INT_CHUNK, 6, "<B", 2)))
    expect("corrupt", "flags", fn=decode_fn(chunkfmt.patch(DELTA_CHUNK, 7, "<B", 5), **DELTA_KW))
    expect("corrupt", fn=decode_fn(chunkfmt.patch(DELTA_CHUNK, 7, "<B", 3), **DELTA_KW))
    expect("corrupt", "lossy", fn=decode_fn(chunkfmt.patch(INT_CHUNK, 7, "<B", 2)))
    expect("corrupt", "flags", fn=decode_fn(chunkfmt.patch(INT_CHUNK, 7, "<B", 0x80)))
    expect("corrupt", "prev-reference", fn=decode_fn(chunkfmt.patch(INT_CHUNK, 7, "<B", 1)))


def test_bad_shape_and_too_large():
    bad = bytearray(INT_CHUNK)
    bad[8] = 33  # ndim is checked before the header CRC
    expect("bad_shape", "ndim=33", fn=decode_fn(bytes(bad)))
    huge = chunkfmt.patch(INT_CHUNK, 32, "<Q", 1 << 40)
    expect("too_large", "64 GiB", fn=decode_fn(huge))
    expect("too_large", fn=lambda: tpde.read_header(huge))
    overflow = chunkfmt.patch(INT_CHUNK, 32, "<Q", 2**64 - 1)
    expect("too_large", fn=decode_fn(overflow))


def test_shape_disagreeing_with_payload():
    bad = chunkfmt.patch(INT_CHUNK, 32, "<Q", INT_X.size + 1)
    expect("corrupt", "count", fn=decode_fn(bad))
    bad = chunkfmt.patch(STORED_CHUNK, 32, "<Q", NOISE.size - 1)
    expect("corrupt", "stored", fn=decode_fn(bad))
    bad = chunkfmt.patch(INT_CHUNK, 32, "<Q", 0)
    with pytest.raises(tpde.TPDEError) as info:
        tpde.decode(bad)
    assert info.value.code == "corrupt"


def test_payload_size_field():
    bigger = chunkfmt.patch(INT_CHUNK, 20, "<Q", len(INT_CHUNK))
    expect("truncated", "payload", fn=decode_fn(bigger))
    smaller = chunkfmt.patch(INT_CHUNK, 20, "<Q", 3)
    expect("corrupt", "trailing", fn=decode_fn(smaller))


# --- references -------------------------------------------------------------------------------


def test_missing_reference():
    err = expect("missing_reference", "reference", fn=decode_fn(DELTA_NOPREV))
    assert "delta" in str(err)
    expect("missing_reference", "reference", fn=decode_fn(DELTA_CHUNK, prev_reference=PREV))


def test_missing_prev_reference():
    expect("missing_reference", "prev_reference", fn=decode_fn(DELTA_CHUNK, reference=REF))


def test_wrong_reference():
    other = REF.copy()
    other[17] = np.nextafter(other[17], np.float32(np.inf))  # one ulp at one position
    expect("reference_mismatch", "fingerprint", fn=decode_fn(DELTA_NOPREV, reference=other))
    expect("reference_mismatch", "fingerprint", fn=decode_fn(DELTA_CHUNK, reference=other, prev_reference=PREV))
    expect("reference_mismatch", "prev_reference", fn=decode_fn(DELTA_CHUNK, reference=REF, prev_reference=other))
    # Swapped reference and prev_reference.
    expect("reference_mismatch", fn=decode_fn(DELTA_CHUNK, reference=PREV, prev_reference=REF))
    # A fingerprint patched in the header (CRC resealed) is equally refused.
    bad = chunkfmt.patch(DELTA_NOPREV, 12, "<I", chunkfmt.parse(DELTA_NOPREV)["reference_fingerprint"] ^ 1)
    expect("reference_mismatch", fn=decode_fn(bad, reference=REF))


def test_reference_of_wrong_size():
    expect("size_mismatch", "reference", fn=decode_fn(DELTA_NOPREV, reference=REF[:-1]))
    expect("size_mismatch", "prev_reference", fn=decode_fn(DELTA_CHUNK, reference=REF, prev_reference=PREV[:10]))
    expect("size_mismatch", "reference", fn=lambda: tpde.encode(DELTA_X, reference=REF[:-1]))
    expect("size_mismatch", "prev_reference", fn=lambda: tpde.encode(DELTA_X, reference=REF, prev_reference=PREV[1:]))


def test_reference_of_other_itemsize():
    with pytest.raises(tpde.TPDEError) as info:
        tpde.encode(DELTA_X, reference=REF.view(np.float64))  # same bytes, half the elements
    assert info.value.code == "size_mismatch"


def test_prev_reference_without_reference():
    expect("invalid_argument", "prev_reference", fn=lambda: tpde.encode(DELTA_X, prev_reference=PREV))


# --- dtypes and encode arguments --------------------------------------------------------------


@pytest.mark.parametrize("name", ["float128", "complex64", "bf16", "float", "", "int4", "object"])
def test_wrong_dtype_names(name):
    err = expect("bad_dtype", fn=lambda: tpde.encode(np.zeros(4, np.float32), dtype=name))
    assert repr(name)[1:-1] in str(err)


@pytest.mark.parametrize(
    "array",
    [np.zeros(3, np.complex64), np.zeros(3, np.longdouble), np.array(["ab"]),
     np.zeros(3, "datetime64[s]"), np.array([b"x"]), np.zeros(3, dtype=object)],
    ids=["complex64", "longdouble", "unicode", "datetime64", "bytes", "object"],
)
def test_unsupported_numpy_dtypes(array):
    with pytest.raises(tpde.TPDEError) as info:
        tpde.encode(array)
    assert info.value.code == "bad_dtype"
    assert "dtype" in str(info.value)


@pytest.mark.parametrize(
    "array,name,need",
    [(np.zeros(4, np.float32), "float16", 2), (np.zeros(4, np.float32), "bfloat16", 2),
     (np.zeros(4, np.int8), "bfloat16", 2), (np.zeros(4, np.uint16), "float32", 4),
     (np.zeros(4, np.float64), "int32", 4), (np.zeros(4, np.int16), "bool", 1)],
)
def test_itemsize_mismatch(array, name, need):
    err = expect("bad_dtype", name, f"{need}-byte", fn=lambda: tpde.encode(array, dtype=name))
    assert f"{array.itemsize}-byte" in str(err)


def test_too_many_dimensions():
    expect("invalid_argument", "dimensions", fn=lambda: tpde.encode(np.zeros((1,) * 33, np.float32)))


def test_bad_out_buffers():
    expect("size_mismatch", "output", fn=decode_fn(INT_CHUNK, out=np.empty(INT_X.size + 1, np.int32)))
    expect("size_mismatch", "output", fn=decode_fn(INT_CHUNK, out=np.empty(3, np.uint8)))
    strided = np.empty(INT_X.size * 2, np.int32)[::2]
    expect("invalid_argument", "contiguous", fn=decode_fn(INT_CHUNK, out=strided))
    readonly = np.empty(INT_X.size, np.int32)
    readonly.flags.writeable = False
    expect("invalid_argument", fn=decode_fn(INT_CHUNK, out=readonly))
    ref = REF.copy()
    expect("invalid_argument", "reference", fn=decode_fn(DELTA_NOPREV, reference=ref, out=ref))
    assert ref.tobytes() == REF.tobytes()


# --- payload structure behind valid CRCs (docs/format.md, decoder MUST rules) ------------------


def _prefix(chunk, offset, fmt, value):
    return chunkfmt.patch(chunk, chunkfmt.header_size(chunk) + offset, fmt, value)


def test_bad_value_position_context_scheme_codes():
    expect("corrupt", "value scheme", fn=decode_fn(_prefix(INT_CHUNK, 0, "<B", 3)))
    expect("corrupt", "position scheme", fn=decode_fn(_prefix(INT_CHUNK, 1, "<B", 2)))
    expect("corrupt", "context scheme", fn=decode_fn(_prefix(INT_CHUNK, 2, "<B", 5)))
    expect("corrupt", "context scheme", fn=decode_fn(_prefix(INT_CHUNK, 2, "<B", 255)))


def test_schemes_that_do_not_fit_the_chunk():
    # FloatSplit is only for standalone floats.
    expect("corrupt", "float-split", fn=decode_fn(_prefix(INT_CHUNK, 0, "<B", 2)))
    expect("corrupt", "float-split", fn=decode_fn(_prefix(DELTA_CHUNK, 0, "<B", 2), **DELTA_KW))
    # RefExponent needs a float delta; PrevResidual needs the prev-reference flag.
    expect("corrupt", "does not fit", fn=decode_fn(_prefix(INT_CHUNK, 2, "<B", 1)))
    expect("corrupt", "does not fit", fn=decode_fn(_prefix(INT_CHUNK, 2, "<B", 2)))
    bad = chunkfmt.patch(DELTA_NOPREV, chunkfmt.header_size(DELTA_NOPREV) + 2, "<B", 2)
    expect("corrupt", "does not fit", fn=decode_fn(bad, reference=REF))
    # Neighbour is not for FloatSplit; PrevExponent only for FloatSplit.
    expect("corrupt", "does not fit", fn=decode_fn(_prefix(SPARSE_CHUNK, 2, "<B", 3)))
    expect("corrupt", "does not fit", fn=decode_fn(_prefix(INT_CHUNK, 2, "<B", 4)))


def test_context_parameter_out_of_range():
    expect("corrupt", "context parameter", fn=decode_fn(_prefix(SPARSE_CHUNK, 4, "<H", 256)))
    expect("corrupt", "context parameter", fn=decode_fn(_prefix(DELTA_CHUNK, 4, "<H", 0xFFFF), **DELTA_KW))


def test_coded_count():
    expect("corrupt", "count", fn=decode_fn(_prefix(INT_CHUNK, 8, "<Q", INT_X.size - 1)))
    expect("corrupt", "count", fn=decode_fn(_prefix(SPARSE_CHUNK, 8, "<Q", SPARSE_X.size + 1)))
    expect("corrupt", "stored", fn=decode_fn(_prefix(STORED_CHUNK, 8, "<Q", NOISE.size + 1)))


def test_payload_shorter_than_prefix():
    hs = chunkfmt.header_size(INT_CHUNK)
    for n in range(16):
        expect("corrupt", "prefix", fn=decode_fn(chunkfmt.reseal(INT_CHUNK[: hs + n])))


def test_section_lengths():
    info = chunkfmt.parse(INT_CHUNK)
    for name in chunkfmt.SECTION_NAMES:
        len_at = info["sections"][name][0]
        bad = chunkfmt.patch(INT_CHUNK, len_at, "<Q", len(INT_CHUNK))
        expect("corrupt", "past the payload", fn=decode_fn(bad))
        bad = chunkfmt.patch(INT_CHUNK, len_at, "<Q", 2**64 - 1)
        expect("corrupt", "past the payload", fn=decode_fn(bad))
        expect("corrupt", "missing length", fn=decode_fn(chunkfmt.reseal(INT_CHUNK[: len_at + 7])))
    expect("corrupt", "trailing", fn=decode_fn(chunkfmt.reseal(INT_CHUNK + b"\x00")))


def test_gap_section():
    expect("corrupt", "gap section", fn=decode_fn(chunkfmt.replace_section(INT_CHUNK, "gaps", b"\x80")))
    gaps = chunkfmt.parse(SPARSE_CHUNK)["sections"]["gaps"]
    raw = SPARSE_CHUNK[gaps[1] : gaps[1] + gaps[2]]
    expect("corrupt", "gap", fn=decode_fn(chunkfmt.replace_section(SPARSE_CHUNK, "gaps", raw + b"\x00")))
    expect("corrupt", "gap", fn=decode_fn(chunkfmt.replace_section(SPARSE_CHUNK, "gaps", bytes(len(raw)))))
    expect("corrupt", "gap", fn=decode_fn(chunkfmt.replace_section(SPARSE_CHUNK, "gaps", raw[:-2])))


def test_tables_section():
    for tables in (b"", b"\x05", b"\x01\x00\xff\x1e",  # freq 3840+... != 4096
                   b"\x01\x00\xff\x1f\x00",  # trailing byte
                   b"\x02\x00\xff\x0f\x00\xff\x10",  # 2048 + 2176 > 4096
                   b"\x01\xff\x01\xff\x1f",  # symbol 255+... beyond the LogBucket alphabet
                   b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"):  # varint overflow
        bad = chunkfmt.replace_section(INT_CHUNK, "tables", tables)
        with pytest.raises(tpde.TPDEError) as info:
            tpde.decode(bad)
        assert info.value.code == "corrupt", tables
    expect("corrupt", "table", fn=decode_fn(chunkfmt.replace_section(INT_CHUNK, "tables", b"\x05")))
    # A context with no table (single 0) that still gets a value.
    expect("corrupt", "without a table", fn=decode_fn(chunkfmt.replace_section(INT_CHUNK, "tables", b"\x00")))


def test_rans_section():
    rans = chunkfmt.parse(INT_CHUNK)["sections"]["rans"]
    raw = INT_CHUNK[rans[1] : rans[1] + rans[2]]
    for bad_rans in (raw + b"\x00", raw[:-1], raw[:-1] + bytes([raw[-1] ^ 1]), b"\xff" * len(raw)):
        expect("corrupt", "rans", fn=decode_fn(chunkfmt.replace_section(INT_CHUNK, "rans", bad_rans)))


def test_tails_section():
    tails = chunkfmt.parse(DELTA_CHUNK)["sections"]["tails"]
    raw = DELTA_CHUNK[tails[1] : tails[1] + tails[2]]
    for bad_tails in (raw + b"\x00", raw[:-1], b""):
        expect("corrupt", "tail", fn=decode_fn(chunkfmt.replace_section(DELTA_CHUNK, "tails", bad_tails), **DELTA_KW))


HANG_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import numpy as np, chunkfmt, tpde
    x = np.cumsum(np.random.default_rng(1234).integers(-3, 4, 300)).astype(np.int32)
    chunk = tpde.encode(x)
    for rans in (b"", bytes(4), bytes(40)):  # empty / all-zero rANS sections
        bad = chunkfmt.replace_section(chunk, "rans", rans)
        try:
            tpde.decode(bad)
            print("decoded")
        except tpde.TPDEError as e:
            print(e.code)
    """
)


def test_rans_zero_state_does_not_hang():
    script = HANG_SCRIPT.format(tests=TESTS_DIR)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail("decode of a CRC-valid chunk with a zero rANS state hangs")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["corrupt"] * 3


# --- resealed mutation fuzzing (in a subprocess, so a hang fails instead of blocking) ----------

MUTATION_SCRIPT = textwrap.dedent(
    """
    import random, struct, sys
    sys.path.insert(0, {tests!r})
    import test_errors as t, chunkfmt, tpde
    rng = random.Random({seed})
    cases = [(t.INT_CHUNK, {{}}), (t.SPARSE_CHUNK, {{}}), (t.DELTA_CHUNK, t.DELTA_KW),
             (t.DELTA_NOPREV, {{"reference": t.REF}}), (t.STORED_CHUNK, {{}})]
    outcomes = {{}}
    for i in range({count}):
        chunk, kw = cases[i % len(cases)]
        hs = chunkfmt.header_size(chunk)
        p = bytearray(chunk[hs:])
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            j = rng.randrange(len(p))
            if op < 0.5:
                p[j] ^= 1 << rng.randrange(8)
            elif op < 0.8:
                p[j] = rng.choice([0, 1, 0x7f, 0x80, 0xff, rng.randrange(256)])
            elif op < 0.9:
                del p[j]
            else:
                p.insert(j, rng.randrange(256))
        bad = chunkfmt.reseal(chunk[:hs] + bytes(p))
        try:
            y = tpde.decode(bad, **kw)
            assert y.nbytes == tpde.read_header(bad)["shape"][0] * y.itemsize
            outcomes["decoded"] = outcomes.get("decoded", 0) + 1
        except tpde.TPDEError as e:
            assert e.code in ("corrupt", "truncated"), (e.code, str(e))
            outcomes[e.code] = outcomes.get(e.code, 0) + 1
    print(sorted(outcomes.items()))
    """
)


@pytest.mark.parametrize("seed", [1, 2])
def test_resealed_mutations_only_raise_corrupt(seed):
    count = 10000
    script = MUTATION_SCRIPT.format(tests=TESTS_DIR, seed=seed, count=count)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("decoding a resealed mutated chunk hung")
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = dict(eval(proc.stdout))  # noqa: S307 - our own subprocess's repr
    assert outcomes.get("corrupt", 0) > count // 3  # the structural checks fire
    assert sum(outcomes.values()) == count


# --- formats 3 and 4: extrapolated references, the lossy predictor, scaled rows -------------------

_VECTORS = Path(__file__).resolve().parent / "vectors"


def _vector(case: str):
    d = _VECTORS / case
    return ((d / "encoded.bin").read_bytes(), np.load(d / "reference.npy"), np.load(d / "prev_reference.npy"))


@pytest.mark.parametrize("name,words", [
    ("transform_2.bin", ("unknown reference transform",)),
    ("transform_reserved_byte.bin", ("unknown reference transform",)),
    ("transform_on_standalone.bin", ("extrapolated reference", "prev-reference")),
    ("transform_cut_short.bin", ("extrapolation parameters cut short",)),
    ("transform_slope_too_steep.bin", ("extrapolation parameters out of range",)),
    ("lossy_predictor_2.bin", ("unknown predictor",)),
    ("lossy_predictor_nan.bin", ("predictor coefficients out of range",)),
    ("lossy_predictor_b_without_prev.bin", ("prev-reference the chunk does not have",)),
    # format 4: scaled reference segments
    ("transform_3.bin", ("unknown reference transform",)),
    ("scaled_mantissa_top_bit_clear.bin", ("scale out of range",)),
    ("scaled_shift_97.bin", ("scale out of range",)),
    ("scaled_segment_0.bin", ("segment length 0",)),
    ("scaled_bitmap_cut_short.bin", ("bitmap cut short",)),
    ("scaled_bitmap_padding.bin", ("bitmap padding not zero",)),
    ("scaled_without_prev.bin", ("scaled reference", "prev-reference")),
])
def test_format3_and_4_bad_vectors_name_the_problem(name, words):
    spec = json.loads((_VECTORS / "bad" / "expected.json").read_text())[name]
    kwargs = {arg: np.load(_VECTORS / path) for arg, path in spec["decode_with"].items()}
    expect("corrupt", *words, fn=decode_fn((_VECTORS / "bad" / name).read_bytes(), **kwargs))


def test_transform_on_stored_values_is_corrupt():
    chunk, ref, prev = _vector("v3_f32_delta_extrapolated")
    hs = chunkfmt.header_size(chunk)
    # a stored payload of the right size (value scheme 0), marked with transform 1
    raw = np.ascontiguousarray(ref).view(np.uint8).tobytes()
    payload = bytes([0, 0, 0, 0, 0, 0, 1, 0]) + ref.size.to_bytes(8, "little") + raw
    bad = chunkfmt.reseal(chunk[:hs] + payload)
    expect("corrupt", "reference transform on stored values", fn=decode_fn(bad, reference=ref, prev_reference=prev))


def test_lossy_predictor_on_log_relative_or_short_block_is_corrupt():
    chunk, ref, prev = _vector("v3_f32_lossy_abs_predicted")
    hs = chunkfmt.header_size(chunk)
    log_rel = chunkfmt.patch(chunk, hs, "<B", 2)  # quantizer 2 with predictor 1
    expect("corrupt", "log-relative", fn=decode_fn(log_rel, reference=ref, prev_reference=prev))
    short = chunkfmt.reseal(chunk[: hs + 30])  # 30 bytes: the 24-byte block, not the 16 of a and b
    expect("corrupt", "shorter than its lossy block", fn=decode_fn(short, reference=ref, prev_reference=prev))


# --- format 4: scaled reference segments ---------------------------------------------------------

def test_scaled_parameters_cut_short_and_in_a_version_3_chunk_are_corrupt():
    chunk, ref, prev = _vector("v4_f32_delta_scaled_rows")
    sp = chunkfmt.parse(chunk)["prefix_offset"] + 16
    expect("corrupt", "scaled-reference parameters cut short",
           fn=decode_fn(chunkfmt.reseal(chunk[: sp + 11]), reference=ref, prev_reference=prev))
    as_v3 = chunkfmt.patch(chunk, 4, "<B", 3)  # format 3 knows transforms 0 and 1 only
    expect("corrupt", "unknown reference transform 2", fn=decode_fn(as_v3, reference=ref, prev_reference=prev))


# --- format 5: two rANS states; scaled rows without a prev-reference ---------------------------

@pytest.mark.parametrize("name", ["rans_second_state_zero.bin", "rans_one_state.bin", "rans_zero_state.bin"])
def test_rans_bad_vectors_name_the_problem(name):
    expect("corrupt", "rANS stream does not end cleanly", fn=decode_fn((_VECTORS / "bad" / name).read_bytes()))


def test_scaled_rows_without_prev_need_a_reference_from_format_5():
    d = _VECTORS / "v5_f32_delta_scaled_rows_no_prev"
    chunk, ref = (d / "encoded.bin").read_bytes(), np.load(d / "reference.npy")
    prefix = chunkfmt.parse(chunk)["prefix_offset"]
    coded_alone = chunkfmt.patch(chunk, prefix + 3, "<B", 1)  # without_reference = 1
    err = expect("corrupt", "scaled reference on a chunk without a reference of a 16/32-bit float dtype",
                 fn=decode_fn(coded_alone, reference=ref))
    assert "prev-reference" not in str(err)  # version 5 does not ask for one
    as_v4 = chunkfmt.patch(chunk, 4, "<B", 4)  # format 4 required the prev-reference
    expect("corrupt", "scaled reference", "and prev-reference", fn=decode_fn(as_v4, reference=ref))
