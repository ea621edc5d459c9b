"""Chain decoding: a delta step is rebuilt from its keyframe through every delta after it.

`chain_markers` finds and checks the chain of a step; `ChainSteps` holds the manifests a
chain decode needs (cross-state predictions need every step's); `decode_chunk` decodes
one chunk position of a group of tensors along the chain.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _core
from ..dtypes import storage_dtype
from ..errors import TPDEError
from . import cross_state as xs
from .bundle import ChunkFetcher
from .catalog import Catalog
from .grid import ChunkGrid, Index
from .schema import DELTA, ArrayEntry, Manifest, Marker


def chain_markers(catalog: Catalog, step: int) -> list[Marker]:
    """Markers from the keyframe of `step` up to `step`, checked for consistency."""
    chain = [catalog.marker(step)]
    while chain[-1].kind == DELTA:
        base = chain[-1].base_step
        if base is None or base >= chain[-1].step:
            raise TPDEError(f"step {chain[-1].step} has an invalid base step {base}", "corrupt")
        try:
            chain.append(catalog.marker(base))
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


class ChainSteps:
    """The manifests a chain decode needs: only the last step's, unless some step of the
    chain has cross-state predictions (its commit marker says so) or the last step has
    bundled arrays (so, by the chain rules, every step has: their places differ by step);
    then every step's."""

    def __init__(self, catalog: Catalog, chain: list[Marker], manifest: Manifest):
        self.chain = chain
        self.last = manifest
        self.manifests: list[Manifest] | None = None
        if any(m.predicted for m in chain) or manifest.bundled():
            self.manifests = [manifest if m.step == manifest.step else catalog.manifest(m.step, m) for m in chain]
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
        """The prediction plan of every step of the chain."""
        return self._plans

    def plan(self, j: int) -> xs.Plan:
        """The prediction plan of chain step j."""
        return self._plans[j]

    def present(self, j: int, group) -> list[str]:
        """The tensors of `group` stored at chain step j."""
        if self.manifests is None:
            return list(group)
        return [n for n in group if n in self.manifests[j].arrays]

    def entry_at(self, j: int, name: str) -> ArrayEntry:
        """Tensor `name`'s manifest entry at chain step j (where it is present)."""
        if self.manifests is None:
            return self.last.arrays[name]
        entry = self.manifests[j].arrays[name]
        if (entry.bundle is None) != (self.last.arrays[name].bundle is None):
            raise TPDEError(f"step {self.chain[j].step}, tensor {name!r}: bundled at some steps of its chain "
                            "and not at others", "corrupt")
        return entry

    def entry(self, name: str) -> ArrayEntry:
        """The latest manifest entry of tensor `name` along the chain."""
        for m in reversed(self.manifests or [self.last]):
            if name in m.arrays:
                return m.arrays[name]
        raise TPDEError(f"tensor {name!r} is not in the chain of step {self.last.step}", "corrupt")

    def coefs(self, j: int, name: str, flat_index: int) -> list | None:
        """The prediction coefficients of one chunk at chain step j (None: coded against
        its base)."""
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
        """The codec dtype of tensor `name`."""
        return self.entry(name).spec.codec_dtype

    def dtype(self, name: str) -> np.dtype:
        """The storage dtype of tensor `name`."""
        return storage_dtype(self.codec_dtype(name))

    def chunk_bytes(self, name: str) -> int:
        """Bytes of one (full) chunk of tensor `name`."""
        entry = self.entry(name)
        return math.prod(entry.chunks) * storage_dtype(entry.spec.codec_dtype).itemsize


def decode_chunk(
    fetcher: ChunkFetcher, steps: ChainSteps, group, grid: ChunkGrid, index: Index, seed: dict,
    into: dict[str, np.ndarray] | None = None,
) -> dict[str, list[np.ndarray]]:
    """Reconstructions of one chunk of each tensor of `group` at the last two steps of
    the chain where it exists (the last step for every tensor asked for). `seed` maps
    chain steps to whole reconstructions already in memory: decoding starts after them.
    `into` maps tensors to C-contiguous arrays of the chunk's shape that the last step's
    chunk is decoded into (the caller's output, which then needs no copy)."""
    chain = steps.chain
    last = len(chain) - 1
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
    blobs = dict(zip(wanted, fetcher.fetch([(chain[j].step, steps.entry_at(j, n), key, flat) for j, n in wanted])))
    # a step's decode no longer needed (two steps back) is decoded into again, not freed
    # and allocated anew (fresh pages fault in one by one); seeds and `into` are never reused
    own: set[int] = set()
    spare: dict[str, np.ndarray] = {}
    for j in range(start, len(chain)):
        marker, plan = chain[j], steps.plan(j)
        decoded: dict[str, np.ndarray] = {}

        def chunk_of(name: str, offset: int, decoded: dict[str, np.ndarray] = decoded) -> np.ndarray:
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
                # the expected shape and dtype are checked before the decoder allocates:
                # a few hostile bytes may claim up to 64 GiB
                # (0-d arrays: the first writer coded their one value with shape (1,))
                shape = grid.chunks if grid.chunks else None
                target = into.get(name) if into is not None and j == last else None
                reusable = target is None  # not the caller's output
                if reusable:
                    target = spare.pop(name, None)
                arr = _core.decode(blob, reference=ref, prev_reference=ctx, shape=shape, out=target,
                                   dtype=steps.codec_dtype(name), max_bytes=dtype.itemsize * math.prod(grid.chunks))
            except KeyError as e:
                raise TPDEError(f"{where}: prediction input {e} is not in the chain", "corrupt") from e
            except TPDEError as e:
                if e.code in ("bad_shape", "bad_dtype"):  # not what the manifest says this chunk is
                    held = _held(blob)
                    if held is not None:
                        raise TPDEError(f"{where}: chunk holds {held}, expected {steps.codec_dtype(name)} "
                                        f"{grid.chunks}", "corrupt") from e
                raise TPDEError(f"{where}: {e}", e.code) from e
            if arr.dtype.itemsize != dtype.itemsize or arr.size != math.prod(grid.chunks):
                raise TPDEError(
                    f"{where}: chunk holds {arr.dtype} {arr.shape}, expected {dtype} {grid.chunks}",
                    "corrupt",
                )
            decoded[name] = arr.view(dtype).reshape(grid.chunks)
            if reusable:
                own.add(id(decoded[name]))
        for name, arr in decoded.items():
            earlier = recon.get(name, [])
            if len(earlier) == 2 and id(earlier[0]) in own:
                spare[name] = earlier[0]
            recon[name] = [*earlier[-1:], arr]
    return recon


def _held(blob: bytes) -> str | None:
    """"float32 (4,)": what a chunk's header says it holds (None: no readable header)."""
    try:
        header = _core.read_header(blob)
    except TPDEError:
        return None
    return f"{header['dtype']} {tuple(header['shape'])}"
