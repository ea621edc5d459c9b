"""CheckpointStore: a training run's checkpoints as temporal deltas in one zarr store.

Each saved step is a zarr group; each tensor of the state is an array with the same chunk
grid at every step. A step is a *keyframe* (chunks coded standalone) or a *delta* (each
chunk coded against the same chunk of the predecessor step's reconstruction, and against
the step before that as a coding context when both are in the same chain). See
docs/store.md for the layout, the crash-safety argument and the deletion rules.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import pickle
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from . import _core
from . import cross_state as xs
from .background import BackgroundSaves
from .bounds import BoundSpec, ErrorBounds, describe
from .chunking import Box, ChunkGrid, choose_chunks, parse_index
from .errors import TPDEError
from .kvstore import KeyValueStore, open_zarr_store
from .progress import byte_progress, wanted
from .state_tree import flatten_state, unflatten_state
from .store_lossy import LOSSLESS, TensorBound, encode_lossy, resolve_bounds
from .store_layout import (
    COMMITS,
    DELTA,
    KEYFRAME,
    ROOT_ATTRS,
    ROOT_GROUP,
    STEPS,
    STORE_FORMAT,
    ArrayEntry,
    Manifest,
    Marker,
    array_prefix,
    commit_key,
    group_bytes,
    json_bytes,
    step_prefix,
    zarray_bytes,
)
from .torch_adapter import (
    ArraySpec,
    alias_key,
    from_storage,
    is_array,
    pickle_to_storage,
    storage_dtype,
    to_storage,
)

DEFAULT_KEYFRAME_EVERY = 16
_PREDICTION_COST = 200  # manifest bytes of a predicted chunk (its coefficients, a share of the terms)
DEFAULT_CHUNK_ELEMENTS = 2**20
_MODES = ("r", "r+", "a", "w", "w-")


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

    @property
    def ratio(self) -> float:
        """Uncompressed bytes over stored bytes."""
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else math.inf


class _Coded(NamedTuple):
    """What saving one chunk produced."""

    stored: int  # bytes written
    crc32c: int  # content hash of the chunk's data
    changed: int  # positions that differ from the reference
    coefs: list | None = None  # cross-state prediction coefficients; None: coded against the base


@dataclass
class _Snapshot:
    """A step's reconstruction kept in memory: the reference for the next delta."""

    step: int
    arrays: dict[str, np.ndarray]
    entries: dict[str, ArrayEntry]


# What `save(..., error_bound=)` accepts: see its docstring.
ErrorBoundArg = ErrorBounds | BoundSpec | dict | Callable[[str], BoundSpec | dict | None] | None


class _SaveJob(NamedTuple):
    """A save's checked arguments and its owned copy of the state (see `_prepare_save`)."""

    step: int
    tree: object
    arrays: dict[str, np.ndarray]
    specs: dict[str, ArraySpec]
    meta: dict | None
    error_bound: object
    requested: object


class CheckpointStore:
    """Checkpoints of one training run, stored as keyframes and deltas in a zarr store.

    `store` is a path, an fsspec URL or any zarr v3 `Store`. `mode`: "r" read only,
    "r+" existing store, "a" open or create, "w" create (erasing what is there),
    "w-" create, failing if something is there. `keyframe_every` and `chunk_elements`
    apply to steps this object saves (None: the store's setting, else the default).
    `workers` threads code chunks in parallel. `progress`: None shows a bar for large
    saves and loads on a terminal, True/False forces it.
    """

    def __init__(
        self,
        store: object,
        mode: str = "a",
        *,
        keyframe_every: int | None = None,
        chunk_elements: int | None = None,
        workers: int | None = None,
        progress: bool | None = None,
    ):
        if mode not in _MODES:
            raise TPDEError(f"mode must be one of {_MODES}, not {mode!r}", "invalid_argument")
        for what, value in (("keyframe_every", keyframe_every), ("chunk_elements", chunk_elements),
                            ("workers", workers)):
            if value is not None:
                _positive(what, value)
        self.mode = mode
        self._kv = KeyValueStore(open_zarr_store(store, read_only=mode == "r"))
        self.workers = workers or min(32, os.cpu_count() or 1)
        self.progress = progress
        self._recent: list[_Snapshot] = []
        self._background = BackgroundSaves()
        settings = self._open(mode)
        self.keyframe_every = keyframe_every or settings.get("keyframe_every", DEFAULT_KEYFRAME_EVERY)
        self.chunk_elements = chunk_elements or settings.get("chunk_elements", DEFAULT_CHUNK_ELEMENTS)
        if not settings:
            self._create(self.keyframe_every, self.chunk_elements)

    # ------------------------------------------------------------------ opening

    def _open(self, mode: str) -> dict:
        """The store's settings ({} when a new store is to be created), checking `mode`."""
        where = self._kv.describe()
        local_root = getattr(self._kv.store, "root", None)
        missing = local_root is not None and not os.path.isdir(local_root)
        if missing and mode in ("r", "r+"):
            raise TPDEError(f"no tpde store at {where} (it does not exist)", "not_a_store")
        if missing or self._kv.is_empty():
            if mode in ("r", "r+"):
                raise TPDEError(f"no tpde store at {where} (it is empty)", "not_a_store")
            return {}
        if mode == "w-":
            raise TPDEError(f"{where} already holds data; use mode 'a' or 'w'", "store_exists")
        raw = self._kv.get(ROOT_ATTRS)
        try:
            settings = json.loads(raw)["tpde_store"] if raw else None
        except (ValueError, KeyError, TypeError):
            settings = None
        if not isinstance(settings, dict):
            hint = " (mode 'w' erases only tpde stores)" if mode == "w" else ""
            raise TPDEError(f"{where} is not a tpde checkpoint store{hint}", "not_a_store")
        if mode == "w":
            for key in self._kv.list_dir(""):
                self._kv.delete(key)  # a folder key removes the folder
            return {}
        if settings.get("format") != STORE_FORMAT:
            raise TPDEError(
                f"{where} is a tpde store of format {settings.get('format')}; "
                f"this tpde reads format {STORE_FORMAT}",
                "unsupported_version",
            )
        return settings

    def _create(self, keyframe_every: int, chunk_elements: int) -> None:
        settings = {
            "format": STORE_FORMAT,
            "keyframe_every": keyframe_every,
            "chunk_elements": chunk_elements,
            "created": time.time(),
            "tpde_version": _core.__version__,
        }
        for key, value in (
            (ROOT_GROUP, group_bytes()),
            (f"{STEPS}/{ROOT_GROUP}", group_bytes()),
            (ROOT_ATTRS, json_bytes({"tpde_store": settings})),
        ):
            self._kv.set(key, value)

    def __repr__(self) -> str:
        return f"CheckpointStore({self._kv.describe()!r}, mode={self.mode!r})"

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for background saves (raising the first failure), then drop the in-memory
        reconstructions (the store itself needs no closing)."""
        try:
            self._background.shutdown()
        finally:
            self._recent = []

    # ------------------------------------------------------------------ listing

    def steps(self) -> list[int]:
        """Committed steps, ascending."""
        return sorted(int(n) for n in self._kv.list_dir(COMMITS) if n.isdigit())

    def tensors(self, step: int) -> list[str]:
        """Names of the arrays stored at `step`, in state order."""
        return list(self._manifest(step).arrays)

    def info(self, step: int) -> StepInfo:
        """Kind, base step, sizes and per-tensor statistics of a step."""
        marker = self._marker(step)
        manifest = self._manifest(step, marker)
        tensors = {name: _tensor_info(entry) for name, entry in manifest.arrays.items()}
        return _step_info(marker, tensors, manifest)

    def history(self) -> list[StepInfo]:
        """Summaries of every committed step (from the commit markers only)."""
        return [_step_info(self._marker(s)) for s in self.steps()]

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
        progress: bool | None = None,
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
        """
        self._background.wait()  # earlier save_async calls come first
        job = self._prepare_save(step, state, allow_pickle=allow_pickle, meta=meta, error_bound=error_bound)
        return self._write_step(job, cross_state=cross_state, progress=progress)

    def save_async(
        self,
        step: int,
        state: object,
        *,
        allow_pickle: bool = False,
        meta: dict | None = None,
        error_bound: ErrorBoundArg = None,
        cross_state: bool = False,
    ) -> Future:
        """Like `save`, but codes and writes the step on a background thread.

        Returns once the state's tensors are copied to host memory (training may go on
        changing them), with a `concurrent.futures.Future` of the step's `StepInfo`. Saves
        run one at a time in call order; with two in flight, a third call waits. The step
        becomes visible to readers when its future is done. `wait()` (and `close()`, and a
        plain `save`) wait for all of them and raise the first failure. Bad arguments are
        refused at once, as by `save`.
        """
        job = self._prepare_save(step, state, allow_pickle=allow_pickle, meta=meta, error_bound=error_bound)
        return self._background.submit(job.step, self._write_step, job, cross_state, False)

    def wait(self) -> None:
        """Wait for every `save_async` to finish; raises the first one's error, if any."""
        self._background.wait()

    def _prepare_save(self, step, state, *, allow_pickle, meta, error_bound) -> _SaveJob:
        """Checks of a save and an owned copy of the state's arrays (the part done at once)."""
        self._check_writable()
        step = _check_step(step)
        if self._kv.exists(commit_key(step)) or self._background.pending(step):
            raise TPDEError(f"step {step} already exists; delete it first", "step_exists")
        try:
            json_bytes(meta)
        except (TypeError, ValueError) as e:
            raise TPDEError(f"meta must be JSON-serializable ({e})", "invalid_argument") from e
        requested = describe(error_bound)  # checks a single bound before anything is written
        tree, leaves = flatten_state(
            state, is_array=is_array, alias_key=alias_key, allow_pickle=allow_pickle
        )
        arrays: dict[str, np.ndarray] = {}
        specs: dict[str, ArraySpec] = {}
        for leaf in leaves:
            convert = pickle_to_storage if leaf.pickled else to_storage
            arrays[leaf.name], specs[leaf.name] = convert(leaf.value)
        return _SaveJob(step, tree, arrays, specs, meta, error_bound, requested)

    def _write_step(self, job: _SaveJob, cross_state: bool, progress: bool | None) -> StepInfo:
        """Code the prepared arrays against the latest committed step and commit the step."""
        step, tree, arrays, specs, meta, error_bound, requested = job
        chunks = {n: choose_chunks(s.storage_shape, self.chunk_elements) for n, s in specs.items()}

        base, prev, depth = self._references(step, specs, chunks)
        kind = KEYFRAME if base is None else DELTA
        bounds = resolve_bounds(error_bound, specs, arrays, step, base)
        coded_bounds = {n: b.resolved for n, b in bounds.items() if b.resolved is not None}
        prev_step = None if prev is None else prev.step

        self._kv.delete_prefix(step_prefix(step))  # leftovers of a crashed attempt
        grids = {n: ChunkGrid(specs[n].storage_shape, chunks[n]) for n in arrays}
        plan: xs.Plan = {}
        if cross_state and base is not None:
            plan = xs.plan_step(xs.find_links(specs, chunks), set(coded_bounds))
        tasks = [
            (tuple(xs.coding_order(group, plan)), i)
            for group in xs.groups(list(arrays), [plan])
            for i in grids[group[0]].indices()
        ]
        sizes = [sum(math.prod(chunks[n]) * arrays[n].itemsize for n in names) for names, _ in tasks]

        def encode_group(names: tuple[str, ...], index: tuple) -> list[_Coded]:
            coded_here: dict[str, np.ndarray] = {}  # this step's reconstructions of the group

            def chunk_of(name: str, offset: int) -> np.ndarray:
                return coded_here[name] if offset == 0 else grids[name].extract(base.arrays[name], index)

            results = []
            for name in names:
                result, coded_here[name] = encode_chunk(name, index, chunk_of)
                results.append(result)
            return results

        def encode_chunk(name: str, index: tuple, chunk_of) -> tuple[_Coded, np.ndarray]:
            grid = grids[name]
            dtype = specs[name].codec_dtype
            data = grid.extract(arrays[name], index)
            ref = None if base is None else grid.extract(base.arrays[name], index)
            ctx = None if prev is None else grid.extract(prev.arrays[name], index)
            bound = coded_bounds.get(name)

            def code_against(reference, context):
                code = dict(reference=reference, prev_reference=context, dtype=dtype)
                if bound is not None:
                    return encode_lossy(grid, index, data, code, bound)
                return _core.encode(data, **code), data

            coefs = None
            try:
                blob, recon = code_against(ref, ctx)
                if name in plan:
                    terms = xs.term_arrays(plan[name], chunk_of)
                    coefs = xs.fit(data, ref, terms, dtype)
                    if coefs is not None:  # keep the prediction only where it codes smaller
                        predicted = code_against(xs.predicted_reference(ref, terms, coefs, dtype), None)
                        if len(predicted[0]) + _PREDICTION_COST < len(blob):
                            blob, recon = predicted
                        else:
                            coefs = None
            except TPDEError as e:
                raise TPDEError(f"step {step}, tensor {name!r}: {e}", e.code) from e
            data = recon
            if bound is not None:
                arrays[name][grid.region(index)] = data[grid.inner(index)]
            self._kv.set_uncommitted(f"{array_prefix(step, name)}/{grid.key(index)}", blob)
            changed = 0 if ref is None else _count_changed(data, ref)
            return _Coded(len(blob), _core.fingerprint(data), changed, coefs), data

        per_group = self._run(encode_group, tasks, f"save step {step}", progress, sizes)
        coded = [(name, index, result) for (names, index), results in zip(tasks, per_group)
                 for name, result in zip(names, results)]
        entries = self._entries(specs, chunks, coded, kind, bounds, plan)
        manifest = Manifest(
            step, kind, None if base is None else base.step, prev_step, depth, tree, entries,
            dict(meta or {}), _core.__version__, requested,
        )
        marker = self._commit(manifest)
        self._recent = [s for s in (base, _Snapshot(step, arrays, entries)) if s is not None]
        tensors = {name: _tensor_info(entry) for name, entry in entries.items()}
        return _step_info(marker, tensors, manifest)

    def _references(
        self, step: int, specs: dict[str, ArraySpec], chunks: dict[str, tuple]
    ) -> tuple[_Snapshot | None, _Snapshot | None, int]:
        """Base and context reconstructions for a new step, and its depth (keyframe: 0)."""
        earlier = [s for s in self.steps() if s < step]
        if not earlier:
            return None, None, 0
        marker = self._marker(earlier[-1])
        if marker.depth + 1 >= self.keyframe_every:
            return None, None, 0
        manifest = self._manifest(marker.step, marker)
        for name, spec in specs.items():
            entry = manifest.arrays.get(name)
            if entry is None or entry.spec.kind != spec.kind:
                return None, None, 0
            if entry.layout() != (spec.codec_dtype, spec.storage_shape, chunks[name]):
                return None, None, 0
        base, prev = self._cached(manifest)
        if base is None:
            base, prev = self._reconstruct_for_saving(manifest)
        return base, prev, marker.depth + 1

    def _cached(self, manifest: Manifest) -> tuple[_Snapshot | None, _Snapshot | None]:
        """The in-memory reconstructions of `manifest`'s step and its base, if current."""
        by_step = {s.step: s for s in self._recent}
        base = by_step.get(manifest.step)
        if base is None or any(
            base.entries.get(n) is None or base.entries[n].crc32c != e.crc32c
            for n, e in manifest.arrays.items()
        ):
            return None, None
        if manifest.kind == KEYFRAME:
            return base, None
        prev = by_step.get(manifest.base_step)
        return (base, prev) if prev is not None else (None, None)

    def _reconstruct_for_saving(self, manifest: Manifest) -> tuple[_Snapshot, _Snapshot | None]:
        """Decode the predecessor (and its base, the coding context) from the store."""
        chain = self._chain(manifest.step)
        names = list(manifest.arrays)
        last, before = self._reconstruct(chain, manifest, names, keep_base=True)
        base = _Snapshot(manifest.step, last, manifest.arrays)
        if manifest.kind == KEYFRAME:
            return base, None
        return base, _Snapshot(manifest.base_step, before, {})

    def _entries(
        self, specs, chunks, coded: list[tuple[str, tuple, _Coded]], kind, bounds: dict[str, TensorBound],
        plan: xs.Plan,
    ) -> dict[str, ArrayEntry]:
        """Manifest entries from the coded chunks (each array's chunks come in C order)."""
        per_name: dict[str, list[_Coded]] = {n: [] for n in specs}
        for name, _, result in coded:
            per_name[name].append(result)
        entries = {}
        for name, spec in specs.items():
            results = per_name[name]
            changed = None if kind == KEYFRAME else sum(c.changed for c in results)
            bound = bounds.get(name, LOSSLESS)
            coefs = [c.coefs for c in results]
            predict = None
            if name in plan and any(c is not None for c in coefs):
                predict = {"terms": xs.terms_to_json(plan[name]), "coefs": coefs}
            entries[name] = ArrayEntry(
                name, spec, chunks[name], [c.crc32c for c in results], sum(c.stored for c in results),
                changed, bound.resolved, bound.spec, bound.rms, bound.rms_step, predict,
            )
        return entries

    def _commit(self, manifest: Manifest) -> Marker:
        """Write a step's metadata, then its manifest, then (last) its commit marker."""
        step = manifest.step
        meta: dict[str, bytes] = {f"{step_prefix(step)}/{ROOT_GROUP}": group_bytes()}
        for name, entry in manifest.arrays.items():
            prefix = array_prefix(step, name)
            parts = name.split("/")
            for i in range(1, len(parts)):
                meta[f"{step_prefix(step)}/{'/'.join(parts[:i])}/{ROOT_GROUP}"] = group_bytes()
            meta[f"{prefix}/.zarray"] = zarray_bytes(entry.spec, entry.chunks)
        self._run(self._kv.set_uncommitted, list(meta.items()), "", False, [len(v) for v in meta.values()])
        body = manifest.to_bytes()
        self._kv.set(f"{step_prefix(step)}/{ROOT_ATTRS}", body)
        marker = Marker(
            step,
            manifest.kind,
            manifest.base_step,
            manifest.prev_step,
            manifest.depth,
            sum(e.raw_bytes for e in manifest.arrays.values()),
            sum(e.stored_bytes for e in manifest.arrays.values()) + len(body),
            len(manifest.arrays),
            zlib.crc32(body),
            time.time(),
            any(e.error_bound is not None for e in manifest.arrays.values()),
            any(e.predict is not None for e in manifest.arrays.values()),
        )
        self._kv.set(commit_key(step), marker.to_bytes())
        return marker

    # ------------------------------------------------------------------ loading

    def load(self, step: int, *, allow_pickle: bool = False, progress: bool | None = None) -> object:
        """The state saved at `step`: same nesting, dtypes and values, tensors on cpu.

        Pickled objects (saved with allow_pickle=True) are unpickled only if
        `allow_pickle=True` is passed here too; otherwise loading them raises.
        """
        manifest = self._manifest(step)
        pickled = [n for n, e in manifest.arrays.items() if e.spec.kind == "pickle"]
        if pickled and not allow_pickle:
            raise TPDEError(
                f"step {step} holds pickled objects ({', '.join(pickled[:3])}); pass "
                "allow_pickle=True to load them, only from a store you trust",
                "pickle_refused",
            )
        names = list(manifest.arrays)
        arrays, _ = self._reconstruct(self._chain(step), manifest, names, progress=progress)
        objects = {n: from_storage(arrays[n], manifest.arrays[n].spec) for n in names}
        return unflatten_state(manifest.tree, objects, unpickle=lambda n: pickle.loads(objects[n]))

    def load_tensor(self, step: int, name: str, index: object = None) -> object:
        """One tensor (or a slice of it) of `step`, reading only the chunks it overlaps.

        `index` is a basic index over the tensor's axes: an int, a slice, or a tuple of
        them (e.g. `(slice(0, 128),)`). Reads at most (depth + 1) x (overlapping chunks)
        chunks, where depth is the number of deltas back to the keyframe.
        """
        manifest = self._manifest(step)
        entry = manifest.arrays.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(manifest.arrays), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise TPDEError(f"step {step} has no tensor {name!r}{hint}", "unknown_tensor")
        if entry.spec.kind == "pickle":
            raise TPDEError(f"{name!r} at step {step} is a pickled object, not a tensor", "unknown_tensor")
        box, local = parse_index(index, entry.spec.shape)
        storage_box = box + tuple((0, s) for s in entry.spec.storage_shape[len(box):])
        arrays, _ = self._reconstruct(self._chain(step), manifest, [name], boxes={name: storage_box})
        picked = np.array(arrays[name][local], order="C")
        extra = len(entry.spec.storage_shape) - len(entry.spec.shape)
        shape = picked.shape[: picked.ndim - extra]
        return from_storage(picked, replace(entry.spec, shape=shape, storage_shape=picked.shape))

    def _chain(self, step: int) -> list[Marker]:
        """Markers from the keyframe of `step` up to `step`, checked for consistency."""
        chain = [self._marker(step)]
        while chain[-1].kind == DELTA:
            base = chain[-1].base_step
            if base is None or base >= chain[-1].step:
                raise TPDEError(f"step {chain[-1].step} has an invalid base step {base}", "corrupt")
            try:
                chain.append(self._marker(base))
            except TPDEError as e:
                if e.code != "unknown_step":
                    raise
                raise TPDEError(
                    f"broken chain: step {chain[-1].step} is a delta against step {base}, "
                    "which is missing",
                    "missing_reference",
                ) from e
        chain.reverse()
        for i, marker in enumerate(chain):
            if marker.prev_step is not None and (i < 2 or chain[i - 2].step != marker.prev_step):
                raise TPDEError(
                    f"step {marker.step} names context step {marker.prev_step}, which is not "
                    "two steps back in its chain",
                    "corrupt",
                )
        return chain

    def _reconstruct(
        self,
        chain: list[Marker],
        manifest: Manifest,
        names: Sequence[str],
        *,
        boxes: dict[str, Box] | None = None,
        keep_base: bool = False,
        seed: dict[int, dict[str, np.ndarray]] | None = None,
        progress: bool | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Decode `names` at the chain's last step (and its base step if `keep_base`).

        Only chunks overlapping `boxes[name]` are read; returned arrays hold the box.
        `seed` maps steps of the chain to reconstructions already in memory. Tensors
        coded against cross-state predictions are decoded together with their inputs.
        """
        seed = seed or {}
        steps = _ChainSteps(self, chain, manifest)
        grids = {n: ChunkGrid(manifest.arrays[n].spec.storage_shape, manifest.arrays[n].chunks) for n in names}
        boxes = {n: (boxes or {}).get(n) or grids[n].full_box() for n in names}
        out, out_base = {}, {}
        for n in names:
            dtype = storage_dtype(manifest.arrays[n].spec.codec_dtype)
            shape = tuple(hi - lo for lo, hi in boxes[n])
            out[n] = np.empty(shape, dtype)
            if keep_base and len(chain) > 1:
                out_base[n] = np.empty(shape, dtype)
        tasks = []
        for group in xs.groups(list(names), steps.plans()):
            wanted_here = [n for n in group if n in out]
            grid = grids[wanted_here[0]]
            indices = sorted({i for n in wanted_here for i in grid.overlapping(boxes[n])})
            tasks += [(tuple(group), i) for i in indices]
        sizes = [sum(steps.chunk_bytes(n) for n in group) for group, _ in tasks]

        def decode_group(group: tuple[str, ...], index: tuple) -> None:
            grid = grids[next(n for n in group if n in out)]
            recon = self._decode_chain(steps, group, grid, index, seed)
            for name in group:
                if name not in out:
                    continue
                expected = manifest.arrays[name].crc32c[int(np.ravel_multi_index(index, grid.grid))]
                if _core.fingerprint(recon[name][-1]) != expected:
                    raise TPDEError(
                        f"step {manifest.step}, tensor {name!r}, chunk {grid.key(index)}: content "
                        "hash mismatch after reconstruction",
                        "checksum",
                    )
                grid.copy_into(out[name], boxes[name], index, recon[name][-1])
                if name in out_base:
                    grid.copy_into(out_base[name], boxes[name], index, recon[name][-2])

        self._run(decode_group, tasks, f"load step {manifest.step}", progress, sizes)
        return out, out_base

    def _decode_chain(self, steps: _ChainSteps, group, grid, index, seed) -> dict[str, list[np.ndarray]]:
        """Reconstructions of one chunk of each tensor of `group` at the last two steps of
        the chain where it exists (the last step for every tensor asked for)."""
        chain = steps.chain
        start, recon = 0, {}
        for j in range(len(chain) - 1, -1, -1):
            here = steps.present(j, group)
            if not all(n in seed.get(chain[j].step, {}) for n in here):
                continue
            needs_ctx = j + 1 < len(chain) and chain[j + 1].prev_step is not None
            if needs_ctx and (j == 0 or not all(n in seed.get(chain[j - 1].step, {}) for n in here)):
                continue
            for n in here:
                recon[n] = [grid.extract(seed[chain[j].step][n], index)]
                if needs_ctx:
                    recon[n].insert(0, grid.extract(seed[chain[j - 1].step][n], index))
            start = j + 1
            break
        key = grid.key(index)
        flat = int(np.ravel_multi_index(index, grid.grid))
        wanted = [(j, n) for j in range(start, len(chain)) for n in steps.present(j, group)]
        blobs = dict(zip(wanted, self._kv.get_many(
            [f"{array_prefix(chain[j].step, n)}/{key}" for j, n in wanted])))
        for j in range(start, len(chain)):
            marker, plan = chain[j], steps.plan(j)
            decoded: dict[str, np.ndarray] = {}

            def chunk_of(name: str, offset: int) -> np.ndarray:
                return decoded[name] if offset == 0 else recon[name][-1]

            for name in xs.coding_order(steps.present(j, group), plan):
                where = f"step {marker.step}, tensor {name!r}, chunk {key}"
                blob = blobs[(j, name)]
                if blob is None:
                    raise TPDEError(f"{where}: chunk is missing from the store", "missing_reference")
                ref = recon[name][-1] if name in recon else None
                ctx = recon[name][-2] if marker.prev_step is not None and name in recon else None
                dtype = steps.dtype(name)
                try:
                    coefs = steps.coefs(j, name, flat)
                    if coefs is not None:
                        if ref is None:
                            raise TPDEError("predicted chunk in a keyframe", "corrupt")
                        terms = xs.term_arrays(plan[name], chunk_of)
                        ref = xs.predicted_reference(ref, terms, coefs, steps.codec_dtype(name))
                        ctx = None
                    arr = _core.decode(blob, reference=ref, prev_reference=ctx)
                except KeyError as e:
                    raise TPDEError(f"{where}: prediction input {e} is not in the chain", "corrupt") from e
                except TPDEError as e:
                    raise TPDEError(f"{where}: {e}", e.code) from e
                if arr.dtype.itemsize != dtype.itemsize or arr.size != math.prod(grid.chunks):
                    raise TPDEError(
                        f"{where}: chunk holds {arr.dtype} {arr.shape}, expected {dtype} {grid.chunks}",
                        "corrupt",
                    )
                decoded[name] = arr.view(dtype).reshape(grid.chunks)
            for name, arr in decoded.items():
                recon[name] = [*recon.get(name, [])[-1:], arr]
        return recon

    # ------------------------------------------------------------------ deleting

    def delete(self, step: int) -> None:
        """Delete a step. Refuses (TPDEError "has_dependents") if a later delta needs it."""
        self._check_writable()
        self._background.wait()
        self._marker(step)
        dependents = self._dependents([step], self.history())
        if dependents:
            raise TPDEError(
                f"cannot delete step {step}: step(s) {', '.join(map(str, dependents))} are "
                "coded against it; delete them first, or use prune() which keeps what is needed",
                "has_dependents",
            )
        self._delete_committed(step)

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
        """
        self._check_writable()
        self._background.wait()
        if keep_last is None and keep_every is None and not keep:
            raise TPDEError("prune needs keep_last, keep_every or keep", "invalid_argument")
        history = self.history()
        steps = [h.step for h in history]
        wanted_steps = set(keep)
        if keep_last:
            wanted_steps.update(steps[-keep_last:])
        if keep_every:
            wanted_steps.update(s for s in steps if s % keep_every == 0)
        by_step = {h.step: h for h in history}
        needed: set[int] = set()
        todo = [s for s in wanted_steps if s in by_step]
        while todo:
            s = todo.pop()
            if s in needed:
                continue
            needed.add(s)
            todo.extend(d for d in (by_step[s].base_step, by_step[s].prev_step) if d is not None)
        doomed = sorted((s for s in steps if s not in needed), reverse=True)
        if not dry_run:
            for s in doomed:
                self._delete_committed(s)
        return sorted(doomed)

    def uncommitted(self) -> list[str]:
        """Leftovers of interrupted saves or deletes: step folders without a commit marker."""
        committed = {str(s) for s in self.steps()}
        folders = [n for n in self._kv.list_dir(STEPS) if not n.startswith(".")]
        stray = [f"{COMMITS}/{n}" for n in self._kv.list_dir(COMMITS) if not n.isdigit()]
        return [f"{STEPS}/{n}" for n in folders if n not in committed] + stray

    def clean(self) -> list[str]:
        """Remove `uncommitted()` leftovers; run it only while no other process is saving."""
        self._check_writable()
        self._background.wait()
        leftovers = self.uncommitted()
        for prefix in leftovers:
            if prefix.startswith(f"{STEPS}/"):
                self._kv.delete_prefix(prefix)
            else:
                self._kv.delete(prefix)
        return leftovers

    def _dependents(self, steps: Iterable[int], history: list[StepInfo]) -> list[int]:
        doomed = set(steps)
        return [
            h.step for h in history
            if h.step not in doomed and (h.base_step in doomed or h.prev_step in doomed)
        ]

    def _delete_committed(self, step: int) -> None:
        self._kv.delete(commit_key(step))  # uncommit first: a crash leaves only leftovers
        self._kv.delete_prefix(step_prefix(step))
        self._recent = [s for s in self._recent if s.step != step]

    # ------------------------------------------------------------------ verifying

    def verify(self, steps: Iterable[int] | None = None, *, progress: bool | None = None) -> list[str]:
        """Reconstruct every tensor of `steps` (default: all) and check every content hash.

        Returns a list of problems, one line each; empty means every step is intact.
        Steps are checked in order, each decoded from the previous one held in memory.
        """
        problems: list[str] = []
        memory: dict[int, dict[str, np.ndarray]] = {}
        for step in sorted(self.steps() if steps is None else steps):
            try:
                manifest = self._manifest(step)
                chain = self._chain(step)
                names = list(manifest.arrays)
                arrays, _ = self._reconstruct(chain, manifest, names, seed=memory, progress=progress)
            except TPDEError as e:
                problems.append(f"step {step}: {e}")
                continue
            memory = {s: a for s, a in memory.items() if s in (manifest.base_step, manifest.step)}
            memory[step] = arrays
        return problems

    # ------------------------------------------------------------------ helpers

    def _marker(self, step: int) -> Marker:
        step = _check_step(step)
        data = self._kv.get(commit_key(step))
        if data is None:
            known = self.steps()
            hint = f"; steps are {_summarize(known)}" if known else "; the store has no steps"
            raise TPDEError(f"unknown step {step}{hint}", "unknown_step")
        return Marker.from_bytes(step, data)

    def _manifest(self, step: int, marker: Marker | None = None) -> Manifest:
        marker = marker or self._marker(step)
        return Manifest.from_bytes(marker, self._kv.get(f"{step_prefix(marker.step)}/{ROOT_ATTRS}"))

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise TPDEError("the store was opened read-only (mode='r')", "read_only")

    def _run(self, fn, tasks, description, progress, sizes) -> list:
        """Run fn(*task) for every task on the thread pool, in order; first error wins.

        `sizes` are the tasks' byte counts, for the progress bar.
        """
        if not tasks:
            return []
        total_bytes = sum(sizes)
        show = wanted(self.progress if progress is None else progress, total_bytes)
        with byte_progress(description, total_bytes, show) as advance:
            if self.workers == 1 or len(tasks) == 1:
                results = []
                for task, size in zip(tasks, sizes):
                    results.append(fn(*task))
                    advance(size)
                return results
            with ThreadPoolExecutor(self.workers) as pool:
                futures = []
                for task, size in zip(tasks, sizes):
                    future = pool.submit(fn, *task)
                    future.add_done_callback(lambda _f, n=size: advance(n))
                    futures.append(future)
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                for f in pending:
                    f.cancel()
                for f in done:
                    if f.exception() is not None:
                        raise f.exception()
                return [f.result() for f in futures]


class _ChainSteps:
    """The manifests a chain decode needs: only the last step's, unless some step of the
    chain has cross-state predictions (its commit marker says so); then every step's."""

    def __init__(self, store: CheckpointStore, chain: list[Marker], manifest: Manifest):
        self.chain = chain
        self.last = manifest
        self.manifests: list[Manifest] | None = None
        if any(m.predicted for m in chain):
            self.manifests = [manifest if m.step == manifest.step else store._manifest(m.step, m) for m in chain]
        self._plans = [self._plan_of(j) for j in range(len(chain))]

    def _plan_of(self, j: int) -> xs.Plan:
        if self.manifests is None:
            return {}
        plan = {}
        for name, entry in self.manifests[j].arrays.items():
            if entry.predict is None:
                continue
            try:
                plan[name] = xs.terms_from_json(entry.predict["terms"])
            except (KeyError, TypeError, ValueError) as e:
                raise TPDEError(f"step {self.chain[j].step}, tensor {name!r}: bad prediction entry ({e})",
                                "corrupt") from e
        try:
            xs.coding_order(list(plan), plan)
        except ValueError as e:
            raise TPDEError(f"step {self.chain[j].step}: {e}", "corrupt") from e
        return plan

    def plans(self) -> list[xs.Plan]:
        return self._plans

    def plan(self, j: int) -> xs.Plan:
        return self._plans[j]

    def present(self, j: int, group) -> list[str]:
        """The tensors of `group` stored at chain step j."""
        if self.manifests is None:
            return list(group)
        return [n for n in group if n in self.manifests[j].arrays]

    def entry(self, name: str) -> ArrayEntry:
        for m in reversed(self.manifests or [self.last]):
            if name in m.arrays:
                return m.arrays[name]
        raise TPDEError(f"tensor {name!r} is not in the chain of step {self.last.step}", "corrupt")

    def coefs(self, j: int, name: str, flat_index: int) -> list | None:
        if self.manifests is None:
            return None
        predict = self.manifests[j].arrays[name].predict
        if predict is None:
            return None
        try:
            coefs = predict["coefs"][flat_index]
            return None if coefs is None else [float(c) for c in coefs]
        except (IndexError, KeyError, TypeError, ValueError) as e:
            raise TPDEError(f"step {self.chain[j].step}, tensor {name!r}: bad prediction entry", "corrupt") from e

    def codec_dtype(self, name: str) -> str:
        return self.entry(name).spec.codec_dtype

    def dtype(self, name: str) -> np.dtype:
        return storage_dtype(self.codec_dtype(name))

    def chunk_bytes(self, name: str) -> int:
        entry = self.entry(name)
        return math.prod(entry.chunks) * storage_dtype(entry.spec.codec_dtype).itemsize


def _count_changed(data: np.ndarray, ref: np.ndarray) -> int:
    bits = np.dtype(f"u{data.itemsize}")
    return int(np.count_nonzero(data.view(bits) != ref.view(bits)))


def _tensor_info(entry: ArrayEntry) -> TensorInfo:
    numel = math.prod(entry.spec.storage_shape)
    changed = None if entry.changed is None else (entry.changed / numel if numel else 0.0)
    return TensorInfo(
        entry.name, entry.spec.kind, entry.spec.dtype, entry.spec.shape, entry.chunks,
        entry.raw_bytes, entry.stored_bytes, changed, entry.error_bound, entry.bound,
        entry.rms, entry.rms_step, _predicted_share(entry),
    )


def _predicted_share(entry: ArrayEntry) -> float:
    coefs = (entry.predict or {}).get("coefs") or []
    return sum(c is not None for c in coefs) / len(coefs) if coefs else 0.0


def _step_info(marker: Marker, tensors=None, manifest: Manifest | None = None) -> StepInfo:
    return StepInfo(
        marker.step, marker.kind, marker.base_step, marker.prev_step, marker.depth,
        marker.raw_bytes, marker.stored_bytes, marker.time, tensors,
        None if manifest is None else manifest.meta, marker.lossy,
        None if manifest is None else manifest.error_bounds, marker.predicted,
    )


def _check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise TPDEError(f"a step is an integer >= 0, not {step!r}", "invalid_argument")
    return int(step)


def _positive(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TPDEError(f"{what} must be a positive integer, not {value!r}", "invalid_argument")
    return value


def _summarize(steps: list[int]) -> str:
    if len(steps) <= 6:
        return ", ".join(map(str, steps))
    return f"{steps[0]}, {steps[1]}, {steps[2]}, ..., {steps[-1]} ({len(steps)} steps)"
