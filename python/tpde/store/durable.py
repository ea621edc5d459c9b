"""Writes to a local directory that survive a power loss in the order the commit needs.

A step is committed by its marker, so everything the marker vouches for must reach the
disk before the marker does: each chunk and metadata file is fsynced after it is written,
the step's folders are fsynced once all their entries exist, the manifest likewise, and
only then is the marker written to a temporary file, fsynced, renamed into place, and the
`commits/` folder fsynced so that the rename itself is on disk. `durable=False` skips every
fsync (scratch runs: a crash of the process still leaves earlier steps intact, a power loss
may not).
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor


def write_file(path: str, data: bytes, *, durable: bool, created: set[str] | None = None,
               flusher: Flusher | None = None) -> None:
    """Write `data` to `path` in place (creating folders), fsynced when `durable` (by
    `flusher`'s threads when given: then only once `flusher.wait()` returns).

    Folders this call creates are added to `created` so the commit can fsync them.
    """
    fd = _create(path, created)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable and flusher is None:
            os.fsync(fd)
    finally:
        os.close(fd)
    if durable and flusher is not None:
        flusher.sync(path)


class AppendFile:
    """A file that threads append to at once (a step's bundle on a local disk): each
    `append` reserves the next bytes and writes there, so the caller learns its offset
    at once and the file is never assembled in memory. Made on the first append (no
    file when nothing is appended); `close` fsyncs it when `durable` (by `flusher`'s
    threads when given, as `write_file`). With a `flusher`, every `SYNC_EVERY` bytes
    appended are handed to it while appends go on, so that the device writes them during
    coding, not all at the commit."""

    SYNC_EVERY = 8 << 20

    def __init__(self, path: str, created: set[str] | None = None, *, durable: bool,
                 flusher: Flusher | None = None):
        self.path = path
        self._created = created
        self._durable = durable
        self._flusher = flusher if durable else None
        self._fd: int | None = None
        self._end = 0
        self._synced_to = 0  # bytes already handed to the flusher
        self._lock = threading.Lock()

    def append(self, data: bytes) -> int:
        """Write `data` after everything appended before; its offset in the file."""
        with self._lock:
            if self._fd is None:
                self._fd = _create(self.path, self._created)
            offset, fd = self._end, self._fd
            self._end += len(data)
        view, at = memoryview(data), offset
        while view:
            written = os.pwrite(fd, view, at)
            view, at = view[written:], at + written
        if self._flusher is not None:
            with self._lock:
                due = self._end - self._synced_to >= self.SYNC_EVERY
                if due:
                    self._synced_to = self._end
            if due:
                self._flusher.sync(self.path)
        return offset

    def close(self) -> None:
        """Close the file (if one was made), fsynced when durable."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._durable and self._flusher is None:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self._flusher is not None:
            self._flusher.sync(self.path)


def write_atomic(path: str, data: bytes, *, durable: bool) -> None:
    """Replace `path` by `data` all at once: temporary file, fsync, rename, fsync folder."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.partial")
    try:
        write_file(tmp, data, durable=durable)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        sync_dir(folder)


def sync_dir(path: str) -> None:
    """fsync a folder, so that the entries created or renamed in it are on disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dirs(paths: set[str] | list[str], flusher: Flusher | None = None) -> None:
    """fsync folders, deepest first (a folder's own entry lives in its parent); with
    `flusher`, on its threads, all at once (done when `flusher.wait()` returns)."""
    for path in sorted(paths, key=lambda p: (-p.count(os.sep), p)):
        if flusher is not None:
            flusher.sync(path)
        else:
            sync_dir(path)


_lock = threading.Lock()


def _sync_path(path: str) -> None:
    """fsync a file or folder by path (fsync acts on the inode, whatever descriptor)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Flusher:
    """The fsyncs of one save, run on threads of their own.

    An fsync mostly waits for the device, and the device takes many at once for about the
    price of one (212 chunk files and their folders: ~1 s one after another, ~0.05 s 16
    at a time on the bench VM), so a save hands every file it wrote here instead of
    syncing it on the coding thread, and waits once, before its manifest and marker.
    """

    def __init__(self, threads: int = 16):
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="tpde-fsync")
        self._pending: list[Future] = []
        self._lock = threading.Lock()

    def sync(self, path: str) -> None:
        """fsync `path` (a file or a folder) soon."""
        future = self._pool.submit(_sync_path, path)
        with self._lock:
            self._pending.append(future)

    def wait(self) -> None:
        """Wait for every fsync handed over so far; raise the first failure."""
        with self._lock:
            pending, self._pending = self._pending, []
        error = None
        for future in pending:
            if future.exception() is not None and error is None:
                error = future.exception()
        if error is not None:
            raise error

    def close(self) -> None:
        """Wait for what is running, drop the rest (after a failed save)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _create(path: str, created: set[str] | None) -> int:
    """Open `path` for writing, empty (created, with its missing folders, recorded in
    `created`)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        _make_dirs(os.path.dirname(path), created)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


def _make_dirs(path: str, created: set[str] | None) -> None:
    """os.makedirs that records each folder it made, and each created folder's parent."""
    missing = []
    head = path
    while head and not os.path.isdir(head):
        missing.append(head)
        head = os.path.dirname(head)
    os.makedirs(path, exist_ok=True)
    if created is not None and missing:
        with _lock:
            created.update(missing)
            created.add(os.path.dirname(missing[-1]))
