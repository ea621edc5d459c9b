"""Hugging Face Trainer: every checkpoint folder the Trainer saves, kept in a tpde store.

    from tpde.integrations.hf import TPDECallback, restore
    trainer = Trainer(..., args=TrainingArguments(..., save_total_limit=1),
                      callbacks=[TPDECallback("runs/exp1.tpde")])
    trainer.train()
    ...
    folder = restore("runs/exp1.tpde", "restored", step=500)  # or the latest step
    trainer.train(resume_from_checkpoint=folder)

Each save (`checkpoint-N/`) becomes step N of the store: the model and optimizer as
temporal deltas, the other files (trainer_state.json, rng_state.pth, training_args.bin,
...) as byte-exact blobs, never unpickled. On disk the Trainer keeps what
`save_total_limit` asks (`keep_on_disk` can ask for fewer); the store keeps every save.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from ..errors import TPDEError
from ..folders import Source, read_source, same_as_stored, write_folder
from ..store import CheckpointStore

CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _open(store: object, mode: str) -> CheckpointStore:
    """`store` as a CheckpointStore; a job restarted after a crash takes over the dead run's
    stale writer lease (a live writer is still refused: docs/security.md)."""
    if isinstance(store, CheckpointStore):
        return store
    return CheckpointStore(store, mode=mode, takeover=mode != "r")


def save_folder(store: object, folder: str | Path, step: int | None = None, **save_args) -> int:
    """Put a Trainer checkpoint folder into `store` as one step (default: its number);
    returns the step. A folder whose step is already stored with the same content (same
    files; safetensors and blobs byte for byte, pickles tensor for tensor) is not stored
    again; other content at that step raises TPDEError "step_exists". `save_args` go to
    `CheckpointStore.save` (error_bound=, cross_state=)."""
    store = _open(store, "a")
    source = Source(Path(folder), "folder")
    if step is None:
        match = CHECKPOINT.fullmatch(source.path.name)
        if match is None:
            raise TPDEError(f"{folder}: not named checkpoint-N; pass step=", "invalid_argument")
        step = int(match.group(1))
    loaded = read_source(source)
    if step in store.steps():  # a run resumed from an earlier step saves this step again
        if same_as_stored(store, step, loaded):
            return step
        raise TPDEError(f"step {step} is already in {store!r}, with other content than {folder}", "step_exists")
    store.save(step, loaded.state, blobs=loaded.blobs, meta=loaded.meta, **save_args)
    return step


def restore(store: object, output_dir: str | Path, step: int | None = None) -> str:
    """Write step `step` (default: the latest) of `store` as `output_dir/checkpoint-<step>`
    and return that folder, ready for `trainer.train(resume_from_checkpoint=...)`."""
    store = _open(store, "r")
    steps = store.steps()
    if not steps:
        raise TPDEError(f"{store!r} holds no checkpoint yet", "unknown_step")
    step = steps[-1] if step is None else step
    folder = Path(output_dir) / f"checkpoint-{step}"
    write_folder(store, step, folder)
    return str(folder)


class TPDECallback(TrainerCallback):
    """A `TrainerCallback` that puts every checkpoint folder the Trainer saves into a
    tpde store (step = the folder's global step).

    `keep_on_disk`: how many of the newest stored folders to leave on disk (None: leave
    what the Trainer keeps, i.e. `save_total_limit`; 0: delete each folder once stored;
    the best model's folder is never deleted). `save_args` go to `CheckpointStore.save`.
    """

    def __init__(self, store: object, *, keep_on_disk: int | None = None, **save_args):
        if keep_on_disk is not None and (type(keep_on_disk) is not int or keep_on_disk < 0):
            raise TPDEError(f"keep_on_disk must be an integer >= 0 or None, not {keep_on_disk!r}",
                            "invalid_argument")
        self.store = _open(store, "a")
        self.keep_on_disk = keep_on_disk
        self.save_args = save_args
        self.stored: list[Path] = []

    def on_save(self, args, state, control, **kwargs):
        """Store the folder the Trainer just wrote, then trim the folders on disk."""
        if not state.is_world_process_zero:
            return control
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            raise TPDEError(f"{folder}: the Trainer's checkpoint folder is missing (with save_total_limit, the "
                            f"Trainer deletes it at once when {args.output_dir} holds later checkpoints "
                            "of an earlier run; resume into an empty output_dir)", "not_found")
        save_folder(self.store, folder, state.global_step, **self.save_args)
        self.stored.append(folder)
        if self.keep_on_disk is not None:
            best = Path(state.best_model_checkpoint).resolve() if state.best_model_checkpoint else None
            doomed = self.stored[: max(len(self.stored) - self.keep_on_disk, 0)]
            for old in doomed:
                if old.resolve() != best and old.is_dir():
                    shutil.rmtree(old)
            self.stored = [f for f in self.stored if f not in doomed or (best and f.resolve() == best)]
        return control
