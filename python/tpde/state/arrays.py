"""Stored arrays and how they map back to the user's objects (torch-free).

Every leaf of a state is stored as a C-contiguous numpy array of one of the codec's
dtypes (dtypes.py). `ArraySpec` records how to rebuild the user's object from it; this
module converts numpy arrays and pickled objects, torch_adapter.py converts tensors.
"""

from __future__ import annotations

import math
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
    tensor_type: str | None = None  # "parameter": a torch.nn.Parameter (None: a plain tensor or array)
    requires_grad: bool = False  # the tensor required gradients

    def to_json(self) -> dict:
        """The spec as JSON fields of a manifest entry (tensor_type and requires_grad only
        when set, so other entries stay as before)."""
        fields = {
            "kind": self.kind,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "codec_dtype": self.codec_dtype,
            "storage_shape": list(self.storage_shape),
        }
        if self.tensor_type is not None:
            fields["tensor_type"] = self.tensor_type
        if self.requires_grad:
            fields["requires_grad"] = True
        return fields

    @classmethod
    def from_json(cls, entry: dict) -> ArraySpec:
        """Inverse of `to_json`; a manifest entry read from a store is untrusted, so every
        field is checked (TPDEError "corrupt")."""
        try:
            spec = cls(
                kind=entry["kind"],
                dtype=entry["dtype"],
                shape=_extents(entry["shape"]),
                codec_dtype=entry["codec_dtype"],
                storage_shape=_extents(entry["storage_shape"]),
                tensor_type=entry.get("tensor_type"),
                requires_grad=entry.get("requires_grad", False),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise TPDEError(f"array spec {_brief(entry)} is malformed ({type(e).__name__}: {e})", "corrupt") from None
        problem = spec._problem()
        if problem:
            raise TPDEError(f"array spec {_brief(entry)}: {problem}", "corrupt")
        return spec

    def _problem(self) -> str | None:
        """What is inconsistent in a spec read from a store (None: nothing)."""
        if self.kind not in ("torch", "numpy", "pickle"):
            return f"unknown kind {self.kind!r}"
        if not isinstance(self.dtype, str) or self.codec_dtype not in STORAGE_DTYPES:
            return f"unknown dtype {self.dtype!r} / codec dtype {self.codec_dtype!r}"
        if self.tensor_type not in (None, "parameter") or type(self.requires_grad) is not bool:
            return f"unknown tensor type {self.tensor_type!r} / requires_grad {self.requires_grad!r}"
        if self.kind != "torch" and (self.tensor_type is not None or self.requires_grad):
            return "tensor_type or requires_grad on an array that is not a tensor"
        parts = 1
        if self.kind == "numpy":
            try:
                dtype = np.dtype(self.dtype)
            except TypeError:
                return f"unknown numpy dtype {self.dtype!r}"
            if dtype.kind not in "biufc":
                return f"numpy dtype {self.dtype!r} is not numeric"
            parts = 2 if dtype.kind == "c" else 1
        elif self.kind == "pickle" and (self.codec_dtype != "uint8" or len(self.storage_shape) != 1):
            return "a pickled object is not a 1-d uint8 array"
        elif self.kind == "torch" and self.dtype.startswith("complex"):
            parts = 2
        if math.prod(self.storage_shape) != parts * math.prod(self.shape):
            return f"shape {self.shape} does not fit the stored shape {self.storage_shape}"
        return None


def _extents(value: object) -> tuple[int, ...]:
    """A shape read from a store: a list of at most 32 non-negative ints."""
    if not isinstance(value, list) or len(value) > 32 or any(type(d) is not int or d < 0 for d in value):
        raise TypeError(f"shape {str(value)[:40]} is not a list of at most 32 non-negative ints")
    return tuple(value)


def _brief(entry: object) -> str:
    text = repr(entry)
    return text if len(text) <= 80 else text[:77] + "..."


def pickle_to_storage(data: bytes) -> tuple[np.ndarray, ArraySpec]:
    """A pickled object's bytes as a uint8 array, and its spec."""
    arr = np.frombuffer(data, dtype=np.uint8).copy()
    return arr, ArraySpec(kind="pickle", dtype="uint8", shape=arr.shape, codec_dtype="uint8", storage_shape=arr.shape)


def numpy_to_storage(arr: np.ndarray, copy: bool = True) -> tuple[np.ndarray, ArraySpec]:
    """An owned C-contiguous copy of a numeric numpy array in its codec dtype (complex
    values as a trailing axis of 2 real parts), and its spec. `copy=False`: the array
    itself where it already has that layout (no copy)."""
    dtype = arr.dtype
    shape = tuple(arr.shape)
    native = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    out = np.array(arr, dtype=native, order="C", copy=True) if copy else np.asarray(arr, dtype=native, order="C")
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
