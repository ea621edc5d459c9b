"""`tpde.dcp.Writer`: a torch.distributed.checkpoint StorageWriter over per-rank tpde stores."""

from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass

from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner
from torch.distributed.checkpoint.storage import StorageWriter, WriteResult
from torch.futures import Future

from ..errors import TPDEError
from ..store.spill import check_cache_dir, check_predecessor_cache
from . import store_hooks as hooks
from .layout import ROOT_KEY, commit_key, encode_commit, rank_folder, step_of
from .packing import as_tensor, build_rank_state
from .steps import committed_steps, rank_folders, root_settings_bytes

DEFAULT_PACK_BELOW = 1 << 16


@dataclass(frozen=True)
class _Assignment:
    """What the coordinator tells each rank in its plan's storage_data."""

    step: int
    rank: int
    committed: tuple[int, ...]


class Writer(StorageWriter):
    """Save DCP checkpoints into one tpde checkpoint folder, each shard a temporal delta.

    `url` is a local path or an fsspec URL (`s3://bucket/run`, with `storage_options`
    for fsspec). Every rank writes its own shards to `<url>/ranks/<rank>` (an ordinary
    `tpde.CheckpointStore`, each shard coded against the same shard of the rank's
    previous save); the coordinator writes the step's commit record only after every
    rank's data is committed, so a step is all ranks or nothing.

    The step number: `step=` here, or `checkpoint_id=` of `dcp.save`, else one more than
    the latest committed step (0 for the first). Items below `pack_below` elements are
    packed into one array per dtype (fewer objects per step); arrays below `bundle_below`
    elements go to the rank store's bundle (`CheckpointStore`; None: its default).
    `predecessor_cache` and `cache_dir`: where each rank keeps its last save, the
    reference of its next delta ("memory", or "disk" for ranks short of host memory;
    see `CheckpointStore`).
    """

    def __init__(self, url: str | os.PathLike, *, step: int | None = None, storage_options: dict | None = None,
                 keyframe_every: int | None = None, chunk_elements: int | None = None, workers: int | None = None,
                 pack_below: int = DEFAULT_PACK_BELOW, bundle_below: int | None = None, allow_pickle: bool = False,
                 predecessor_cache: str = "memory", cache_dir: str | os.PathLike | None = None):
        super().__init__()
        self.url = hooks.normalize_root(url)
        self.storage_options = dict(storage_options or {})
        self.step = None if step is None else step_of(step, "step")
        self.pack_below = int(pack_below)
        self.allow_pickle = allow_pickle
        self._settings = {k: v for k, v in (("keyframe_every", keyframe_every), ("chunk_elements", chunk_elements),
                                            ("workers", workers), ("bundle_below", bundle_below),
                                            ("predecessor_cache", check_predecessor_cache(predecessor_cache)),
                                            ("cache_dir", check_cache_dir(cache_dir))) if v is not None}
        self._rank = 0
        self._is_coordinator = True
        self._save_id = str(uuid.uuid4())
        self._assignment: _Assignment | None = None
        self.last_step: int | None = None  # the step of the last finished save

    # ------------------------------------------------------------------ protocol

    def reset(self, checkpoint_id: str | os.PathLike | int | None = None) -> None:
        """Start a new save; a `checkpoint_id` names its step (int or digits)."""
        if checkpoint_id is not None:
            self.step = step_of(checkpoint_id)
        self._save_id = str(uuid.uuid4())
        self._assignment = None

    def set_up_storage_writer(self, is_coordinator: bool, *args, **kwargs) -> None:
        """Learn this process's rank and role."""
        if kwargs.get("use_collectives", True) is False:
            raise TPDEError("tpde.dcp.Writer needs DCP's collectives (use_collectives=True): the coordinator "
                            "commits a step once every rank's shards are written", "invalid_argument")
        self._is_coordinator = is_coordinator
        self._rank = int(kwargs.get("rank") or 0)

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        """Nothing to add locally: the coordinator assigns the step."""
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        """(Coordinator) choose the step, refuse one that exists, tell every rank."""
        kv = hooks.root_kv(self.url, self.storage_options, read_only=False)
        raw = kv.get(ROOT_KEY)
        if raw is None:
            kv.set(ROOT_KEY, root_settings_bytes())
        else:
            root_settings_bytes(raw, self.url)  # checks the format
        committed = committed_steps(kv)
        step = self.step if self.step is not None else (committed[-1] + 1 if committed else 0)
        if step in committed:
            raise TPDEError(f"{self.url}: step {step} is already committed; delete it first or save another step",
                            "step_exists")
        for r in rank_folders(kv):
            if r >= len(plans):  # the world shrank: no rank cleans this folder in write_data
                _drop_uncommitted(hooks.rank_store(self.url, rank_folder(r), self.storage_options, mode="r+",
                                                   settings={}, cached=False), set(committed))
        return [dataclasses.replace(p, storage_data=_Assignment(step, i, tuple(committed)))
                for i, p in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """Write this rank's items as one step of its own store; returns where each went."""
        assignment = plan.storage_data
        if not isinstance(assignment, _Assignment):
            raise TPDEError("tpde.dcp.Writer got a plan it did not prepare", "invalid_argument")
        self._assignment = assignment
        items = [(item, as_tensor(item, planner.resolve_data(item))) for item in plan.items]
        state, locations = build_rank_state(assignment.rank, items, self.pack_below)
        store = self._rank_store(assignment.rank)
        _drop_uncommitted(store, set(assignment.committed))
        if state:
            store.save(assignment.step, state, meta={"dcp_save_id": self._save_id})
        sizes = {item.index: tensor.numel() * tensor.element_size() for item, tensor in items}
        results = [WriteResult(index=index, size_in_bytes=sizes[index], storage_data=loc)
                   for index, loc in locations.items()]
        future: Future[list[WriteResult]] = Future()
        future.set_result(results)
        return future

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """(Coordinator, once every rank's data is committed) write the step's commit record."""
        step = self._assignment.step if self._assignment is not None else None
        if step is None:
            raise TPDEError("tpde.dcp.Writer.finish called before write_data", "invalid_argument")
        locations = {wr.index: wr.storage_data for rank_results in results for wr in rank_results}
        metadata.version = metadata.version or "1.0.0"
        metadata.storage_meta = self.storage_meta()
        kv = hooks.root_kv(self.url, self.storage_options, read_only=False)
        kv.set(commit_key(step), encode_commit(step, metadata, locations, allow_pickle=self.allow_pickle))
        self.last_step = step
        if self.step == step:
            self.step = None  # the next save without a step continues after this one

    def storage_meta(self) -> StorageMeta | None:
        """The checkpoint's URL and this save's id."""
        return StorageMeta(checkpoint_id=self.url, save_id=self._save_id)

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

    def close(self) -> None:
        """Close this process's rank stores of the root and release their writer leases
        (otherwise they stay open across saves, keeping the last save for the next delta);
        a later save reopens them and rebuilds its reference from the store."""
        hooks.forget_rank_stores(self.url)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers

    def _rank_store(self, rank: int):
        return hooks.rank_store(self.url, rank_folder(rank), self.storage_options, mode="a",
                                settings=self._settings, cached=True)


def _drop_uncommitted(store, committed: set[int]) -> None:
    """Remove this rank's steps that never got a commit record (a save that failed on
    another rank), newest first, so that no new step is coded against them."""
    for s in sorted((s for s in store.steps() if s not in committed), reverse=True):
        try:
            store.delete(s)
        except TPDEError as error:
            if error.code != "has_dependents":  # kept as the base of a committed step
                raise

