"""numcodecs TPDECodec and zarr v3 TPDEZarrCodec: configs, registries, zarr v2/v3 stores,
and plain-zarr readers in fresh interpreters that never import tpde themselves."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap

import numcodecs
import numpy as np
import pytest
import zarr

import tpde
from tpde import TPDECodec, TPDEZarrCodec

ZARR_DTYPES = ["float32", "float64", "float16", "int8", "int16", "int32", "int64",
               "uint8", "uint16", "uint32", "uint64", "bool"]


def bits(a) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


def sample(dtype: str, shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        x = (rng.standard_normal(shape) * 0.05).astype(dt)
        flat = x.reshape(-1)
        flat[:6] = [np.nan, -np.inf, np.inf, -0.0, 0.0, np.finfo(dt).smallest_subnormal]
        # a NaN with a payload
        u = flat.view(f"u{dt.itemsize}")
        u[6] = u[0] | 1
        return x
    if dt.kind == "b":
        return rng.random(shape) < 0.3
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True) // 3 + (
        rng.integers(0, 3, size=shape).astype(dt))


def run_fresh(script: str) -> str:
    """Run ``script`` in a new interpreter and return its stdout (it must not import tpde)."""
    assert "import tpde" not in script and "from tpde" not in script
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


# --- numcodecs --------------------------------------------------------------------------------


def test_config_roundtrip():
    for codec in (TPDECodec(), TPDECodec(dtype="bfloat16")):
        config = codec.get_config()
        assert config["id"] == "tpde"
        again = numcodecs.get_codec(json.loads(json.dumps(config)))
        assert isinstance(again, TPDECodec)
        assert again == codec
        assert again.get_config() == config
        assert TPDECodec.from_config({k: v for k, v in config.items() if k != "id"}) == codec
    assert TPDECodec().get_config() == {"id": "tpde"}
    assert TPDECodec(dtype="bfloat16").get_config() == {"id": "tpde", "dtype": "bfloat16"}
    assert TPDECodec() != TPDECodec(dtype="bfloat16")
    assert "bfloat16" in repr(TPDECodec(dtype="bfloat16"))


def test_entry_points_declared():
    (np_ep,) = importlib.metadata.entry_points(group="numcodecs.codecs", name="tpde")
    assert np_ep.load() is TPDECodec
    (zarr_ep,) = importlib.metadata.entry_points(group="zarr.codecs", name="tpde")
    assert zarr_ep.load() is TPDEZarrCodec


def test_registry_entry_point_in_fresh_interpreter():
    out = run_fresh(
        """
        import sys, numcodecs
        codec = numcodecs.get_codec({"id": "tpde", "dtype": "bfloat16"})
        print(type(codec).__module__, type(codec).__name__, codec.dtype)
        """
    )
    assert out.split() == ["tpde.codecs.numcodecs_codec", "TPDECodec", "bfloat16"]


@pytest.mark.parametrize("dtype", ZARR_DTYPES)
def test_numcodecs_roundtrip(dtype):
    x = sample(dtype, (33, 7))
    codec = TPDECodec()
    enc = codec.encode(x)
    assert tpde.read_header(enc)["shape"] == (33, 7)
    assert bits(codec.decode(enc)) == bits(x)
    # out=: same dtype and shape, or a flat byte buffer of the right size
    out = np.empty_like(x)
    assert codec.decode(enc, out=out) is out
    assert bits(out) == bits(x)
    raw = bytearray(x.nbytes)
    codec.decode(enc, out=raw)
    assert bytes(raw) == bits(x)
    # buffers of the chunk in other forms
    assert bits(codec.decode(memoryview(enc))) == bits(x)
    assert bits(codec.decode(np.frombuffer(enc, np.uint8))) == bits(x)


def test_numcodecs_bfloat16():
    rng = np.random.default_rng(1)
    f = rng.standard_normal(1000).astype(np.float32)
    bf = (f.view(np.uint32) >> 16).astype(np.uint16)
    codec = TPDECodec(dtype="bfloat16")
    enc = codec.encode(bf)
    assert tpde.read_header(enc)["dtype"] == "bfloat16"
    assert len(enc) < bf.nbytes
    assert bits(codec.decode(enc)) == bits(bf)
    with pytest.raises(tpde.TPDEError) as info:
        codec.encode(f)  # 4-byte items are not bf16
    assert info.value.code == "bad_dtype"


def test_numcodecs_decode_errors():
    codec = TPDECodec()
    x = sample("float32", (50,))
    enc = codec.encode(x)
    with pytest.raises(ValueError):
        codec.decode(enc, out=np.empty(49, np.float32))
    with pytest.raises(tpde.TPDEError) as info:
        codec.decode(enc[:-1])
    assert info.value.code == "truncated"
    delta = tpde.encode(x, reference=np.zeros_like(x))
    with pytest.raises(tpde.TPDEError) as info:
        codec.decode(delta)
    assert info.value.code == "missing_reference"
    assert "reference" in str(info.value)


# --- zarr v2 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "uint8", "bool"])
def test_zarr_v2_write_read(tmp_path, dtype):
    x = sample(dtype, (50, 30), seed=3)
    path = str(tmp_path / "a.zarr")
    a = zarr.open(path, mode="w", shape=x.shape, chunks=(16, 16), dtype=dtype, zarr_format=2,
                  compressor=TPDECodec())
    a[:] = x
    meta = json.loads((tmp_path / "a.zarr" / ".zarray").read_text())
    assert meta["compressor"] == {"id": "tpde"}
    chunk = (tmp_path / "a.zarr" / "0.0").read_bytes()
    assert tpde.read_header(chunk)["shape"] == (16, 16)
    assert tpde.read_header(chunk)["dtype"] == dtype
    b = zarr.open(path, mode="r")
    assert bits(b[:]) == bits(x)
    assert bits(b[5:40, 7:9]) == bits(np.ascontiguousarray(x[5:40, 7:9]))


def test_zarr_v2_read_in_fresh_interpreter(tmp_path):
    x = sample("float32", (40, 25), seed=4)
    path = tmp_path / "a.zarr"
    a = zarr.open(str(path), mode="w", shape=x.shape, chunks=(16, 10), dtype="float32",
                  zarr_format=2, compressor=TPDECodec(), fill_value=0.0)
    a[:32] = x[:32]  # rows 32.. stay unwritten: fill value
    np.save(tmp_path / "expected.npy", x[:32])
    out = run_fresh(
        f"""
        import sys, numpy as np, zarr
        assert "tpde" not in sys.modules
        a = zarr.open({str(path)!r}, mode="r")
        y = a[:]
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert y[:32].view(np.uint8).tobytes() == expected.view(np.uint8).tobytes()
        assert (y[32:] == 0).all()
        print("ok", "tpde.codecs.numcodecs_codec" in sys.modules)  # loaded through the registry
        """
    )
    assert out.split() == ["ok", "True"]


# --- zarr v3 ----------------------------------------------------------------------------------


def test_zarr_v3_codec_dict_roundtrip():
    codec = TPDEZarrCodec()
    assert codec.to_dict() == {"name": "tpde"}
    assert TPDEZarrCodec.from_dict({"name": "tpde"}) == codec
    assert TPDEZarrCodec.from_dict({"name": "tpde", "configuration": {}}) == codec
    with pytest.raises(ValueError):
        TPDEZarrCodec.from_dict({"name": "zstd"})
    from zarr.registry import get_codec_class

    assert get_codec_class("tpde") is TPDEZarrCodec


@pytest.mark.parametrize("dtype", ZARR_DTYPES)
def test_zarr_v3_write_read(tmp_path, dtype):
    x = sample(dtype, (37, 20), seed=5)
    a = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=x.shape, chunks=(16, 16), dtype=dtype,
                          serializer=TPDEZarrCodec(), compressors=None)
    a[:] = x
    meta = json.loads((tmp_path / "a.zarr" / "zarr.json").read_text())
    assert meta["codecs"] == [{"name": "tpde"}]
    chunk = (tmp_path / "a.zarr" / "c" / "2" / "1").read_bytes()  # an edge chunk
    assert tpde.read_header(chunk)["shape"] == (16, 16)
    b = zarr.open_array(str(tmp_path / "a.zarr"), mode="r")
    assert bits(b[:]) == bits(x)
    assert bits(b[30:, 3:17]) == bits(np.ascontiguousarray(x[30:, 3:17]))


def test_zarr_v3_read_in_fresh_interpreter(tmp_path):
    x = sample("float64", (64, 9), seed=6)
    path = tmp_path / "a.zarr"
    a = zarr.create_array(store=str(path), shape=x.shape, chunks=(20, 9), dtype="float64",
                          serializer=TPDEZarrCodec(), compressors=None, fill_value=1.5)
    a[:60] = x[:60]
    np.save(tmp_path / "expected.npy", x[:60])
    out = run_fresh(
        f"""
        import sys, numpy as np, zarr
        a = zarr.open_array({str(path)!r}, mode="r")
        y = a[:]
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert y[:60].view(np.uint8).tobytes() == expected.view(np.uint8).tobytes()
        assert (y[60:] == 1.5).all()
        print("ok", type(a.metadata.codecs[0]).__name__)
        """
    )
    assert out.split() == ["ok", "TPDEZarrCodec"]


def test_zarr_v3_unsupported_dtype_is_a_clear_error(tmp_path):
    a = zarr.create_array(store=str(tmp_path / "c.zarr"), shape=(4,), chunks=(4,), dtype="complex64",
                          serializer=TPDEZarrCodec(), compressors=None)
    with pytest.raises(tpde.TPDEError) as info:
        a[:] = np.ones(4, np.complex64)
    assert info.value.code == "bad_dtype"
