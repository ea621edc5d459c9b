"""Where a distributed checkpoint lives, and its commit record (JSON, never pickle).

Layout under the checkpoint's URL (one tpde checkpoint store per rank, one commit per step):

    dcp.json              {"tpde_dcp": {"format": 1}}: what this folder is
    ranks/<r>/            rank r's shards: an ordinary `tpde.CheckpointStore`, one step per save
    commits/<step>        the step's commit record, written last by the coordinator once
                          every rank's step is committed in its own store

A step exists only when `commits/<step>` does. The record holds DCP's `Metadata` as JSON
(tensor sizes, dtypes, chunks, the planner's flattening map) and, per saved item, where
its bytes are: the rank, the array in that rank's store, and for small items packed
into one array per dtype, the start and length in that array.
"""

from __future__ import annotations

import base64
import json
import pickle
import re
from dataclasses import dataclass

import torch
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)

from ..errors import TPDEError

FORMAT = 1
ROOT_KEY = "dcp.json"
COMMITS = "commits"
RANKS = "ranks"
_MAX_RANK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9_.~-]+/[A-Za-z0-9_.~-]+$")
_SAFE = re.compile(r"[A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ShardLocation:
    """Where one saved DCP item lives: `array` in rank `rank`'s store at the step.

    `start`/`numel` are set for items packed into a shared 1-d array (small tensors,
    byte blobs); `shape` is the item's own shape (() for byte blobs and 0-d tensors).
    """

    rank: int
    array: str
    shape: tuple[int, ...]
    start: int | None = None
    numel: int | None = None
    is_bytes: bool = False


def commit_key(step: int) -> str:
    """The key of a step's commit record."""
    return f"{COMMITS}/{step}"


def rank_folder(rank: int) -> str:
    """The folder of rank `rank`'s checkpoint store, relative to the root."""
    return f"{RANKS}/{rank}"


def escape_key(text: str) -> str:
    """A stable store-safe spelling of `text` ([A-Za-z0-9_.-], the rest as ~XX bytes)."""
    out = []
    for ch in text:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"~{b:02X}" for b in ch.encode("utf-8"))
    name = "".join(out)
    return "~2E" + name[1:] if name.startswith(".") else name


def shard_key(fqn: str, offsets: tuple[int, ...]) -> str:
    """The array name of the shard of `fqn` at `offsets`: the same at every save.

    Only characters that the store keeps as they are (tpde escapes others in names).
    """
    return f"{escape_key(fqn)}~~{'.'.join(map(str, offsets))}"


def step_of(checkpoint_id: object, what: str = "checkpoint_id") -> int:
    """A step number from an int or a string of digits."""
    if isinstance(checkpoint_id, bool):
        raise TPDEError(f"{what} must be a step number (int >= 0), not {checkpoint_id!r}", "invalid_argument")
    if isinstance(checkpoint_id, int) and checkpoint_id >= 0:
        return checkpoint_id
    if isinstance(checkpoint_id, str) and checkpoint_id.isdigit():
        return int(checkpoint_id)
    raise TPDEError(f"{what} must be a step number (int >= 0), not {checkpoint_id!r}", "invalid_argument")


# ---------------------------------------------------------------------- writing


def encode_commit(step: int, metadata: Metadata, locations: dict, *, allow_pickle: bool) -> bytes:
    """The commit record of `step` as JSON bytes."""
    items = []
    for index, loc in locations.items():
        items.append({
            "fqn": index.fqn,
            "offset": None if index.offset is None else list(index.offset),
            "rank": loc.rank, "array": loc.array, "shape": list(loc.shape),
            "start": loc.start, "numel": loc.numel, "bytes": loc.is_bytes,
        })
    tensors = {}
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, BytesStorageMetadata):
            tensors[fqn] = {"type": "bytes"}
        else:
            tensors[fqn] = {
                "type": "tensor",
                "dtype": _dtype_name(md.properties.dtype),
                "requires_grad": bool(md.properties.requires_grad),
                "size": list(md.size),
                "chunks": [[list(c.offsets), list(c.sizes)] for c in md.chunks],
            }
    meta = metadata.storage_meta
    doc = {
        "tpde_dcp_commit": FORMAT,
        "step": step,
        "version": metadata.version,
        "state_dict_metadata": tensors,
        "planner_data": _encode_planner_data(metadata.planner_data, allow_pickle),
        "storage_meta": None if meta is None else {
            "checkpoint_id": None if meta.checkpoint_id is None else str(meta.checkpoint_id),
            "save_id": meta.save_id, "modules": list(meta.modules),
        },
        "ranks": sorted({loc.rank for loc in locations.values()}),
        "items": items,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _encode_planner_data(data: object, allow_pickle: bool) -> dict:
    try:
        return {"json": _tag_tuples(data)}
    except TypeError:
        if not allow_pickle:
            raise TPDEError(
                f"the save planner's planner_data ({type(data).__name__}) is not JSON; pass "
                "Writer(..., allow_pickle=True) to pickle it", "unsupported_type") from None
        return {"pickle": base64.b64encode(pickle.dumps(data)).decode()}


def _tag_tuples(obj: object) -> object:
    """JSON form of planner data: tuples (the default planner's key paths) become {"t": [...]}."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"t": [_tag_tuples(x) for x in obj]}
    if isinstance(obj, list):
        return [_tag_tuples(x) for x in obj]
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return {"d": {k: _tag_tuples(v) for k, v in obj.items()}}
    raise TypeError(type(obj).__name__)


def _untag(obj: object, where: str) -> object:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, list):
        return [_untag(x, where) for x in obj]
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("t"), list):
        return tuple(_untag(x, where) for x in obj["t"])
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(obj.get("d"), dict):
        return {str(k): _untag(v, where) for k, v in obj["d"].items()}
    raise TPDEError(f"{where}: malformed planner data", "corrupt")


# ---------------------------------------------------------------------- reading


def decode_commit(raw: bytes, step: int, where: str, *, allow_pickle: bool | None) -> tuple[Metadata, dict, list[int]]:
    """(Metadata, {MetadataIndex: ShardLocation}, ranks) from a commit record, checked."""
    what = f"{where}: commit record of step {step}"
    try:
        doc = json.loads(raw)
    except ValueError:
        raise TPDEError(f"{what} is not JSON", "corrupt") from None
    _need(isinstance(doc, dict) and doc.get("tpde_dcp_commit") == FORMAT, what, "unknown format")
    _need(doc.get("step") == step, what, "names another step")
    sdm = {}
    tensors = doc.get("state_dict_metadata")
    _need(isinstance(tensors, dict), what, "no state_dict_metadata")
    for fqn, md in tensors.items():
        _need(isinstance(md, dict), what, f"bad entry {fqn!r}")
        if md.get("type") == "bytes":
            sdm[fqn] = BytesStorageMetadata()
            continue
        _need(md.get("type") == "tensor", what, f"bad entry {fqn!r}")
        size = _ints(md.get("size"), what)
        chunks = md.get("chunks")
        _need(isinstance(chunks, list), what, f"bad chunks of {fqn!r}")
        chunk_list = []
        for c in chunks:
            _need(isinstance(c, list) and len(c) == 2, what, f"bad chunk of {fqn!r}")
            off, sz = _ints(c[0], what), _ints(c[1], what)
            _need(len(off) == len(sz) == len(size), what, f"bad chunk of {fqn!r}")
            chunk_list.append(ChunkStorageMetadata(offsets=torch.Size(off), sizes=torch.Size(sz)))
        props = TensorProperties(dtype=_dtype(md.get("dtype"), what), requires_grad=bool(md.get("requires_grad")))
        sdm[fqn] = TensorStorageMetadata(properties=props, size=torch.Size(size), chunks=chunk_list)
    pd = doc.get("planner_data")
    _need(isinstance(pd, dict), what, "no planner_data")
    if "pickle" in pd and allow_pickle is None:
        planner_data = None  # verify: the record is checked, the pickle left alone
    elif "pickle" in pd:
        if not allow_pickle:
            raise TPDEError(f"{what} holds pickled planner data; pass Reader(..., allow_pickle=True) "
                            "to load it, only from a store you trust", "pickle_refused")
        planner_data = pickle.loads(base64.b64decode(pd["pickle"]))
    else:
        planner_data = _untag(pd.get("json"), what)
    sm = doc.get("storage_meta")
    storage_meta = StorageMeta()
    if isinstance(sm, dict):
        storage_meta = StorageMeta(checkpoint_id=_str_or_none(sm.get("checkpoint_id")),
                                   save_id=_str_or_none(sm.get("save_id")))
    locations = {}
    items = doc.get("items")
    _need(isinstance(items, list), what, "no items")
    for it in items:
        locations.update([_location(it, what)])
    ranks = _ints(doc.get("ranks"), what)
    _need(all(0 <= r < _MAX_RANK for r in ranks), what, "bad rank list")
    _need({loc.rank for loc in locations.values()} <= set(ranks), what, "items of unlisted ranks")
    version = doc.get("version")
    metadata = Metadata(state_dict_metadata=sdm, planner_data=planner_data, storage_data=locations,
                        storage_meta=storage_meta, version=version if isinstance(version, str) else None)
    return metadata, locations, ranks


def _location(it: object, what: str) -> tuple[MetadataIndex, ShardLocation]:
    _need(isinstance(it, dict), what, "bad item")
    fqn, array = it.get("fqn"), it.get("array")
    _need(isinstance(fqn, str), what, "bad item name")
    _need(isinstance(array, str) and _NAME.match(array) is not None, what, f"bad array name of {fqn!r}")
    rank = it.get("rank")
    _need(isinstance(rank, int) and not isinstance(rank, bool) and 0 <= rank < _MAX_RANK, what, f"bad rank of {fqn!r}")
    offset = None if it.get("offset") is None else _ints(it.get("offset"), what)
    shape = tuple(_ints(it.get("shape"), what))
    start, numel = it.get("start"), it.get("numel")
    if start is not None or numel is not None:
        _need(isinstance(start, int) and isinstance(numel, int) and start >= 0 and numel >= 0, what,
              f"bad pack range of {fqn!r}")
        n = 1
        for s in shape:
            n *= s
        _need(n == numel or bool(it.get("bytes")), what, f"pack range of {fqn!r} does not match its shape")
    loc = ShardLocation(rank=rank, array=array, shape=shape, start=start, numel=numel,
                        is_bytes=bool(it.get("bytes")))
    return MetadataIndex(fqn, offset), loc


def _ints(value: object, what: str) -> list[int]:
    _need(isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                          for v in value), what, f"expected a list of sizes, got {value!r:.60}")
    return list(value)


def _dtype(name: object, what: str) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    _need(isinstance(dtype, torch.dtype), what, f"unknown dtype {name!r:.40}")
    return dtype


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _need(ok: bool, what: str, why: str) -> None:
    if not ok:
        raise TPDEError(f"{what} is damaged ({why})", "corrupt")
