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


def write_file(path: str, data: bytes, *, durable: bool, created: set[str] | None = None) -> None:
    """Write `data` to `path` in place (creating folders), fsynced when `durable`.

    Folders this call creates are added to `created` so the commit can fsync them.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        _make_dirs(os.path.dirname(path), created)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


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


def sync_dirs(paths: set[str] | list[str]) -> None:
    """fsync folders, deepest first (a folder's own entry lives in its parent)."""
    for path in sorted(paths, key=lambda p: (-p.count(os.sep), p)):
        sync_dir(path)


_lock = threading.Lock()


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
