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
    """Whether `obj` is stored as an array leaf: a torch tensor or a numeric numpy array
    (exactly np.ndarray: a subclass such as a masked array would lose what it adds)."""
    if type(obj) is np.ndarray:
        return obj.dtype.kind in "biufc"
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def alias_key(obj: object) -> tuple:
    """Identity of an array's data: two leaves with the same key are one tensor."""
    if isinstance(obj, np.ndarray):
        return ("numpy", id(obj))
    torch = sys.modules["torch"]
    if (type(obj) not in (torch.Tensor, torch.nn.Parameter) or obj.is_nested or obj.is_quantized
            or obj.layout is not torch.strided or obj.device.type == "meta"):
        return ("object", id(obj))
    return ("torch", type(obj), obj.requires_grad, obj.device, obj.dtype, obj.data_ptr(), tuple(obj.shape),
            obj.stride())


def to_storage(obj: object, copy: bool = True) -> tuple[np.ndarray, ArraySpec]:
    """An owned C-contiguous snapshot of a tensor or array in its codec dtype, and its spec.

    `copy=False`: no copy where the leaf's own memory already has that layout: the array
    returned may then share the caller's memory (`shares_memory` says whether it does).
    """
    if isinstance(obj, np.ndarray):
        return numpy_to_storage(obj, copy)
    return _torch_to_storage(obj, copy)


def shares_memory(arr: np.ndarray, obj: object) -> bool:
    """Whether `arr` (from `to_storage(obj, copy=False)`) may be the leaf's own memory."""
    if arr.size == 0:
        return False
    if isinstance(obj, np.ndarray):
        return bool(np.may_share_memory(arr, obj))
    if obj.device.type != "cpu":
        return False
    storage = obj.untyped_storage()
    first = arr.__array_interface__["data"][0]
    return storage.data_ptr() <= first < storage.data_ptr() + storage.nbytes()


def from_storage(arr: np.ndarray, spec: ArraySpec) -> object:
    """Rebuild the user's tensor or array from its stored array (takes ownership of `arr`)."""
    if spec.kind in ("pickle", "numpy"):
        return numpy_from_storage(arr, spec)
    import torch

    target = getattr(torch, spec.dtype, None)
    if not isinstance(target, torch.dtype):
        raise TPDEError(f"stored tensor has an unknown dtype {spec.dtype!r}", "corrupt")
    if spec.dtype in _COMPLEX_PARTS:
        if arr.size == 0:  # view_as_complex needs a real stride-1 axis
            tensor = torch.empty(spec.shape, dtype=target)
        else:
            tensor = torch.view_as_complex(torch.from_numpy(arr).reshape(spec.storage_shape))
    else:
        if spec.codec_dtype in _SIGNED_VIEW:
            tensor = torch.from_numpy(arr.view(np.dtype(_SIGNED_VIEW[spec.codec_dtype])))
        else:
            tensor = torch.from_numpy(arr)
        if tensor.dtype != target:
            tensor = tensor.view(target)
        tensor = tensor.reshape(spec.shape)
    try:
        if spec.tensor_type == "parameter":
            return torch.nn.Parameter(tensor, requires_grad=spec.requires_grad)
        return tensor.requires_grad_(True) if spec.requires_grad else tensor
    except RuntimeError as e:  # requires_grad on an integer tensor: a crafted spec
        raise TPDEError(f"stored tensor of dtype {spec.dtype} cannot require gradients ({e})", "corrupt") from None


def check_tensor(tensor: object) -> None:
    """Refuse, with a TPDEError that says what to do, tensors the store cannot rebuild exactly."""
    import torch

    kind = type(tensor)
    if kind.__name__ == "DTensor":
        raise TPDEError("cannot store a DTensor (a sharded tensor); gather it with .full_tensor() first, "
                        "or save the sharded state with torch.distributed.checkpoint", "unsupported_type")
    if tensor.is_nested:
        raise TPDEError("cannot store a nested tensor; store its components (.unbind()) instead", "unsupported_type")
    if kind not in (torch.Tensor, torch.nn.Parameter):
        raise TPDEError(f"cannot store a tensor of subclass {kind.__module__}.{kind.__qualname__}: it would come "
                        "back as a plain tensor; convert it (.as_subclass(torch.Tensor)) first", "unsupported_type")
    if tensor.is_quantized:
        raise TPDEError(f"quantized tensors ({tensor.dtype}) are not supported; dequantize() it first, or "
                        "store its int_repr() with its scales and zero points", "unsupported_type")
    if tensor.layout is not torch.strided:
        raise TPDEError(f"cannot store a {tensor.layout} tensor; convert it to dense", "bad_dtype")
    if tensor.device.type == "meta":
        raise TPDEError("cannot store a tensor on the meta device (it has no data)", "bad_dtype")
    if any(n is not None for n in getattr(tensor, "names", None) or ()):  # named tensors (older torch)
        raise TPDEError("cannot store a named tensor; drop its names with .rename(None) first", "unsupported_type")


def _torch_to_storage(tensor: object, copy: bool = True) -> tuple[np.ndarray, ArraySpec]:
    import torch

    check_tensor(tensor)
    name = str(tensor.dtype).removeprefix("torch.")
    if name in _COMPLEX_PARTS:
        codec = _COMPLEX_PARTS[name]
    elif name.startswith("float8"):
        codec = "uint8"
    elif name in STORAGE_DTYPES:
        codec = name
    else:
        raise TPDEError(f"tensors of dtype torch.{name} are not supported: tpde stores float64/32/16, "
                        "bfloat16, float8, complex and 8- to 64-bit integer and bool tensors", "bad_dtype")
    shape = tuple(tensor.shape)
    t = tensor.detach()
    if codec in ("bool", "uint8") and name != "uint8":  # a bool copy turns every non-zero byte into 1
        t = t.view(torch.uint8)
    if t.device.type != "cpu":
        t = t.cpu()
    elif copy:
        t = t.clone(memory_format=torch.contiguous_format)
    t = t.contiguous()
    if name in _COMPLEX_PARTS:
        t = torch.view_as_real(t)
    if codec in _SIGNED_VIEW:
        t = t.view(getattr(torch, _SIGNED_VIEW[codec]))
    arr = t.numpy().view(STORAGE_DTYPES[codec])
    wrapper = "parameter" if type(tensor) is torch.nn.Parameter else None
    return arr, ArraySpec(kind="torch", dtype=name, shape=shape, codec_dtype=codec, storage_shape=tuple(arr.shape),
                          tensor_type=wrapper, requires_grad=bool(tensor.requires_grad))
