"""The codec's dtypes: one table, read from the C++ core (`_core.DTYPES`).

A *codec dtype* is a name `tpde.encode` takes ("float32", "bfloat16", "int64", "bool",
...). Its *storage dtype* is the numpy dtype of the arrays the store keeps and decoding
returns: the same, except bfloat16, which travels as uint16 bit patterns. A new dtype is
added to the C++ table (cpp/python/bindings.cpp and the format); this module follows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core


class CodecDType(NamedTuple):
    """One row of the core's dtype table."""

    name: str  # the codec dtype name
    code: int  # the chunk header's dtype byte
    storage: np.dtype  # numpy dtype of stored and decoded arrays
    itemsize: int  # bytes per value
    is_float: bool  # floating point (may take an error bound)


CODEC_DTYPES: dict[str, CodecDType] = {
    name: CodecDType(name, int(code), np.dtype(numpy), int(size), bool(is_float))
    for name, (code, numpy, size, is_float) in _core.DTYPES.items()
}
# numpy dtype of the array handed to the codec, per codec dtype name
STORAGE_DTYPES: dict[str, np.dtype] = {name: d.storage for name, d in CODEC_DTYPES.items()}
FLOAT_DTYPES: tuple[str, ...] = tuple(name for name, d in CODEC_DTYPES.items() if d.is_float)


def storage_dtype(codec_dtype: str) -> np.dtype:
    """numpy dtype of stored arrays of a codec dtype (KeyError for an unknown name)."""
    return STORAGE_DTYPES[codec_dtype]
