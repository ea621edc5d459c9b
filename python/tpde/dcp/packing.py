"""One rank's DCP items as a tpde state: big shards as their own arrays, small ones packed.

A model with thousands of small tensors (biases, norms, 0-d step counters) would cost
three objects per tensor per step on an object store. Items below `pack_below` elements
are concatenated, in name order, into one 1-d array per dtype ("packs/float32", ...), so
the same set of small tensors lands at the same positions at every save and the pack is
delta-coded against the previous save's pack like any shard. Byte blobs (non-tensor
state, pickled by DCP's planner) go to their own pack "packs/bytes".
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.planner import WriteItem, WriteItemType

from .layout import ShardLocation, shard_key

_PACKABLE = {torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.int16,
             torch.int32, torch.int64, torch.uint8, torch.bool}
BYTES_PACK = "bytes"


def build_rank_state(rank: int, items: list[tuple[WriteItem, torch.Tensor]], pack_below: int):
    """(state for `CheckpointStore.save`, {MetadataIndex: ShardLocation})."""
    own: dict[str, torch.Tensor] = {}
    to_pack: dict[str, list[tuple[str, WriteItem, torch.Tensor]]] = {}
    locations = {}
    seen: dict[tuple, ShardLocation] = {}
    for item, tensor in items:
        key = shard_key(item.index.fqn, tuple(item.index.offset or ()))
        is_bytes = item.type == WriteItemType.BYTE_IO
        alias = None if is_bytes else _alias_key(tensor)
        if alias is not None and alias in seen:
            locations[item.index] = seen[alias]  # tied tensors: stored once
            continue
        if is_bytes or (tensor.dtype in _PACKABLE and tensor.numel() < pack_below):
            group = BYTES_PACK if is_bytes else str(tensor.dtype).removeprefix("torch.")
            to_pack.setdefault(group, []).append((key, item, tensor))
            continue
        name = f"t/{key}"
        own[key] = tensor
        loc = ShardLocation(rank=rank, array=name, shape=tuple(tensor.shape))
        locations[item.index] = loc
        if alias is not None:
            seen[alias] = loc
    packs = {}
    for group, members in sorted(to_pack.items()):
        members.sort(key=lambda m: m[0])
        start = 0
        flat = []
        for _key, item, tensor in members:
            n = tensor.numel()
            is_bytes = group == BYTES_PACK
            loc = ShardLocation(rank=rank, array=f"packs/{group}", shape=() if is_bytes else tuple(tensor.shape),
                                start=start, numel=n, is_bytes=is_bytes)
            locations[item.index] = loc
            if not is_bytes:
                seen.setdefault(_alias_key(tensor), loc)
            flat.append(tensor.reshape(-1))
            start += n
        packs[group] = torch.cat(flat) if flat else torch.empty(0)
    state = {}
    if packs:
        state["packs"] = packs
    if own:
        state["t"] = own
    return state, locations


def _alias_key(tensor: torch.Tensor) -> tuple:
    return (tensor.dtype, tensor.data_ptr(), tuple(tensor.shape), tensor.stride())


def as_tensor(item: WriteItem, data: object) -> torch.Tensor:
    """The bytes to store for a resolved DCP item: a cpu tensor (byte blobs as uint8)."""
    if item.type == WriteItemType.BYTE_IO:
        return torch.frombuffer(bytearray(data.getbuffer()), dtype=torch.uint8) if data.getbuffer().nbytes \
            else torch.empty(0, dtype=torch.uint8)
    tensor = data.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    return tensor
