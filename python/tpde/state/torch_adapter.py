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

import numpy as np

from ..dtypes import STORAGE_DTYPES, storage_dtype
from ..errors import TPDEError
from .arrays import ArraySpec, numpy_from_storage, numpy_to_storage, pickle_to_storage

__all__ = [
    "ArraySpec", "alias_key", "from_storage", "is_array", "pickle_to_storage", "storage_dtype", "to_storage",
]

_COMPLEX_PARTS = {"complex64": "float32", "complex128": "float64", "complex32": "float16"}
_SIGNED_VIEW = {"uint16": "int16", "uint32": "int32", "uint64": "int64", "bfloat16": "int16"}


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
        return numpy_to_storage(obj)
    return _torch_to_storage(obj)


def from_storage(arr: np.ndarray, spec: ArraySpec) -> object:
    """Rebuild the user's tensor or array from its stored array (takes ownership of `arr`)."""
    if spec.kind in ("pickle", "numpy"):
        return numpy_from_storage(arr, spec)
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
    return arr, ArraySpec(kind="torch", dtype=name, shape=shape, codec_dtype=codec, storage_shape=tuple(arr.shape))
