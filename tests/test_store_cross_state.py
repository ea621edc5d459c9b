"""save(..., cross_state=True): weights coded against a prediction from the Adam moments
(and, with lossy moments, exp_avg against a prediction from the weight change)."""

from __future__ import annotations

import copy

import pytest
import torch
from zarr.storage import MemoryStore

from store_helpers import CountingStore, assert_same_state, raw_bytes
from tpde import CheckpointStore, ErrorBounds, TPDEError, abs_bound, log_bound
from tpde.state.torch_adapter import to_storage
from tpde.store.cross_state import find_links, groups, plan_step

W = "model/2.weight"
M, V = "optimizer/state/4/exp_avg", "optimizer/state/4/exp_avg_sq"  # parameter 4: 2.weight


def adamw_run(saves: int, every: int = 5, lr: float = 1e-3) -> list[dict]:
    """States of a small MLP trained full-batch with AdamW, every `every` steps."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 48),
                                    torch.nn.GELU(), torch.nn.Linear(48, 8))
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(512, 32, generator=g), torch.randn(512, 8, generator=g)
        states = []
        for step in range(saves * every):
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (step + 1) % every == 0:
                states.append(copy.deepcopy({"model": model.state_dict(), "optimizer": opt.state_dict()}))
        return states
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run() -> list[dict]:
    return adamw_run(8)


def delta_bytes(store: CheckpointStore) -> int:
    return sum(store.info(s).stored_bytes for s in store.steps()[1:])


def test_lossless_round_trips_bit_exact_and_is_smaller(run):
    plain = CheckpointStore(MemoryStore(), chunk_elements=1024)
    predicted = CheckpointStore(MemoryStore(), chunk_elements=1024)
    for step, state in enumerate(run):
        plain.save(step, state)
        predicted.save(step, state, cross_state=True)
    reader = CheckpointStore(predicted._kv.store, mode="r")
    for step, state in enumerate(run):
        assert_same_state(reader.load(step), state)
    assert reader.verify() == []
    manifest = reader._manifest(3)
    assert manifest.arrays[W].predict is not None  # the weights were predicted ...
    assert manifest.arrays[M].predict is None  # ... lossless moments are not
    assert reader._marker(3).predicted and not reader._marker(0).predicted
    assert delta_bytes(predicted) < 0.97 * delta_bytes(plain)


def test_lossy_moments_predict_exp_avg_and_keep_every_bound(run):
    bounds = ErrorBounds(weights=abs_bound(1e-4), exp_avg=abs_bound(1e-5), exp_avg_sq=log_bound(0.3))
    store = CheckpointStore(MemoryStore(), chunk_elements=1024)
    for step, state in enumerate(run):
        store.save(step, state, error_bound=bounds, cross_state=True)
    manifest = store._manifest(5)
    assert manifest.arrays[M].predict is not None and manifest.arrays[W].predict is not None
    reader = CheckpointStore(store._kv.store, mode="r")
    for step, state in enumerate(run):
        back = reader.load(step)
        for name, want in state["model"].items():
            err = (back["model"][name].double() - want.double()).abs().max().item()
            assert err <= 1e-4, (step, name, err)
        for i, st in state["optimizer"]["state"].items():
            got = back["optimizer"]["state"][i]
            assert (got["exp_avg"].double() - st["exp_avg"].double()).abs().max().item() <= 1e-5
            v, v2 = st["exp_avg_sq"].double(), got["exp_avg_sq"].double()
            assert bool(((v2 - v).abs() <= 0.3 * v.abs().clamp_min(2 * torch.finfo(torch.float32).tiny)).all())
            assert raw_bytes(got["step"]) == raw_bytes(st["step"])


def test_partial_restore_of_a_predicted_weight_reads_its_moments(run):
    counting = CountingStore()
    store = CheckpointStore(counting, chunk_elements=512, bundle_below=0)
    for step, state in enumerate(run[:5]):
        store.save(step, state, cross_state=True)
    depth = store.info(4).depth
    assert depth == 4
    reader = CheckpointStore(counting, mode="r")
    full = run[4]["model"]["2.weight"]  # 48 x 64, chunks of 8 rows -> 6 chunks
    for index, overlapping in (((slice(0, 8),), 1), ((slice(4, 20),), 3)):
        counting.chunk_reads.clear()
        got = reader.load_tensor(4, W, index)
        assert raw_bytes(got) == raw_bytes(full[index])
        assert len(counting.chunk_reads) == 3 * (depth + 1) * overlapping
        assert {k.split("/", 2)[2].rsplit("/", 1)[0] for k in counting.chunk_reads} == {W, M, V}


def test_a_reopened_store_continues_a_predicted_chain(run):
    backing = MemoryStore()
    first = CheckpointStore(backing, chunk_elements=1024)
    for step, state in enumerate(run[:3]):
        first.save(step, state, cross_state=True)
    second = CheckpointStore(backing)  # decodes steps 2 and 1 to code step 3 against them
    for step, state in enumerate(run[3:], start=3):
        second.save(step, state, cross_state=step % 2 == 1)  # mixed steps in one chain
    reader = CheckpointStore(backing, mode="r")
    for step, state in enumerate(run):
        assert_same_state(reader.load(step), state)
    assert reader.verify() == []


def test_a_missing_moment_chunk_is_named_when_loading_a_weight(run):
    store = CheckpointStore(MemoryStore(), chunk_elements=1024, bundle_below=0)
    for step, state in enumerate(run[:3]):
        store.save(step, state, cross_state=True)
    store._kv.delete_prefix(f"steps/1/{M}")
    with pytest.raises(TPDEError) as e:
        CheckpointStore(store._kv.store, mode="r").load_tensor(2, W)
    assert e.value.code == "missing_reference" and M in str(e.value)


def test_links_follow_the_optimizer_order_across_param_groups():
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 3))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": no_decay}, {"params": decay, "weight_decay": 0.1}])
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
    names = {f"model/{k}": v for k, v in state["model"].items()}
    for i, st in state["optimizer"]["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            names[f"optimizer/state/{i}/{key}"] = st[key]
    specs = {n: to_storage(t)[1] for n, t in names.items()}
    chunks = {n: tuple(s.storage_shape) for n, s in specs.items()}
    links = find_links(specs, chunks)
    by_weight = {w: m for w, m, _ in links}
    # ids: 0..4 the vectors (0.bias, 1.weight, 1.bias, 2.bias), then 0.weight, 2.weight
    assert by_weight["model/0.weight"] == "optimizer/state/4/exp_avg"
    assert by_weight["model/2.weight"] == "optimizer/state/5/exp_avg"
    assert by_weight["model/2.bias"] == "optimizer/state/3/exp_avg"
    assert len(links) == 6
    plan = plan_step(links, lossy=set())
    assert sorted(map(sorted, groups(["model/2.weight"], [plan]))) == [
        ["model/2.weight", "optimizer/state/5/exp_avg", "optimizer/state/5/exp_avg_sq"]]


def test_without_optimizer_state_cross_state_changes_nothing():
    store = CheckpointStore(MemoryStore())
    x = torch.randn(100)
    for step in range(3):
        store.save(step, {"w": x + step * 1e-3}, cross_state=True)
    assert not any(store._marker(s).predicted for s in store.steps())
    assert raw_bytes(store.load(2)["w"]) == raw_bytes(x + 2e-3)


@pytest.mark.parametrize("corrupt", [
    lambda p: p.update(terms="garbage"),
    lambda p: p.update(terms=[["momentum", [[M, 0], [V, 0]]]]),
    lambda p: p.update(terms=[["adam_direction", [[M, 5], [V, 0]]]]),
    lambda p: p.update(terms=[["adam_direction", [["no/such/tensor", 0], [V, 0]]]]),
    lambda p: p.update(coefs=[[1.0]] * len(p["coefs"])),
    lambda p: p.update(coefs=[["x", "y", "z"]] * len(p["coefs"])),
    lambda p: p.update(coefs=[]),
])
def test_a_forged_prediction_entry_raises_tpde_error(run, corrupt):
    import json
    import zlib

    from tpde.store.schema import Marker

    store = CheckpointStore(MemoryStore(), chunk_elements=1024)
    for step, state in enumerate(run[:2]):
        store.save(step, state, cross_state=True)
    key = "steps/1/.zattrs"
    body = json.loads(store._kv.get(key))
    predict = body["tpde_step"]["arrays"][W]["predict"]
    corrupt(predict)
    data = json.dumps(body, separators=(",", ":")).encode()
    store._kv.set(key, data)
    marker = store._marker(1)
    store._kv.set("commits/1", Marker(**{**marker.__dict__, "manifest_crc32": zlib.crc32(data)}).to_bytes())
    with pytest.raises(TPDEError) as e:
        CheckpointStore(store._kv.store, mode="r").load_tensor(1, W)
    assert e.value.code in ("corrupt", "invalid_argument", "reference_mismatch", "missing_reference")
    assert "step 1" in str(e.value)  # names the step (and the tensor or entry at fault)


def test_bfloat16_states_round_trip_with_predictions(run):
    def to_bf16(obj):
        if isinstance(obj, torch.Tensor):
            return obj.to(torch.bfloat16) if obj.is_floating_point() and obj.ndim > 0 else obj
        if isinstance(obj, dict):
            return type(obj)((k, to_bf16(v)) for k, v in obj.items())
        if isinstance(obj, list):
            return [to_bf16(v) for v in obj]
        return obj

    states = [to_bf16(s) for s in run]
    store = CheckpointStore(MemoryStore(), chunk_elements=1024)
    for step, state in enumerate(states):
        store.save(step, state, cross_state=True)
    assert any(t.predicted > 0 for s in store.steps()[1:] for t in store.info(s).tensors.values())
    reader = CheckpointStore(store._kv.store, mode="r")
    for step, state in enumerate(states):
        assert_same_state(reader.load(step), state)
