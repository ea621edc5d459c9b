"""The saver's owned copy: taken chunk by chunk while coding (`save`), at once
(`save_async`), or not at all (`save(copy=False)`); every delta is coded against the
values that were saved, whatever the caller does to its tensors afterwards."""

import numpy as np
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
