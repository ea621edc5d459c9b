"""CheckpointStore: a training run's checkpoints as temporal deltas in one zarr store.

Each saved step is a zarr group; each tensor of the state is an array with the same chunk
grid at every step. A step is a *keyframe* (chunks coded standalone) or a *delta* (each
chunk coded against the same chunk of the predecessor step's reconstruction, and against
the step before that as a coding context when both are in the same chain). See
docs/store.md for the layout, the crash-safety argument and the deletion rules.

This module is the facade; each job has its own module here:
  schema.py (keys and JSON of the on-disk format)   kv.py (key/value access to zarr stores)
  root.py (open modes, root settings)                catalog.py (markers and manifests)
  grid.py (chunk grid)                               save.py (coding a step, commit protocol)
  chain.py (chain decoding)                          load.py (loading states and slices)
  retention.py (delete, prune, clean)                verify.py (checking every hash)
  lossy.py (error bounds)                            cross_state.py (Adam-moment predictions)
  snapshots.py (last step kept in memory)            background.py (save_async's thread)
  parallel.py (worker threads, progress)             info.py (StepInfo, TensorInfo)
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future

from ..bounds import BoundSpec, ErrorBounds
from ..errors import TPDEError
from ..levels import check_level
from . import lease as writer_lease
from . import lease_share, retention
from .background import BackgroundSaves
from .blobs import read_blobs
from .bundle import check_bundle_below
from .catalog import Catalog
from .info import StepInfo, TensorInfo, step_info
from .kv import KeyValueAccess, open_zarr_store
from .load import Reader
from .parallel import Pool
from .root import (
    DEFAULT_CHUNK_ELEMENTS,
    DEFAULT_KEYFRAME_EVERY,
    bundle_setting,
    check_mode,
    create_root,
    open_root,
    positive,
)
from .save import StepWriter, prepare_save
from .schema import Manifest, Marker
from .snapshots import SnapshotCache
from .spill import check_cache_dir, check_predecessor_cache
from .verify import verify

__all__ = ["CheckpointStore", "ErrorBoundArg", "StepInfo", "TensorInfo"]

# What `save(..., error_bound=)` accepts: see its docstring.
ErrorBoundArg = ErrorBounds | BoundSpec | dict | Callable[[str], BoundSpec | dict | None] | None


def _lease_gone() -> None:
    raise TPDEError("the CheckpointStore of this save was dropped; its writer lease is given back", "lease_lost")


class CheckpointStore:
    """Checkpoints of one training run, stored as keyframes and deltas in a zarr store.

    `store` is a path, an fsspec URL or any zarr v3 `Store`. `mode`: "r" read only,
    "r+" existing store, "a" open or create, "w" create (erasing what is there),
    "w-" create, failing if something is there. `keyframe_every` and `chunk_elements`
    apply to steps this object saves (None: the store's setting, else the default).
    `bundle_below`: arrays of fewer elements (biases, norms, counters) are saved into one
    object per step, the step's bundle, instead of objects of their own (0: never; None:
    the store's setting, 2^20 for a new store, 0 for a store made before bundles).
    `workers` threads code chunks in parallel. `progress`: None shows a bar for large
    saves and loads on a terminal, True/False forces it. `storage_options` go to fsspec
    for a URL (`{"endpoint_url": ..., "key": ..., "secret": ...}` for an S3 server).
    `level`: the chunk coder of this object's lossless saves, "default" or "fast" (see `save`).

    One process writes a store at a time: the first save, delete, prune or clean (or
    opening with mode "w") takes the store's writer lease, and a second writer gets a
    TPDEError("store_locked") naming the holder. `takeover=True` takes over a *stale*
    lease (its holder is gone; docs/security.md has the rule). Reading needs no lease.
    `durable=False` skips the fsyncs that make a local save survive a power loss (scratch
    runs; a crash of the process is survived either way).

    `predecessor_cache`: where the saver keeps the last saved step, the reference of the
    next delta. "memory" (the default, fastest) holds about two states' worth beside the
    state being saved; "disk" keeps it in unnamed temporary files in `cache_dir` (None:
    the store's own folder for a local store, else the system's temporary folder), for
    states that do not fit in memory twice. docs/store.md has the figures.
    """

    def __init__(
        self,
        store: object,
        mode: str = "a",
        *,
        keyframe_every: int | None = None,
        chunk_elements: int | None = None,
        bundle_below: int | None = None,
        workers: int | None = None,
        progress: bool | None = None,
        storage_options: dict | None = None,
        level: str = "default",
        takeover: bool = False,
        durable: bool = True,
        predecessor_cache: str = "memory",
        cache_dir: str | os.PathLike | None = None,
    ):
        self.mode = check_mode(mode)
        self.level = check_level(level)
        predecessor_on_disk = check_predecessor_cache(predecessor_cache) == "disk"
        self._takeover = takeover is True
        self._lease: writer_lease.WriterLease | None = None
        self._release = None
        for what, value in (("keyframe_every", keyframe_every), ("chunk_elements", chunk_elements),
                            ("workers", workers)):
            if value is not None:
                positive(what, value)
        self._kv = KeyValueAccess(open_zarr_store(store, read_only=mode == "r", storage_options=storage_options),
                                  durable=durable is not False)
        self._catalog = Catalog(self._kv)
        self._pool = Pool(workers or min(32, os.cpu_count() or 1), progress)
        self._reader = Reader(self._catalog, self._pool)
        self._snapshots = SnapshotCache(predecessor_on_disk, check_cache_dir(cache_dir) or self._kv.local_root)
        self._background = BackgroundSaves()
        if mode == "w":
            self._writable()  # erasing is writing
        try:
            settings = self._open_root(mode)
        except BaseException:
            self._give_back()
            raise
        self._writer = StepWriter(
            self._reader,
            self._snapshots,
            keyframe_every or settings.get("keyframe_every", DEFAULT_KEYFRAME_EVERY),
            chunk_elements or settings.get("chunk_elements", DEFAULT_CHUNK_ELEMENTS),
            bundle_setting(bundle_below, settings),
        )
        check = weakref.WeakMethod(self._check_lease)  # no cycle: an unreferenced store is collected
        self._writer.before_commit = lambda: (check() or _lease_gone)()
        if not settings:
            self._writable()
            create_root(self._kv, self.keyframe_every, self.chunk_elements, self.bundle_below)

    def _open_root(self, mode: str) -> dict:
        """`open_root`; a store without its root settings but with a writer lease is one
        that another writer is creating (it takes the lease, then writes the root): the
        lease's answer (TPDEError "store_locked" naming that writer) is the better one."""
        try:
            return open_root(self._kv, mode)
        except TPDEError as e:
            if e.code != "not_a_store" or mode == "r" or not self._kv.exists(writer_lease.LEASE_KEY):
                raise
        self._writable()  # raises store_locked while the other writer lives
        return open_root(self._kv, mode)

    # ------------------------------------------------------------------ settings

    keyframe_every = property(lambda self: self._writer.keyframe_every,
                              lambda self, v: setattr(self._writer, "keyframe_every", v),
                              doc="Deltas are coded until a chain reaches this length; then a keyframe.")
    chunk_elements = property(lambda self: self._writer.chunk_elements,
                              lambda self, v: setattr(self._writer, "chunk_elements", v),
                              doc="About how many elements one chunk of a saved array holds.")
    bundle_below = property(lambda self: self._writer.bundle_below,
                            lambda self, v: setattr(self._writer, "bundle_below", check_bundle_below(v)),
                            doc="Arrays of fewer elements are saved into their step's bundle (one object).")
    workers = property(lambda self: self._pool.workers, lambda self, v: setattr(self._pool, "workers", v),
                       doc="Threads that code and decode chunks.")
    progress = property(lambda self: self._pool.progress, lambda self, v: setattr(self._pool, "progress", v),
                        doc="Progress bars: None for large jobs on a terminal, True/False forces them.")

    def __repr__(self) -> str:
        return f"CheckpointStore({self._kv.describe()!r}, mode={self.mode!r})"

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for background saves (raising the first failure), then drop the in-memory
        reconstructions and give the writer lease back."""
        try:
            self._background.shutdown()
        finally:
            self._snapshots.clear()
            self._give_back()

    # ------------------------------------------------------------------ listing

    def steps(self) -> list[int]:
        """Committed steps, ascending."""
        return self._catalog.steps()

    def tensors(self, step: int) -> list[str]:
        """Names of the arrays stored at `step`, in state order."""
        return list(self._manifest(step).arrays)

    def info(self, step: int) -> StepInfo:
        """Kind, base step, sizes and per-tensor statistics of a step."""
        marker = self._marker(step)
        return step_info(marker, self._manifest(step, marker), tensors=True)

    def history(self) -> list[StepInfo]:
        """Summaries of every committed step (from the commit markers only); steps whose
        marker is unreadable are left out (see `unreadable`)."""
        return [step_info(m) for m in self._catalog.scan()[0]]

    def unreadable(self) -> dict[int, str]:
        """Committed steps whose commit marker cannot be read: {step: problem}."""
        return self._catalog.scan()[1]

    # ------------------------------------------------------------------ saving

    def save(
        self,
        step: int,
        state: object,
        *,
        allow_pickle: bool = False,
        meta: dict | None = None,
        error_bound: ErrorBoundArg = None,
        cross_state: bool = False,
        progress: bool | Callable[[int], None] | None = None,
        level: str | None = None,
        blobs: Mapping[str, bytes] | None = None,
        copy: bool = True,
    ) -> StepInfo:
        """Store `state` (a nested state dict) as `step`; returns the step's summary.

        The step is a delta against the latest committed step before it, unless a keyframe
        is due, or a tensor appeared or changed shape or dtype. The commit marker is
        written last: if the process dies before, the step does not exist.

        Lossless unless `error_bound` is given: an `ErrorBounds` (a bound per tensor kind,
        e.g. `ErrorBounds(weights=rms_bound(0.1), exp_avg_sq=log_bound(0.3))`), one bound
        for every tensor (`abs_bound(e)`, `rms_bound(f)`, `log_bound(r)`, or the dicts
        {"abs_error": e} / {"log_rel_error": r}), or a function of the tensor name
        returning one of those or None. Only floating-point tensors of one or more
        dimensions take a bound; the rest stay bit-exact. Deltas are coded against the
        base step's reconstruction, so errors do not accumulate along a chain.

        `cross_state=True` (delta steps of states with Adam moments): weights are coded
        against a prediction from the optimizer's moments, and with lossy moments exp_avg
        against a prediction from the weight change (docs/store.md). Smaller steps, but
        restoring a weight then decodes its moments too.

        `level` (default: the store's `level`) picks the chunk coder for lossless chunks:
        "default", or "fast" (byte planes and static rANS, docs/format.md section 14:
        several times faster to save and load, a few percent larger).
        `blobs` maps names (relative paths, "tokenizer/vocab.txt") to bytes kept byte for
        byte with the step and never unpickled (`load_blobs`). `progress` may also be a
        function, called with the bytes coded as the save goes.

        The store keeps the step's values in memory as the reference of the next delta:
        a copy, taken chunk by chunk as it is coded (`state` may change once `save`
        returns). `copy=False` keeps the state's own CPU tensors instead, which saves
        a state's worth of memory and the copy, for a state that nothing changes
        afterwards (one just read from a file, as `tpde-pack pack` does).
        """
        self._background.wait()  # earlier save_async calls come first
        self._writable()
        level = self.level if level is None else check_level(level)
        job = prepare_save(self._catalog, self._background, step, state,
                           allow_pickle=allow_pickle, meta=meta, error_bound=error_bound, blobs=blobs,
                           copy=False, adopt=not copy)
        return self._writer.write(job, cross_state, progress, level)

    def save_async(
        self,
        step: int,
        state: object,
        *,
        allow_pickle: bool = False,
        meta: dict | None = None,
        error_bound: ErrorBoundArg = None,
        cross_state: bool = False,
        level: str | None = None,
        blobs: Mapping[str, bytes] | None = None,
    ) -> Future:
        """Like `save`, but codes and writes the step on a background thread.

        Returns once the state's tensors are copied to host memory (training may go on
        changing them), with a `concurrent.futures.Future` of the step's `StepInfo`. Saves
        run one at a time in call order; with two in flight, a third call waits. The step
        becomes visible to readers when its future is done. `wait()` (and `close()`, and a
        plain `save`) wait for all of them and raise the first failure. Bad arguments are
        refused at once, as by `save`.
        """
        self._writable()
        level = self.level if level is None else check_level(level)
        job = prepare_save(self._catalog, self._background, step, state,
                           allow_pickle=allow_pickle, meta=meta, error_bound=error_bound, blobs=blobs)
        return self._background.submit(job.step, self._writer.write, job, cross_state, False, level)

    def wait(self) -> None:
        """Wait for every `save_async` to finish; raises the first one's error, if any."""
        self._background.wait()

    # ------------------------------------------------------------------ loading

    def load(self, step: int, *, allow_pickle: bool = False, progress: bool | None = None) -> object:
        """The state saved at `step`: same nesting, dtypes and values, tensors on cpu.

        Pickled objects (saved with allow_pickle=True) are unpickled only if
        `allow_pickle=True` is passed here too; otherwise loading them raises.
        """
        return self._reader.load(step, allow_pickle=allow_pickle, progress=progress)

    def load_blobs(self, step: int, names: Iterable[str] | None = None) -> dict[str, bytes]:
        """The blobs saved with `step` (all, or those named), byte for byte, each checked
        against its recorded size and SHA-256; never unpickled."""
        return read_blobs(self._kv, self._manifest(step), names)

    def load_tensor(self, step: int, name: str, index: object = None) -> object:
        """One tensor (or a slice of it) of `step`, reading only the chunks it overlaps.

        `index` is a basic index over the tensor's axes: an int, a slice, or a tuple of
        them (e.g. `(slice(0, 128),)`). Reads at most (depth + 1) x (overlapping chunks)
        chunks, where depth is the number of deltas back to the keyframe.
        """
        return self._reader.load_tensor(step, name, index)

    # ------------------------------------------------------------------ deleting

    def delete(self, step: int) -> None:
        """Delete a step. Refuses (TPDEError "has_dependents") if a later delta needs it."""
        self._writable()
        self._background.wait()
        retention.delete_step(self._catalog, self._snapshots, step)

    def prune(
        self,
        keep_last: int | None = None,
        keep_every: int | None = None,
        keep: Iterable[int] = (),
        *,
        dry_run: bool = False,
    ) -> list[int]:
        """Delete steps except the last `keep_last`, multiples of `keep_every`, and `keep`.

        Steps that a kept step's delta chain needs are kept too. Returns the deleted steps.
        Counts below 1 and policies that keep nothing are refused (see `delete_all`);
        steps with an unreadable commit marker, and every step before them, are kept.
        """
        self._writable()
        self._background.wait()
        return retention.prune(self._catalog, self._snapshots, keep_last, keep_every, keep, dry_run)

    def delete_all(self, *, dry_run: bool = False) -> list[int]:
        """Delete every committed step (the store itself stays); returns them."""
        self._writable()
        self._background.wait()
        return retention.delete_all(self._catalog, self._snapshots, dry_run)

    def uncommitted(self) -> list[str]:
        """Leftovers of interrupted saves or deletes: step folders without a commit marker."""
        return retention.uncommitted(self._catalog)

    def clean(self) -> list[str]:
        """Remove `uncommitted()` leftovers (the writer lease keeps other writers out)."""
        self._writable()
        self._background.wait()
        return retention.clean(self._catalog)

    # ------------------------------------------------------------------ verifying

    def verify(self, steps: Iterable[int] | None = None, *, progress: bool | None = None) -> list[str]:
        """Reconstruct every tensor of `steps` (default: all) and check every content hash.

        Returns a list of problems, one line each; empty means every step is intact.
        Steps are checked in order, each decoded from the previous one held in memory.
        """
        return verify(self._reader, steps, progress)

    # ------------------------------------------------------------------ helpers

    def _marker(self, step: int) -> Marker:
        return self._catalog.marker(step)

    def _manifest(self, step: int, marker: Marker | None = None) -> Manifest:
        return self._catalog.manifest(step, marker)

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise TPDEError("the store was opened read-only (mode='r')", "read_only")

    def _writable(self) -> None:
        """Check the mode and hold the writer lease (taken at the first write)."""
        self._check_writable()
        if self._lease is not None and self._lease.held:
            return
        self._give_back()
        try:
            self._lease = lease_share.share(self._kv, self._kv.describe(), takeover=self._takeover)
        except OSError as e:
            raise TPDEError(f"{self._kv.describe()}: cannot write the writer lease ({e})", "io_error") from e
        self._release = weakref.finalize(self, lease_share.unshare_later, self._lease)

    def _check_lease(self) -> None:
        if self._lease is None:
            raise TPDEError("this store object does not hold the writer lease", "lease_lost")
        self._lease.check()

    def _give_back(self) -> None:
        release, lease, self._release, self._lease = self._release, self._lease, None, None
        if release is not None and release.detach() is not None:
            lease_share.unshare(lease)  # now, not on a thread as a finalizer would
