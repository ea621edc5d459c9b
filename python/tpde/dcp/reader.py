"""`tpde.dcp.Reader`: a torch.distributed.checkpoint StorageReader over per-rank tpde stores."""

from __future__ import annotations

import io
import os
import uuid

import torch
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    ReadItem,
)
from torch.distributed.checkpoint.storage import StorageReader
from torch.futures import Future

from ..errors import TPDEError
from . import store_hooks as hooks
from .layout import ShardLocation, rank_folder, step_of
from .steps import committed_steps, open_root, read_commit


class Reader(StorageReader):
    """Load a step of a tpde.dcp checkpoint with DCP (any world size: DCP's planner reshards).

    `step`: the step to load (None: the latest committed one; `checkpoint_id=` of
    `dcp.load` also names it). Each rank reads only the chunks that overlap the pieces its
    own tensors need, along each chunk's delta chain. `allow_pickle` is needed only for
    checkpoints saved with a custom planner whose planner data was pickled.
    """

    def __init__(self, url: str | os.PathLike, *, step: int | None = None, storage_options: dict | None = None,
                 allow_pickle: bool = False):
        super().__init__()
        self.url = hooks.normalize_root(url)
        self.storage_options = dict(storage_options or {})
        self.step = None if step is None else step_of(step, "step")
        self.allow_pickle = allow_pickle
        self.storage_data: dict = {}
        self.load_id = str(uuid.uuid4())
        self._loaded_step: int | None = None
        self._stores: dict[int, object] = {}

    def reset(self, checkpoint_id: str | os.PathLike | int | None = None) -> None:
        """Start a new load; a `checkpoint_id` names its step."""
        if checkpoint_id is not None:
            self.step = step_of(checkpoint_id)
        self.storage_data = {}
        self.load_id = str(uuid.uuid4())

    def read_metadata(self, *args, **kwargs) -> Metadata:
        """The step's DCP metadata, from its commit record."""
        kv = open_root(self.url, self.storage_options, read_only=True)
        step = self.step
        if step is None:
            have = committed_steps(kv)
            if not have:
                raise TPDEError(f"{self.url} has no committed step", "unknown_step")
            step = have[-1]
        metadata, _, _ = read_commit(kv, self.url, step, allow_pickle=self.allow_pickle)
        metadata.storage_meta.load_id = self.load_id
        self._loaded_step = step
        return metadata

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args, **kwargs) -> None:
        """Keep where every saved item lives."""
        if not isinstance(metadata.storage_data, dict):
            raise TPDEError("tpde.dcp.Reader got metadata it did not read", "invalid_argument")
        self.storage_data = metadata.storage_data

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        """Unchanged: DCP's planner already asks only for what this rank needs."""
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        """Unchanged."""
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        """Read each stored array once, over the region this rank's items need, and copy
        the pieces into the planner's tensors (byte blobs go to `planner.load_bytes`)."""
        groups: dict[tuple[int, str], list[tuple[ReadItem, ShardLocation]]] = {}
        for req in plan.items:
            loc = self.storage_data.get(req.storage_index)
            if loc is None:
                raise TPDEError(f"step {self._loaded_step} of {self.url} has no item {req.storage_index.fqn!r} "
                                f"at offset {list(req.storage_index.offset or ())}", "unknown_tensor")
            groups.setdefault((loc.rank, loc.array), []).append((req, loc))
        for (rank, array), reqs in groups.items():
            store = self._store(rank)
            if reqs[0][1].start is not None:
                self._read_packed(store, array, reqs, planner)
            else:
                self._read_own(store, array, reqs, planner)
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def _read_packed(self, store, array: str, reqs, planner: LoadPlanner) -> None:
        lo = min(loc.start for _, loc in reqs)
        hi = max(loc.start + loc.numel for _, loc in reqs)
        flat = store.load_tensor(self._loaded_step, array, (slice(lo, hi),))
        for req, loc in reqs:
            piece = flat[loc.start - lo: loc.start - lo + loc.numel]
            if req.type == LoadItemType.BYTE_IO or loc.is_bytes:
                planner.load_bytes(req, io.BytesIO(piece.numpy().tobytes()))
                continue
            _copy(req, planner, piece.reshape(loc.shape), offsets=req.storage_offsets)

    def _read_own(self, store, array: str, reqs, planner: LoadPlanner) -> None:
        shape = reqs[0][1].shape
        if not shape:
            whole = store.load_tensor(self._loaded_step, array)
            for req, _ in reqs:
                _copy(req, planner, whole, offsets=())
            return
        lo = [min(r.storage_offsets[d] for r, _ in reqs) for d in range(len(shape))]
        hi = [max(r.storage_offsets[d] + r.lengths[d] for r, _ in reqs) for d in range(len(shape))]
        region = store.load_tensor(self._loaded_step, array, tuple(slice(a, b) for a, b in zip(lo, hi)))
        for req, _ in reqs:
            _copy(req, planner, region, offsets=[o - a for o, a in zip(req.storage_offsets, lo)])

    def _store(self, rank: int):
        store = self._stores.get(rank)
        if store is None:
            store = hooks.rank_store(self.url, rank_folder(rank), self.storage_options, mode="r",
                                     settings={}, cached=False)
            self._stores[rank] = store
        return store

    @property
    def checkpoint_id(self) -> str:
        """The checkpoint's root URL or path."""
        return self.url

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike) -> bool:
        """A checkpoint_id is a step number."""
        try:
            step_of(checkpoint_id)
        except TPDEError:
            return False
        return True


def _copy(req: ReadItem, planner: LoadPlanner, source: torch.Tensor, *, offsets) -> None:
    piece = source
    for dim, (start, length) in enumerate(zip(offsets, req.lengths)):
        piece = piece.narrow(dim, start, length)
    target = planner.resolve_tensor(req).detach()
    if target.size() != piece.size():
        raise TPDEError(f"{req.storage_index.fqn!r}: stored piece {tuple(piece.size())} does not fit the "
                        f"destination {tuple(target.size())}", "size_mismatch")
    target.copy_(piece)
    planner.commit_tensor(req, target)
