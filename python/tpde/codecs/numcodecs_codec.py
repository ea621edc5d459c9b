"""TPDECodec: the tpde chunk coder as a numcodecs codec (zarr v2 ``compressor=``)."""

from __future__ import annotations

import sys

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray_like
from numcodecs.registry import register_codec

from .. import _core
from ..dtypes import STORAGE_DTYPES
from ..errors import TPDEError
from ..levels import check_level

# typed out buffers and chunks whose dtypes must match (8-bit ones stand for raw bytes:
# numcodecs decodes a chunk coded from bytes into a typed array)
_TYPED_OUTS = {d for d in STORAGE_DTYPES.values() if d.itemsize > 1}
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def codable_view(arr: np.ndarray) -> np.ndarray:
    """`arr` (C-contiguous) as an array of a codec dtype: itself when the core codes its
    dtype, else a view of the same bytes (see TPDECodec)."""
    dtype = arr.dtype
    if dtype.kind == "O":
        raise TypeError("object arrays cannot be coded by tpde")
    if dtype.name in STORAGE_DTYPES and dtype.isnative:
        return arr
    flat = arr.reshape(-1)
    if dtype.kind == "c" and dtype.isnative and dtype.itemsize in (8, 16):
        return flat.view(np.dtype(f"f{dtype.itemsize // 2}"))
    if dtype.kind in "Mm":
        return flat.view(np.int64)
    return flat.view(_UNSIGNED.get(dtype.itemsize, np.uint8))


# the module whose view of a decoded chunk is the array's dtype (zarr-python 3's V2Codec)
_ZARR_V2_CODEC = "zarr.codecs._v2"


class DecodedChunk(np.ndarray):
    """A decoded chunk that zarr v2 cannot read as values of another dtype.

    zarr v2 does not tell a compressor the array's dtype: its V2Codec views whatever the
    compressor (or the last filter) returns as the array's dtype, so a chunk of int32 values
    placed in a float32 array would be read as floats without a word. When that view is
    taken here, it must be the dtype a chunk coded from such an array holds
    (`codable_view`); another raises TPDEError("bad_dtype"). Filters (BitRound, Delta,
    Shuffle, ...) reinterpret the chunks they made, and callers may view a chunk as they
    like: those views are not checked. Every view it returns is a plain ndarray.
    """

    def view(self, *args, **kwargs):
        """`ndarray.view`, checked for zarr v2's view as the class docstring says."""
        wanted = args[0] if args else kwargs.get("dtype")
        if wanted is not None and not (isinstance(wanted, type) and issubclass(wanted, np.ndarray)) \
                and sys._getframe(1).f_globals.get("__name__") == _ZARR_V2_CODEC:
            check_view(self.dtype, np.dtype(wanted))
        return np.asarray(self).view(*args, **kwargs)


def check_view(held: np.dtype, wanted: np.dtype) -> None:
    """Raise TPDEError("bad_dtype") unless a chunk of `held` values is what an array of
    dtype `wanted` gives the codec to code."""
    if wanted == held or wanted.kind == "O":
        return
    expected = codable_view(np.empty(1, wanted)).dtype
    if expected != held:
        raise TPDEError(f"chunk holds {held} values, the array is {wanted}", "bad_dtype")


class TPDECodec(Codec):
    """Lossless standalone tpde coding of one chunk (zero masking, Elias gaps, rANS).

    ``dtype`` overrides how the chunk's bits are read, e.g. ``"bfloat16"`` for a uint16
    view of bf16 values; by default the array's own dtype is used. When set, it is also the
    dtype every decoded chunk must have: a chunk of another dtype raises
    :class:`tpde.TPDEError` ("bad_dtype"). Without it, a decoded chunk is a
    :class:`DecodedChunk`, which zarr v2 cannot view as another dtype than the one a chunk
    of the array's dtype holds: a chunk of other values placed in an array raises instead
    of being reinterpreted (filters' own views are not checked). A typed ``out``
    buffer is checked the same way, except against chunks of 8-bit values, which
    numcodecs treats as raw bytes.

    Arrays of dtypes the core does not code are coded by their bytes: complex as pairs of
    floats, datetimes and timedeltas as int64, and other fixed-size dtypes (fixed-width
    bytes ``S``, unicode ``U``, structured/void ``V``, ...) as unsigned integers of their
    item size (uint8 when it is not 1, 2, 4 or 8 bytes); decoding returns those arrays,
    which zarr and numcodecs view back as the array's dtype. Object arrays raise TypeError.
    F-ordered arrays are coded in memory order (as one dimension). ``level="fast"`` codes
    byte planes with static rANS (several times faster, a few percent larger); any level
    decodes every chunk.

    Delta chunks written by :class:`tpde.CheckpointStore` cannot be decoded here: they need
    their predecessor, and decoding one raises :class:`tpde.TPDEError` saying so.
    """

    codec_id = "tpde"

    def __init__(self, dtype: str | None = None, level: str = "default"):
        self.dtype = dtype
        self.level = check_level(level)

    def encode(self, buf):
        """Encode an array (its dtype and shape go into the chunk header)."""
        arr = ensure_contiguous_ndarray_like(buf, flatten=False)  # TypeError for object arrays
        if not isinstance(arr, np.ndarray):
            arr = np.asarray(arr)
        if not arr.flags.c_contiguous:  # F order: the bytes in memory order, as zarr v2 expects
            arr = arr.reshape(-1, order="A")
        if self.dtype is None:
            arr = codable_view(arr)
        return _core.encode(arr, dtype=self.dtype, level=self.level)

    def decode(self, buf, out=None):
        """Decode a chunk; ``out``, if given, receives the values and is returned."""
        chunk = ensure_contiguous_ndarray_like(buf)
        if out is None:
            decoded = _core.decode(chunk, dtype=self.dtype)
            return decoded if self.dtype is not None else decoded.view(DecodedChunk)
        target = ensure_contiguous_ndarray_like(out)  # TypeError for object arrays
        if isinstance(out, np.ndarray) and self.dtype is None:
            held = STORAGE_DTYPES[_core.read_header(chunk)["dtype"]]
            wanted = out.dtype.newbyteorder("=") if out.dtype.byteorder == ">" else out.dtype
            if wanted in _TYPED_OUTS and held in _TYPED_OUTS and wanted != held:
                raise TPDEError(f"chunk holds {held} values, out is {out.dtype}", "bad_dtype")
        _core.decode(chunk, dtype=self.dtype, out=target)
        return out

    def get_config(self):
        """JSON config: ``{"id": "tpde"}`` plus ``dtype`` and ``level`` when not the defaults."""
        config = {"id": self.codec_id}
        if self.dtype is not None:
            config["dtype"] = self.dtype
        if self.level != "default":
            config["level"] = self.level
        return config

    def __repr__(self):
        args = [f"dtype={self.dtype!r}"] if self.dtype else []
        args += [f"level={self.level!r}"] if self.level != "default" else []
        return f"TPDECodec({', '.join(args)})"


register_codec(TPDECodec)
