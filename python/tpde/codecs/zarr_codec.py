"""TPDEZarrCodec: the tpde chunk coder as a zarr v3 array-to-bytes codec named "tpde"."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

from .. import _core

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer


@dataclass(frozen=True)
class TPDEZarrCodec(ArrayBytesCodec):
    """Lossless standalone tpde coding; use as ``serializer=TPDEZarrCodec()``."""

    is_fixed_size = False

    def __init__(self) -> None:
        pass

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        """Build from ``{"name": "tpde"}`` (no configuration)."""
        parse_named_configuration(data, "tpde", require_configuration=False)
        return cls()

    def to_dict(self) -> dict:
        """JSON form stored in zarr.json."""
        return {"name": "tpde"}

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        decoded = _core.decode(chunk_bytes.as_numpy_array())
        native = chunk_spec.dtype.to_native_dtype()
        array = decoded.reshape(-1).view(native).reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(array)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        array = np.ascontiguousarray(chunk_array.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(_core.encode(array))

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError


register_codec("tpde", TPDEZarrCodec)
