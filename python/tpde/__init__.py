"""tpde: temporal position-delta coding of deep-learning training checkpoints.

The codec (`encode`, `decode`, `TPDECodec`, `TPDEZarrCodec`) is imported at once; the
checkpoint store (`CheckpointStore`, `StepInfo`, `TensorInfo`, `adam_error_bounds`) on
first use, so that loading the codecs (what zarr's and numcodecs' entry points do) does
not load the store.
"""

import importlib.metadata as _metadata

from ._core import FAST_FORMAT_VERSION, FORMAT_VERSION, decode, encode, fingerprint, read_header
from .bounds import BoundSpec, ErrorBounds, abs_bound, log_bound, parse_bound, rms_bound
from .codecs import TPDECodec, TPDEZarrCodec  # registers the numcodecs and zarr v3 codec "tpde"
from .errors import StorageError, StoreIOError, TPDEError
from .kinds import tensor_kind

try:  # one source for the version: pyproject.toml, through the installed metadata
    __version__ = _metadata.version("tpde")
except _metadata.PackageNotFoundError:  # imported from a build tree that was never installed
    from ._core import __version__

_LAZY = {
    "CheckpointStore": "tpde.store",
    "StepInfo": "tpde.store",
    "TensorInfo": "tpde.store",
    "adam_error_bounds": "tpde.store.lossy",
}

__all__ = [
    "FAST_FORMAT_VERSION",
    "FORMAT_VERSION",
    "StorageError",
    "TPDECodec",
    "StoreIOError",
    "TPDEError",
    "TPDEZarrCodec",
    "__version__",
    "decode",
    "encode",
    "fingerprint",
    "read_header",
    "BoundSpec",
    "CheckpointStore",
    "ErrorBounds",
    "StepInfo",
    "TensorInfo",
    "abs_bound",
    "adam_error_bounds",
    "log_bound",
    "parse_bound",
    "rms_bound",
    "tensor_kind",
]


def __getattr__(name: str) -> object:
    """The store's public names, imported on first use."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tpde' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
