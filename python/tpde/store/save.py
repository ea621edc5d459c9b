"""Saving a step: the checks and owned copy made at once (`prepare_save`), then coding
every chunk against the reference step and the commit protocol (`StepWriter`).

Commit protocol: chunks and array metadata of the new step are written first (in place:
nothing refers to them yet), then the step's manifest, then, last, its commit marker
(`commits/<step>`, holding the CRC32 of the manifest bytes). A step exists only once its
marker does, so a save that dies leaves at most an uncommitted folder (`clean`).
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import _core
from ..bounds import describe
from ..dtypes import storage_dtype
from ..errors import StoreIOError, TPDEError
from ..state.arrays import ArraySpec
from ..state.torch_adapter import alias_key, is_array, pickle_to_storage, shares_memory, to_storage
from ..state.tree import flatten_state
from . import cross_state as xs
from .background import BackgroundSaves
from .blobs import blob_key, encode_blobs
from .bundle import BundleWriter, bundle_key, bundled_names
from .catalog import Catalog, check_step
from .chain import chain_markers
from .grid import ChunkGrid, choose_chunks
from .info import StepInfo, step_info
from .layout import StepLayout, step_metadata
from .load import Reader
from .lossy import LOSSLESS, TensorBound, encode_lossy, resolve_bounds
from .names import check_saved_name
from .parallel import largest_first
from .schema import (
    DELTA,
    KEYFRAME,
    ROOT_ATTRS,
    ArrayEntry,
    Manifest,
    Marker,
    array_prefix,
    commit_key,
    json_bytes,
    step_prefix,
)
from .snapshots import Snapshot, SnapshotCache

RECONSTRUCT_BATCH_BYTES = 256 << 20  # a disk-cached reconstruction decodes this much at a time
PREDICTION_COST = 200  # manifest bytes of a predicted chunk (its coefficients, a share of the terms)


class SaveJob(NamedTuple):
    """A save's checked arguments and its owned copy of the state (see `prepare_save`)."""

    step: int
    tree: object
    arrays: dict[str, np.ndarray]
    specs: dict[str, ArraySpec]
    meta: dict | None
    error_bound: object
    requested: object
    blobs: list = []  # [(BlobEntry, stored bytes)] (blobs.py)
    borrowed: frozenset = frozenset()  # arrays that are the caller's memory: copied chunk by chunk while coding


class Coded(NamedTuple):
    """What saving one chunk produced."""

    stored: int  # bytes written
    crc32c: int  # content hash of the chunk's data
    changed: int  # positions that differ from the reference
    coefs: list | None = None  # cross-state prediction coefficients; None: coded against the base


def prepare_save(
    catalog: Catalog, background: BackgroundSaves, step, state, *, allow_pickle, meta, error_bound, blobs=None,
    copy: bool = True, adopt: bool = False,
) -> SaveJob:
    """Checks of a save and an owned copy of the state's arrays (the part done at once).

    `copy=False` (a save that returns only once the step is written): arrays whose memory
    already has the stored layout are not copied here but chunk by chunk by the coding
    threads, each chunk just before it is coded (`SaveJob.borrowed`). `adopt`: not at
    all; the state's own memory becomes the store's snapshot (nothing changes it later).
    """
    step = check_step(step)
    if catalog.kv.exists(commit_key(step)) or background.pending(step):
        raise TPDEError(f"step {step} already exists; delete it first", "step_exists")
    try:
        json_bytes(meta)
    except (TypeError, ValueError) as e:
        raise TPDEError(f"meta must be JSON-serializable ({e})", "invalid_argument") from e
    requested = describe(error_bound)  # checks a single bound before anything is written
    coded_blobs = encode_blobs(blobs)
    tree, leaves = flatten_state(state, is_array=is_array, alias_key=alias_key, allow_pickle=allow_pickle)
    arrays: dict[str, np.ndarray] = {}
    specs: dict[str, ArraySpec] = {}
    borrowed = set()
    for leaf in leaves:
        check_saved_name(leaf.name, leaf.name)  # before anything is written
    for leaf in leaves:
        if leaf.pickled:
            arrays[leaf.name], specs[leaf.name] = pickle_to_storage(leaf.value)
            continue
        arrays[leaf.name], specs[leaf.name] = to_storage(leaf.value, copy=copy and not adopt)
        if not copy and not adopt and shares_memory(arrays[leaf.name], leaf.value):
            borrowed.add(leaf.name)
    return SaveJob(step=step, tree=tree, arrays=arrays, specs=specs, meta=meta, error_bound=error_bound,
                   requested=requested, blobs=coded_blobs, borrowed=frozenset(borrowed))


class StepWriter:
    """Codes prepared saves against the latest committed step and commits them."""

    def __init__(self, reader: Reader, snapshots: SnapshotCache, keyframe_every: int, chunk_elements: int,
                 bundle_below: int = 0):
        self.reader = reader
        self.catalog = reader.catalog
        self.kv = reader.catalog.kv
        self.pool = reader.pool
        self.snapshots = snapshots
        self.keyframe_every = keyframe_every
        self.chunk_elements = chunk_elements
        self.bundle_below = bundle_below  # arrays of fewer elements go to the step's bundle (bundle.py)
        self.before_commit: Callable[[], None] | None = None  # the writer lease's check

    def write(self, job: SaveJob, cross_state: bool, progress, level: str = "default") -> StepInfo:
        """Code the prepared arrays against the latest committed step and commit the step.

        If anything fails before the commit marker is in place, the step stays invisible;
        what it wrote is a leftover (`uncommitted()`, removed by `clean()` or by the next
        save of that step). An OSError becomes a `StoreIOError` naming the step (and the
        tensor and chunk, for a chunk write).
        """
        flusher = self.kv.flusher()  # durable local stores: the fsyncs, on threads of their own
        try:
            return self._write(job, cross_state, progress, level, flusher)
        except OSError as e:
            if isinstance(e, StoreIOError):
                raise
            state = "is committed, but" if _exists(self.kv, commit_key(job.step)) else "was not saved:"
            raise StoreIOError(f"step {job.step} {state} {_reason(e)}", e.errno) from e
        finally:
            if flusher is not None:
                flusher.close()
            _core.trim_scratch()  # the coder's work buffers, kept between chunks, not between saves

    def _write(self, job: SaveJob, cross_state: bool, progress, level: str, flusher=None) -> StepInfo:
        """The save itself; `level`: the chunk coder's level for lossless chunks ("default" or "fast")."""
        step, sources, specs, blobs = job.step, job.arrays, job.specs, job.blobs
        created: set[str] = set()  # local folders this save makes (synced before the marker)
        chunks = {n: choose_chunks(s.storage_shape, self.chunk_elements) for n, s in specs.items()}
        bundled = bundled_names({n: s.storage_shape for n, s in specs.items()}, self.bundle_below)
        base, prev, depth = self._references(step, specs, chunks, bundled)
        kind = KEYFRAME if base is None else DELTA

        # the owned arrays (kept as the next step's reference); borrowed ones are filled
        # chunk by chunk by the coding threads, each chunk copied just before it is coded
        on_disk = self.snapshots.on_disk  # the reconstructions go to a file, chunk by chunk
        recycled = set() if on_disk else _recyclable(prev, sources, job.borrowed)
        if on_disk:
            spill = self.snapshots.new_file()
            arrays = {n: spill.array(a.shape, a.dtype) for n, a in sources.items()}
        else:
            # the context step's arrays are overwritten chunk by chunk once that chunk is
            # coded (no fresh pages to fault in, one state less at the peak)
            arrays = {n: prev.arrays[n] if n in recycled else np.empty_like(a) if n in job.borrowed else a
                      for n, a in sources.items()}
        bounds = resolve_bounds(job.error_bound, specs, sources, step, base)
        coded_bounds = {n: b.resolved for n, b in bounds.items() if b.resolved is not None}

        self.kv.delete_prefix(step_prefix(step))  # leftovers of a crashed attempt
        # a local disk's bundle is written as its chunks are coded, an object store's at the end
        sink = self.kv.append_file(bundle_key(step), created, flusher) if bundled else None
        bundle = BundleWriter(bundled, sink)
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
        tasks, sizes = largest_first(tasks, sizes)
        layout = None  # a local directory: folders and metadata files made while coding
        if self.kv.has_folders():
            own = {n: s for n, s in specs.items() if n not in bundled}  # arrays with keys of their own
            order = [n for n in dict.fromkeys(n for names, _ in tasks for n in names) if n in own]
            layout = StepLayout(self.kv, step, own, chunks, order + [n for n in own if n not in order], flusher)

        def encode_group(names: tuple[str, ...], index: tuple) -> list[Coded]:
            coded_here: dict[str, np.ndarray] = {}  # this step's reconstructions of the group

            def chunk_of(name: str, offset: int) -> np.ndarray:
                return coded_here[name] if offset == 0 else grids[name].extract(base.arrays[name], index)

            results = []
            for name in names:
                result, coded_here[name] = encode_chunk(name, index, chunk_of)
                results.append(result)
            return results

        def encode_chunk(name: str, index: tuple, chunk_of) -> tuple[Coded, np.ndarray]:
            grid = grids[name]
            dtype = specs[name].codec_dtype
            after = on_disk or name in recycled  # the owned copy is written once the chunk is coded
            if name in job.borrowed and not after:
                region = grid.region(index)
                arrays[name][region] = sources[name][region]
            data = grid.extract(sources[name] if after else arrays[name], index)
            ref = None if base is None else grid.extract(base.arrays[name], index)
            # the fast level codes without a prev-reference context
            ctx = None if prev is None or level == "fast" else grid.extract(prev.arrays[name], index)
            bound = coded_bounds.get(name)
            # the references' content hashes, kept from when they were saved: no pass over each
            flat = grid.flat(index)
            known = {}
            if ref is not None and (crc := _known_fingerprint(base, name, flat)) is not None:
                known["reference_fingerprint"] = crc
            if ctx is not None and (crc := _known_fingerprint(prev, name, flat)) is not None:
                known["prev_reference_fingerprint"] = crc

            def code_against(reference, context, fingerprints=None):
                code = dict(reference=reference, prev_reference=context, dtype=dtype, **(fingerprints or {}))
                if bound is not None:
                    return encode_lossy(grid, index, data, code, bound)
                return _core.encode(data, **code, level=level), data

            coefs = None
            try:
                blob, recon = code_against(ref, ctx, known)
                if name in plan:
                    terms = xs.term_arrays(plan[name], chunk_of)
                    coefs = xs.fit(data, ref, terms, dtype)
                    if coefs is not None:  # keep the prediction only where it codes smaller
                        predicted = code_against(xs.predicted_reference(ref, terms, coefs, dtype), None)
                        if len(predicted[0]) + PREDICTION_COST < len(blob):
                            blob, recon = predicted
                        else:
                            coefs = None
            except TPDEError as e:
                raise TPDEError(f"step {step}, tensor {name!r}: {e}", e.code) from e
            data = recon
            if bound is not None or after:
                arrays[name][grid.region(index)] = data[grid.inner(index)]
            if name in bundled:
                try:
                    bundle.add(name, flat, blob)
                except OSError as e:
                    raise StoreIOError(f"step {step}, tensor {name!r}, chunk {grid.key(index)}: cannot write it "
                                       f"to the step's bundle ({_reason(e)})", e.errno) from e
                return _coded(blob, data, ref, coefs)
            if layout is not None:
                layout.wait_folder(name)
            try:
                self.kv.set_uncommitted(f"{array_prefix(step, name)}/{grid.key(index)}", blob, created, flusher)
            except OSError as e:
                raise StoreIOError(f"step {step}, tensor {name!r}, chunk {grid.key(index)}: cannot write it "
                                   f"({_reason(e)})", e.errno) from e
            return _coded(blob, data, ref, coefs)

        for i, (_, stored) in enumerate(blobs):
            self.kv.set_uncommitted(blob_key(step_prefix(step), i), stored, created, flusher)
        try:
            try:
                per_group = self.pool.run(encode_group, tasks, f"save step {step}", progress, sizes,
                                          done=sum(entry.size for entry, _ in blobs))
            finally:
                if layout is not None:  # nothing of this save goes on writing after it returns
                    layout.join()
                if sink is not None:
                    sink.close()
            coded = [(name, result) for (names, _), results in zip(tasks, per_group)
                     for name, result in zip(names, results)]
            packed, ranges = bundle.assemble(list(specs), {n: len(grids[n]) for n in bundled})
            if packed:
                self.kv.set_uncommitted(bundle_key(step), packed, created, flusher)
            entries = _entries(specs, chunks, coded, kind, bounds, plan, ranges)
            manifest = Manifest(
                step=step,
                kind=kind,
                base_step=None if base is None else base.step,
                prev_step=None if prev is None else prev.step,
                depth=depth,
                tree=job.tree,
                arrays=entries,
                meta=dict(job.meta or {}),
                tpde_version=_core.__version__,
                error_bounds=job.requested,
                blobs=[entry for entry, _ in blobs],
            )
            marker = self.commit(manifest, layout, created, flusher)
        except BaseException:
            if recycled:  # partly or wholly overwritten: no longer that step's reconstruction
                self.snapshots.drop(prev.step)
            raise
        # the copies of borrowed arrays (recycled ones included) are the store's own memory
        self.snapshots.keep(base, Snapshot(step, arrays, entries, job.borrowed))
        return step_info(marker, manifest, tensors=True)

    def _references(
        self, step: int, specs: dict[str, ArraySpec], chunks: dict[str, tuple], bundled: set[str]
    ) -> tuple[Snapshot | None, Snapshot | None, int]:
        """Base and context reconstructions for a new step, and its depth (keyframe: 0)."""
        earlier = [s for s in self.catalog.steps() if s < step]
        if not earlier:
            return None, None, 0
        marker = self.catalog.marker(earlier[-1])
        if marker.depth + 1 >= self.keyframe_every:
            return None, None, 0
        manifest = self.catalog.reference_manifest(marker)
        for name, spec in specs.items():
            entry = manifest.arrays.get(name)
            if entry is None or entry.spec.kind != spec.kind:
                return None, None, 0
            if entry.layout() != (spec.codec_dtype, spec.storage_shape, chunks[name], name in bundled):
                return None, None, 0
        base, prev = self.snapshots.lookup(manifest)
        if base is None:
            base, prev = self._reconstruct_for_saving(manifest)
        return base, prev, marker.depth + 1

    def _reconstruct_for_saving(self, manifest: Manifest) -> tuple[Snapshot, Snapshot | None]:
        """Decode the predecessor (and its base, the coding context) from the store."""
        chain = chain_markers(self.catalog, manifest.step)
        names = list(manifest.arrays)
        if self.snapshots.on_disk:
            last, before = self._reconstruct_to_disk(chain, manifest, names)
        else:
            last, before = self.reader.reconstruct(chain, manifest, names, keep_base=True)
        base = Snapshot(manifest.step, last, manifest.arrays, frozenset(last))
        if manifest.kind == KEYFRAME:
            return base, None
        return base, Snapshot(manifest.base_step, before, {}, frozenset(before))

    def _reconstruct_to_disk(self, chain: list, manifest: Manifest, names: list[str]) -> tuple[dict, dict]:
        """`reconstruct` with keep_base into the disk cache, a batch of arrays at a time, so
        that no more than a batch is in memory."""
        last_file, before_file = self.snapshots.new_file(), self.snapshots.new_file()
        last, before = {}, {}
        for batch in _batches(names, lambda n: _stored_bytes(manifest.arrays[n].spec), RECONSTRUCT_BATCH_BYTES):
            decoded, decoded_base = self.reader.reconstruct(chain, manifest, batch, keep_base=True)
            for name in batch:
                last[name] = last_file.spill(decoded.pop(name))
                if name in decoded_base:
                    before[name] = before_file.spill(decoded_base.pop(name))
        return last, before

    def commit(self, manifest: Manifest, layout: StepLayout | None = None, created: set[str] | None = None,
               flusher=None) -> Marker:
        """Write a step's metadata (unless `layout` wrote it while coding), then its
        manifest, then (last) its commit marker; on durable local stores every file and
        the folders in `created` (and those `layout` made) are synced first."""
        step = manifest.step
        created = set() if created is None else created
        if layout is not None:
            layout.finish()
            created.update(layout.made)
            created.update(os.path.dirname(folder) for folder in layout.made)
        else:
            own = {n: e for n, e in manifest.arrays.items() if e.bundle is None}
            meta = step_metadata(step, {n: e.spec for n, e in own.items()}, {n: e.chunks for n, e in own.items()})
            self.pool.run(lambda key, value: self.kv.set_uncommitted(key, value, created, flusher),
                          list(meta.items()), "", False, [len(v) for v in meta.values()])
        # the manifest is written in place like the chunks (the step is invisible until its
        # marker, which holds the manifest's CRC32) and synced with them
        body = manifest.to_bytes()
        self.kv.set_uncommitted(f"{step_prefix(step)}/{ROOT_ATTRS}", body, created, flusher)
        self.kv.sync_folders(created, flusher)  # and wait for every file's fsync
        entries = manifest.arrays.values()
        marker = Marker(
            step=step,
            kind=manifest.kind,
            base_step=manifest.base_step,
            prev_step=manifest.prev_step,
            depth=manifest.depth,
            raw_bytes=sum(e.raw_bytes for e in entries) + sum(b.size for b in manifest.blobs),
            stored_bytes=sum(e.stored_bytes for e in entries) + len(body) + sum(b.stored_bytes for b in manifest.blobs),
            n_arrays=len(manifest.arrays),
            manifest_crc32=zlib.crc32(body),
            time=time.time(),
            lossy=any(e.error_bound is not None for e in entries),
            predicted=any(e.predict is not None for e in entries),
        )
        if self.before_commit is not None:
            self.before_commit()  # a writer that lost its lease commits nothing
        self.kv.set_committed(commit_key(step), marker.to_bytes())
        self.catalog.wrote(manifest, marker.manifest_crc32)
        return marker


def _entries(
    specs: dict[str, ArraySpec], chunks: dict[str, tuple], coded: list[tuple[str, Coded]], kind: str,
    bounds: dict[str, TensorBound], plan: xs.Plan, bundle_ranges: dict[str, list],
) -> dict[str, ArrayEntry]:
    """Manifest entries from the coded chunks (each array's chunks come in C order)."""
    per_name: dict[str, list[Coded]] = {n: [] for n in specs}
    for name, result in coded:
        per_name[name].append(result)
    entries = {}
    for name, spec in specs.items():
        results = per_name[name]
        bound = bounds.get(name, LOSSLESS)
        coefs = [c.coefs for c in results]
        predict = None
        if name in plan and any(c is not None for c in coefs):
            predict = {"terms": xs.terms_to_json(plan[name]), "coefs": coefs}
        entries[name] = ArrayEntry(
            name=name,
            spec=spec,
            chunks=chunks[name],
            crc32c=[c.crc32c for c in results],
            stored_bytes=sum(c.stored for c in results),
            changed=None if kind == KEYFRAME else sum(c.changed for c in results),
            error_bound=bound.resolved,
            bound=bound.spec,
            rms=bound.rms,
            rms_step=bound.rms_step,
            predict=predict,
            bundle=bundle_ranges.get(name),
        )
    return entries


def _exists(kv, key: str) -> bool:
    try:
        return kv.exists(key)
    except Exception:  # noqa: BLE001
        return False


def _reason(error: OSError) -> str:
    """'No space left on device' and the like, without the path of a temporary file."""
    return error.strerror or str(error).splitlines()[0] if str(error) else type(error).__name__


def _coded(blob: bytes, data: np.ndarray, ref: np.ndarray | None, coefs: list | None) -> tuple[Coded, np.ndarray]:
    changed = 0 if ref is None else _core.count_changed(data, ref)
    return Coded(len(blob), _core.fingerprint(data), changed, coefs), data


def _known_fingerprint(snapshot: Snapshot, name: str, flat: int) -> int | None:
    """The content hash of chunk `flat` of `name` in `snapshot`'s step, from its manifest
    entry (the same CRC32C `_core.fingerprint` gives its reconstruction), if it has one."""
    entry = snapshot.entries.get(name)
    if entry is None or not 0 <= flat < len(entry.crc32c):
        return None
    return entry.crc32c[flat]


def _recyclable(prev: Snapshot | None, sources: dict[str, np.ndarray], borrowed: frozenset) -> set[str]:
    """Arrays of the context step `prev` that may become this save's owned copies: the
    store's own memory (not a caller's adopted tensors), of the same shape and dtype as a
    source that is copied (borrowed)."""
    if prev is None:
        return set()
    return {n for n in borrowed
            if n in prev.owned and isinstance(prev.arrays.get(n), np.ndarray)
            and prev.arrays[n].shape == sources[n].shape and prev.arrays[n].dtype == sources[n].dtype}


def _batches(names: list[str], size_of: Callable[[str], int], limit: int) -> list[list[str]]:
    """`names` in order, cut into runs of at most `limit` bytes (a larger one alone)."""
    batches: list[list[str]] = []
    total = limit
    for name in names:
        size = size_of(name)
        if total + size > limit:
            batches.append([])
            total = 0
        batches[-1].append(name)
        total += size
    return batches


def _stored_bytes(spec: ArraySpec) -> int:
    """Bytes of the stored array of `spec`."""
    return math.prod(spec.storage_shape) * storage_dtype(spec.codec_dtype).itemsize
