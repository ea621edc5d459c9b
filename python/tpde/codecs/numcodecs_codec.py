"""TPDECodec: the tpde chunk coder as a numcodecs codec (zarr v2 ``compressor=``)."""

from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray_like, ndarray_copy
from numcodecs.registry import register_codec

from .. import _core


class TPDECodec(Codec):
    """Lossless standalone tpde coding of one chunk (zero masking, Elias gaps, rANS).

    ``dtype`` overrides how the chunk's bits are read, e.g. ``"bfloat16"`` for a uint16
    view of bf16 values; by default the array's own dtype is used. Delta chunks written
    by :class:`tpde.CheckpointStore` cannot be decoded here: they need their predecessor,
    and decoding one raises :class:`tpde.TPDEError` saying so.
    """

    codec_id = "tpde"

    def __init__(self, dtype: str | None = None):
        self.dtype = dtype

    def encode(self, buf):
        """Encode an array (its dtype and shape go into the chunk header)."""
        arr = ensure_contiguous_ndarray_like(buf, flatten=False)
        if not isinstance(arr, np.ndarray):
            arr = np.asarray(arr)
        return _core.encode(arr, dtype=self.dtype)

    def decode(self, buf, out=None):
        """Decode a chunk; ``out``, if given, receives the values and is returned."""
        decoded = _core.decode(ensure_contiguous_ndarray_like(buf))
        if out is not None:
            return ndarray_copy(decoded.reshape(-1).view(np.uint8), out)
        return decoded

    def get_config(self):
        """JSON config: ``{"id": "tpde"}`` plus ``dtype`` when set."""
        config = {"id": self.codec_id}
        if self.dtype is not None:
            config["dtype"] = self.dtype
        return config

    def __repr__(self):
        return f"TPDECodec(dtype={self.dtype!r})" if self.dtype else "TPDECodec()"


register_codec(TPDECodec)
