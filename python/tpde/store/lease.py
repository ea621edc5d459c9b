"""The writer lease: one process at a time may change a store.

A writer (any `CheckpointStore` that saves, deletes, prunes or cleans) first takes the
lease, a small JSON object at the store's root (`writer.lease`) naming its owner token,
pid, host, boot id, start time and heartbeat. Readers never look at it.

- Local directories: the lease is written under a temporary name and hard-linked to its own
  (atomic, fails if the name exists, and no one reads it half-written; local file systems and
  NFS), or created with O_CREAT|O_EXCL where the file system has no hard links.
- Other stores: the object is created conditionally where the store can (S3's If-None-Match
  through s3fs, zarr's `set_if_not_exists` on stores that implement it atomically), then
  read back after a short pause: whoever reads back its own token holds the lease.

The holder renews its heartbeat every `HEARTBEAT_S` seconds on a daemon thread and checks,
just before writing each commit marker, that the lease is still its own: a writer that lost
its lease raises instead of committing.

A lease is *stale* when its holder is gone: on the same host (same hostname and boot id),
when its pid no longer runs (or runs another program, by start time); on another host, or
after a reboot, when its heartbeat is older than `EXPIRE_S` seconds. A stale lease is never
taken over silently: `CheckpointStore(..., takeover=True)` or `tpde-pack unlock STORE` take
it over; a live lease is never taken over except by `tpde-pack unlock --force`.

The lease belongs to a process: `CheckpointStore` objects of one process on the same store
share it (`share`), and it is given back when the last of them is closed or collected.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from ..errors import TPDEError

LEASE_KEY = "writer.lease"
HEARTBEAT_S = 10.0
EXPIRE_S = 60.0
_READBACK_S = 0.2  # pause before reading back a lease written without an atomic create


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


HOST = socket.gethostname()
BOOT = _boot_id()


def process_start(pid: int) -> int | None:
    """Start time of process `pid` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return None if fields[0] == b"Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease object says about its holder."""

    owner: str
    pid: int
    host: str
    boot: str
    started: float
    heartbeat: float
    pid_start: int | None = None

    def to_bytes(self) -> bytes:
        """JSON bytes of the lease."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LeaseInfo | None:
        """Parse a lease; None for bytes that are not one (a torn or foreign file)."""
        try:
            fields = json.loads(data)
            info = cls(**fields)
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
            return None
        ok = (isinstance(info.owner, str) and isinstance(info.host, str) and isinstance(info.boot, str)
              and type(info.pid) is int and all(isinstance(t, (int, float)) for t in (info.started, info.heartbeat))
              and (info.pid_start is None or type(info.pid_start) is int))
        return info if ok else None

    def describe(self, now: float | None = None) -> str:
        """'pid 123 on host h (since 2026-12-05 07:50:01 UTC, heartbeat 3 s ago)'."""
        now = time.time() if now is None else now
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started))
        host = self.host[:64] if isinstance(self.host, str) else "?"
        return f"pid {self.pid} on host {host!r} (since {since}, heartbeat {max(0, now - self.heartbeat):.0f} s ago)"

    def stale_reason(self, now: float | None = None) -> str | None:
        """Why the holder is gone, or None when it may still be running (module docstring)."""
        now = time.time() if now is None else now
        if self.host == HOST and self.boot == BOOT and BOOT:
            if not pid_alive(self.pid):
                return f"process {self.pid} is not running"
            start = process_start(self.pid)
            if self.pid_start is not None and start is not None and start != self.pid_start:
                return f"pid {self.pid} now belongs to another process"
            return None
        if now - self.heartbeat > EXPIRE_S:
            return f"no heartbeat for {now - self.heartbeat:.0f} s (a lease expires after {EXPIRE_S:.0f} s)"
        return None


def new_lease() -> LeaseInfo:
    """A lease for this process, with a fresh owner token."""
    now = time.time()
    pid = os.getpid()
    return LeaseInfo(uuid.uuid4().hex, pid, HOST, BOOT, now, now, process_start(pid))


class _LocalBackend:
    """The lease as a file in a local directory (written aside, then hard-linked)."""

    def __init__(self, root: str):
        self.root = root
        self.path = os.path.join(root, LEASE_KEY)

    def create(self, data: bytes) -> bool:
        """Create the lease holding `data` unless one exists. The bytes are written and
        synced under a temporary name first and then hard-linked to the lease's name (a
        link fails if the name exists), so a racing writer never reads a half-written
        lease and takes it for a stale one."""
        os.makedirs(self.root, exist_ok=True)
        tmp = f"{self.path}.{uuid.uuid4().hex}.new"
        with open(tmp, "wb") as f:
            try:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                f.close()
                os.unlink(tmp)  # a lease we could not write (full disk) must not lock anyone out
                raise
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: an exclusive create, then the bytes
            return self._create_exclusive(data)
        finally:
            os.unlink(tmp)

    def _create_exclusive(self, data: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            if os.write(fd, data) != len(data):
                raise OSError(f"short write of the writer lease {self.path}")
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        os.close(fd)
        return True

    def read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read(65536)
        except FileNotFoundError:
            return None

    def replace(self, data: bytes) -> None:
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def remove_if(self, data: bytes | None) -> bool:
        """Remove the lease if it still holds `data` (None: whatever it holds): it is moved
        aside atomically first, and put back if it changed meanwhile."""
        aside = f"{self.path}.{uuid.uuid4().hex}.gone"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return data is None
        try:
            with open(aside, "rb") as f:
                moved = f.read(65536)
            if data is not None and moved != data:
                try:
                    os.link(aside, self.path)  # put it back unless someone created one
                except OSError:
                    pass
                return False
            return True
        finally:
            os.unlink(aside)


class _StoreBackend:
    """The lease as an object of any zarr store (conditional create, then read-back)."""

    def __init__(self, kv):
        self.kv = kv

    def create(self, data: bytes) -> bool:
        if self.read() is not None:
            return False
        if not self._create_exclusive(data):
            return False
        time.sleep(_READBACK_S)  # a racing writer's object lands before we read ours back
        return self.read() == data

    def _create_exclusive(self, data: bytes) -> bool:
        store = self.kv.store
        fs, path = getattr(store, "fs", None), getattr(store, "path", None)
        if fs is not None and path is not None and hasattr(fs, "_pipe_file"):
            from zarr.core.sync import sync

            target = f"{path.rstrip('/')}/{LEASE_KEY}"
            try:
                sync(fs._pipe_file(target, data, mode="create"))
                return True
            except FileExistsError:
                return False
            except (TypeError, NotImplementedError, ValueError):
                pass  # this file system has no conditional create: read-back decides
            except OSError as e:  # s3fs: 412 Precondition Failed
                if "412" in str(e) or "Precondition" in str(e):
                    return False
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        buf = default_buffer_prototype().buffer.from_bytes(data)
        sync(store.set_if_not_exists(LEASE_KEY, buf))
        return True

    def read(self) -> bytes | None:
        return self.kv.get(LEASE_KEY)

    def replace(self, data: bytes) -> None:
        self.kv.set(LEASE_KEY, data)

    def remove_if(self, data: bytes | None) -> bool:
        current = self.read()
        if current is None:
            return data is None
        if data is not None and current != data:
            return False
        self.kv.delete(LEASE_KEY)
        return True


def backend_for(kv):
    """The lease backend of a `KeyValueStore`: a lock file on local directories."""
    from zarr.storage import LocalStore

    if isinstance(kv.store, LocalStore):
        return _LocalBackend(str(kv.store.root))
    return _StoreBackend(kv)


def read_lease(kv) -> tuple[bytes | None, LeaseInfo | None]:
    """The lease's raw bytes and parsed form (None, None: no lease)."""
    data = backend_for(kv).read()
    return data, None if data is None else LeaseInfo.from_bytes(data)


def held_message(where: str, info: LeaseInfo | None, stale: str | None) -> str:
    """The one-line error a second writer gets."""
    holder = "an unreadable lease" if info is None else info.describe()
    if stale:
        return (f"{where} has a stale writer lease: {holder}; {stale}. Take it over with "
                f"CheckpointStore(..., takeover=True) or `tpde-pack unlock {where}`")
    return (f"{where} is being written by another writer: {holder}; one writer at a time "
            f"(if that writer is gone for good: `tpde-pack unlock --force {where}`)")


class WriterLease:
    """This process's claim on a store's writer lease (see the module docstring)."""

    def __init__(self, kv, where: str):
        self._backend = backend_for(kv)
        self._where = where
        self._info: LeaseInfo | None = None
        self._data: bytes | None = None
        self._lost: str | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lease (and has not seen it lost)."""
        return self._info is not None and self._lost is None

    def acquire(self, *, takeover: bool = False) -> None:
        """Take the lease; TPDEError("store_locked") naming the holder when another has it.

        With `takeover`, a stale lease is replaced; a live one is still refused.
        """
        if self.held:
            return
        for _ in range(3):
            info = new_lease()
            data = info.to_bytes()
            if self._backend.create(data):
                self._took(info, data)
                return
            current, holder = self._backend.read(), None
            if current is None:
                continue  # released meanwhile: try again
            holder = LeaseInfo.from_bytes(current)
            stale = "the lease object is unreadable" if holder is None else holder.stale_reason()
            if not (takeover and stale):
                raise TPDEError(held_message(self._where, holder, stale), "store_locked")
            self._backend.remove_if(current)  # only that exact stale lease
        raise TPDEError(f"{self._where}: could not take the writer lease (other writers are racing for it)",
                        "store_locked")

    def _took(self, info: LeaseInfo, data: bytes) -> None:
        self._info, self._data, self._lost = info, data, None
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="tpde-lease", daemon=True)
        self._thread.store = self._where  # names the store in a leak report
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.renew()
            except Exception:
                pass

    def renew(self) -> None:
        """Refresh the heartbeat if the lease is still ours (else remember it was lost)."""
        with self._lock:
            if self._info is None or self._lost is not None:
                return
            current = self._backend.read()
            if current != self._data:
                self._lost = self._lost_reason(current)
                return
            info = LeaseInfo(**{**asdict(self._info), "heartbeat": time.time()})
            data = info.to_bytes()
            self._backend.replace(data)
            self._info, self._data = info, data

    def _lost_reason(self, current: bytes | None) -> str:
        if current is None:
            return "its lease was removed"
        other = LeaseInfo.from_bytes(current)
        return "its lease was taken over" + ("" if other is None else f" by {other.describe()}")

    def confirm(self) -> bool:
        """Whether the lease is still ours, read from the store now (not only at the
        last heartbeat): a store deleted and made again under a live process is not."""
        with self._lock:
            if self._info is None:
                return False
            if self._lost is None:
                current = self._backend.read()
                if current != self._data:
                    self._lost = self._lost_reason(current)
            return self._lost is None

    def check(self) -> None:
        """Raise TPDEError("lease_lost") unless this object still holds the lease."""
        with self._lock:
            if self._info is None:
                raise TPDEError(f"{self._where}: this writer does not hold the writer lease", "lease_lost")
            if self._lost is None:
                current = self._backend.read()
                if current != self._data:
                    self._lost = self._lost_reason(current)
            if self._lost is not None:
                raise TPDEError(f"{self._where}: this writer lost the writer lease ({self._lost}); "
                                "nothing more is committed", "lease_lost")

    def release(self) -> None:
        """Give the lease up (only if it is still ours); stops the heartbeat."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            data, self._info, self._data = self._data, None, None
            if data is not None and self._lost is None:
                try:
                    self._backend.remove_if(data)
                except OSError:
                    pass


def unlock(kv, where: str, *, force: bool = False) -> tuple[bool, LeaseInfo | None]:
    """Remove a stale writer lease (any lease with `force`); returns whether there was one
    and what it said (None: unreadable).

    TPDEError("store_locked") when the holder may still be running and not `force`.
    """
    backend = backend_for(kv)
    data = backend.read()
    if data is None:
        return False, None
    info = LeaseInfo.from_bytes(data)
    stale = "the lease object is unreadable" if info is None else info.stale_reason()
    if not stale and not force:
        raise TPDEError(held_message(where, info, None), "store_locked")
    if not backend.remove_if(data):
        raise TPDEError(f"{where}: the writer lease changed while unlocking; look again", "store_locked")
    return True, info
