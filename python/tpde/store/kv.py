"""Blocking key/value access to any zarr v3 store (local, memory, fsspec, wrappers).

The checkpoint store writes and reads chunk bytes itself (delta chunks need their
reference, which zarr's codec pipeline cannot pass), so it needs plain get/set/delete/list
calls that work from worker threads. Stores with zarr's own synchronous methods
(`LocalStore`, `MemoryStore`) use them; any other store goes through zarr's event loop.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
from pathlib import Path

from zarr.abc.store import RangeByteRequest, Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import collect_aiterator, sync
from zarr.storage import FsspecStore, LocalStore

from ..errors import StorageError, TPDEError
from . import durable as disk


def open_zarr_store(target: object, *, read_only: bool, storage_options: dict | None = None) -> Store:
    """A zarr store for `target`: a Store instance, a local path, or an fsspec URL (opened
    with `storage_options`: endpoint, credentials, ... as fsspec's filesystem takes them)."""
    if isinstance(target, Store):
        if storage_options:
            raise TPDEError("storage_options apply to URLs, not to a zarr Store object", "invalid_argument")
        return target
    if isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if "://" in text and not text.startswith("file://"):
            try:
                return FsspecStore.from_url(text, read_only=read_only, storage_options=storage_options or None)
            except Exception as error:  # noqa: BLE001  (fsspec: unknown protocol, missing package, bad option)
                raise StorageError(f"cannot open {text}: {one_line(error)}") from None
        if storage_options:
            raise TPDEError(f"storage_options apply to fsspec URLs, not the local path {text!r}",
                            "invalid_argument")
        path = Path(text.removeprefix("file://"))
        if path.exists() and not path.is_dir():
            raise TPDEError(f"{text!r} is a file, not a tpde store (a directory)", "not_a_store")
        return LocalStore(path, read_only=read_only)
    raise TPDEError(
        f"cannot open a store from {type(target).__name__}; give a path, URL or zarr Store",
        "invalid_argument",
    )


def describe_store(store: Store) -> str:
    """The path or URL of a zarr store, else its repr."""
    root = getattr(store, "root", None)
    if root is not None:
        return str(root)
    fs, path = getattr(store, "fs", None), getattr(store, "path", None)
    if fs is not None and isinstance(path, str):
        protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
        return f"{protocol}://{path}"
    return str(store)


def one_line(error: BaseException) -> str:
    """The first line of an exception's message, with its type when the message is bare."""
    lines = str(error).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if isinstance(error, PermissionError):
        return f"permission denied ({text})" if text else "permission denied"
    return text if text and len(text) > 12 else f"{type(error).__name__}: {text}".rstrip(": ")


def _storage_errors(method):
    """Turn any failure of the underlying store into one StorageError line naming the store."""
    reads = ("get", "get_many", "get_ranges", "list_dir", "exists", "is_empty", "open_file", "read_range")
    verb = "read" if method.__name__ in reads else "write to"

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except TPDEError:
            raise
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as error:  # noqa: BLE001  (botocore, aiohttp, OSError...: one line each)
            failure = StorageError(f"cannot {verb} {self.describe()}: {one_line(error)}")
            failure.errno = getattr(error, "errno", None)  # ENOSPC stays ENOSPC
            raise failure from error

    return wrapper


class KeyValueAccess:
    """Synchronous, thread-safe get/set/delete/list over a zarr `Store`."""

    def __init__(self, store: Store, *, durable: bool = True):
        self.store = store
        self.durable = durable  # fsync local writes in commit order (durable.py)
        self._prototype = default_buffer_prototype()
        self._get_sync = getattr(store, "get_sync", None)
        self._set_sync = getattr(store, "set_sync", None)
        # the folder of a plain local store: its writes go through durable.py, its reads
        # are checked to stay inside it
        self.local_root = str(store.root) if type(store) is LocalStore else None
        root = str(store.root) if isinstance(store, LocalStore) else None
        self._real_root = os.path.realpath(root) if root is not None else None
        self._inside: set[str] = set()  # folders (keys) seen to resolve inside the store

    @_storage_errors
    def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when there is no such key."""
        if type(self.store) is LocalStore and getattr(self.store, "_is_open", False):
            # a plain local folder: read the file itself (zarr's get_sync reads it into a
            # buffer and copies it out again)
            return self._read_local(key)
        if self._real_root is not None:
            self._check_inside(key)
        if self._get_sync is not None:
            buf = self._get_sync(key, prototype=self._prototype)
        else:
            buf = sync(self.store.get(key, self._prototype))
        return None if buf is None else buf.to_bytes()

    @_storage_errors
    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Values of several keys, fetched concurrently on stores without sync access."""
        if self._get_sync is not None or len(keys) <= 1:
            return [self.get(k) for k in keys]

        async def fetch() -> list:
            return await asyncio.gather(*(self.store.get(k, self._prototype) for k in keys))

        return [None if b is None else b.to_bytes() for b in sync(fetch())]

    @_storage_errors
    def get_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes | None]:
        """The bytes `[offset, offset + length)` of each `(key, offset, length)`: None when
        the key is missing or holds fewer bytes (fetched concurrently on stores without
        sync access)."""
        if self.reads_files():
            return [self._read_local(key, (offset, length)) for key, offset, length in ranges]
        if self._real_root is not None:
            for key, _, _ in ranges:
                self._check_inside(key)

        def request(offset: int, length: int) -> RangeByteRequest:
            return RangeByteRequest(offset, offset + length)

        if self._get_sync is not None:
            bufs = [self._get_sync(k, prototype=self._prototype, byte_range=request(o, n)) if n else None
                    for k, o, n in ranges]
        else:
            async def fetch() -> list:
                return await asyncio.gather(*(self.store.get(k, self._prototype, byte_range=request(o, n))
                                              for k, o, n in ranges if n))

            fetched = iter(sync(fetch()))
            bufs = [next(fetched) if n else None for _, _, n in ranges]
        out = []
        for (key, _, length), buf in zip(ranges, bufs):
            data = b"" if length == 0 and self.exists(key) else None if buf is None else buf.to_bytes()
            out.append(data if data is not None and len(data) == length else None)
        return out

    @_storage_errors
    def set(self, key: str, value: bytes) -> None:
        """Write `value` under `key` (whole-object write)."""
        buf = self._prototype.buffer.from_bytes(value)
        if self._set_sync is not None:
            self._set_sync(key, buf)
        else:
            sync(self.store.set(key, buf))

    @_storage_errors
    def set_uncommitted(self, key: str, value: bytes, created: set[str] | None = None,
                        flusher: disk.Flusher | None = None) -> None:
        """Write `value` under a key of a step that is not committed yet.

        On a local directory this is a plain write: the step's commit marker, written last
        with `set`, is what makes the step visible, so the temporary file and rename that
        `set` does per key buy nothing here (a crash leaves an uncommitted step, which the
        next save of that step clears). Other stores, subclasses of `LocalStore` included
        (they may override its writes), use `set`. Durable stores fsync the file; folders
        it creates are added to `created` (see `sync_folders`); with `flusher`, on its
        threads (synced once `flusher.wait()` returns).
        """
        if self.local_root is None:
            self.set(key, value)
            return
        if self.store.read_only:
            raise TPDEError(f"{self.describe()} is open read-only", "read_only")
        disk.write_file(os.path.join(self.local_root, key), value, durable=self.durable, created=created,
                        flusher=flusher)

    def append_file(self, key: str, created: set[str] | None = None,
                    flusher: disk.Flusher | None = None) -> disk.AppendFile | None:
        """On a local directory, a file of an uncommitted step that threads append to
        (`durable.AppendFile`: a step's bundle, written as its chunks are coded); None on
        other stores, which write an object whole."""
        if self.local_root is None:
            return None
        if self.store.read_only:
            raise TPDEError(f"{self.describe()} is open read-only", "read_only")
        return disk.AppendFile(os.path.join(self.local_root, key), created, durable=self.durable, flusher=flusher)

    @_storage_errors
    def set_committed(self, key: str, value: bytes) -> None:
        """Write `value` under `key` all at once (manifest, commit marker): on a local
        directory a temporary file, fsynced, renamed into place, its folder fsynced."""
        if self.local_root is None:
            self.set(key, value)
            return
        if self.store.read_only:
            raise TPDEError(f"{self.describe()} is open read-only", "read_only")
        disk.write_atomic(os.path.join(self.local_root, key), value, durable=self.durable)

    def flusher(self) -> disk.Flusher | None:
        """A save's fsync threads (`durable.Flusher`) on a durable local store, else None."""
        return disk.Flusher() if self.local_root is not None and self.durable else None

    def sync_folders(self, created: set[str], flusher: disk.Flusher | None = None) -> None:
        """fsync the local folders a step's writes created (nothing elsewhere); with
        `flusher`, all at once on its threads, and wait for them and for every file
        handed to it before."""
        if self.local_root is not None and self.durable and created:
            disk.sync_dirs(created, flusher)
        if flusher is not None:
            flusher.wait()

    def reads_files(self) -> bool:
        """Whether keys are read straight from the files of a plain local store."""
        return type(self.store) is LocalStore and getattr(self.store, "_is_open", False)

    @_storage_errors
    def open_file(self, key: str) -> tuple[int, int] | None:
        """An open read-only descriptor of a key's file and the file's size (None when
        there is no such file), for `read_range`s of it (a step's bundle), checked as every
        local read is. Only where `reads_files()`; the caller closes it."""
        fd = self._open_local(key)
        if fd is None:
            return None
        try:
            return fd, os.fstat(fd).st_size
        except BaseException:
            os.close(fd)
            raise

    @_storage_errors
    def read_range(self, opened: tuple[int, int], offset: int, length: int) -> bytes | None:
        """Bytes `[offset, offset + length)` of a file from `open_file` (None when it is shorter)."""
        return _read_span(opened[0], opened[1], offset, length)

    def _check_folder(self, key: str) -> None:
        """Refuse a key whose folder resolves outside the local store (each folder's real
        path is resolved once per store object, then remembered)."""
        folder = key.rpartition("/")[0]
        if folder not in self._inside:
            real = os.path.realpath(os.path.join(self._real_root, folder))
            if real != self._real_root and not real.startswith(self._real_root + os.sep):
                self._check_inside(key)  # raises, naming the key
            else:
                self._inside.add(folder)

    def _read_local(self, key: str, span: tuple[int, int] | None = None) -> bytes | None:
        """A key's file of a plain local store, as `LocalStore.get_sync` (None when there
        is no such file; `span`: only its bytes `(offset, length)`, None when the file is
        shorter), opened by `_open_local`."""
        fd = self._open_local(key)
        if fd is None:
            return None
        try:
            if span is not None:
                return _read_span(fd, os.fstat(fd).st_size, *span)
            with open(fd, "rb", buffering=0, closefd=False) as f:
                return f.readall()
        except IsADirectoryError:  # a folder where a file should be: no such file
            return None
        finally:
            os.close(fd)

    def _open_local(self, key: str) -> int | None:
        """A read-only descriptor of a key's file (None when there is no such file),
        checked as `_check_inside` does at the cost of one path resolution per folder: the
        folder's once (then remembered), the file itself opened without following a
        symbolic link (one is checked in full)."""
        self._check_folder(key)
        path = os.path.join(self.store.root, key)
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
        try:
            try:
                return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
            except OSError as e:
                if e.errno != errno.ELOOP:
                    raise
            self._check_inside(key)  # the file is a symbolic link
            return os.open(path, flags)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def _check_inside(self, key: str) -> None:
        """Refuse a key that resolves (through symbolic links) outside the local store:
        the same error whether or not the outside file exists."""
        real = os.path.realpath(os.path.join(self._real_root, key))
        if not real.startswith(self._real_root + os.sep):
            raise TPDEError(f"{key!r} resolves outside the store (a symbolic link?); refusing to read it",
                            "corrupt")

    def has_folders(self) -> bool:
        """Whether keys are files in folders of a local directory this store may write."""
        return type(self.store) is LocalStore and not self.store.read_only

    @_storage_errors
    def make_folders(self, prefixes: list[str], known: set[str] | None = None) -> list[str]:
        """Create the folders `prefixes` and their parents (a local directory; other
        stores have no folders), skipping those in `known` (folders that exist; those
        seen here are added). Returns the folders it created, parents first."""
        if not self.has_folders():
            return []
        known = set() if known is None else known
        made = []
        for prefix in prefixes:
            parts = prefix.split("/")
            for i in range(1, len(parts) + 1):
                path = os.path.join(self.store.root, *parts[:i])
                if path in known:
                    continue
                try:
                    os.mkdir(path)
                    made.append(path)
                except FileExistsError:
                    pass
                known.add(path)
        return made

    @_storage_errors
    def delete(self, key: str) -> None:
        """Remove `key` if present."""
        sync(self.store.delete(key))

    @_storage_errors
    def delete_prefix(self, prefix: str) -> None:
        """Remove every key under the folder `prefix` (no trailing slash)."""
        sync(self.store.delete_dir(prefix))

    @_storage_errors
    def list_dir(self, prefix: str) -> list[str]:
        """Names directly under the folder `prefix` (keys and sub-folders)."""
        return sorted(set(collect_aiterator(self.store.list_dir(prefix))))

    @_storage_errors
    def exists(self, key: str) -> bool:
        """Whether `key` holds a value."""
        return sync(self.store.exists(key))

    @_storage_errors
    def is_empty(self) -> bool:
        """Whether the store holds no keys at all (a writer lease alone does not count)."""
        from .lease import LEASE_KEY

        return sync(self.store.is_empty("")) or not [n for n in self.list_dir("") if n != LEASE_KEY]

    def describe(self) -> str:
        """A short human name for the store (its path or URL), for error messages."""
        return describe_store(self.store)


def _read_span(fd: int, size: int, offset: int, length: int) -> bytes | None:
    """Bytes `[offset, offset + length)` of the open file `fd` of `size` bytes (None when
    it is shorter)."""
    if offset + length > size:
        return None
    try:
        data = os.pread(fd, length, offset) if length else b""
    except IsADirectoryError:  # a folder where a file should be: no such file
        return None
    return data if len(data) == length else None


KeyValueStore = KeyValueAccess  # the name before the store package split
