"""Arrays kept in unnamed files instead of memory: the saver's predecessor cache for states
that do not fit in memory twice (`CheckpointStore(predecessor_cache="disk")`).

Each array is one temporary file that has no name on disk (O_TMPFILE where the system
has it, else created and unlinked at once), so nothing is left behind whatever happens
to the process: the space is freed when the array is dropped or the process ends.
Chunks are contiguous slabs of the C-ordered array (grid.py), so a chunk is one pread
or pwrite, which release the GIL and keep nothing in the page tables of this process.
"""

from __future__ import annotations

import math
import os
import tempfile
import weakref

import numpy as np

from ..errors import TPDEError

PREDECESSOR_CACHES = ("memory", "disk")


def check_predecessor_cache(value: object) -> str:
    """`value` if it names a predecessor cache, else a TPDEError."""
    if value not in PREDECESSOR_CACHES:
        raise TPDEError(f"predecessor_cache must be 'memory' or 'disk', not {value!r}", "invalid_argument")
    return value


def check_cache_dir(folder: object) -> str | None:
    """`folder` as a path if it is an existing directory (None stays None), else a TPDEError."""
    if folder is None:
        return None
    path = os.fspath(folder)
    if not os.path.isdir(path):
        raise TPDEError(f"cache_dir {path!r} is not an existing directory", "invalid_argument")
    return path


class SpillFile:
    """One unnamed file in `folder` (None: the temporary folder) holding arrays end to end."""

    ALIGN = 4096

    def __init__(self, folder: str | None):
        self.folder = folder
        self.end = 0
        try:
            self._file = tempfile.TemporaryFile(dir=folder, prefix=".tpde-cache-")
        except OSError as e:
            raise self._error("keep the predecessor cache in", e) from e
        self.fd = self._file.fileno()
        self._closer = weakref.finalize(self, self._file.close)  # closed, not warned about, when dropped

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> SpilledArray:
        """A new zero-filled array of `shape` and `dtype` in this file."""
        arr = SpilledArray(self, self.end, shape, dtype)
        self.end += -(-arr.nbytes // self.ALIGN) * self.ALIGN
        try:
            os.ftruncate(self.fd, self.end)
        except OSError as e:
            raise self._error("grow the predecessor cache in", e) from e
        return arr

    def spill(self, values: np.ndarray) -> SpilledArray:
        """A copy of `values` in this file."""
        arr = self.array(values.shape, values.dtype)
        arr[tuple(slice(None) for _ in values.shape)] = values
        return arr

    def _error(self, what: str, e: OSError) -> TPDEError:
        return TPDEError(f"cannot {what} {self.folder or tempfile.gettempdir()!r} ({e.strerror or e})", "io_error")

    def close(self) -> None:
        """Free the file's space now (it is freed anyway once nothing refers to it)."""
        self._closer()


class SpilledArray:
    """A C-ordered array of `shape` and `dtype` at `offset` of a SpillFile.

    Indexing takes what `ChunkGrid.region` gives (a tuple of slices): reading returns a
    new in-memory array, assigning writes through. Regions that are not one contiguous
    run of the array are refused.
    """

    def __init__(self, file: SpillFile, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.file = file
        self.offset = offset
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)
        self.itemsize = self.dtype.itemsize
        self.nbytes = self.size * self.itemsize
        self._strides = [math.prod(self.shape[axis + 1:]) for axis in range(self.ndim)]

    def _span(self, region: tuple) -> tuple[int, tuple[int, ...]]:
        """Byte offset in the file and shape of `region`, one contiguous run of the array."""
        if not isinstance(region, tuple):
            region = (region,)
        starts, shape = [], []
        for axis, size in enumerate(self.shape):
            item = region[axis] if axis < len(region) else slice(None)
            if not isinstance(item, slice) or item.step not in (None, 1):
                raise TypeError(f"a SpilledArray takes slices, not {item!r}")
            start, stop, _ = item.indices(size)
            starts.append(start)
            shape.append(max(0, stop - start))
        last_partial = max((axis for axis in range(self.ndim) if shape[axis] != self.shape[axis]), default=-1)
        if any(shape[axis] > 1 for axis in range(last_partial)):
            raise ValueError(f"region {region} of shape {self.shape} is not contiguous")
        first = sum(s * stride for s, stride in zip(starts, self._strides))
        return self.offset + first * self.itemsize, tuple(shape)

    def __getitem__(self, region: tuple) -> np.ndarray:
        offset, shape = self._span(region)
        out = np.empty(shape, self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < len(view):
            n = os.preadv(self.file.fd, [view[done:]], offset + done)
            if n <= 0:
                raise TPDEError("the predecessor cache file came back short", "io_error")
            done += n
        return out

    def __setitem__(self, region: tuple, values: np.ndarray) -> None:
        offset, shape = self._span(region)
        data = np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype=self.dtype), shape))
        view = memoryview(data.reshape(-1).view(np.uint8))
        done = 0
        try:
            while done < len(view):
                done += os.pwritev(self.file.fd, [view[done:]], offset + done)
        except OSError as e:
            raise self.file._error("write the predecessor cache in", e) from e

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[tuple(slice(None) for _ in self.shape)]
        return whole if dtype is None else whole.astype(dtype)
