"""tpde: temporal position-delta coding of deep-learning training checkpoints."""

from ._core import FORMAT_VERSION, decode, encode, fingerprint, read_header
from ._core import __version__
from .errors import TPDEError
from .numcodecs_codec import TPDECodec

__all__ = [
    "FORMAT_VERSION",
    "TPDECodec",
    "TPDEError",
    "__version__",
    "decode",
    "encode",
    "fingerprint",
    "read_header",
]
from .zarr_codec import TPDEZarrCodec  # noqa: E402  (registers the zarr v3 codec "tpde")

__all__.append("TPDEZarrCodec")
from .bounds import BoundSpec, ErrorBounds, abs_bound, log_bound, parse_bound, rms_bound, tensor_kind  # noqa: E402
from .store import CheckpointStore, StepInfo, TensorInfo  # noqa: E402
from .store_lossy import adam_error_bounds  # noqa: E402

__all__ += [
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
