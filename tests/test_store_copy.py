"""The saver's owned copy: taken chunk by chunk while coding (`save`), at once
(`save_async`), or not at all (`save(copy=False)`); every delta is coded against the
values that were saved, whatever the caller does to its tensors afterwards."""

import numpy as np
import pytest
import torch

import tpde


def _state(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(300, 257, generator=g),
        "b": torch.randn(4096, generator=g).to(torch.bfloat16),
        "t": torch.randn(64, 96, generator=g).t(),  # not contiguous: converted, so never borrowed
        "n": np.arange(5000, dtype=np.float32) * seed,
        "step": torch.tensor(seed),
    }


def _equal(a: dict, b: dict) -> bool:
    return all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k])) if isinstance(a[k], np.ndarray)
        else torch.equal(a[k], b[k])
        for k in a
    )


def test_changing_the_state_after_save_does_not_change_the_next_delta(tmp_path):
    store = tpde.CheckpointStore(tmp_path / "s", chunk_elements=4096, workers=2)
    state = _state(1)
    saved = []
    for step in range(4):
        saved.append({k: v.clone() if isinstance(v, torch.Tensor) else v.copy() for k, v in state.items()})
        store.save(step, state)
        with torch.no_grad():  # training goes on in place, right after save returns
            state["w"].add_(0.01 * (step + 1))
            state["b"].mul_(1.5)
            state["t"].add_(1.0)
            state["n"] += 2.0
            state["step"] += 1
    assert [store.info(s).kind for s in range(4)] == ["keyframe", "delta", "delta", "delta"]
    reader = tpde.CheckpointStore(tmp_path / "s", mode="r")
    for step in range(4):
        assert _equal(reader.load(step), saved[step]), step


def test_save_without_copy_keeps_the_state_itself_as_the_reference(tmp_path):
    store = tpde.CheckpointStore(tmp_path / "s", chunk_elements=4096)
    states = [_state(s) for s in range(1, 4)]
    for step, state in enumerate(states):
        store.save(step, state, copy=False)
    kept = store._snapshots.recent[-1].arrays  # the last step's reference is the caller's tensor
    assert np.shares_memory(kept["w"], states[-1]["w"].numpy())
    assert np.shares_memory(kept["n"], states[-1]["n"])
    reader = tpde.CheckpointStore(tmp_path / "s", mode="r")
    for step, state in enumerate(states):
        assert _equal(reader.load(step), state), step


def test_a_default_save_keeps_its_own_copy(tmp_path):
    store = tpde.CheckpointStore(tmp_path / "s", chunk_elements=4096)
    state = _state(2)
    store.save(0, state)
    kept = store._snapshots.recent[-1].arrays
    assert not np.shares_memory(kept["w"], state["w"].numpy())
    assert not np.shares_memory(kept["n"], state["n"])
    assert np.array_equal(kept["w"], state["w"].numpy())


def test_the_context_steps_memory_becomes_the_next_copy(tmp_path):
    store = tpde.CheckpointStore(tmp_path / "s", chunk_elements=4096, keyframe_every=16)
    state = _state(3)
    saved, kept = [], []
    for step in range(5):
        saved.append({k: v.clone() if isinstance(v, torch.Tensor) else v.copy() for k, v in state.items()})
        store.save(step, state)
        kept.append({n: a for n, a in store._snapshots.recent[-1].arrays.items()})
        with torch.no_grad():
            state["w"][::7].add_(0.01)
            state["b"][:50].mul_(1.5)
            state["n"][::3] += 1.0
    # from step 3 on, the copy of a borrowed array reuses the memory of the step two back
    assert kept[3]["w"] is kept[1]["w"] and kept[4]["w"] is kept[2]["w"]
    assert kept[3]["n"] is kept[1]["n"]
    reader = tpde.CheckpointStore(tmp_path / "s", mode="r")
    for step in range(5):
        assert _equal(reader.load(step), saved[step]), step
    assert [reader.info(s).kind for s in range(5)] == ["keyframe"] + ["delta"] * 4


def test_a_failed_save_that_reused_the_context_step_codes_the_next_one_right(tmp_path, monkeypatch):
    import tpde.store.save as save_module

    store = tpde.CheckpointStore(tmp_path / "s", chunk_elements=4096, keyframe_every=16, bundle_below=0)
    states = [_state(s) for s in range(1, 6)]
    for step in range(3):
        store.save(step, states[step])
    encode, calls = save_module._core.encode, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 12:  # after some chunks of the context step were overwritten
            raise tpde.TPDEError("injected", "corrupt")
        return encode(*args, **kwargs)

    monkeypatch.setattr(save_module._core, "encode", failing)
    with pytest.raises(tpde.TPDEError, match="injected"):
        store.save(3, states[3])
    monkeypatch.setattr(save_module._core, "encode", encode)
    store.save(3, states[3])
    store.save(4, states[4])
    reader = tpde.CheckpointStore(tmp_path / "s", mode="r")
    for step in range(5):
        assert _equal(reader.load(step), states[step]), step


def test_a_save_failing_after_its_chunks_are_coded_leaves_no_overwritten_context(tmp_path, monkeypatch):
    """Every chunk coded (the context step's arrays wholly overwritten), then the bundle
    write fails before the commit: the next saves must not code against those arrays."""
    import tpde.store.save as save_module

    store = tpde.CheckpointStore(tmp_path / "s", chunk_elements=4096, keyframe_every=16)
    states = [_state(s) for s in range(1, 6)]
    for step in range(3):
        store.save(step, states[step])
    entries = save_module._entries

    def failing(*args, **kwargs):
        raise tpde.TPDEError("injected", "corrupt")

    monkeypatch.setattr(save_module, "_entries", failing)
    with pytest.raises(tpde.TPDEError, match="injected"):
        store.save(3, states[3])
    monkeypatch.setattr(save_module, "_entries", entries)
    store.save(3, states[3])
    store.save(4, states[4])
    reader = tpde.CheckpointStore(tmp_path / "s", mode="r")
    for step in range(5):
        assert _equal(reader.load(step), states[step]), step
