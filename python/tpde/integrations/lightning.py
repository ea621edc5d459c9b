"""Lightning: a `CheckpointIO` plugin that keeps checkpoints in a tpde store.

    from tpde.integrations.lightning import CheckpointIO
    trainer = L.Trainer(plugins=[CheckpointIO("runs/exp1.tpde")],
                        callbacks=[ModelCheckpoint(every_n_train_steps=100, save_top_k=-1)])
    trainer.fit(model, data)                       # each save: one step of the store
    trainer.fit(model, data, ckpt_path=".../epoch=0-step=500.ckpt")   # resume, bit-exact

Each `.ckpt` path Lightning asks for becomes a small pointer file (JSON naming the store
step), so ModelCheckpoint's file logic (top-k, last, resuming by path) works unchanged;
the state itself goes into the store as a temporal delta against the previous save. The
store's step is the checkpoint's `global_step`; a save of the same state at a stored
step (a resumed run) points to it, another state at a stored step gets the next free
step. Non-tensor objects that are not JSON-able are refused unless `allow_pickle=True`
(then they are pickled into the store, and unpickled on load: only for stores you
trust). Removing a checkpoint removes its pointer file; with `prune=True` the store also
drops steps no remaining pointer of this run (nor a kept delta) needs, else it keeps the
run's history.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import CheckpointIO as _LightningCheckpointIO

from ..errors import TPDEError
from ..folders import same_tree
from ..store import CheckpointStore

POINTER_KEY = "tpde_checkpoint"
_MAX_POINTER = 64 * 1024


class CheckpointIO(_LightningCheckpointIO):
    """`save_checkpoint` / `load_checkpoint` / `remove_checkpoint` through a tpde store
    (`store`: a path, URL, zarr Store or CheckpointStore). `save_args` (error_bound=,
    cross_state=) go to `CheckpointStore.save`."""

    def __init__(self, store: object, *, allow_pickle: bool = False, prune: bool = False, **save_args):
        super().__init__()
        # a job restarted after a crash takes over the dead run's stale lease; a live writer is refused
        self.store = store if isinstance(store, CheckpointStore) else CheckpointStore(store, mode="a", takeover=True)
        self.location = _location(store)
        self.allow_pickle = allow_pickle
        self.prune = prune
        self.save_args = save_args
        self._live: dict[str, int] = {}  # pointer path -> step, for prune

    def save_checkpoint(self, checkpoint: dict[str, Any], path: object, storage_options: Any = None) -> None:
        """Save `checkpoint` as a step of the store and write a pointer file at `path`."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        global_step = checkpoint.get("global_step") if isinstance(checkpoint, dict) else None
        steps = self.store.steps()
        if type(global_step) is int and global_step >= 0 and global_step not in steps:
            step = global_step
        elif global_step in steps and self._holds(global_step, checkpoint):
            step = None  # a resumed run saving the same state again: point to it
        else:
            step = steps[-1] + 1 if steps else 0
        if step is None:
            step = global_step
        else:
            meta = {"lightning": {"path": os.fspath(path), "global_step": global_step,
                                  "epoch": checkpoint.get("epoch")}}
            self.store.save(step, checkpoint, allow_pickle=self.allow_pickle, meta=_jsonable(meta), **self.save_args)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps({POINTER_KEY: {"store": self.location, "step": step}}) + "\n")
        os.replace(tmp, target)  # the pointer appears only once the step is committed
        self._live[os.fspath(path)] = step

    def _holds(self, step: int, checkpoint: dict) -> bool:
        try:
            return same_tree(self.store.load(step, allow_pickle=self.allow_pickle), checkpoint)
        except TPDEError:
            return False

    def load_checkpoint(self, path: object, map_location: Any = None, weights_only: bool | None = None) -> dict:
        """The checkpoint a pointer file written by `save_checkpoint` names (tensors on cpu)."""
        step, location = read_pointer(path, with_store=True)
        store = self.store
        if location is not None and location != self.location:  # saved by another run's plugin
            store = CheckpointStore(location, mode="r")
        return store.load(step, allow_pickle=self.allow_pickle)

    def remove_checkpoint(self, path: object) -> None:
        """Delete the pointer file (and, with prune=True, steps nothing needs any more)."""
        target = Path(path)
        if target.exists():
            target.unlink()
        self._live.pop(os.fspath(path), None)
        if self.prune:
            self.store.prune(keep=set(self._live.values()) or {self.store.steps()[-1]})

    def teardown(self) -> None:
        """Wait for the store's background work (none unless save_async is used)."""
        self.store.wait()


def read_pointer(path: object, *, with_store: bool = False) -> int | tuple[int, str | None]:
    """The store step a pointer file names (and the store, if `with_store`); TPDEError if
    `path` is not a pointer file."""
    target = Path(path)
    try:
        if target.stat().st_size > _MAX_POINTER:
            raise ValueError("too large for a pointer file")
        body = json.loads(target.read_text())[POINTER_KEY]
        step = body["step"]
        if type(step) is not int or step < 0:
            raise ValueError(f"bad step {step!r}")
        location = body.get("store")
        if location is not None and not isinstance(location, str):
            raise ValueError("bad store location")
    except FileNotFoundError:
        raise FileNotFoundError(f"Checkpoint file not found: {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TPDEError(f"{path}: not a tpde checkpoint pointer ({e})", "invalid_argument") from None
    return (step, location) if with_store else step


def _location(store: object) -> str | None:
    """Where a store given as a path or URL is, as a pointer file records it."""
    if isinstance(store, (str, os.PathLike)):
        text = os.fspath(store)
        return text if "://" in text else os.path.abspath(text)
    return None


def _jsonable(meta: dict) -> dict:
    """`meta` with values JSON cannot hold replaced by their repr."""
    try:
        json.dumps(meta, allow_nan=False)
        return meta
    except (TypeError, ValueError):
        inner = meta["lightning"]
        return {"lightning": {k: (v if isinstance(v, (int, str, type(None))) else repr(v)) for k, v in inner.items()}}
