"""The one place where tpde.dcp touches tpde's store machinery (zarr stores, key/value access).

Everything else in tpde.dcp goes through the public `CheckpointStore` API.
"""

from __future__ import annotations

import os
import threading

from zarr.abc.store import Store
from zarr.storage import FsspecStore, LocalStore

from ..errors import TPDEError
from ..store.kv import KeyValueAccess

_OPEN: dict[tuple, object] = {}
_OPEN_LOCK = threading.Lock()


def is_url(root: str) -> bool:
    """Whether `root` is an fsspec URL (and not a local path or file:// URL)."""
    return "://" in root and not root.startswith("file://")


def normalize_root(root: object) -> str:
    """The checkpoint's root as a string (local paths made absolute)."""
    if not isinstance(root, (str, os.PathLike)):
        raise TPDEError(f"a tpde.dcp checkpoint is a path or fsspec URL, not {type(root).__name__}",
                        "invalid_argument")
    text = os.fspath(root)
    if is_url(text):
        return text.rstrip("/")
    return os.path.abspath(text.removeprefix("file://"))


def zarr_store(root: str, sub: str, storage_options: dict | None, *, read_only: bool) -> Store:
    """A zarr store for the folder `sub` under `root` (sub "" is the root itself)."""
    if is_url(root):
        url = f"{root}/{sub}" if sub else root
        try:
            return FsspecStore.from_url(url, storage_options=storage_options or None, read_only=read_only)
        except TPDEError:
            raise
        except Exception as error:  # noqa: BLE001  (fsspec raises many types: bad protocol, missing package)
            raise TPDEError(f"cannot open {url}: {_one_line(error)}", "not_a_store") from None
    if storage_options:
        raise TPDEError(f"storage_options apply to fsspec URLs, not the local path {root}", "invalid_argument")
    return LocalStore(os.path.join(root, sub) if sub else root, read_only=read_only)


def root_kv(root: str, storage_options: dict | None, *, read_only: bool) -> KeyValueAccess:
    """Blocking get/set/list access to the checkpoint's root folder."""
    return KeyValueAccess(zarr_store(root, "", storage_options, read_only=read_only))


def rank_store(root: str, folder: str, storage_options: dict | None, *, mode: str, settings: dict, cached: bool):
    """The `CheckpointStore` of one rank's folder; writers reuse one per (root, folder, settings)
    in this process, so the previous save's reconstruction stays in memory across Writer objects."""
    from ..store import CheckpointStore

    key = (os.getpid(), root, folder, repr(sorted((storage_options or {}).items())), mode,
           tuple(sorted(settings.items())))
    if cached:
        with _OPEN_LOCK:
            store = _OPEN.get(key)
        if store is not None:
            return store
    # takeover: a rank process killed mid-save leaves a stale writer lease on its folder; the
    # resumed job takes it over (a live one, another job writing the same root, is refused)
    store = CheckpointStore(zarr_store(root, folder, storage_options, read_only=mode == "r"), mode=mode,
                            progress=False, takeover=mode != "r", **settings)
    if cached:
        with _OPEN_LOCK:
            _OPEN[key] = store
    return store


def forget_rank_stores(root: str) -> None:
    """Close and drop this process's cached rank stores of `root` (after pruning it, or
    when its writer is closed): their writer leases are released and the next save opens
    them afresh."""
    with _OPEN_LOCK:
        dropped = [_OPEN.pop(k) for k in [k for k in _OPEN if k[0] == os.getpid() and k[1] == root]]
    for store in dropped:
        store.close()


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
