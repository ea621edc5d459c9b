"""A step's folders and zarr metadata files, written on a thread of their own while its
chunks are coded.

On a local directory a step needs a folder per array and per group, a `.zarray` per
array and a `.zgroup` per group besides its chunk files: a few file-system calls per
tensor, which cost as much as coding on some file systems (creating an inode is
serialized in the kernel). `StepLayout` creates the folders (parents first, in the order
the coding threads need them) and then writes the metadata files, so that this work
overlaps the coding instead of following it; a chunk write waits only for its own
array's folder. Other stores have no folders: their metadata is written at commit time.
"""

from __future__ import annotations

import threading

from ..errors import StoreIOError
from ..state.arrays import ArraySpec
from .durable import Flusher
from .kv import KeyValueAccess
from .schema import ROOT_GROUP, array_prefix, group_bytes, step_prefix, zarray_bytes


def step_metadata(step: int, specs: dict[str, ArraySpec], chunks: dict[str, tuple]) -> dict[str, bytes]:
    """The zarr metadata files of a step: a `.zgroup` per group, a `.zarray` per array."""
    meta: dict[str, bytes] = {f"{step_prefix(step)}/{ROOT_GROUP}": group_bytes()}
    for name, spec in specs.items():
        parts = name.split("/")
        for i in range(1, len(parts)):
            meta[f"{step_prefix(step)}/{'/'.join(parts[:i])}/{ROOT_GROUP}"] = group_bytes()
        meta[f"{array_prefix(step, name)}/.zarray"] = zarray_bytes(spec, chunks[name])
    return meta


class StepLayout:
    """Folders and metadata files of step `step` of a local store, written by a thread
    started at once; `order`: the arrays in the order their chunks are coded."""

    def __init__(self, kv: KeyValueAccess, step: int, specs: dict[str, ArraySpec], chunks: dict[str, tuple],
                 order: list[str], flusher: Flusher | None = None):
        self.kv = kv
        self.flusher = flusher  # the save's fsync threads (durable stores)
        self.step = step
        self.meta = step_metadata(step, specs, chunks)
        self.order = order
        self._ready = {name: threading.Event() for name in order}
        self._error: BaseException | None = None
        self.made: list[str] = []  # the folders it created, parents first
        self._thread = threading.Thread(target=self._run, name=f"tpde-layout-{step}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            known: set[str] = set()
            for name in self.order:
                self.made += self.kv.make_folders([array_prefix(self.step, name)], known)
                self._ready[name].set()
            for key, value in self.meta.items():
                try:
                    self.kv.set_uncommitted(key, value, flusher=self.flusher)
                except OSError as e:
                    raise StoreIOError(f"step {self.step}: cannot write {key} ({e.strerror or e})", e.errno) from e
        except BaseException as e:  # noqa: BLE001  (handed to the coding threads and the commit)
            self._error = e
        finally:
            for event in self._ready.values():
                event.set()

    def wait_folder(self, name: str) -> None:
        """Wait until array `name`'s folder exists (raise what stopped the thread)."""
        self._ready[name].wait()
        if self._error is not None:
            raise self._error

    def join(self) -> None:
        """Wait for the thread to end."""
        self._thread.join()

    def finish(self) -> None:
        """Wait for the thread; raise what stopped it, if anything."""
        self._thread.join()
        if self._error is not None:
            raise self._error
