"""Background saves (CheckpointStore.save_async): same steps as plain saves, a snapshot taken
at the call, failures reported, nothing committed lost."""

from __future__ import annotations

import copy

import pytest
from zarr.storage import MemoryStore, WrapperStore

from store_helpers import assert_same_state, make_run, train_checkpoints, train_step, training_state
from tpde import TPDEError
from tpde.store import CheckpointStore


class FailingStore(WrapperStore):
    """A memory store whose metadata writes of step `fail_step` raise OSError: the step's
    chunks are written, then the save fails before its commit marker."""

    def __init__(self, fail_step: int):
        super().__init__(MemoryStore())
        self.fail_step = fail_step

    async def set(self, key, value):
        if key.startswith(f"steps/{self.fail_step}/") and key.endswith(".zarray"):
            raise OSError(f"disk full while writing {key}")
        await self._store.set(key, value)


def test_async_saves_store_what_plain_saves_store():
    ckpts = train_checkpoints(6)
    plain = CheckpointStore(MemoryStore(), keyframe_every=4, chunk_elements=512)
    background = CheckpointStore(MemoryStore(), keyframe_every=4, chunk_elements=512)
    futures = [background.save_async(step, state) for step, state in ckpts]
    infos = [plain.save(step, state) for step, state in ckpts]
    background.wait()
    for future, info in zip(futures, infos):
        got = future.result()
        assert (got.step, got.kind, got.base_step, got.stored_bytes) == (
            info.step, info.kind, info.base_step, info.stored_bytes)
    assert [(h.step, h.kind, h.base_step, h.prev_step) for h in background.history()] == [
        (h.step, h.kind, h.base_step, h.prev_step) for h in plain.history()]
    for step, state in ckpts:
        assert_same_state(background.load(step), state)
    assert background.verify() == []


def test_async_save_snapshots_the_state_at_the_call():
    model, opt = make_run()
    store = CheckpointStore(MemoryStore(), keyframe_every=8, chunk_elements=512)
    expected = {}
    for step in range(1, 9):
        train_step(model, opt, step)
        if step % 2 == 0:
            expected[step] = copy.deepcopy(training_state(model, opt, step))
            store.save_async(step, training_state(model, opt, step))  # training goes on in place
    store.wait()
    assert store.steps() == sorted(expected)
    for step, state in expected.items():
        assert_same_state(store.load(step), state)


def test_async_failure_is_reported_and_committed_steps_stay():
    ckpts = train_checkpoints(5)
    backing = FailingStore(fail_step=3)
    store = CheckpointStore(backing, keyframe_every=16, chunk_elements=512, bundle_below=0)
    futures = {step: store.save_async(step, state) for step, state in ckpts[:3]}
    with pytest.raises(OSError, match="disk full"):
        store.wait()
    assert isinstance(futures[3].exception(), OSError)
    assert futures[1].exception() is None and futures[2].exception() is None
    assert store.steps() == [1, 2]  # step 3 never committed
    assert store.uncommitted() == ["steps/3"]
    for step, state in ckpts[:2]:
        assert_same_state(store.load(step), state)
    backing.fail_step = -1  # the disk has room again
    store.wait()  # the failure was reported once
    store.save_async(4, ckpts[3][1]).result()
    assert [(h.step, h.base_step) for h in store.history()] == [(1, None), (2, 1), (4, 2)]
    assert_same_state(store.load(4), ckpts[3][1])
    assert store.clean() == ["steps/3"]


def test_async_bad_arguments_are_refused_at_the_call():
    store = CheckpointStore(MemoryStore())
    state = {"w": train_checkpoints(1)[0][1]["model"]}
    store.save_async(1, state)
    with pytest.raises(TPDEError, match="already exists") as info:
        store.save_async(1, state)  # queued or already committed: refused either way
    assert info.value.code == "step_exists"
    with pytest.raises(TPDEError, match="JSON"):
        store.save_async(2, state, meta={"x": object()})
    with pytest.raises(TPDEError):
        store.save_async(-1, state)
    store.wait()
    assert store.steps() == [1]


def test_close_waits_for_background_saves(tmp_path):
    ckpts = train_checkpoints(3)
    with CheckpointStore(tmp_path / "run.tpde", chunk_elements=512) as store:
        for step, state in ckpts:
            store.save_async(step, state)
    reopened = CheckpointStore(tmp_path / "run.tpde", mode="r")
    assert reopened.steps() == [1, 2, 3]
    for step, state in ckpts:
        assert_same_state(reopened.load(step), state)


def test_plain_save_and_delete_wait_for_queued_saves():
    ckpts = train_checkpoints(4)
    store = CheckpointStore(MemoryStore(), keyframe_every=16, chunk_elements=512)
    for step, state in ckpts[:3]:
        store.save_async(step, state)
    info = store.save(4, ckpts[3][1])  # after 1-3, so a delta on 3
    assert (info.kind, info.base_step, info.prev_step) == ("delta", 3, 2)
    store.save_async(5, ckpts[3][1])
    with pytest.raises(TPDEError) as err:
        store.delete(4)  # waits for step 5, which is coded against 4
    assert err.value.code == "has_dependents"


def test_background_tpde_error_names_the_step_and_keeps_its_code():
    from tpde.store.background import BackgroundSaves

    def fails():
        raise TPDEError("chunk is corrupted", "corrupt")

    saves = BackgroundSaves()
    saves.submit(7, fails)
    with pytest.raises(TPDEError, match="background save of step 7 failed: chunk is corrupted") as info:
        saves.wait()
    assert info.value.code == "corrupt"
    saves.shutdown()  # the failure was reported once: nothing left to raise
