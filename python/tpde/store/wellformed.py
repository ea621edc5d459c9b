"""Shape checks of the JSON a store holds (commit markers, manifests), made before any of
it is used: a store may be hostile (docs/security.md), so every field has the type and
range tpde writes, every name passes `names.check_tensor_name`, and a manifest agrees with
its commit marker. Failures are TPDEError("corrupt") (docs/store-format.md 2.3, 6.3)."""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import TPDEError
from .names import check_step_number, check_tensor_name, check_tree

KINDS = ("torch", "numpy", "pickle")
_CODEC_DTYPES = ("float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "int32",
                 "uint32", "int64", "uint64", "bool")
_TORCH_DTYPE = re.compile(r"(float(16|32|64)|bfloat16|u?int(8|16|32|64)|bool|complex(32|64|128)|float8_\w{1,16})\Z")
_MARKER_INTS = ("depth", "raw_bytes", "stored_bytes", "n_arrays", "manifest_crc32")
_ENTRY_FIELDS = ("kind", "dtype", "shape", "codec_dtype", "storage_shape", "chunks", "crc32c", "stored_bytes",
                 "changed")
MARKER_FIELDS = ("step", "kind", "base_step", "prev_step", "depth", "raw_bytes", "stored_bytes", "n_arrays",
                 "manifest_crc32", "time", "lossy", "predicted")


def _fail(where: str, what: str) -> None:
    raise TPDEError(f"{where}: {what}", "corrupt")


def _is_int(value: object, low: int = 0) -> bool:
    return type(value) is int and value >= low


def check_marker_fields(fields: object, step: int) -> dict:
    """The fields of step's commit marker, if they are what tpde writes."""
    where = f"commit marker of step {step}"
    if not isinstance(fields, dict):
        _fail(where, f"is a {type(fields).__name__}, not an object")
    unknown = [k for k in fields if k not in MARKER_FIELDS]
    missing = [k for k in MARKER_FIELDS[:10] if k not in fields]
    if unknown or missing:
        _fail(where, f"has unknown fields {unknown[:3]} or lacks {missing[:3]}")
    if fields["kind"] not in ("keyframe", "delta"):
        _fail(where, f"has kind {str(fields['kind'])[:40]!r}")
    for key in ("step", "base_step", "prev_step"):
        check_step_number(fields[key], f"{where}: {key}")
    if not all(_is_int(fields[k]) for k in _MARKER_INTS) or fields["manifest_crc32"] >= 2**32:
        _fail(where, "has a size, depth or checksum that is not a non-negative integer")
    if type(fields["time"]) not in (int, float) or not all(type(fields.get(k, False)) is bool
                                                            for k in ("lossy", "predicted")):
        _fail(where, "has a time or flag of the wrong type")
    if (fields["kind"] == "keyframe") != (fields["base_step"] is None):
        _fail(where, "has a base step that does not fit its kind")
    return fields


def check_manifest_body(body: object, marker) -> dict:
    """A step manifest body (the "tpde_step" object), if it is what tpde writes and it
    agrees with the step's commit marker."""
    step = marker.step
    where = f"manifest of step {step}"
    if not isinstance(body, dict):
        _fail(where, "is not an object")
    for key in ("step", "kind", "base_step", "prev_step", "depth"):
        if key not in body or body[key] != getattr(marker, key) or type(body[key]) is not type(getattr(marker, key)):
            _fail(where, f"does not agree with its commit marker on {key!r}")
    if not isinstance(body.get("arrays"), dict) or not isinstance(body.get("meta"), dict):
        _fail(where, "lacks its arrays or meta")
    if not isinstance(body.get("tpde_version"), str) or "tree" not in body:
        _fail(where, "lacks its tpde version or state tree")
    if body.get("error_bounds") is not None and not isinstance(body["error_bounds"], dict):
        _fail(where, "has error bounds that are not an object")
    if len(body["arrays"]) != marker.n_arrays:
        _fail(where, f"lists {len(body['arrays'])} arrays, its commit marker {marker.n_arrays}")
    kinds = {}
    for name, entry in body["arrays"].items():
        check_tensor_name(name, f"step {step}")
        kinds[name] = check_entry(name, entry, step)
    try:
        check_tree(body["tree"], kinds, step)
    except RecursionError:
        _fail(where, "has a state tree nested too deep")
    return body


def check_entry(name: str, entry: object, step: int) -> str:
    """One manifest entry; returns its kind."""
    where = f"step {step}, tensor {name!r}"
    if not isinstance(entry, dict):
        _fail(where, "manifest entry is not an object")
    missing = [k for k in _ENTRY_FIELDS if k not in entry]
    if missing:
        _fail(where, f"manifest entry lacks {missing[:3]}")
    kind, dtype, codec = entry.get("kind"), entry.get("dtype"), entry.get("codec_dtype")
    if kind not in KINDS or codec not in _CODEC_DTYPES or not isinstance(dtype, str):
        _fail(where, f"has kind {str(kind)[:20]!r} / codec dtype {str(codec)[:20]!r}, which tpde does not write")
    if kind == "torch" and not _TORCH_DTYPE.match(dtype):
        _fail(where, f"has torch dtype {dtype[:40]!r}")
    if kind == "numpy":
        try:
            ok = np.dtype(dtype).kind in "biufc"
        except (TypeError, ValueError):
            ok = False
        if not ok:
            _fail(where, f"has numpy dtype {dtype[:40]!r}")
    if kind == "pickle" and (dtype != "uint8" or codec != "uint8"):
        _fail(where, "is a pickle stored as something else than bytes")
    shape, storage, chunks = entry.get("shape"), entry.get("storage_shape"), entry.get("chunks")
    for what, dims, low in (("shape", shape, 0), ("storage shape", storage, 0), ("chunk shape", chunks, 1)):
        if not isinstance(dims, list) or len(dims) > 64 or not all(_is_int(d, low) for d in dims):
            _fail(where, f"has a {what} that is not a list of integers >= {low}")
    if len(chunks) != len(storage):
        _fail(where, "has a chunk shape of another rank than its storage shape")
    n_chunks = math.prod(-(-s // c) for s, c in zip(storage, chunks))
    crc = entry.get("crc32c")
    if not isinstance(crc, list) or len(crc) != n_chunks or not all(_is_int(c) for c in crc):
        _fail(where, "has content hashes that do not match its chunk grid")
    if not _is_int(entry.get("stored_bytes")) or not (entry.get("changed") is None or _is_int(entry["changed"])):
        _fail(where, "has sizes that are not non-negative integers")
    for key, types in (("error_bound", dict), ("bound", str), ("rms", (int, float)), ("predict", dict)):
        if entry.get(key) is not None and not isinstance(entry[key], types):
            _fail(where, f"has a {key} of the wrong type")
    check_step_number(entry.get("rms_step"), f"{where}: rms_step")
    bundle = entry.get("bundle")
    if bundle is not None and not (
        isinstance(bundle, list) and len(bundle) == n_chunks
        and all(isinstance(r, list) and len(r) == 2 and all(_is_int(v) and v < 2**48 for v in r) for r in bundle)
    ):
        _fail(where, "has bundle ranges that do not match its chunk grid")
    return kind
