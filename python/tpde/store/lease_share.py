"""This process's writer leases, shared by every store object of one store: the first
writer object takes the lease (lease.py), the last one gives it back."""

from __future__ import annotations

import atexit
import os
import threading

from .lease import WriterLease, _LocalBackend

_shared: dict[str, list] = {}  # store identity -> [WriterLease, users]
_shared_lock = threading.RLock()  # a finalizer (unshare) may run inside share()


def store_identity(kv) -> str:
    """What makes two store objects the same store, for sharing a lease in a process."""
    root = getattr(kv.store, "root", None)
    if root is not None:
        return "file:" + os.path.realpath(str(root))
    return f"{type(kv.store).__name__}:{kv.store}"


def share(kv, where: str, *, takeover: bool = False) -> WriterLease:
    """This process's lease on the store of `kv`, taken if no object of this process holds
    it yet; pair every call with `unshare`."""
    release_deferred()
    ident = store_identity(kv)
    with _shared_lock:
        entry = _shared.get(ident)
        if entry is not None and entry[0].confirm():
            entry[1] += 1
            return entry[0]
        lease = WriterLease(kv, where)
        lease.acquire(takeover=takeover)
        _shared[ident] = [lease, 1]
        return lease


_deferred: list[WriterLease] = []  # finalized while another thread held _shared_lock


def unshare_later(lease: WriterLease) -> None:
    """`unshare` from a finalizer. A finalizer runs on whatever thread allocates when the
    collector runs, even inside a thread that `share` is starting while it holds
    `_shared_lock`: so it never waits for that lock (a busy lock defers the release to the
    next `share`/`unshare`, or to exit), and a non-local lease is released on a fresh
    thread (a finalizer may run inside zarr's event loop, where blocking calls fail)."""
    if not _shared_lock.acquire(blocking=False):
        _deferred.append(lease)
        return
    try:
        last = _forget(lease)
    finally:
        _shared_lock.release()
    if last:
        _release_soon(lease)


def release_deferred() -> None:
    """Give back the leases whose store objects were finalized while the lock was busy."""
    pending = []
    while _deferred:
        pending.append(_deferred.pop())
    if not pending:
        return
    with _shared_lock:
        last = [lease for lease in pending if _forget(lease)]
    for lease in last:
        _release_soon(lease)


def _release_soon(lease: WriterLease) -> None:
    if isinstance(lease._backend, _LocalBackend):
        lease.release()
    else:
        threading.Thread(target=_release_quietly, args=(lease,), name="tpde-lease-release", daemon=True).start()


def _release_quietly(lease: WriterLease) -> None:
    try:
        lease.release()
    except Exception:  # noqa: BLE001 - a store gone away: the lease expires by its heartbeat
        pass


def _forget(lease: WriterLease) -> bool:
    """One user fewer of a shared lease (under `_shared_lock`); True for the last one."""
    for ident, entry in list(_shared.items()):
        if entry[0] is lease:
            entry[1] -= 1
            if entry[1] > 0:
                return False
            del _shared[ident]
            break
    return True


def unshare(lease: WriterLease) -> None:
    """One user fewer of a shared lease; the last one gives the lease back."""
    with _shared_lock:
        last = _forget(lease)
    if last:
        lease.release()
    release_deferred()


atexit.register(release_deferred)
