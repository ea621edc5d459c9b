"""Loading: whole states, single tensors or slices of them, decoded in parallel and
checked against the content hash of every chunk."""

from __future__ import annotations

import difflib
import pickle
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .. import _core
from ..dtypes import storage_dtype
from ..errors import TPDEError
from ..state.torch_adapter import from_storage
from ..state.tree import unflatten_state
from . import cross_state as xs
from .bundle import ChunkFetcher
from .catalog import Catalog
from .chain import ChainSteps, chain_markers, decode_chunk
from .grid import Box, ChunkGrid, parse_index
from .parallel import Pool, largest_first
from .schema import Manifest, Marker


class Reader:
    """Decodes steps of a store on a thread pool."""

    def __init__(self, catalog: Catalog, pool: Pool):
        self.catalog = catalog
        self.pool = pool

    def load(self, step: int, *, allow_pickle: bool, progress: bool | None) -> object:
        """The state saved at `step` (`CheckpointStore.load`)."""
        marker = self.catalog.marker(step)
        try:
            return self._load(marker, allow_pickle=allow_pickle is True, progress=progress)
        except TPDEError as e:
            raise self.catalog.was_pruned(marker.step, e) from e

    def _load(self, marker: Marker, *, allow_pickle: bool, progress: bool | None) -> object:
        step = marker.step
        chain = chain_markers(self.catalog, step)  # the markers' own checks first
        manifest = self.catalog.manifest(step, marker)
        pickled = [n for n, e in manifest.arrays.items() if e.spec.kind == "pickle"]
        if pickled and not allow_pickle:
            raise TPDEError(
                f"step {step} holds pickled objects ({', '.join(pickled[:3])}); pass "
                "allow_pickle=True to load them, only from a store you trust",
                "pickle_refused",
            )
        names = list(manifest.arrays)
        arrays, _ = self.reconstruct(chain, manifest, names, progress=progress)
        objects = {n: from_storage(arrays[n], manifest.arrays[n].spec) for n in names}

        def unpickle(name: str) -> object:
            # the caller's allow_pickle decides, and only entries stored as pickles qualify
            # (the manifest check refuses any other target; this is the second lock)
            if not allow_pickle or manifest.arrays[name].spec.kind != "pickle":
                raise TPDEError(f"step {step}: refusing to unpickle {name!r} (allow_pickle is not set, "
                                "or it is not a pickled entry)", "pickle_refused")
            try:
                return pickle.loads(objects[name])
            except Exception as e:  # noqa: BLE001 - unpickling raises anything
                raise TPDEError(f"step {step}: cannot unpickle {name!r} ({type(e).__name__}: {e})",
                                "corrupt") from e

        try:
            return unflatten_state(manifest.tree, objects, unpickle=unpickle)
        except TPDEError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError,
                RuntimeError) as e:
            raise TPDEError(f"step {step}: the stored state skeleton is malformed ({type(e).__name__})",
                            "corrupt") from e

    def load_tensor(self, step: int, name: str, index: object) -> object:
        """One tensor or a slice of it (`CheckpointStore.load_tensor`)."""
        marker = self.catalog.marker(step)
        try:
            return self._load_tensor(marker, name, index)
        except TPDEError as e:
            raise self.catalog.was_pruned(marker.step, e) from e

    def _load_tensor(self, marker: Marker, name: str, index: object) -> object:
        step = marker.step
        chain = chain_markers(self.catalog, step)
        manifest = self.catalog.manifest(step, marker)
        entry = manifest.arrays.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(manifest.arrays), n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise TPDEError(f"step {step} has no tensor {name!r}{hint}", "unknown_tensor")
        if entry.spec.kind == "pickle":
            raise TPDEError(f"{name!r} at step {step} is a pickled object, not a tensor", "unknown_tensor")
        box, local = parse_index(index, entry.spec.shape)
        storage_box = box + tuple((0, s) for s in entry.spec.storage_shape[len(box):])
        arrays, _ = self.reconstruct(chain, manifest, [name], boxes={name: storage_box})
        picked = np.array(arrays[name][local], order="C")
        extra = len(entry.spec.storage_shape) - len(entry.spec.shape)
        shape = picked.shape[: picked.ndim - extra]
        return from_storage(picked, replace(entry.spec, shape=shape, storage_shape=picked.shape))

    def reconstruct(
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
        steps = ChainSteps(self.catalog, chain, manifest)
        grids = {n: ChunkGrid(manifest.arrays[n].spec.storage_shape, manifest.arrays[n].chunks) for n in names}
        boxes = {n: (boxes or {}).get(n) or grids[n].full_box() for n in names}
        out, out_base = {}, {}
        for n in names:
            dtype = storage_dtype(manifest.arrays[n].spec.codec_dtype)
            shape = tuple(hi - lo for lo, hi in boxes[n])
            try:
                out[n] = np.empty(shape, dtype)
                if keep_base and len(chain) > 1:
                    out_base[n] = np.empty(shape, dtype)
            except (MemoryError, ValueError):  # the manifest's shape is untrusted
                raise TPDEError(f"step {manifest.step}, tensor {n!r}: its stored shape {shape} of {dtype} "
                                "cannot be allocated", "too_large") from None
        tasks = []
        for group in xs.groups(list(names), steps.plans()):
            wanted_here = [n for n in group if n in out]
            grid = grids[wanted_here[0]]
            indices = sorted({i for n in wanted_here for i in grid.overlapping(boxes[n])})
            tasks += [(tuple(group), i) for i in indices]
        sizes = [sum(steps.chunk_bytes(n) for n in group) for group, _ in tasks]
        tasks, sizes = largest_first(tasks, sizes)

        whole = {n for n in names if boxes[n] == grids[n].full_box() and grids[n].chunks}
        fetcher = ChunkFetcher(self.catalog.kv)
        if steps.manifests is not None:
            wanted = {n for group, _ in tasks for n in group}
            for m in steps.manifests:
                fetcher.prefetch(m, wanted)

        def decode_group(group: tuple[str, ...], index: tuple) -> None:
            grid = grids[next(n for n in group if n in out)]
            # the last step's chunk of a whole array, inside it, decodes straight into `out`
            into = {}
            for name in group:
                if name in whole:
                    target = out[name][grid.region(index)]
                    if target.shape == grid.chunks and target.flags.c_contiguous:
                        into[name] = target
            recon = decode_chunk(fetcher, steps, group, grid, index, seed, into)
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
                if name not in into:
                    grid.copy_into(out[name], boxes[name], index, recon[name][-1])
                if name in out_base:
                    grid.copy_into(out_base[name], boxes[name], index, recon[name][-2])

        try:
            self.pool.run(decode_group, tasks, f"load step {manifest.step}", progress, sizes)
        finally:
            fetcher.close()
            _core.trim_scratch()  # the decoder's work buffers are kept between chunks only
        return out, out_base
