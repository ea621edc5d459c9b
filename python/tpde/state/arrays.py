"""Stored arrays and how they map back to the user's objects (torch-free).

Every leaf of a state is stored as a C-contiguous numpy array of one of the codec's
dtypes (dtypes.py). `ArraySpec` records how to rebuild the user's object from it; this
module converts numpy arrays and pickled objects, torch_adapter.py converts tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dtypes import STORAGE_DTYPES
from ..errors import TPDEError


@dataclass(frozen=True)
class ArraySpec:
    """How a stored array maps back to the user's object."""

    kind: str  # "torch", "numpy" or "pickle"
    dtype: str  # torch dtype name ("bfloat16") or numpy dtype str ("<f4"); "uint8" for pickle
    shape: tuple[int, ...]  # the user's shape
    codec_dtype: str  # dtype string given to tpde.encode
    storage_shape: tuple[int, ...]  # shape of the stored array

    def to_json(self) -> dict:
        """The spec as JSON fields of a manifest entry."""
        return {
            "kind": self.kind,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "codec_dtype": self.codec_dtype,
            "storage_shape": list(self.storage_shape),
        }

    @classmethod
    def from_json(cls, entry: dict) -> ArraySpec:
        """Inverse of `to_json`."""
        return cls(
            kind=entry["kind"],
            dtype=entry["dtype"],
            shape=tuple(entry["shape"]),
            codec_dtype=entry["codec_dtype"],
            storage_shape=tuple(entry["storage_shape"]),
        )


def pickle_to_storage(data: bytes) -> tuple[np.ndarray, ArraySpec]:
    """A pickled object's bytes as a uint8 array, and its spec."""
    arr = np.frombuffer(data, dtype=np.uint8).copy()
    return arr, ArraySpec(kind="pickle", dtype="uint8", shape=arr.shape, codec_dtype="uint8", storage_shape=arr.shape)


def numpy_to_storage(arr: np.ndarray) -> tuple[np.ndarray, ArraySpec]:
    """An owned C-contiguous copy of a numeric numpy array in its codec dtype (complex
    values as a trailing axis of 2 real parts), and its spec."""
    dtype = arr.dtype
    shape = tuple(arr.shape)
    native = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    out = np.array(arr, dtype=native, order="C", copy=True)
    if dtype.kind == "c":
        part = np.dtype(f"<f{dtype.itemsize // 2}")
        out = out.view(part).reshape(shape + (2,))
    codec = str(out.dtype.newbyteorder("="))
    if codec not in STORAGE_DTYPES:
        raise TPDEError(f"numpy dtype {dtype} is not supported", "bad_dtype")
    return out, ArraySpec(kind="numpy", dtype=dtype.str, shape=shape, codec_dtype=codec, storage_shape=tuple(out.shape))


def numpy_from_storage(arr: np.ndarray, spec: ArraySpec) -> object:
    """Rebuild a "pickle" (bytes) or "numpy" leaf from its stored array."""
    if spec.kind == "pickle":
        return arr.tobytes()
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "c":
        arr = np.ascontiguousarray(arr).view(dtype.newbyteorder("<"))[..., 0]
    return arr.astype(dtype, copy=False).reshape(spec.shape)
