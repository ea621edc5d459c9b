"""The regular chunk grid of a stored array, as zarr v2 lays it out.

Chunks are chosen so that each one is a contiguous slab of the C-ordered array: leading
axes of size 1, then a block of rows, then whole trailing axes. Edge chunks are stored at
full chunk shape, zero-padded, as zarr expects.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from ..errors import TPDEError

Index = tuple[int, ...]
Box = tuple[tuple[int, int], ...]  # per axis [lo, hi)


def choose_chunks(shape: tuple[int, ...], target_elements: int) -> tuple[int, ...]:
    """Chunk shape of about `target_elements` elements that is a contiguous slab."""
    chunks = []
    for axis, size in enumerate(shape):
        inner = math.prod(shape[axis + 1 :])
        if inner >= target_elements:
            chunks.append(1)
            continue
        rows = max(1, min(size, target_elements // max(inner, 1)))
        return tuple(chunks) + (rows,) + tuple(max(1, s) for s in shape[axis + 1 :])
    return tuple(chunks)


class ChunkGrid:
    """Chunk indices, keys and regions of an array of `shape` cut in `chunks`."""

    def __init__(self, shape: tuple[int, ...], chunks: tuple[int, ...]):
        self.shape = tuple(shape)
        self.chunks = tuple(chunks)
        self.grid = tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))

    def __len__(self) -> int:
        return math.prod(self.grid)

    def indices(self) -> Iterator[Index]:
        """Every chunk index, in C order."""
        return itertools.product(*(range(n) for n in self.grid))

    def flat(self, index: Index) -> int:
        """Position of chunk `index` in C order of the chunk indices."""
        flat = 0
        for i, n in zip(index, self.grid):
            flat = flat * n + i
        return flat

    def key(self, index: Index) -> str:
        """zarr v2 chunk key ("0.3.0"; "0" for a 0-d array)."""
        return ".".join(map(str, index)) if index else "0"

    def region(self, index: Index) -> tuple[slice, ...]:
        """The part of the array a chunk covers (clipped at the edges)."""
        return tuple(
            slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, self.chunks, self.shape)
        )

    def inner(self, index: Index) -> tuple[slice, ...]:
        """The part of a (full-shape) chunk that lies inside the array."""
        return tuple(slice(0, r.stop - r.start) for r in self.region(index))

    def extract(self, arr: np.ndarray, index: Index) -> np.ndarray:
        """The chunk of `arr` at full chunk shape, C-contiguous, zero-padded at edges."""
        region = self.region(index)
        part = arr[region]
        if part.shape == self.chunks:
            return part if part.flags.c_contiguous else part.copy()
        out = np.zeros(self.chunks, dtype=arr.dtype)
        out[self.inner(index)] = part
        return out

    def overlapping(self, box: Box) -> list[Index]:
        """Indices of the chunks that intersect `box`."""
        if any(hi <= lo for lo, hi in box):
            return []
        ranges = [range(lo // c, (hi - 1) // c + 1) for (lo, hi), c in zip(box, self.chunks)]
        return list(itertools.product(*ranges))

    def copy_into(self, out: np.ndarray, box: Box, index: Index, chunk: np.ndarray) -> None:
        """Copy the part of `chunk` inside `box` into `out`, which holds exactly `box`."""
        dst, src = [], []
        for (lo, hi), r in zip(box, self.region(index)):
            a, b = max(lo, r.start), min(hi, r.stop)
            dst.append(slice(a - lo, b - lo))
            src.append(slice(a - r.start, b - r.start))
        out[tuple(dst)] = chunk[tuple(src)]

    def full_box(self) -> Box:
        """The box of the whole array."""
        return tuple((0, s) for s in self.shape)


def parse_index(index: object, shape: tuple[int, ...]) -> tuple[Box, tuple]:
    """Bounding box of a basic index, and the index relative to that box."""
    if index is None:
        index = ()
    if not isinstance(index, tuple):
        index = (index,)
    if len(index) > len(shape):
        raise TPDEError(
            f"too many indices ({len(index)}) for a tensor of shape {tuple(shape)}", "invalid_argument"
        )
    box, local = [], []
    for axis, size in enumerate(shape):
        item = index[axis] if axis < len(index) else slice(None)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            i = int(item) + (size if item < 0 else 0)
            if not 0 <= i < size:
                raise TPDEError(
                    f"index {int(item)} is out of range for axis {axis} of size {size}", "invalid_argument"
                )
            box.append((i, i + 1))
            local.append(0)
        elif isinstance(item, slice):
            r = range(*item.indices(size))
            if len(r) == 0:
                box.append((0, 0))
                local.append(slice(0, 0))
                continue
            lo, hi = min(r[0], r[-1]), max(r[0], r[-1]) + 1
            start = r.start - lo
            stop = start + len(r) * r.step
            box.append((lo, hi))
            local.append(slice(start, stop if stop >= 0 else None, r.step))
        else:
            raise TPDEError(
                f"index items must be ints or slices, not {type(item).__name__}", "invalid_argument"
            )
    return tuple(box), tuple(local)
