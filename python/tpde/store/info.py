"""What `info` and `history` return: per-step and per-tensor summaries of a store."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .schema import ArrayEntry, Manifest, Marker


@dataclass(frozen=True)
class TensorInfo:
    """Sizes and change statistics of one stored tensor of one step."""

    name: str
    kind: str  # "torch", "numpy" or "pickle"
    dtype: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    raw_bytes: int
    stored_bytes: int
    changed_fraction: float | None  # share of positions that differ from the base step
    error_bound: dict | None  # the bound it was coded with: {"abs_error": e} or
    #                           {"log_rel_error": r}; None: lossless (bit-exact)
    bound: str | None = None  # the requested bound, e.g. "rms:0.1" (None: none applied)
    rms: float | None = None  # rms bounds: the tensor's RMS the bound is relative to,
    rms_step: int | None = None  # measured at this step (the keyframe of its chain)
    predicted: float = 0.0  # share of chunks coded against a cross-state prediction

    @property
    def lossy(self) -> bool:
        """Whether the tensor was saved within an error bound rather than bit-exact."""
        return self.error_bound is not None

    @property
    def ratio(self) -> float:
        """Uncompressed bytes over stored bytes."""
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else math.inf


@dataclass(frozen=True)
class StepInfo:
    """Summary of one committed step."""

    step: int
    kind: str  # "keyframe" or "delta"
    base_step: int | None  # the step this delta is coded against
    prev_step: int | None  # the step used as extra coding context, if any
    depth: int  # deltas between this step and its keyframe
    raw_bytes: int
    stored_bytes: int
    time: float
    tensors: dict[str, TensorInfo] | None = None  # filled by info(step)
    meta: dict | None = None
    lossy: bool = False  # some tensor was saved within an error bound, not bit-exact
    error_bounds: dict | None = None  # what save(error_bound=...) asked for (info(step))
    predicted: bool = False  # some chunk was coded against a cross-state prediction
    blobs: list | None = None  # the step's BlobEntry list: files kept byte for byte (info(step))

    @property
    def ratio(self) -> float:
        """Uncompressed bytes over stored bytes."""
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else math.inf


def tensor_info(entry: ArrayEntry) -> TensorInfo:
    """The summary of one manifest entry."""
    numel = math.prod(entry.spec.storage_shape)
    changed = None if entry.changed is None else (entry.changed / numel if numel else 0.0)
    return TensorInfo(
        name=entry.name,
        kind=entry.spec.kind,
        dtype=entry.spec.dtype,
        shape=entry.spec.shape,
        chunks=entry.chunks,
        raw_bytes=entry.raw_bytes,
        stored_bytes=entry.stored_bytes,
        changed_fraction=changed,
        error_bound=entry.error_bound,
        bound=entry.bound,
        rms=entry.rms,
        rms_step=entry.rms_step,
        predicted=_predicted_share(entry),
    )


def step_info(marker: Marker, manifest: Manifest | None = None, *, tensors: bool = False) -> StepInfo:
    """The summary of a step from its marker, with its manifest's details when given
    (and per-tensor summaries when `tensors`)."""
    return StepInfo(
        step=marker.step,
        kind=marker.kind,
        base_step=marker.base_step,
        prev_step=marker.prev_step,
        depth=marker.depth,
        raw_bytes=marker.raw_bytes,
        stored_bytes=marker.stored_bytes,
        time=marker.time,
        tensors=None if not tensors or manifest is None else {
            name: tensor_info(entry) for name, entry in manifest.arrays.items()
        },
        meta=None if manifest is None else manifest.meta,
        lossy=marker.lossy,
        error_bounds=None if manifest is None else manifest.error_bounds,
        predicted=marker.predicted,
        blobs=None if manifest is None else list(manifest.blobs),
    )


def _predicted_share(entry: ArrayEntry) -> float:
    coefs = (entry.predict or {}).get("coefs") or []
    return sum(c is not None for c in coefs) / len(coefs) if coefs else 0.0
