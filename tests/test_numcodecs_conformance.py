"""TPDECodec against numcodecs' own conformance helpers (numcodecs.tests.common), and the
chunk dtype checks of both codecs (issue 13, items 8 and 10).

The backwards-compatibility fixture (tests/numcodecs_fixture/fixture/tpde/) was written
once by check_backwards_compatibility; every later run decodes it. Never regenerate it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numcodecs.registry import get_codec
from numcodecs.tests import common

import tpde
from tpde import TPDECodec, TPDEZarrCodec

FIXTURE_DIR = Path(__file__).resolve().parent / "numcodecs_fixture"

rng = np.random.default_rng(13)
ARRAYS = [
    np.arange(1000, dtype="i4"),
    np.linspace(1000, 1001, 1000, dtype="f8"),
    rng.normal(loc=1000, scale=1, size=(100, 10)),
    rng.normal(size=(10, 20)).astype("f4").T,  # F-contiguous
    rng.integers(0, 2, size=1000, dtype=bool).reshape(100, 10, order="F"),
    rng.integers(-100, 100, size=(3, 4, 5), dtype="i2"),
    np.array([b"a", b"bb", b"ccc"] * 333 + [b"dddd"]).reshape(10, 10, 10),  # fixed-width bytes
    np.array(["x", "yy", "zzz"] * 10),  # fixed-width unicode
    np.zeros(7, dtype="V3"),  # opaque
    rng.integers(0, 2**60, size=1000, dtype="u8").view("M8[ns]"),
    rng.integers(0, 2**60, size=1000, dtype="u8").view("m8[ns]"),
    rng.integers(0, 2**25, size=1000, dtype="u8").view("M8[m]"),
    (rng.normal(size=50) + 1j * rng.normal(size=50)).astype("c8"),
    rng.normal(size=40).astype(">f4"),  # big-endian
    np.array(3.5, dtype="f4"),  # 0-d
    np.zeros((0, 4), dtype="u2"),
]
IDS = [f"{a.dtype.str}{a.shape}{'F' if a.flags.f_contiguous and not a.flags.c_contiguous else ''}" for a in ARRAYS]


@pytest.mark.parametrize("arr", ARRAYS, ids=IDS)
def test_check_encode_decode(arr):
    common.check_encode_decode(arr, TPDECodec())


def test_check_config():
    common.check_config(TPDECodec())
    common.check_config(TPDECodec(dtype="bfloat16"))


def test_check_repr(monkeypatch):
    monkeypatch.setattr(common, "TPDECodec", TPDECodec, raising=False)  # eval looks it up there
    common.check_repr("TPDECodec()")
    common.check_repr("TPDECodec(dtype='bfloat16')")


FIXTURE_ARRAYS = [  # small: written once into the repository
    np.arange(100, dtype="i4"),
    np.linspace(1000, 1001, 100, dtype="f8"),
    np.random.default_rng(7).normal(size=(10, 10)).astype("f4"),
    np.arange(64, dtype="u2").reshape(8, 8).T,  # F-contiguous
    np.array([True, False, True] * 20),
    np.array([b"a", b"bb", b"ccc"] * 20),
    np.array(["x", "yy"] * 10),
]


def test_check_backwards_compatibility(monkeypatch):
    monkeypatch.chdir(FIXTURE_DIR)
    common.check_backwards_compatibility(TPDECodec.codec_id, FIXTURE_ARRAYS, [TPDECodec()])


def test_the_fixture_is_committed():
    files = sorted((FIXTURE_DIR / "fixture" / "tpde").rglob("*"))
    assert any(f.name == "encoded.00.dat" for f in files) and any(f.name == "config.json" for f in files)


def test_check_err_decode_object_buffer():
    common.check_err_decode_object_buffer(TPDECodec())


def test_check_err_encode_object_buffer():
    common.check_err_encode_object_buffer(TPDECodec())


def test_registry_round_trip():
    assert get_codec({"id": "tpde"}) == TPDECodec()
    assert get_codec({"id": "tpde", "dtype": "bfloat16"}) == TPDECodec(dtype="bfloat16")


# --- the chunk's dtype is checked when the codec can know the array's --------------------------

F32 = np.arange(12, dtype=np.float32)
I32_CHUNK = tpde.encode(np.arange(12, dtype=np.int32))


def test_configured_dtype_refuses_a_chunk_of_another_dtype():
    with pytest.raises(tpde.TPDEError) as info:
        TPDECodec(dtype="float32").decode(I32_CHUNK)
    assert info.value.code == "bad_dtype" and "int32" in str(info.value)
    assert TPDECodec(dtype="float32").decode(tpde.encode(F32)).tobytes() == F32.tobytes()


def test_typed_out_refuses_a_chunk_of_another_dtype():
    with pytest.raises(tpde.TPDEError) as info:
        TPDECodec().decode(I32_CHUNK, out=np.empty(12, np.float32))
    assert info.value.code == "bad_dtype"
    out = np.empty(12, np.int32)
    TPDECodec().decode(I32_CHUNK, out=out)
    assert out.tolist() == list(range(12))
    raw = bytearray(48)  # untyped buffers take any chunk of the right size
    TPDECodec().decode(I32_CHUNK, out=raw)
    assert bytes(raw) == np.arange(12, dtype=np.int32).tobytes()


def test_out_of_another_size_is_refused_before_decoding():
    with pytest.raises(tpde.TPDEError) as info:
        TPDECodec().decode(I32_CHUNK, out=np.empty(11, np.int32))
    assert info.value.code in ("size_mismatch", "too_large")


def _zarr_v3(tmp_path, dtype):
    import zarr

    return zarr.create_array(tmp_path / "a.zarr", shape=(12,), chunks=(12,), dtype=dtype,
                             serializer=TPDEZarrCodec(), compressors=None)


def _chunk_file(root: Path) -> Path:
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(("zarr.json", ".z"))]
    assert len(files) == 1, files
    return files[0]


def test_zarr_v3_refuses_a_chunk_of_another_dtype(tmp_path):
    arr = _zarr_v3(tmp_path, "float32")
    arr[:] = F32
    assert arr[:].tobytes() == F32.tobytes()
    _chunk_file(tmp_path / "a.zarr").write_bytes(I32_CHUNK)  # same size, other dtype
    with pytest.raises(tpde.TPDEError) as info:
        arr[:]
    assert info.value.code == "bad_dtype"


def test_zarr_v3_refuses_a_chunk_of_another_shape(tmp_path):
    arr = _zarr_v3(tmp_path, "float32")
    arr[:] = F32
    _chunk_file(tmp_path / "a.zarr").write_bytes(tpde.encode(F32.reshape(3, 4)))
    with pytest.raises(tpde.TPDEError) as info:
        arr[:]
    assert info.value.code == "bad_shape"


def test_zarr_v2_with_a_configured_dtype_refuses_a_chunk_of_another_dtype(tmp_path):
    import zarr

    arr = zarr.create_array(tmp_path / "a.zarr", shape=(12,), chunks=(12,), dtype="float32", zarr_format=2,
                            compressors=TPDECodec(dtype="float32"), filters=None)
    arr[:] = F32
    assert arr[:].tobytes() == F32.tobytes()
    _chunk_file(tmp_path / "a.zarr").write_bytes(I32_CHUNK)
    with pytest.raises(tpde.TPDEError) as info:
        arr[:]
    assert info.value.code == "bad_dtype"


@pytest.mark.parametrize("placed", [
    np.arange(12, dtype=np.int32),  # same size, other values
    np.arange(12, dtype=np.uint32),
    np.arange(48, dtype=np.uint8),  # raw bytes of the right size
    np.arange(6, dtype=np.float64),
])
def test_zarr_v2_with_a_bare_codec_refuses_a_chunk_of_another_dtype(tmp_path, placed):
    import zarr

    arr = zarr.create_array(tmp_path / "a.zarr", shape=(12,), chunks=(12,), dtype="float32", zarr_format=2,
                            compressors=TPDECodec(), filters=None)
    arr[:] = F32
    assert arr[:].tobytes() == F32.tobytes()
    _chunk_file(tmp_path / "a.zarr").write_bytes(tpde.encode(placed))
    with pytest.raises(tpde.TPDEError) as info:
        arr[:]
    assert info.value.code == "bad_dtype" and str(placed.dtype) in str(info.value)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_zarr_v2_byte_array_refuses_a_chunk_of_wider_values(tmp_path, dtype):
    import zarr

    arr = zarr.create_array(tmp_path / "a.zarr", shape=(48,), chunks=(48,), dtype=dtype, zarr_format=2,
                            compressors=TPDECodec(), filters=None)
    arr[:] = np.arange(48).astype(dtype)
    _chunk_file(tmp_path / "a.zarr").write_bytes(tpde.encode(np.arange(12, dtype=np.int32)))
    with pytest.raises(tpde.TPDEError) as info:
        arr[:]
    assert info.value.code == "bad_dtype"


def test_zarr_v2_bool_array_refuses_a_chunk_of_bytes(tmp_path):
    import zarr

    arr = zarr.create_array(tmp_path / "a.zarr", shape=(12,), chunks=(12,), dtype="bool", zarr_format=2,
                            compressors=TPDECodec(), filters=None)
    arr[:] = np.arange(12) % 3 == 0
    _chunk_file(tmp_path / "a.zarr").write_bytes(tpde.encode(np.full(12, 7, np.uint8)))
    with pytest.raises(tpde.TPDEError) as info:
        arr[:]
    assert info.value.code == "bad_dtype"


@pytest.mark.parametrize("dtype", ["float32", ">f4", "<i8", ">u2", "complex64", "complex128", "S3", "U2",
                                   "M8[ns]", "m8[s]", "bool", "uint8", "float16", "V12"])
def test_zarr_v2_with_a_bare_codec_reads_back_every_dtype(tmp_path, dtype):
    import zarr

    values = np.frombuffer(np.random.default_rng(1).bytes(40 * np.dtype(dtype).itemsize), dtype=dtype).copy()
    if values.dtype.kind == "b":
        values = np.arange(40) % 3 == 0
    if values.dtype.kind == "U":
        values = np.array([str(i) for i in range(40)], dtype=dtype)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=(40,), chunks=(16,), dtype=dtype, zarr_format=2,
                            compressors=TPDECodec(), filters=None, fill_value=None)
    arr[:] = values
    got = zarr.open_array(tmp_path / "a.zarr", mode="r")[:]
    assert got.dtype == values.dtype and got.tobytes() == values.tobytes()


def test_zarr_v2_with_a_shuffle_filter_reads_back(tmp_path):
    import zarr
    from numcodecs import Shuffle

    arr = zarr.create_array(tmp_path / "a.zarr", shape=(40,), chunks=(16,), dtype="float32", zarr_format=2,
                            compressors=TPDECodec(), filters=[Shuffle(elementsize=4)])
    values = np.random.default_rng(2).standard_normal(40).astype(np.float32)
    arr[:] = values
    assert zarr.open_array(tmp_path / "a.zarr", mode="r")[:].tobytes() == values.tobytes()


def test_a_decoded_chunk_is_checked_only_where_zarr_reads_it_as_the_array():
    from tpde.codecs.numcodecs_codec import DecodedChunk, check_view

    decoded = TPDECodec().decode(tpde.encode(F32))
    assert isinstance(decoded, DecodedChunk)
    assert type(decoded.view(np.float32)) is np.ndarray
    assert decoded.view(np.uint8).tobytes() == F32.tobytes()
    assert decoded.view(np.int32).tobytes() == F32.tobytes()  # a caller's own view: not checked
    assert type(decoded.view(np.ndarray)) is np.ndarray
    with pytest.raises(tpde.TPDEError):
        check_view(np.dtype(np.float32), np.dtype(np.int32))
    check_view(np.dtype(np.uint32), np.dtype(">f4"))  # big-endian arrays are coded as unsigned bits
    check_view(np.dtype(np.uint8), np.dtype("S3"))


@pytest.mark.parametrize("filters", ["bitround", "delta", "shuffle"])
def test_zarr_v2_filters_that_reinterpret_their_chunks_still_read_back(tmp_path, filters):
    import zarr
    from numcodecs import BitRound, Delta, Shuffle

    dtype = "int32" if filters == "delta" else "float32"
    chain = {"bitround": [BitRound(10)], "delta": [Delta(dtype)], "shuffle": [Shuffle(elementsize=4)]}[filters]
    values = (np.random.default_rng(3).standard_normal(40) * 1000).astype(dtype)
    expected = values
    if filters == "bitround":  # its chunks are int32 bit patterns, viewed back as float32
        expected = np.asarray(BitRound(10).decode(BitRound(10).encode(values)))
        assert expected.tobytes() != values.tobytes()
    arr = zarr.create_array(tmp_path / "a.zarr", shape=(40,), chunks=(16,), dtype=dtype, zarr_format=2,
                            compressors=TPDECodec(), filters=chain)
    arr[:] = values
    assert zarr.open_array(tmp_path / "a.zarr", mode="r")[:].tobytes() == expected.tobytes()
