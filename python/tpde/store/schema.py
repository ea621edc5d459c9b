"""Where a checkpoint store keeps things, and the JSON it writes (docs/store-format.md, the
normative specification: store format 2; frozen stores in tests/stores/).

The root's settings record the root layout version 1 (`STORE_FORMAT`); each step manifest
records 1, 2 (`STORE_FORMAT_PREDICTED`) when some entry carries a cross-state prediction
("predict"), 3 (`STORE_FORMAT_BLOBS`) when the step holds blobs ("blobs", blobs.py), or 4
(`STORE_FORMAT_BUNDLED`) when some array's chunks are in the step's bundle ("bundle", bundle.py).
`READABLE_FORMATS` lists the store format versions this package reads; each has a frozen
store (tests/test_frozen_stores.py checks it).

    .zgroup, .zattrs                 zarr v2 root group; .zattrs["tpde_store"] = settings
    steps/<step>/.zgroup
    steps/<step>/.zattrs             ["tpde_step"] = the step manifest (tree, arrays)
    steps/<step>/<name>/.zarray      zarr v2 array, compressor {"id": "tpde"}
    steps/<step>/<name>/<i.j>        chunk bytes (tpde chunk format)
    steps/<step>/.blobs/<i>          the i-th blob of the manifest's "blobs" (raw or zlib)
    steps/<step>/.bundle             the chunks of the step's small arrays, one after another
    commits/<step>                   commit marker: written last, deleted first

A step exists for tpde only when its commit marker does; the marker carries a summary of
the step (kind, base, sizes) and the CRC32 of the exact manifest bytes.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

from ..dtypes import storage_dtype
from ..errors import TPDEError
from ..state.arrays import ArraySpec
from .blobs import BlobEntry, blob_entries

STORE_FORMAT = 1  # what steps without cross-state predictions are written as
STORE_FORMAT_PREDICTED = 2  # steps with predicted tensors (entries carry "predict")
STORE_FORMAT_BLOBS = 3  # steps with blobs (the manifest carries "blobs"; blobs.py)
STORE_FORMAT_BUNDLED = 4  # steps with bundled arrays (entries carry "bundle"; bundle.py)
READABLE_FORMATS = (1, 2, 3, 4)
ROOT_ATTRS = ".zattrs"
ROOT_GROUP = ".zgroup"
STEPS = "steps"
COMMITS = "commits"
KEYFRAME = "keyframe"
DELTA = "delta"


def step_prefix(step: int) -> str:
    """Folder of a step's group."""
    return f"{STEPS}/{step}"


def array_prefix(step: int, name: str) -> str:
    """Folder of one array of a step."""
    return f"{STEPS}/{step}/{name}"


def commit_key(step: int) -> str:
    """Key of a step's commit marker."""
    return f"{COMMITS}/{step}"


def json_bytes(obj: object) -> bytes:
    """Compact, deterministic JSON encoding."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def group_bytes() -> bytes:
    """A zarr v2 `.zgroup`."""
    return json_bytes({"zarr_format": 2})


def zarray_bytes(spec: ArraySpec, chunks: tuple[int, ...]) -> bytes:
    """A zarr v2 `.zarray` whose chunks plain zarr decodes with TPDECodec."""
    dtype = storage_dtype(spec.codec_dtype)
    meta = {
        "zarr_format": 2,
        "shape": list(spec.storage_shape),
        "chunks": list(chunks),
        "dtype": dtype.str,
        "compressor": {"id": "tpde"},
        "fill_value": False if dtype.kind == "b" else 0,
        "order": "C",
        "filters": None,
        "dimension_separator": ".",
    }
    return json_bytes(meta)


@dataclass(frozen=True)
class Marker:
    """A commit marker: the summary of one committed step."""

    step: int
    kind: str
    base_step: int | None
    prev_step: int | None
    depth: int
    raw_bytes: int
    stored_bytes: int
    n_arrays: int
    manifest_crc32: int
    time: float
    lossy: bool = False  # some tensor was saved within an error bound, not bit-exact
    predicted: bool = False  # some chunk was coded against a cross-state prediction

    def to_bytes(self) -> bytes:
        """JSON bytes of the marker ("lossy", "predicted" only when true: other markers
        stay as before)."""
        fields = dict(self.__dict__)
        for flag in ("lossy", "predicted"):
            if not fields[flag]:
                del fields[flag]
        return json_bytes(fields)

    @classmethod
    def from_bytes(cls, step: int, data: bytes) -> Marker:
        """Parse a marker; a truncated or foreign one raises TPDEError("corrupt")."""
        from .wellformed import check_marker_fields

        try:
            fields = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise TPDEError(f"commit marker of step {step} is unreadable ({_short(e)})", "corrupt") from e
        marker = cls(**check_marker_fields(fields, step))
        if marker.step != step:
            raise TPDEError(f"commit marker of step {step} names step {marker.step}", "corrupt")
        return marker


@dataclass(frozen=True)
class ArrayEntry:
    """One stored array of a step: its spec, chunk grid and per-chunk content hashes."""

    name: str
    spec: ArraySpec
    chunks: tuple[int, ...]
    crc32c: list[int]  # CRC32C of each chunk's reconstruction, C order of chunk indices
    stored_bytes: int
    changed: int | None  # positions that differ from the base step (deltas only)
    error_bound: dict | None = None  # {"abs_error": e} or {"log_rel_error": r}; None: lossless
    bound: str | None = None  # the requested bound ("rms:0.1"), when one applied to this array
    rms: float | None = None  # rms bounds: the RMS the bound is relative to ...
    rms_step: int | None = None  # ... measured at this step (the chain's keyframe)
    predict: dict | None = None  # {"terms": [...], "coefs": [per chunk: list or None]} (cross_state.py)
    bundle: list | None = None  # per chunk [offset, length] in the step's bundle; None: chunk keys of its own

    @property
    def raw_bytes(self) -> int:
        """Bytes of the array's data uncompressed."""
        n = storage_dtype(self.spec.codec_dtype).itemsize
        for s in self.spec.storage_shape:
            n *= s
        return n

    def layout(self) -> tuple:
        """What must match between two steps for a delta: dtype, shape and chunks."""
        return (self.spec.codec_dtype, self.spec.storage_shape, self.chunks, self.bundle is not None)

    def to_json(self) -> dict:
        """The manifest entry."""
        return {
            **self.spec.to_json(),
            "chunks": list(self.chunks),
            "crc32c": self.crc32c,
            "stored_bytes": self.stored_bytes,
            "changed": self.changed,
            "error_bound": self.error_bound,
            **{k: getattr(self, k) for k in ("bound", "rms", "rms_step", "predict", "bundle")
               if getattr(self, k) is not None},
        }

    @classmethod
    def from_json(cls, name: str, entry: dict) -> ArrayEntry:
        """Inverse of `to_json`."""
        return cls(
            name=name,
            spec=ArraySpec.from_json(entry),
            chunks=tuple(entry["chunks"]),
            crc32c=list(entry["crc32c"]),
            stored_bytes=entry["stored_bytes"],
            changed=entry["changed"],
            error_bound=entry.get("error_bound"),
            bound=entry.get("bound"),
            rms=entry.get("rms"),
            rms_step=entry.get("rms_step"),
            predict=entry.get("predict"),
            bundle=entry.get("bundle"),
        )


@dataclass
class Manifest:
    """Everything about one step except its chunk bytes."""

    step: int
    kind: str
    base_step: int | None
    prev_step: int | None
    depth: int
    tree: object
    arrays: dict[str, ArrayEntry]
    meta: dict = field(default_factory=dict)
    tpde_version: str = ""
    error_bounds: dict | None = None  # what save(error_bound=...) asked for; None: lossless
    blobs: list[BlobEntry] = field(default_factory=list)  # files kept byte for byte (blobs.py)

    def format(self) -> int:
        """The manifest format version this step is written as (the lowest that holds it)."""
        if any(a.bundle is not None for a in self.arrays.values()):
            return STORE_FORMAT_BUNDLED
        if self.blobs:
            return STORE_FORMAT_BLOBS
        return STORE_FORMAT_PREDICTED if any(a.predict is not None for a in self.arrays.values()) else STORE_FORMAT

    def bundled(self) -> bool:
        """Whether some array's chunks are in the step's bundle."""
        return any(a.bundle is not None for a in self.arrays.values())

    def to_bytes(self) -> bytes:
        """The step group's `.zattrs` bytes."""
        body = {
            "format": self.format(),
            "step": self.step,
            "kind": self.kind,
            "base_step": self.base_step,
            "prev_step": self.prev_step,
            "depth": self.depth,
            "tpde_version": self.tpde_version,
            "meta": self.meta,
            "tree": self.tree,
            "arrays": {name: a.to_json() for name, a in self.arrays.items()},
        }
        if self.error_bounds is not None:
            body["error_bounds"] = self.error_bounds
        if self.blobs:
            body["blobs"] = [b.to_json() for b in self.blobs]
        return json_bytes({"tpde_step": body})

    @classmethod
    def from_bytes(cls, marker: Marker, data: bytes | None) -> Manifest:
        """Parse a manifest and check it against its commit marker."""
        step = marker.step
        if data is None:
            raise TPDEError(f"step {step} is committed but its manifest is missing", "corrupt")
        if zlib.crc32(data) != marker.manifest_crc32:
            raise TPDEError(f"manifest of step {step} does not match its commit marker", "corrupt")
        from .wellformed import check_manifest_body

        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise TPDEError(f"manifest of step {step} is unreadable ({_short(e)})", "corrupt") from e
        body = doc.get("tpde_step") if isinstance(doc, dict) else None
        if not isinstance(body, dict):
            raise TPDEError(f"manifest of step {step} has no tpde_step object", "corrupt")
        if body.get("format") not in READABLE_FORMATS:
            raise TPDEError(
                f"step {step} uses store format {body.get('format')}; this tpde reads "
                f"formats {', '.join(map(str, READABLE_FORMATS))}",
                "unsupported_version",
            )
        check_manifest_body(body, marker)
        arrays = {n: ArrayEntry.from_json(n, e) for n, e in body["arrays"].items()}
        return cls(
            step=step,
            kind=body["kind"],
            base_step=body["base_step"],
            prev_step=body["prev_step"],
            depth=body["depth"],
            tree=body["tree"],
            arrays=arrays,
            meta=body["meta"],
            tpde_version=body["tpde_version"],
            error_bounds=body.get("error_bounds"),
            blobs=blob_entries(body.get("blobs"), step) if body["format"] >= STORE_FORMAT_BLOBS else [],
        )


def _short(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 100 else text[:97] + "..."
