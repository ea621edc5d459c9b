"""Tensors and numpy arrays <-> the plain arrays the codec stores.

Every leaf of a state is stored as a C-contiguous numpy array of one of the codec's
dtypes ("float32", "bfloat16" as uint16 bits, "int64", "bool", ...). `to_storage` takes an
owned snapshot of a tensor or array and says how to rebuild it (`ArraySpec`);
`from_storage` rebuilds it bit for bit. torch is imported only when a tensor is met, so
numpy-only users do not need it.

Mapping (torch dtype -> stored codec dtype):
float32/float64/float16/bfloat16 -> same; int8..int64, uint8..uint64, bool -> same;
complex64/complex128/complex32 -> float32/float64/float16 with a trailing axis of 2
(real, imag); float8 variants -> uint8 bit patterns.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from .errors import TPDEError

# numpy dtype of the array handed to the codec, per codec dtype string
STORAGE_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(np.uint16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "int16": np.dtype(np.int16),
    "uint16": np.dtype(np.uint16),
    "int32": np.dtype(np.int32),
    "uint32": np.dtype(np.uint32),
    "int64": np.dtype(np.int64),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}

_COMPLEX_PARTS = {"complex64": "float32", "complex128": "float64", "complex32": "float16"}
_SIGNED_VIEW = {"uint16": "int16", "uint32": "int32", "uint64": "int64", "bfloat16": "int16"}


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
            entry["kind"],
            entry["dtype"],
            tuple(entry["shape"]),
            entry["codec_dtype"],
            tuple(entry["storage_shape"]),
        )


def is_array(obj: object) -> bool:
    """Whether `obj` is stored as an array leaf: a torch tensor or numeric numpy array."""
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "biufc"
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def alias_key(obj: object) -> tuple:
    """Identity of an array's data: two leaves with the same key are one tensor."""
    if isinstance(obj, np.ndarray):
        return ("numpy", id(obj))
    if obj.layout is not sys.modules["torch"].strided or obj.device.type == "meta":
        return ("object", id(obj))
    return ("torch", obj.device, obj.dtype, obj.data_ptr(), tuple(obj.shape), obj.stride())


def to_storage(obj: object) -> tuple[np.ndarray, ArraySpec]:
    """An owned C-contiguous snapshot of a tensor or array in its codec dtype, and its spec."""
    if isinstance(obj, np.ndarray):
        return _numpy_to_storage(obj)
    return _torch_to_storage(obj)


def pickle_to_storage(data: bytes) -> tuple[np.ndarray, ArraySpec]:
    """A pickled object's bytes as a uint8 array, and its spec."""
    arr = np.frombuffer(data, dtype=np.uint8).copy()
    return arr, ArraySpec("pickle", "uint8", arr.shape, "uint8", arr.shape)


def from_storage(arr: np.ndarray, spec: ArraySpec) -> object:
    """Rebuild the user's tensor or array from its stored array (takes ownership of `arr`)."""
    if spec.kind == "pickle":
        return arr.tobytes()
    if spec.kind == "numpy":
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "c":
            arr = np.ascontiguousarray(arr).view(dtype.newbyteorder("<"))[..., 0]
        return arr.astype(dtype, copy=False).reshape(spec.shape)
    import torch

    if spec.dtype in _COMPLEX_PARTS:
        if arr.size == 0:  # view_as_complex needs a real stride-1 axis
            return torch.empty(spec.shape, dtype=getattr(torch, spec.dtype))
        parts = torch.from_numpy(arr).reshape(spec.storage_shape)
        return torch.view_as_complex(parts)
    if spec.codec_dtype in _SIGNED_VIEW:
        signed = np.dtype(_SIGNED_VIEW[spec.codec_dtype])
        tensor = torch.from_numpy(arr.view(signed))
    else:
        tensor = torch.from_numpy(arr)
    target = getattr(torch, spec.dtype)
    if tensor.dtype != target:
        tensor = tensor.view(target)
    return tensor.reshape(spec.shape)


def storage_dtype(codec_dtype: str) -> np.dtype:
    """numpy dtype of stored arrays of a codec dtype."""
    return STORAGE_DTYPES[codec_dtype]


def _numpy_to_storage(arr: np.ndarray) -> tuple[np.ndarray, ArraySpec]:
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
    return out, ArraySpec("numpy", dtype.str, shape, codec, tuple(out.shape))


def _torch_to_storage(tensor: object) -> tuple[np.ndarray, ArraySpec]:
    import torch

    if tensor.layout is not torch.strided:
        raise TPDEError(f"cannot store a {tensor.layout} tensor; convert it to dense", "bad_dtype")
    if tensor.device.type == "meta":
        raise TPDEError("cannot store a tensor on the meta device (it has no data)", "bad_dtype")
    name = str(tensor.dtype).removeprefix("torch.")
    shape = tuple(tensor.shape)
    t = tensor.detach()
    t = t.cpu() if t.device.type != "cpu" else t.clone(memory_format=torch.contiguous_format)
    t = t.contiguous()
    if name in _COMPLEX_PARTS:
        codec, t = _COMPLEX_PARTS[name], torch.view_as_real(t)
    elif name.startswith("float8"):
        codec, t = "uint8", t.view(torch.uint8)
    elif name in STORAGE_DTYPES:
        codec = name
    else:
        raise TPDEError(f"tensors of dtype torch.{name} are not supported", "bad_dtype")
    if codec in _SIGNED_VIEW:
        t = t.view(getattr(torch, _SIGNED_VIEW[codec]))
    arr = t.numpy().view(STORAGE_DTYPES[codec])
    return arr, ArraySpec("torch", name, shape, codec, tuple(arr.shape))
