"""Lossy saves: bounds per tensor kind, recorded per tensor, kept at every step of a chain
of 55 deltas of an AdamW-trained model, restored by a fresh store object."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from zarr.storage import MemoryStore

import tpde
from store_helpers import raw_bytes
from tpde import CheckpointStore, ErrorBounds, TPDEError, abs_bound, log_bound, parse_bound, rms_bound, tensor_kind

BOUNDS = ErrorBounds(weights=rms_bound(0.05), exp_avg=rms_bound(0.2), exp_avg_sq=log_bound(0.3))
FRACTION = {"weights": 0.05, "exp_avg": 0.2}
N_SAVES = 56  # a keyframe and 55 deltas


def leaves(state: object, prefix: str = "") -> dict[str, object]:
    """name -> leaf, named as the store names tensors (keys joined by "/")."""
    if isinstance(state, dict):
        out = {}
        for key, value in state.items():
            out.update(leaves(value, f"{prefix}{key}/"))
        return out
    if isinstance(state, list):
        out = {}
        for i, value in enumerate(state):
            out.update(leaves(value, f"{prefix}{i}/"))
        return out
    return {prefix[:-1]: state}


def values(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).numpy()


def finite_rms(t: torch.Tensor) -> float:
    v = values(t)
    v = v[np.isfinite(v)]
    return float(np.sqrt(np.mean(v * v))) if v.size else 0.0


def takes_bound(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.ndim > 0


def adamw_states(n: int) -> list[dict]:
    """Deep copies of the state of a small MLP (LayerNorm, BatchNorm buffers) trained with
    AdamW (amsgrad: max_exp_avg_sq too) for n steps, saved after every step, with a bf16
    copy of a weight, an int tensor and Python counters."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's 2 cores are shared
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(16, 64), torch.nn.LayerNorm(64), torch.nn.GELU(),
            torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.Linear(64, 4),
        )
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, amsgrad=True)
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(256, 16, generator=g), torch.randn(256, 4, generator=g)
        states = []
        for step in range(n):
            i = (step * 32) % 256
            loss = torch.nn.functional.mse_loss(model(x[i : i + 32]), y[i : i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
            states.append(copy.deepcopy({
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "ema": {"0.weight": model[0].weight.detach().to(torch.bfloat16)},
                "ids": torch.arange(5) + step,
                "step": step,
            }))
        return states
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def chain():
    """The states and a memory store holding them as one keyframe and 55 deltas."""
    states = adamw_states(N_SAVES)
    kv = MemoryStore()
    store = CheckpointStore(kv, keyframe_every=1000, chunk_elements=1000)  # edge chunks included
    for step, state in enumerate(states):
        store.save(step, state, error_bound=BOUNDS)
    return states, kv


def expected_bound(name: str, tensor: object, keyframe_state: dict) -> dict | None:
    """The bound the store must keep for one tensor, worked out independently."""
    if not takes_bound(tensor):
        return None
    kind = tensor_kind(name)
    if kind == "exp_avg_sq":
        return {"log_rel_error": 0.3}
    if kind == "other":
        return None
    rms = finite_rms(leaves(keyframe_state)[name])
    return {"abs_error": FRACTION[kind] * rms} if rms > 0 else None


def assert_within(name: str, got: torch.Tensor, want: torch.Tensor, bound: dict | None, step: int) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, name
    if bound is None:
        assert raw_bytes(got) == raw_bytes(want), f"step {step}, {name}: not bit-exact"
        return
    g, w = values(got), values(want)
    exact = (g == w) | (np.isnan(g) & np.isnan(w))
    err = np.where(exact, 0.0, np.abs(g - w))
    if "abs_error" in bound:
        allowed = np.full_like(w, bound["abs_error"])
    else:
        tiny = float(torch.finfo(want.dtype).tiny)
        allowed = bound["log_rel_error"] * np.maximum(np.abs(w), 2 * tiny)  # tpde.hpp: max(|x|, 2N)
    worst = int(np.argmax(err - allowed))
    assert (err <= allowed).all(), (
        f"step {step}, {name}: |{g.flat[worst]!r} - {w.flat[worst]!r}| > {allowed.flat[worst]!r}"
    )


def test_tensor_kinds_from_names():
    assert tensor_kind("model/layers.0.attn.q_proj.weight") == "weights"
    assert tensor_kind("model/4.running_var") == "weights"  # buffers count as weights
    assert tensor_kind("optimizer/state/3/exp_avg") == "exp_avg"
    assert tensor_kind("optimizer/state/3/exp_avg_sq") == "exp_avg_sq"
    assert tensor_kind("optimizer/state/3/max_exp_avg_sq") == "exp_avg_sq"
    assert tensor_kind("optimizer/state/3/momentum_buffer") == "other"
    assert tensor_kind("state/0/step") == "other"  # an optimizer state_dict saved alone
    assert tensor_kind("model/state.0.weight") == "weights"  # a module named "state"
    bounds = ErrorBounds(weights=abs_bound(1e-3), exp_avg_sq=log_bound(0.1))
    assert bounds("model/w") == abs_bound(1e-3) and bounds("optimizer/state/0/exp_avg") is None
    assert str(bounds) == "weights abs:0.001, exp_avg none, exp_avg_sq log:0.1, other none"
    assert bounds.to_json() == {"weights": "abs:0.001", "exp_avg": None, "exp_avg_sq": "log:0.1", "other": None}


def test_bound_specs_parse_and_refuse_bad_values():
    assert parse_bound("abs:1e-4") == abs_bound(1e-4)
    assert parse_bound(" RMS:0.1 ") == rms_bound(0.1) and parse_bound("log:0.3") == log_bound(0.3)
    assert parse_bound("none") is None
    assert str(rms_bound(0.1)) == "rms:0.1" and parse_bound(str(abs_bound(2.5e-5))) == abs_bound(2.5e-5)
    for text, message in [
        ("foo", "expected abs:E, rms:F, log:R or none"),
        ("abs", "expected abs:E"),
        ("max:1", "expected abs:E"),
        ("rms:x", "'x' is not a number"),
        ("abs:0", "positive number"),
        ("abs:-1", "positive number"),
        ("rms:inf", "positive number"),
        ("abs:nan", "positive number"),
        ("log:1", "below 1"),
    ]:
        with pytest.raises(TPDEError, match=message) as e:
            parse_bound(text)
        assert e.value.code == "invalid_argument" and repr(text) in str(e.value)
    for make, value, message in [(abs_bound, 0.0, "positive"), (rms_bound, -0.1, "positive"),
                                 (log_bound, 1.5, "below 1"), (abs_bound, True, "positive"),
                                 (rms_bound, "0.1", "positive")]:
        with pytest.raises(TPDEError, match=message):
            make(value)
    with pytest.raises(TPDEError, match=r"ErrorBounds\(weights=...\) takes abs_bound"):
        ErrorBounds(weights=0.1)


def test_every_value_within_its_bound_at_every_step_of_a_55_delta_chain(chain):
    states, kv = chain
    fresh = CheckpointStore(kv, mode="r")  # nothing cached: every step decoded from the store
    history = fresh.history()
    assert [h.kind for h in history] == ["keyframe"] + ["delta"] * (N_SAVES - 1)
    assert history[-1].step == N_SAVES - 1 and fresh.info(N_SAVES - 1).depth == N_SAVES - 1
    assert all(h.lossy for h in history)
    kinds_seen, lossy_changed = set(), 0
    for step, state in enumerate(states):
        got = fresh.load(step)
        assert got["step"] == step
        want_leaves, got_leaves = leaves(state), leaves(got)
        assert list(got_leaves) == list(want_leaves)
        for name, want in want_leaves.items():
            if not isinstance(want, torch.Tensor):
                continue
            bound = expected_bound(name, want, states[0])
            assert_within(name, got_leaves[name], want, bound, step)
            if bound is not None:
                kinds_seen.add((tensor_kind(name), want.dtype))
                lossy_changed += raw_bytes(got_leaves[name]) != raw_bytes(want)
    # weights in fp32 and bf16, both moments (amsgrad's max_exp_avg_sq too) were coded lossily
    assert kinds_seen == {("weights", torch.float32), ("weights", torch.bfloat16),
                          ("exp_avg", torch.float32), ("exp_avg_sq", torch.float32)}
    assert lossy_changed > N_SAVES  # the bounds were used, not just met by lossless coding
    assert fresh.verify() == []


def test_bounds_are_recorded_and_shown(chain):
    states, kv = chain
    store = CheckpointStore(kv, mode="r")
    for step in (0, 1, N_SAVES - 1):
        info = store.info(step)
        assert info.lossy and info.error_bounds == BOUNDS.to_json()
        for name, t in info.tensors.items():
            want = leaves(states[step])[name]
            bound = expected_bound(name, want, states[0])
            assert t.lossy == (bound is not None)
            if bound is None:
                assert t.error_bound is None
            else:
                (key, value), = t.error_bound.items()
                assert key in bound and value == pytest.approx(bound[key], rel=1e-12)
            kind = tensor_kind(name)
            if not takes_bound(want) or kind == "other":
                assert (t.bound, t.rms, t.rms_step) == (None, None, None), name
            elif kind == "exp_avg_sq":
                assert (t.bound, t.rms, t.rms_step) == ("log:0.3", None, None)
            else:  # the RMS of the keyframe's values, reused along the chain
                assert t.bound == f"rms:{FRACTION[kind]}" and t.rms_step == 0
                assert t.rms == pytest.approx(finite_rms(leaves(states[0])[name]), rel=1e-12)
    info = store.info(3).tensors
    assert info["model/0.weight"].error_bound == {"abs_error": 0.05 * info["model/0.weight"].rms}
    assert info["optimizer/state/0/step"].error_bound is None  # 0-d counters stay exact
    assert info["model/4.num_batches_tracked"].error_bound is None  # integers too


def test_a_new_keyframe_measures_the_rms_again_and_resuming_keeps_it():
    states = adamw_states(9)
    kv = MemoryStore()
    store = CheckpointStore(kv, keyframe_every=4)
    for step in range(7):
        store.save(step, states[step], error_bound=BOUNDS)
    name = "optimizer/state/2/exp_avg"
    rms = {s: store.info(s).tensors[name] for s in range(7)}
    assert [rms[s].rms_step for s in range(7)] == [0, 0, 0, 0, 4, 4, 4]
    assert rms[4].rms == pytest.approx(finite_rms(leaves(states[4])[name]))
    assert rms[4].rms != rms[3].rms and rms[6].rms == rms[4].rms
    # a new process resumes the chain: the RMS comes from the manifest, not from memory
    again = CheckpointStore(kv)
    info = again.save(7, states[7], error_bound=BOUNDS)
    assert info.kind == "delta" and info.tensors[name].rms_step == 4 and info.tensors[name].rms == rms[4].rms
    for step in range(8):
        got = leaves(CheckpointStore(kv, mode="r").load(step))
        for n, want in leaves(states[step]).items():
            if isinstance(want, torch.Tensor):
                keyframe = states[4 if step >= 4 else 0]
                assert_within(n, got[n], want, expected_bound(n, want, keyframe), step)


def test_a_bound_that_starts_mid_chain_measures_the_rms_there():
    store = CheckpointStore(MemoryStore())
    g = torch.Generator().manual_seed(1)
    w = [torch.randn(300, generator=g) * (1 + s) for s in range(4)]
    store.save(0, {"w": w[0]})
    store.save(1, {"w": w[1]}, error_bound=abs_bound(1e-3))
    info = store.save(2, {"w": w[2]}, error_bound=rms_bound(0.01))
    assert info.kind == "delta" and not store.info(0).lossy and store.history()[1].lossy
    t = info.tensors["w"]
    assert (t.bound, t.rms_step) == ("rms:0.01", 2) and t.rms == pytest.approx(finite_rms(w[2]))
    t = store.save(3, {"w": w[3]}, error_bound=rms_bound(0.02)).tensors["w"]
    assert t.rms_step == 2 and t.error_bound == {"abs_error": 0.02 * t.rms}  # a new fraction, same RMS
    assert_within("w", store.load(3)["w"], w[3], t.error_bound, 3)


def test_zero_and_non_finite_tensors_under_rms_bounds():
    zeros = torch.zeros(50)
    mask = torch.full((8, 8), -math.inf).triu(1)  # 0 and -inf: no finite RMS
    x = torch.linspace(-1, 1, 3000)
    x[2500] = math.nan  # its chunk is coded losslessly, the others within the bound
    store = CheckpointStore(MemoryStore(), chunk_elements=1000)
    state = {"zeros": zeros, "mask": mask, "x": x, "half": x.to(torch.float16)}
    info = store.save(0, state, error_bound=rms_bound(0.1))
    for name in ("zeros", "mask"):
        t = info.tensors[name]
        assert (t.bound, t.rms, t.error_bound, t.lossy) == ("rms:0.1", 0.0, None, False)
    finite = x[~x.isnan()]
    rms = float(finite.double().square().mean().sqrt())
    assert info.tensors["x"].rms == pytest.approx(rms)
    got = store.load(0)
    assert raw_bytes(got["zeros"]) == raw_bytes(zeros) and raw_bytes(got["mask"]) == raw_bytes(mask)
    assert_within("x", got["x"], x, {"abs_error": 0.1 * rms}, 0)
    assert got["x"][2500].isnan() and raw_bytes(got["x"][2000:]) == raw_bytes(x[2000:])
    assert not torch.equal(got["x"][:2000], x[:2000])
    assert_within("half", got["half"], x.to(torch.float16), info.tensors["half"].error_bound, 0)


def test_log_bound_near_zero_and_subnormal_values():
    check_log_bound_on(torch.tensor([0.0, 1e-45, 1e-40, 1e-38, 1e-30, 3e-8, 1e-3, 5.0] * 40))


def test_log_bound_on_negative_zero_and_negative_subnormals():
    check_log_bound_on(torch.tensor([-0.0, -1e-45, -1e-40, 3e-8, 1e-3, 5.0] * 40))


def check_log_bound_on(v: torch.Tensor) -> None:
    store = CheckpointStore(MemoryStore())
    store.save(0, {"optimizer": {"state": {0: {"exp_avg_sq": v}}}}, error_bound=BOUNDS)
    v2 = v * 1.07
    store.save(1, {"optimizer": {"state": {0: {"exp_avg_sq": v2}}}}, error_bound=BOUNDS)
    for step, want in ((0, v), (1, v2)):
        got = store.load(step)["optimizer"]["state"][0]["exp_avg_sq"]
        assert_within("exp_avg_sq", got, want, {"log_rel_error": 0.3}, step)


def test_other_forms_of_error_bound():
    g = torch.Generator().manual_seed(2)
    state = {"w": torch.randn(200, generator=g), "optimizer": {"state": {0: {
        "momentum_buffer": torch.randn(200, generator=g), "exp_avg_sq": torch.rand(200, generator=g)}}}}
    store = CheckpointStore(MemoryStore())
    # one bound for every float tensor, whatever its kind
    info = store.save(0, state, error_bound=abs_bound(1e-2))
    assert info.error_bounds == {"all": "abs:0.01"}
    assert {t.bound for t in info.tensors.values()} == {"abs:0.01"}
    info = store.save(1, state, error_bound={"log_rel_error": 0.1})  # the core's keywords
    assert {t.error_bound["log_rel_error"] for t in info.tensors.values()} == {0.1}
    # a function of the name: any of those, or None
    info = store.save(2, state, error_bound=lambda n: rms_bound(0.1) if n == "w" else None)
    assert info.error_bounds == {"custom": "test_other_forms_of_error_bound.<locals>.<lambda>"}
    assert info.tensors["w"].bound == "rms:0.1" and not info.tensors["optimizer/state/0/exp_avg_sq"].lossy
    info = store.save(3, state, error_bound=tpde.adam_error_bounds(abs_error=1e-3, rel_error=0.01))
    assert info.tensors["optimizer/state/0/momentum_buffer"].error_bound == {"abs_error": 1e-3}
    assert info.tensors["optimizer/state/0/exp_avg_sq"].error_bound == {"log_rel_error": 0.01}
    # refused before anything is written
    for bad, message in [(0.1, r"must be \{'abs_error'"), ({"rel": 0.1}, r"must be \{'abs_error'"),
                         ({"abs_error": 0}, "positive number"), (lambda n: 0.5, "error bound for 'w'")]:
        with pytest.raises(TPDEError, match=message) as e:
            store.save(9, state, error_bound=bad)
        assert e.value.code == "invalid_argument"
    assert store.steps() == [0, 1, 2, 3] and store.uncommitted() == []


def test_lossless_unless_asked():
    kv = MemoryStore()
    store = CheckpointStore(kv)
    w = torch.randn(100)
    for step, bounds in enumerate((None, ErrorBounds())):  # no kind has a default bound
        info = store.save(step, {"w": w}, error_bound=bounds)
        assert not info.lossy and info.error_bounds is None
        assert info.tensors["w"].error_bound is None and info.tensors["w"].bound is None
        assert raw_bytes(store.load(step)["w"]) == raw_bytes(w)
    marker = json.loads(store._kv.get("commits/1"))
    assert "lossy" not in marker  # lossless markers are unchanged: older readers still read them
    assert not CheckpointStore(kv, mode="r").history()[1].lossy


def test_lossy_stores_smaller_than_lossless(chain):
    states, kv = chain
    lossless = CheckpointStore(MemoryStore(), keyframe_every=1000, chunk_elements=1000)
    for step in range(6):
        lossless.save(step, states[step])
    lossy = CheckpointStore(kv, mode="r").history()[:6]
    assert sum(h.stored_bytes for h in lossy) < 0.6 * sum(h.stored_bytes for h in lossless.history())
