"""tpde.dcp with torch.distributed.checkpoint: FSDP2 on 4 and 2 gloo ranks, resharding
4 -> 2, 4 -> 1 and 1 -> 2, partial reads, and a rank killed in the middle of a save."""

from __future__ import annotations

import os
import socket
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.checkpoint.state_dict import get_state_dict

import dcp_workers as w
import tpde
import tpde.dcp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(job, world: int, *args) -> None:
    mp.spawn(job, args=(world, free_port(), *args), nprocs=world, join=True)


def assert_same(a, b, where="") -> None:
    """Nested states equal bit for bit (tensors compared as raw bytes)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.reshape(-1).view(torch.uint8).equal(b.reshape(-1).view(torch.uint8)), f"{where}: values differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def load_single(root, step: int) -> dict:
    """Load `step` into one plain (unsharded) process with DCP; returns the full state."""
    model = w.make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    w.train_steps(model, opt, 1, seed=999)
    msd, osd = get_state_dict(model, opt)
    state = {"model": msd, "optim": osd, "extra": {"step": -1, "note": ""}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(state, storage_reader=tpde.dcp.Reader(root, step=step), no_dist=True)
    return state


def chunk_files(root, rank: int, step: int) -> list[str]:
    base = os.path.join(root, "ranks", str(rank), "steps", str(step))
    return [os.path.join(d, f) for d, _, fs in os.walk(base) for f in fs if not f.startswith(".")]


@pytest.fixture(scope="module")
def four_rank_run(tmp_path_factory):
    """A 4-rank FSDP2 run saved at steps 10, 20, 30 (then restored by 2 ranks, which save 40)."""
    root = tmp_path_factory.mktemp("dcp4") / "ckpt"
    out = tmp_path_factory.mktemp("dcp4out")
    spawn(w.job_train_save, 4, str(root), str(out), [10, 20, 30])
    spawn(w.job_restore, 2, str(root), str(out), [10, 20, 30], "r2", 40)
    return root, out


def test_four_ranks_save_three_steps_as_deltas(four_rank_run):
    root, _ = four_rank_run
    assert tpde.dcp.steps(root) == [10, 20, 30, 40]
    assert sorted(os.listdir(root / "ranks")) == ["0", "1", "2", "3"]
    for rank in range(4):
        store = tpde.CheckpointStore(root / "ranks" / str(rank), mode="r")
        kinds = [h.kind for h in store.history()]
        assert kinds[:3] == ["keyframe", "delta", "delta"], (rank, kinds)
    assert tpde.dcp.verify(root) == []


def test_four_to_two_ranks_bit_exact(four_rank_run):
    _, out = four_rank_run
    for step in (10, 20, 30):
        assert_same(torch.load(out / f"ref_{step}.pt"), torch.load(out / f"r2_got_{step}.pt"), f"step {step}")


def test_four_to_one_process_bit_exact(four_rank_run):
    root, out = four_rank_run
    for step in (10, 20, 30, 40):
        assert_same(torch.load(out / f"ref_{step}.pt"), load_single(root, step), f"step {step}")


def test_two_rank_save_after_four_rank_run(four_rank_run):
    root, _ = four_rank_run
    record = tpde.dcp.steps(root)
    assert record[-1] == 40
    for rank in (0, 1):
        store = tpde.CheckpointStore(root / "ranks" / str(rank), mode="r")
        assert store.steps() == [10, 20, 30, 40]
        # other shard boundaries are other tensors for the store: the step starts a new chain
        assert store.info(40).kind == "keyframe"
    for rank in (2, 3):
        assert tpde.CheckpointStore(root / "ranks" / str(rank), mode="r").steps() == [10, 20, 30]


def test_one_process_save_and_async_save_load_into_two_ranks_reading_half(tmp_path):
    root, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    model = w.make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    writer = tpde.dcp.Writer(root, chunk_elements=w.CHUNK_ELEMENTS, pack_below=64,
                             bundle_below=0)  # shards of their own, one file per chunk
    for step in (5, 6):
        w.train_steps(model, opt, 2, seed=step)
        state = w.state_of(model, opt, step)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if step == 5:
                dcp.save(state, storage_writer=writer, checkpoint_id=step, no_dist=True)
            else:  # dcp.async_save through the same writer
                dcp.async_save(state, storage_writer=writer, checkpoint_id=step, no_dist=True).result()
        torch.save(w.full_state(model, opt, step), out / f"ref_{step}.pt")
    spawn(w.job_restore, 2, str(root), str(out), [6], "r1to2", None)
    assert_same(torch.load(out / "ref_6.pt"), torch.load(out / "r1to2_got_6.pt"))
    # step 6 is a delta (depth 1): reading a whole shard reads 2 x its chunks; each rank
    # needs half of every tensor (FSDP2 shards rows), so about half of the chunks
    full = 2 * len([f for f in chunk_files(root, 0, 6) if f"{os.sep}t{os.sep}" in f])
    for rank in (0, 1):
        reads = [k for k in (out / f"r1to2_reads_6_{rank}.txt").read_text().split() if "/t/" in k]
        assert 0.3 * full < len(reads) < 0.7 * full, (rank, len(reads), full)


def test_rank_killed_mid_save_leaves_earlier_steps(tmp_path):
    root, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    # rank 1 dies; rank 0 fails or is stopped
    with pytest.raises((mp.ProcessExitedException, mp.ProcessRaisedException)):
        spawn(w.job_killed, 2, str(root), str(out), [1, 2, 3])
    assert tpde.dcp.steps(root) == [1, 2]  # rank 1 committed its shards of 3, but no record
    rank1 = tpde.CheckpointStore(root / "ranks" / "1", mode="r")
    assert 3 in rank1.steps()
    for step in (1, 2):
        assert_same(torch.load(out / f"ref_{step}.pt"), load_single(root, step), f"step {step}")
    with pytest.raises(BaseException, match="has no committed step 3"):  # DCP wraps it (CheckpointException)
        load_single(root, 3)
    # the run resumes from step 2 in one process; the orphaned shards of step 3 are dropped
    state = load_single(root, 2)
    model = w.make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    from torch.distributed.checkpoint.state_dict import set_state_dict

    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    w.train_steps(model, opt, 1, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(w.state_of(model, opt, 3), storage_writer=tpde.dcp.Writer(root), checkpoint_id=3, no_dist=True)
    assert tpde.dcp.steps(root) == [1, 2, 3]
    assert 3 not in tpde.CheckpointStore(root / "ranks" / "1", mode="r").steps()
    assert_same(w.full_state(model, opt, 3), load_single(root, 3))
    assert tpde.dcp.verify(root) == []


def _lease_threads() -> set:
    import threading

    return {t for t in threading.enumerate() if t.name == "tpde-lease"}


def test_writer_close_releases_its_rank_stores_and_a_new_writer_continues_the_chain(tmp_path):
    from tpde.dcp.layout import rank_folder

    root = tmp_path / "ckpt"
    w0 = torch.randn(256, 64)
    before = _lease_threads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tpde.dcp.Writer(root) as writer:
            dcp.save({"w": w0}, storage_writer=writer, checkpoint_id=0, no_dist=True)
            assert _lease_threads() - before  # the rank store stays open between saves
        assert not _lease_threads() - before
        with tpde.dcp.Writer(root) as writer:  # reopens the store, rebuilds the reference from it
            dcp.save({"w": w0 + 1e-3}, storage_writer=writer, checkpoint_id=1, no_dist=True)
        got = {"w": torch.zeros(256, 64)}
        dcp.load(got, storage_reader=tpde.dcp.Reader(root, step=1), no_dist=True)
    assert torch.equal(got["w"], w0 + 1e-3)
    history = tpde.CheckpointStore(root / rank_folder(0), mode="r").history()
    assert [h.kind for h in history] == ["keyframe", "delta"]
