"""Type stub of `tpde._core`, the pybind11 module built from cpp/python/bindings.cpp.

Keep it in step with the bindings: tests/test_core_stub.py checks that the names here are
the module's names and that every function's parameters match its pybind11 signature.
"""

from collections.abc import Sequence
from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt

__version__: str
FORMAT_VERSION: int  # the chunk format version the encoder writes (docs/format.md)
FAST_FORMAT_VERSION: int  # the chunk format version of level="fast" chunks (docs/format.md section 14)
# the dtype table: name -> (header dtype code, numpy dtype of decoded arrays, item bytes, is float)
DTYPES: dict[str, tuple[int, str, int, bool]]

DTypeName = Literal[
    "float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "bool",
]
Buffer = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
# ("adam_direction", exp_avg, exp_avg_sq) or ("scaled_delta", weights, weights_reference, exp_avg_sq)
Term = tuple[str, npt.ArrayLike, npt.ArrayLike] | tuple[str, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]

class Header(TypedDict):
    version: int
    dtype: DTypeName
    shape: list[int]
    mode: Literal["standalone", "delta"]
    uses_prev_reference: bool
    reference_fingerprint: int
    prev_reference_fingerprint: int
    header_size: int
    lossy: Literal["absolute", "log_relative"] | None
    error_bound: float | None
    payload_size: int

def encode(
    data: npt.ArrayLike,
    *,
    reference: npt.ArrayLike | None = None,
    prev_reference: npt.ArrayLike | None = None,
    dtype: DTypeName | str | None = None,
    abs_error: float | None = None,
    log_rel_error: float | None = None,
    return_reconstruction: bool = False,
    contexts: Sequence[str] | None = None,
    extrapolate: bool = True,
    level: Literal["default", "fast"] = "default",
    reference_fingerprint: int | None = None,
    prev_reference_fingerprint: int | None = None,
) -> bytes | tuple[bytes, np.ndarray]:
    """Encode one array as a tpde chunk: standalone, or a delta against `reference`.

    level="fast" writes a FastPlanes chunk (format 6): lossless only, no prev-reference.
    `reference_fingerprint` / `prev_reference_fingerprint`: the references' CRC32C
    (`fingerprint`) when the caller has them, saving a pass over each; a wrong one makes
    the chunk undecodable (its header names the wrong reference).
    Returns the chunk, or (chunk, reconstruction) with return_reconstruction=True."""

def decode(
    chunk: Buffer,
    *,
    reference: npt.ArrayLike | None = None,
    prev_reference: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
    max_bytes: int | None = None,
    shape: Sequence[int] | None = None,
    dtype: DTypeName | None = None,
) -> np.ndarray:
    """Decode a tpde chunk; delta chunks need the reference they were coded against.

    max_bytes, shape and dtype (a codec dtype name such as 'bfloat16') are checked against
    the header before anything is allocated: TPDEError too_large, bad_shape, bad_dtype.
    A chunk that claims more memory than can be allocated is too_large too.
    """

def read_header(chunk: Buffer) -> Header:
    """Parse and validate a chunk header."""

def fit_prediction(
    data: npt.ArrayLike,
    reference: npt.ArrayLike,
    terms: Sequence[Term],
    *,
    eps: float = 1e-8,
    dtype: DTypeName | str | None = None,
) -> tuple[list[float], float] | None:
    """(coefficients, fraction of the squared change explained) of a cross-state
    prediction of data; None if unusable."""

def predict(
    reference: npt.ArrayLike,
    terms: Sequence[Term],
    coefs: Sequence[float],
    *,
    eps: float = 1e-8,
    dtype: DTypeName | str | None = None,
) -> np.ndarray:
    """A cross-state prediction: reference + sum of coefficient x term, rounded to the dtype."""

def fingerprint(array: npt.ArrayLike) -> int:
    """CRC32C of an array's raw bytes."""

def count_changed(data: npt.ArrayLike, reference: npt.ArrayLike) -> int:
    """Items of data whose bits differ from reference's (same dtype size and byte size)."""

def trim_scratch() -> int:
    """Free the coder's work buffers kept for reuse between chunks; the bytes freed."""

def scratch_bytes() -> int:
    """Bytes of coder work buffers kept for reuse between chunks now."""
