"""Rank processes for tests/test_dcp.py (spawned with torch.multiprocessing on gloo, CPU).

Each job trains or restores a small FSDP2 (`fully_shard`) model with AdamW and writes what
the parent needs to check into files: full (unsharded) reference states and read counts.
"""

from __future__ import annotations

import datetime
import os
import signal
import warnings

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

CHUNK_ELEMENTS = 256  # small chunks, so that partial reads are visible in the counts


def make_model() -> torch.nn.Module:
    """A small model; the last layer's 6 rows leave some rank of 4 an empty shard."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.LayerNorm(64), torch.nn.ReLU(),
        torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 6),
    )


def sharded(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2 over every Linear and the root."""
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    return model


def train_steps(model, opt, n: int, seed: int) -> None:
    """`n` AdamW steps on rank-dependent random data."""
    g = torch.Generator().manual_seed(seed * 100 + (dist.get_rank() if dist.is_initialized() else 0))
    for _ in range(n):
        x = torch.randn(8, 32, generator=g)
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()


def state_of(model, opt, step: int) -> dict:
    """The DCP state to save: model, optimizer and plain Python objects."""
    msd, osd = get_state_dict(model, opt)
    return {"model": msd, "optim": osd, "extra": {"step": step, "note": f"step {step}"}}


def full_state(model, opt, step: int) -> dict:
    """The unsharded state on every rank, as plain cpu tensors (reference for bit checks)."""
    opts = StateDictOptions(full_state_dict=True, cpu_offload=False)
    msd, osd = get_state_dict(model, opt, options=opts)
    return {"model": msd, "optim": osd, "extra": {"step": step, "note": f"step {step}"}}


def _init(rank: int, world: int, port: int) -> None:
    warnings.simplefilter("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))


def _fresh(world_sharded: bool):
    model = make_model()
    if world_sharded:
        model = sharded(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_steps(model, opt, 1, seed=999)  # optimizer state exists, with values unlike any save
    return model, opt


def job_train_save(rank: int, world: int, port: int, root: str, out: str, steps: list[int]) -> None:
    """Train, and save `steps` through tpde.dcp.Writer (and the full states as references)."""
    import tpde.dcp

    _init(rank, world, port)
    model = sharded(make_model())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = tpde.dcp.Writer(root, chunk_elements=CHUNK_ELEMENTS)
    for i, step in enumerate(steps):
        train_steps(model, opt, 2, seed=i)
        dcp.save(state_of(model, opt, step), storage_writer=writer, checkpoint_id=step)
        ref = full_state(model, opt, step)
        if rank == 0:
            torch.save(ref, os.path.join(out, f"ref_{step}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def job_restore(rank: int, world: int, port: int, root: str, out: str, steps: list[int], tag: str,
                then_save: int | None) -> None:
    """Load `steps` into a fresh sharded model (DCP reshards), write its full state for the
    parent to compare, count the chunk reads, and optionally save one more step."""
    import tpde.dcp
    from tpde.store.kv import KeyValueAccess

    _init(rank, world, port)
    reads = []
    original = KeyValueAccess.get  # every key read of a store goes through it

    def counting(self, key, *args, **kwargs):
        reads.append(key)
        return original(self, key, *args, **kwargs)

    KeyValueAccess.get = counting
    model, opt = _fresh(True)
    for step in steps:
        state = state_of(model, opt, -1)
        reads.clear()
        dcp.load(state, storage_reader=tpde.dcp.Reader(root, step=step))
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        chunk_reads = [k for k in reads if "/steps/" in f"/{k}" and not k.rsplit("/", 1)[-1].startswith(".")]
        got = full_state(model, opt, state["extra"]["step"])
        got["extra"] = state["extra"]
        if rank == 0:
            torch.save(got, os.path.join(out, f"{tag}_got_{step}.pt"))
        with open(os.path.join(out, f"{tag}_reads_{step}_{rank}.txt"), "w") as f:
            f.write("\n".join(chunk_reads))
    if then_save is not None:
        train_steps(model, opt, 1, seed=then_save)
        dcp.save(state_of(model, opt, then_save), storage_writer=tpde.dcp.Writer(root, chunk_elements=CHUNK_ELEMENTS),
                 checkpoint_id=then_save)
        ref = full_state(model, opt, then_save)
        if rank == 0:
            torch.save(ref, os.path.join(out, f"ref_{then_save}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def job_killed(rank: int, world: int, port: int, root: str, out: str, steps: list[int]) -> None:
    """Save `steps`; in the last one, rank 1 is SIGKILLed right after its own shards are
    committed in its store, before the coordinator can write the step's commit record."""
    import tpde.dcp
    from tpde.dcp import writer as writer_module

    _init(rank, world, port)
    model = sharded(make_model())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = tpde.dcp.Writer(root, chunk_elements=CHUNK_ELEMENTS)
    original = writer_module.Writer._rank_store

    def dying_store(self, r):
        store = original(self, r)
        save = store.save

        def save_then_die(*args, **kwargs):
            save(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        store.save = save_then_die
        return store

    for i, step in enumerate(steps):
        train_steps(model, opt, 2, seed=i)
        if i == len(steps) - 1 and rank == 1:
            writer_module.Writer._rank_store = dying_store
        dcp.save(state_of(model, opt, step), storage_writer=writer, checkpoint_id=step)
        ref = full_state(model, opt, step)
        if rank == 0:
            torch.save(ref, os.path.join(out, f"ref_{step}.pt"))
    dist.destroy_process_group()
