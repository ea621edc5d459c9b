"""The lossy side of a save: which arrays take an error bound, the bound each gets, and
coding a chunk within it.

RMS bounds (`rms_bound(f)`) become absolute ones here: the RMS is measured on the values a
keyframe saves and reused along its chain, so a chain keeps one bound.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .. import _core
from ..bounds import ErrorBounds, abs_bound, as_spec, log_bound
from ..dtypes import FLOAT_DTYPES
from ..state.arrays import ArraySpec
from .grid import ChunkGrid


def adam_error_bounds(abs_error: float | None = None, rel_error: float | None = None) -> ErrorBounds:
    """Shorthand for Adam-style states: `abs_bound(abs_error)` for every kind but
    exp_avg_sq, `log_bound(rel_error)` for exp_avg_sq; a value left None: lossless."""
    a = None if abs_error is None else abs_bound(abs_error)
    r = None if rel_error is None else log_bound(rel_error)
    return ErrorBounds(weights=a, exp_avg=a, exp_avg_sq=r, other=a)


LOSSY_DTYPES = FLOAT_DTYPES  # the codec dtypes an error bound applies to
RMS_BLOCK = 2**20


class TensorBound(NamedTuple):
    """The bound of one array of one step."""

    spec: str | None  # requested, "rms:0.1"
    resolved: dict | None  # what the core codes with; None: lossless
    rms: float | None = None
    rms_step: int | None = None


LOSSLESS = TensorBound(None, None)


def takes_bound(spec: ArraySpec) -> bool:
    """Whether an array may be coded lossily: real floating point, one or more dimensions."""
    if spec.kind == "pickle" or not spec.shape or spec.codec_dtype not in LOSSY_DTYPES:
        return False
    return spec.dtype in LOSSY_DTYPES or spec.dtype[1:] in ("f2", "f4", "f8")


def resolve_bounds(
    error_bound, specs: dict[str, ArraySpec], arrays: dict[str, np.ndarray], step: int, base
) -> dict[str, TensorBound]:
    """The bound of each array that gets one; rms bounds take the RMS recorded at the
    base (the chain's keyframe) or, at a keyframe, measure it on the values saved."""
    if error_bound is None:
        return {}
    out = {}
    for name, spec in specs.items():
        if not takes_bound(spec):
            continue
        bound = as_spec(error_bound(name) if callable(error_bound) else error_bound, name)
        if bound is None:
            continue
        if bound.type != "rms":
            key = "abs_error" if bound.type == "abs" else "log_rel_error"
            out[name] = TensorBound(spec=str(bound), resolved={key: bound.value})
            continue
        prior = None if base is None else base.entries.get(name)
        if prior is not None and prior.rms is not None:
            rms, rms_step = prior.rms, prior.rms_step
        else:  # a keyframe, or a bound that starts mid-chain: measure here
            rms, rms_step = rms_of(arrays[name], spec.codec_dtype), step
        error = bound.value * rms
        resolved = {"abs_error": error} if 0 < error < math.inf else None  # RMS 0: lossless
        out[name] = TensorBound(spec=str(bound), resolved=resolved, rms=rms, rms_step=rms_step)
    return out


def rms_of(arr: np.ndarray, codec_dtype: str) -> float:
    """Root mean square of the finite values of a stored float array (0.0 if none)."""
    flat = arr.reshape(-1)

    def blocks():
        for i in range(0, flat.size, RMS_BLOCK):
            part = flat[i : i + RMS_BLOCK]
            if codec_dtype == "bfloat16":
                part = (part.astype(np.uint32) << 16).view(np.float32)
            part = part.astype(np.float64)
            yield part[np.isfinite(part)]

    peak = max((float(np.abs(b).max()) for b in blocks() if b.size), default=0.0)
    if peak == 0:
        return 0.0
    total = count = 0
    for b in blocks():
        b /= peak  # scaled: squares never overflow
        total += float(np.dot(b, b))
        count += b.size
    return peak * math.sqrt(total / count)


def encode_lossy(grid: ChunkGrid, index: tuple, data: np.ndarray, code: dict, bound: dict):
    """Lossy chunk and its reconstruction; lossless when the zero padding of an edge chunk
    would not come back exactly (the next delta's reference must match bit for bit)."""
    blob, recon = _core.encode(data, **code, **bound, return_reconstruction=True)
    recon = recon.reshape(grid.chunks).view(data.dtype)
    inner = grid.inner(index)
    if recon[inner].shape != recon.shape:
        padding = recon.view(f"u{recon.itemsize}").copy()
        padding[inner] = 0
        if padding.any():
            return _core.encode(data, **code), data
    return blob, recon
