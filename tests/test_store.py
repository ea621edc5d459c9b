"""CheckpointStore: round trips, keyframe/delta policy, partial restore, errors."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import zarr
from zarr.storage import LocalStore, MemoryStore

from store_helpers import CountingStore, assert_same_state, raw_bytes, train_checkpoints
from tpde import TPDEError
from tpde.store import CheckpointStore


def drift(t: torch.Tensor, step: int, frac: float = 0.1) -> torch.Tensor:
    """A copy of `t` with a sparse, seeded change, like one training step."""
    g = torch.Generator().manual_seed(step)
    mask = torch.rand(t.shape, generator=g) < frac
    return torch.where(mask, t + 1e-3 * torch.randn(t.shape, generator=g).to(t.dtype), t)


def every_kind_of_state() -> dict:
    """A state with every supported leaf type, container type and edge case."""
    g = torch.Generator().manual_seed(0)
    sd = OrderedDict(w=torch.randn(5, 7, generator=g), b=torch.zeros(7))
    sd._metadata = OrderedDict({"": {"version": 1}})
    return {
        "model": sd,
        "dtypes": {
            "fp32": torch.tensor([0.0, -0.0, float("nan"), float("inf"), 1e-45]),
            "nan_payload": torch.tensor([0x7FC00001, -0x003FFEDD], dtype=torch.int32).view(torch.float32),
            "bf16": torch.randn(9, generator=g).to(torch.bfloat16),
            "fp16": torch.randn(3, 3, generator=g).half(),
            "fp64": torch.randn(4, generator=g).double(),
            "int64": torch.arange(-5, 5),
            "int32": torch.arange(6, dtype=torch.int32).reshape(2, 3),
            "int16": torch.tensor([-3, 7], dtype=torch.int16),
            "int8": torch.tensor([-128, 127], dtype=torch.int8),
            "uint8": torch.get_rng_state()[:64],
            "uint16": torch.tensor([65535, 1], dtype=torch.uint16),
            "uint32": torch.tensor([2**32 - 1], dtype=torch.uint32),
            "uint64": torch.tensor([2**64 - 1], dtype=torch.uint64),
            "bool": torch.tensor([True, False, True]),
            "complex64": torch.randn(3, dtype=torch.complex64, generator=g),
            "complex128": torch.randn(2, 2, dtype=torch.complex128, generator=g),
            "float8": torch.randn(6, generator=g).to(torch.float8_e4m3fn),
            "scalar": torch.tensor(3.5),
            "scalar_int": torch.tensor(7),
            "empty": torch.zeros(0, 4),
            "empty2": torch.zeros(3, 0, dtype=torch.bfloat16),
            "transposed": torch.randn(4, 6, generator=g).t(),
        },
        "numpy": {
            "f32": np.arange(6, dtype=np.float32).reshape(2, 3),
            "big_endian": np.arange(3, dtype=">i4"),
            "c64": np.array([1 + 2j, -3j], dtype=np.complex64),
            "scalar": np.float32(1.5),
            "int_scalar": np.int64(-4),
        },
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(5, generator=g)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "foreach": None,
                              "amsgrad": False, "params": [0]}],
        },
        "scalars": [1, -2**70, 0.1, float("nan"), float("-inf"), "text/with%slash", "", None, True],
        "bytes": b"\x00\xffraw",
        "size": torch.Size([2, 3]),
        "dtype": torch.bfloat16,
        "device": torch.device("cpu"),
        "nested": ((1, 2), [[]], {}, ()),
        "odd keys": {"": torch.ones(1), ".zarray": torch.ones(2), "a/b": torch.ones(3), "%": 1},
    }


@pytest.fixture
def store() -> CheckpointStore:
    return CheckpointStore(MemoryStore(), chunk_elements=64)


def test_round_trip_every_supported_type_bit_exact(store):
    state = every_kind_of_state()
    store.save(0, state)
    assert_same_state(store.load(0), state)


def test_delta_round_trip_every_supported_type_bit_exact(store):
    states = []
    for step in range(4):
        state = every_kind_of_state()
        state["model"]["w"] = drift(state["model"]["w"], step, 0.5)
        state["dtypes"]["bf16"] = drift(state["dtypes"]["bf16"].float(), step).to(torch.bfloat16)
        store.save(step, state)
        states.append(state)
    assert [h.kind for h in store.history()] == ["keyframe", "delta", "delta", "delta"]
    for step, state in enumerate(states):
        assert_same_state(store.load(step), state)
    assert store.verify() == []


def test_real_training_checkpoints_bit_exact_and_compressed(tmp_path):
    ckpts = train_checkpoints(6)
    store = CheckpointStore(tmp_path / "run.tpde", keyframe_every=4, chunk_elements=512)
    for step, state in ckpts:
        info = store.save(step, state)
        assert info.raw_bytes > 0 and info.stored_bytes > 0
    # optimizer state appears after the first step, so step 1 is a keyframe anyway
    assert [h.kind for h in store.history()] == ["keyframe", "delta", "delta", "delta", "keyframe", "delta"]
    reopened = CheckpointStore(tmp_path / "run.tpde", mode="r")
    for step, state in ckpts:
        assert_same_state(reopened.load(step), state)
    assert reopened.verify() == []


def _chunk_transforms(root) -> list[int]:
    """Payload transform byte of every tpde chunk file under a local store directory."""
    import chunkfmt

    out = []
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            blob = path.read_bytes()
            if blob[:4] == b"TPDE" and chunkfmt.parse(blob)["value_scheme"] != 0:
                out.append(chunkfmt.parse(blob)["transform"])
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extrapolated_references_on_training_checkpoints(tmp_path, dtype):
    """Deltas with two predecessors are coded against an extrapolation where it pays (format
    3); every step, and slices of single tensors, still come back bit-exactly."""
    ckpts = train_checkpoints(10)
    if dtype is torch.bfloat16:
        ckpts = [(s, {**st, "model": {k: v.to(dtype) for k, v in st["model"].items()}}) for s, st in ckpts]
    store = CheckpointStore(tmp_path / "run.tpde", keyframe_every=16, chunk_elements=512, bundle_below=0)
    for step, state in ckpts:
        store.save(step, state)
    transforms = _chunk_transforms(tmp_path / "run.tpde")
    assert 0 < transforms.count(1) < len(transforms)
    reopened = CheckpointStore(tmp_path / "run.tpde", mode="r")
    for step, state in ckpts:
        assert_same_state(reopened.load(step), state)
    last_step, last = ckpts[-1]
    name = "model/layers.layers.1.linear1.weight"
    part = reopened.load_tensor(last_step, name, (slice(5, 40), slice(None)))
    assert raw_bytes(part) == raw_bytes(last["model"]["layers.layers.1.linear1.weight"][5:40])
    assert reopened.verify() == []


def test_alias_tensors_stay_one_tensor(store):
    shared = torch.randn(4, 4)
    store.save(0, {"embed": shared, "head": shared, "view": shared[1]})
    out = store.load(0)
    assert out["embed"] is out["head"]
    assert raw_bytes(out["view"]) == raw_bytes(shared[1])
    assert store.tensors(0) == ["embed", "view"]


def test_keyframe_every_and_prev_reference_context():
    store = CheckpointStore(MemoryStore(), keyframe_every=3)
    x = torch.randn(100)
    for step in range(7):
        x = drift(x, step)
        store.save(step, {"x": x})
    hist = store.history()
    assert [h.kind for h in hist] == ["keyframe", "delta", "delta"] * 2 + ["keyframe"]
    assert [h.base_step for h in hist] == [None, 0, 1, None, 3, 4, None]
    assert [h.prev_step for h in hist] == [None, None, 0, None, None, 3, None]
    assert [h.depth for h in hist] == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(y=torch.zeros(3)),  # a tensor appears
        lambda s: s.update(x=torch.zeros(99)),  # shape changes
        lambda s: s.update(x=s["x"].double()),  # dtype changes
    ],
)
def test_layout_change_forces_keyframe(store, change):
    state = {"x": torch.randn(100)}
    store.save(0, state)
    store.save(1, {"x": drift(state["x"], 1)})
    changed = {"x": drift(state["x"], 2)}
    change(changed)
    assert store.save(2, changed).kind == "keyframe"
    assert_same_state(store.load(2), changed)


def test_dropped_tensor_keeps_delta(store):
    store.save(0, {"x": torch.randn(10), "y": torch.randn(3)})
    info = store.save(1, {"x": torch.randn(10)})
    assert info.kind == "delta" and store.tensors(1) == ["x"]


def test_info_reports_sizes_ratios_and_changes(store):
    x = torch.randn(1000)
    store.save(10, {"x": x, "n": 1})
    info = store.save(20, {"x": drift(x, 1, 0.05), "n": 2})
    full = store.info(20)
    assert full.kind == "delta" and full.base_step == 10
    t = full.tensors["x"]
    assert t.raw_bytes == 4000 and t.shape == (1000,) and t.dtype == "float32"
    assert 0.0 < t.changed_fraction < 0.2
    assert t.ratio > 1 and full.ratio == pytest.approx(info.ratio)
    assert store.info(10).tensors["x"].changed_fraction is None


def test_resume_in_new_object_reloads_predecessor(tmp_path):
    path = tmp_path / "s"
    x = torch.randn(300)
    states = {}
    first = CheckpointStore(path, chunk_elements=128)
    for step in range(3):
        x = drift(x, step)
        states[step] = {"x": x}
        first.save(step, states[step])
    second = CheckpointStore(path)  # chunk_elements comes from the store
    x = drift(x, 3)
    states[3] = {"x": x}
    info = second.save(3, states[3])
    assert (info.kind, info.base_step, info.prev_step) == ("delta", 2, 1)
    for step, state in states.items():
        assert_same_state(CheckpointStore(path, mode="r").load(step), state)


def test_same_process_save_uses_memory_not_reads():
    counting = CountingStore()
    store = CheckpointStore(counting, chunk_elements=64)
    x = torch.randn(1000)
    for step in range(5):
        x = drift(x, step)
        store.save(step, {"x": x})
    assert counting.chunk_reads == []


def test_partial_restore_reads_only_overlapping_chunks_along_the_chain():
    counting = CountingStore()
    store = CheckpointStore(counting, keyframe_every=8, chunk_elements=256, bundle_below=0)
    w = torch.randn(64, 32)  # chunks of 8 rows -> 8 chunks
    for step in range(5):
        w = drift(w, step)
        store.save(step, {"layers.3.q.weight": w, "other": torch.randn(64, 32)})
    depth = store.info(4).depth
    assert depth == 4
    cases = [((slice(0, 8),), 1), ((slice(5, 20),), 3), ((3, slice(2, 5)), 1), (None, 8)]
    for index, overlapping in cases:
        counting.chunk_reads.clear()
        got = CheckpointStore(counting, mode="r").load_tensor(4, "layers.3.q.weight", index)
        want = w if index is None else w[index]
        assert raw_bytes(got) == raw_bytes(want) and got.shape == want.shape
        assert len(counting.chunk_reads) == (depth + 1) * overlapping
        assert all("layers.3.q.weight" in k for k in counting.chunk_reads)


@pytest.mark.parametrize(
    "index",
    [
        (slice(None, None, -1),),
        (slice(3, 50, 7), slice(1, None, 2)),
        (-1,),
        (slice(10, 10),),
        (slice(60, 200),),
        (np.int64(2), -3),
        2,
    ],
)
def test_load_tensor_matches_numpy_indexing(index):
    store = CheckpointStore(MemoryStore(), chunk_elements=100)
    w = torch.randn(64, 9).to(torch.bfloat16)
    store.save(0, {"w": w})
    store.save(1, {"w": drift(w.float(), 1).to(torch.bfloat16)})
    full = store.load(1)["w"]
    got = store.load_tensor(1, "w", index)
    want = torch.from_numpy(np.array(full.view(torch.int16).numpy()[index])).view(torch.bfloat16)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    assert raw_bytes(got) == raw_bytes(want)


def test_load_tensor_scalar_numpy_and_complex(store):
    store.save(0, {"s": torch.tensor(2.0), "a": np.arange(12.0).reshape(3, 4),
                   "c": torch.randn(5, dtype=torch.complex64)})
    assert store.load_tensor(0, "s").item() == 2.0
    np.testing.assert_array_equal(store.load_tensor(0, "a", (1,)), np.arange(4.0, 8.0))
    c = store.load(0)["c"]
    assert raw_bytes(store.load_tensor(0, "c", slice(1, 3))) == raw_bytes(c[1:3])


def test_plain_zarr_reads_keyframes_and_refuses_deltas(tmp_path):
    store = CheckpointStore(tmp_path / "s", chunk_elements=100, bundle_below=0)
    w = torch.randn(30, 7)
    store.save(0, {"model": {"w": w}})
    store.save(1, {"model": {"w": drift(w, 1)}})
    plain = zarr.open_array(LocalStore(tmp_path / "s", read_only=True), path="steps/0/model/w", mode="r")
    assert plain[:].tobytes() == w.numpy().tobytes()
    delta = zarr.open_array(LocalStore(tmp_path / "s", read_only=True), path="steps/1/model/w", mode="r")
    with pytest.raises(TPDEError, match="CheckpointStore"):
        delta[:]


def test_pickle_only_when_asked(store):
    state = {"obj": {1, 2, 3}, "x": torch.ones(2)}
    with pytest.raises(TPDEError, match=r"cannot store a builtins.set at 'obj'.*allow_pickle"):
        store.save(0, state)
    assert store.steps() == []
    store.save(0, state, allow_pickle=True)
    with pytest.raises(TPDEError, match="allow_pickle=True") as e:
        store.load(0)
    assert e.value.code == "pickle_refused"
    assert store.load(0, allow_pickle=True)["obj"] == {1, 2, 3}


def test_meta_is_stored(store):
    store.save(0, {"x": torch.ones(1)}, meta={"source": "a.pt"})
    assert store.info(0).meta == {"source": "a.pt"}
    with pytest.raises(TPDEError, match="JSON"):
        store.save(1, {}, meta={"bad": object()})


def expect_error(code: str, match: str, fn, *args, **kwargs) -> None:
    with pytest.raises(TPDEError, match=match) as e:
        fn(*args, **kwargs)
    assert e.value.code == code


def test_user_errors_are_clear(tmp_path, store):
    store.save(5, {"x": torch.ones(3)})
    expect_error("unknown_step", r"unknown step 6; steps are 5", store.load, 6)
    expect_error("unknown_tensor", r"step 5 has no tensor 'y'", store.load_tensor, 5, "y")
    expect_error("invalid_argument", r"step is an integer >= 0", store.save, -1, {})
    expect_error("invalid_argument", r"step is an integer >= 0", store.load, "5")
    expect_error("step_exists", r"step 5 already exists", store.save, 5, {})
    expect_error("invalid_argument", r"out of range for axis 0", store.load_tensor, 5, "x", 3)
    expect_error("invalid_argument", r"too many indices", store.load_tensor, 5, "x", (0, 0))
    expect_error("invalid_argument", r"ints or slices", store.load_tensor, 5, "x", ([0, 1],))
    expect_error("not_a_store", r"does not exist", CheckpointStore, tmp_path / "nope", mode="r")
    (tmp_path / "file").write_text("x")
    expect_error("not_a_store", r"is a file", CheckpointStore, tmp_path / "file")
    other = zarr.open_group(str(tmp_path / "zarr"), mode="w")
    other.attrs["x"] = 1
    expect_error("not_a_store", r"not a tpde checkpoint store", CheckpointStore, tmp_path / "zarr")
    expect_error("invalid_argument", r"mode must be", CheckpointStore, MemoryStore(), mode="x")
    expect_error("invalid_argument", r"keyframe_every", CheckpointStore, MemoryStore(), keyframe_every=0)
    CheckpointStore(tmp_path / "ro").save(0, {})
    ro = CheckpointStore(tmp_path / "ro", mode="r")
    expect_error("read_only", r"read-only", ro.save, 1, {})
    expect_error("store_exists", r"already holds data", CheckpointStore, tmp_path / "ro", mode="w-")
    expect_error("invalid_argument", r"same name '0'", store.save, 9, {0: torch.ones(1), "0": torch.ones(1)})
    expect_error("bad_dtype", r"sparse|dense", store.save, 9, {"s": torch.eye(2).to_sparse()})


def test_mode_w_erases_tpde_stores_only(tmp_path):
    CheckpointStore(tmp_path / "s").save(0, {"x": torch.ones(1)})
    assert CheckpointStore(tmp_path / "s", mode="w").steps() == []
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".zattrs", ".zgroup", "steps"]
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    expect_error("not_a_store", r"mode 'w' erases only tpde stores", CheckpointStore, tmp_path / "home", mode="w")
    assert (tmp_path / "home" / "thesis.tex").exists()


def test_delete_refuses_while_a_delta_needs_the_step(store):
    for step in range(4):
        store.save(step, {"x": torch.full((4,), float(step))})
    expect_error("has_dependents", r"cannot delete step 1: step\(s\) 2, 3 are coded against it",
                 store.delete, 1)
    store.delete(3)
    store.delete(2)
    store.delete(1)
    assert store.steps() == [0]
    assert_same_state(store.load(0), {"x": torch.zeros(4)})
    store.save(1, {"x": torch.ones(4)})  # the step number is free again
    assert store.info(1).kind == "delta"


def test_prune_keeps_what_kept_steps_need():
    store = CheckpointStore(MemoryStore(), keyframe_every=4)
    states = {}
    for step in range(0, 1000, 100):
        states[step] = {"x": torch.full((8,), float(step))}
        store.save(step, states[step])
    # chains: [0 100 200 300] [400 500 600 700] [800 900]
    assert store.prune(keep_last=1, dry_run=True) == [0, 100, 200, 300, 400, 500, 600, 700]
    deleted = store.prune(keep_last=1, keep_every=500)
    assert deleted == [100, 200, 300, 600, 700]  # 0 is a multiple of 500
    assert store.steps() == [0, 400, 500, 800, 900]
    for step in store.steps():
        assert_same_state(store.load(step), states[step])
    assert store.verify() == []
    expect_error("invalid_argument", r"needs keep_last", store.prune)


def test_corruption_is_detected(tmp_path):
    path = tmp_path / "s"
    store = CheckpointStore(path, chunk_elements=50, bundle_below=0)
    x = torch.randn(200)
    for step in range(3):
        x = drift(x, step)
        store.save(step, {"x": x})
    chunk = path / "steps" / "1" / "x" / "2"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    problems = store.verify()
    assert [p.split(":")[0] for p in problems] == ["step 1", "step 2"]
    assert "chunk 2" in problems[0]
    with pytest.raises(TPDEError):
        store.load(2)
    store.load_tensor(2, "x", slice(0, 100))  # chunks 0 and 1 are intact
    (path / "steps" / "1" / "x" / "0").unlink()
    with pytest.raises(TPDEError, match=r"step 1, tensor 'x', chunk 0: chunk is missing") as e:
        store.load_tensor(2, "x", slice(0, 10))
    assert e.value.code == "missing_reference"


def test_chunk_of_another_array_is_refused(tmp_path):
    store = CheckpointStore(tmp_path / "s", bundle_below=0)
    store.save(0, {"a": torch.ones(3), "b": torch.ones(4)})
    chunks = tmp_path / "s" / "steps" / "0"
    (chunks / "a" / "0").write_bytes((chunks / "b" / "0").read_bytes())
    expect_error("corrupt", r"tensor 'a', chunk 0: chunk holds float32 \(4,\), expected float32 \(3,\)",
                 store.load, 0)


def test_tampered_manifest_and_broken_chain(tmp_path):
    path = tmp_path / "s"
    store = CheckpointStore(path)
    for step in range(3):
        store.save(step, {"x": torch.full((4,), float(step))})
    attrs = path / "steps" / "2" / ".zattrs"
    attrs.write_bytes(attrs.read_bytes().replace(b'"step":2', b'"step":2 '))
    expect_error("corrupt", r"manifest of step 2 does not match its commit marker", store.load, 2)
    (path / "commits" / "0").unlink()  # a foreign tool removed a step
    expect_error("missing_reference", r"broken chain: step 1 is a delta against step 0", store.load, 1)


def test_uncommitted_step_is_invisible_and_cleanable(tmp_path):
    path = tmp_path / "s"
    store = CheckpointStore(path)
    store.save(0, {"x": torch.ones(3)})
    store.save(1, {"x": torch.ones(3) * 2})
    (path / "commits" / "1").unlink()  # as if the process died before committing
    (path / "commits" / "7.abc.partial").write_bytes(b"{")
    again = CheckpointStore(path)
    assert again.steps() == [0]
    assert again.uncommitted() == ["steps/1", "commits/7.abc.partial"]
    assert again.clean() == ["steps/1", "commits/7.abc.partial"]
    assert again.uncommitted() == [] and not (path / "steps" / "1").exists()
    again.save(1, {"x": torch.ones(3) * 3})
    assert_same_state(again.load(1), {"x": torch.ones(3) * 3})


def test_torn_chunk_of_an_uncommitted_step_is_rewritten(tmp_path):
    """Chunks of a step being saved are written in place (no temp file and rename): a save
    killed mid-write leaves a torn file in an uncommitted step, which stays invisible and
    is replaced when that step is saved again."""
    path = tmp_path / "s"
    store = CheckpointStore(path, bundle_below=0)
    w = np.arange(4096, dtype=np.float32)
    store.save(0, {"w": w})
    store.save(1, {"w": w + 1})
    chunks = [p for p in (path / "steps" / "1").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert chunks
    (path / "commits" / "1").unlink()
    chunks[0].write_bytes(chunks[0].read_bytes()[:7])
    again = CheckpointStore(path)
    assert again.steps() == [0]
    again.save(1, {"w": w + 2})
    assert CheckpointStore(path, mode="r").load(1)["w"].tobytes() == (w + 2).tobytes()
    assert again.verify() == []


def test_uncommitted_writes_go_through_any_store(tmp_path):
    from tpde.store.kv import KeyValueStore

    local = KeyValueStore(LocalStore(tmp_path))
    local.set_uncommitted("steps/3/a/b/0", b"xyz")  # creates the folders
    local.set_uncommitted("steps/3/a/b/0", b"uv")  # replaces the whole file
    assert local.get("steps/3/a/b/0") == b"uv"
    memory = KeyValueStore(MemoryStore())
    memory.set_uncommitted("steps/3/a/0", b"xyz")
    assert memory.get("steps/3/a/0") == b"xyz"
    with pytest.raises(TPDEError, match="read-only"):
        KeyValueStore(LocalStore(tmp_path, read_only=True)).set_uncommitted("k", b"v")


def test_progress_bar_path_runs(store, capsys):
    store.save(0, {"x": torch.randn(1000)}, progress=True)
    store.load(0, progress=True)
    assert capsys.readouterr().out == ""


def test_numpy_only_state_needs_no_torch_objects(store):
    state = {"w": np.linspace(0, 1, 300, dtype=np.float32), "n": 3}
    store.save(0, state)
    state2 = {"w": state["w"] + np.float32(1e-3), "n": 4}
    store.save(1, state2)
    assert_same_state(store.load(1), state2)


def test_store_layout_is_plain_zarr_v2(tmp_path):
    store = CheckpointStore(tmp_path / "s", bundle_below=0)
    store.save(3, {"model": {"layers.0.w": torch.ones(2, 2)}})
    meta = json.loads((tmp_path / "s" / "steps" / "3" / "model" / "layers.0.w" / ".zarray").read_text())
    assert meta["compressor"] == {"id": "tpde"} and meta["zarr_format"] == 2
    group = zarr.open_group(str(tmp_path / "s"), mode="r")
    assert "tpde_step" in group["steps/3"].attrs
    assert math.isclose(store.info(3).tensors["model/layers.0.w"].raw_bytes, 16)


def test_in_place_updates_after_save_do_not_leak_into_the_store(store):
    w = torch.randn(500)
    store.save(0, {"w": w})
    first = w.clone()
    w.add_(1.0)  # training updates parameters in place
    store.save(1, {"w": w})
    w.mul_(2.0)
    assert raw_bytes(store.load(0)["w"]) == raw_bytes(first)
    assert raw_bytes(store.load(1)["w"]) == raw_bytes(first + 1.0)


def test_fsspec_url_store():
    url = "memory://tpde-tests/run.tpde"
    store = CheckpointStore(url, mode="w")
    x = torch.randn(300)
    store.save(0, {"x": x})
    store.save(1, {"x": drift(x, 1)})
    reader = CheckpointStore(url, mode="r")
    assert reader.steps() == [0, 1] and reader.history()[1].kind == "delta"
    assert raw_bytes(reader.load_tensor(1, "x", slice(5, 9))) == raw_bytes(drift(x, 1)[5:9])
    assert reader.verify() == []
    store.delete(1)
    assert CheckpointStore(url, mode="r").steps() == [0]
    expect_error("not_a_store", "empty", CheckpointStore, "memory://tpde-tests/none", mode="r")


def test_lossy_bounds_hold_and_errors_do_not_accumulate():
    from tpde import adam_error_bounds

    store = CheckpointStore(MemoryStore(), chunk_elements=100)  # edge chunks included
    g = torch.Generator().manual_seed(0)
    w, v = torch.randn(250, generator=g), torch.rand(250, generator=g) * 1e-6
    inputs = []
    for step in range(6):
        w = w + 1e-4 * torch.randn(250, generator=g)
        v = v * (1 + 0.01 * torch.randn(250, generator=g))
        state = {"w": w.clone(), "state": {0: {"exp_avg_sq": v.clone(), "step": torch.tensor(float(step))}},
                 "ids": torch.arange(4), "half": w.to(torch.bfloat16)}
        inputs.append(state)
        info = store.save(step, state, error_bound=adam_error_bounds(abs_error=1e-3, rel_error=1e-2))
        assert info.tensors["w"].error_bound == {"abs_error": 1e-3}
        assert info.tensors["state/0/exp_avg_sq"].error_bound == {"log_rel_error": 1e-2}
        assert info.tensors["state/0/step"].error_bound is None and info.tensors["ids"].error_bound is None
    assert [h.kind for h in store.history()] == ["keyframe"] + ["delta"] * 5
    for step, state in enumerate(inputs):
        got = store.load(step)
        assert (got["w"] - state["w"]).abs().max() <= 1e-3
        assert ((got["state"][0]["exp_avg_sq"] - state["state"][0]["exp_avg_sq"]).abs()
                <= 1e-2 * state["state"][0]["exp_avg_sq"].abs()).all()
        assert (got["half"].float() - state["half"].float()).abs().max() <= 1e-3
        assert raw_bytes(got["state"][0]["step"]) == raw_bytes(state["state"][0]["step"])
        assert raw_bytes(got["ids"]) == raw_bytes(state["ids"])
    assert store.verify() == []
    # a new process resumes against the stored reconstruction, not the lost input
    again = CheckpointStore(store._kv.store)
    again.save(6, inputs[-1], error_bound={"abs_error": 1e-3})
    assert (again.load(6)["w"] - inputs[-1]["w"]).abs().max() <= 1e-3


def test_bad_error_bounds_are_refused(store):
    expect_error("invalid_argument", r"must be \{'abs_error'", store.save, 0, {"w": torch.ones(3)},
                 error_bound={"abs": 1.0})
    expect_error("invalid_argument", r"positive number", store.save, 0, {"w": torch.ones(3)},
                 error_bound={"abs_error": -1.0})
    assert store.steps() == []


def test_damaged_metadata_is_reported_clearly(tmp_path):
    path = tmp_path / "s"
    store = CheckpointStore(path, bundle_below=0)
    for step in range(3):
        store.save(step, {"a": torch.full((4,), float(step)), "b": torch.full((4,), -1.0 - step)})
    marker = path / "commits" / "2"
    good = marker.read_bytes()
    marker.write_bytes(good[:10])
    expect_error("corrupt", r"commit marker of step 2 is unreadable", store.load, 2)
    marker.write_bytes(good.replace(b'"step":2', b'"step":7'))
    expect_error("corrupt", r"commit marker of step 2 names step 7", store.load, 2)
    marker.write_bytes(good.replace(b'"prev_step":0', b'"prev_step":1'))
    expect_error("corrupt", r"step 2 names context step 1, which is not two steps back", store.load, 2)
    marker.write_bytes(good.replace(b'"base_step":1', b'"base_step":5'))
    expect_error("corrupt", r"step 2 has an invalid base step 5", store.load, 2)
    marker.write_bytes(good)
    (path / "steps" / "2" / ".zattrs").unlink()
    expect_error("corrupt", r"step 2 is committed but its manifest is missing", store.load, 2)
    # a chunk that decodes fine but holds another tensor's values: the content hash says so
    a0 = path / "steps" / "0" / "a" / "0"
    a0.write_bytes((path / "steps" / "0" / "b" / "0").read_bytes())
    expect_error("checksum", r"step 0, tensor 'a', chunk 0: content hash mismatch", store.load, 0)
    root = path / ".zattrs"
    root.write_bytes(root.read_bytes().replace(b'"format":1', b'"format":9'))
    expect_error("unsupported_version", r"tpde store of format 9", CheckpointStore, path)


def test_other_user_errors(store):
    expect_error("invalid_argument", r"cannot open a store from int", CheckpointStore, 123)
    store.save(0, {"obj": object()}, allow_pickle=True)
    expect_error("unknown_tensor", r"'obj' at step 0 is a pickled object", store.load_tensor, 0, "obj")
    expect_error("unknown_step", r"unknown step 1; steps are 0", store.delete, 1)


def test_a_save_codes_against_the_manifest_it_committed_without_reading_it_back(tmp_path, monkeypatch):
    from tpde.store import schema

    states = [{"x": torch.arange(64, dtype=torch.float32) + k / 8} for k in range(4)]
    store = CheckpointStore(tmp_path / "s")
    store.save(0, states[0])
    store.save(1, states[1])
    parsed = []
    real = schema.Manifest.from_bytes.__func__
    monkeypatch.setattr(schema.Manifest, "from_bytes",
                        classmethod(lambda cls, *a: parsed.append(a[0].step) or real(cls, *a)))
    store.save(2, states[2])
    assert parsed == []  # the marker of step 1 vouches for the manifest held in memory
    other = CheckpointStore(tmp_path / "s")  # another writer object reads it from the store
    store.close()
    other.save(3, states[3])
    assert parsed and parsed[0] == 2  # then the chain it decodes to rebuild step 2
    reader = CheckpointStore(tmp_path / "s", mode="r")
    for k, state in enumerate(states):
        assert reader.load(k)["x"].numpy().tobytes() == state["x"].numpy().tobytes()
