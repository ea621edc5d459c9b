"""CheckpointStore(predecessor_cache="disk"): the saver's reference kept in unnamed files
(store/spill.py) codes exactly the bytes the in-memory cache codes, keeps nothing of the
state in memory and leaves nothing on disk."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from zarr.storage import MemoryStore

import tpde.store.save as save_module
from store_helpers import assert_same_state, train_checkpoints
from test_store_cross_state import adamw_run
from tpde import CheckpointStore, ErrorBounds, TPDEError, abs_bound
from tpde.store.spill import SpilledArray, SpillFile

CHUNK_KEY = re.compile(r"^steps/\d+/.+/(\d+(\.\d+)*)$|^steps/\d+/\.bundle$")


def _chunks(store: CheckpointStore) -> dict[str, bytes]:
    """Every chunk and bundle of a MemoryStore-backed store, by key."""
    data = store._kv.store._store_dict
    return {k: bytes(v.to_bytes()) for k, v in data.items() if CHUNK_KEY.match(k)}


def _series(store: CheckpointStore, run: list[dict]) -> None:
    """A run of saves that goes through every coding path: keyframes, deltas with a
    context, cross-state predictions, a lossy step, the fast level, and a reopened store."""
    for step, state in enumerate(run[:5]):
        store.save(step, state, cross_state=step % 2 == 1,
                   error_bound=ErrorBounds(exp_avg_sq=abs_bound(1e-9)) if step == 3 else None,
                   level="fast" if step == 4 else None)


@pytest.mark.parametrize("bundle_below", [0, 500])
def test_the_disk_cache_codes_the_same_bytes_as_memory(bundle_below):
    run = adamw_run(8)
    stores = {}
    for cache in ("memory", "disk"):
        store = CheckpointStore(MemoryStore(), keyframe_every=4, chunk_elements=1024, bundle_below=bundle_below,
                                predecessor_cache=cache)
        _series(store, run)
        store.close()  # a new object: the next saves reconstruct their reference from the store
        again = CheckpointStore(store._kv.store, chunk_elements=1024, bundle_below=bundle_below,
                                predecessor_cache=cache)
        for step in (5, 6, 7):
            again.save(step, run[step], cross_state=True)
        stores[cache] = again
    memory, disk = stores["memory"], stores["disk"]
    assert [disk.info(s).kind for s in disk.steps()] == ["keyframe"] + ["delta"] * 3 + ["keyframe"] + ["delta"] * 3
    assert _chunks(disk) == _chunks(memory)
    assert len(_chunks(disk)) > 20
    for step in disk.steps():
        assert_same_state(disk.load(step), memory.load(step))
    assert_same_state(disk.load(7), run[7])


def test_the_disk_cache_holds_files_not_arrays_and_leaves_no_name_behind(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    store = CheckpointStore(tmp_path / "s", predecessor_cache="disk", cache_dir=cache, chunk_elements=4096)
    checkpoints = train_checkpoints(3)
    for step, state in checkpoints:
        store.save(step, state)
        assert os.listdir(cache) == []
    kept = [a for snapshot in store._snapshots.recent for a in snapshot.arrays.values()]
    assert kept and all(isinstance(a, SpilledArray) for a in kept)
    store.close()
    assert store._snapshots.recent == []
    reader = CheckpointStore(tmp_path / "s", mode="r")
    for step, state in checkpoints:
        assert_same_state(reader.load(step), state)


def test_changing_the_state_after_a_save_with_the_disk_cache(tmp_path):
    store = CheckpointStore(tmp_path / "s", predecessor_cache="disk", chunk_elements=4096, workers=2)
    state = {"w": torch.randn(300, 257), "b": torch.randn(4096).to(torch.bfloat16)}
    saved = []
    for step in range(4):
        saved.append({k: v.clone() for k, v in state.items()})
        store.save(step, state)
        with torch.no_grad():
            state["w"][::3].add_(0.01)
            state["b"][:100].mul_(1.5)
    reader = CheckpointStore(tmp_path / "s", mode="r")
    assert [reader.info(s).kind for s in range(4)] == ["keyframe", "delta", "delta", "delta"]
    for step in range(4):
        assert_same_state(reader.load(step), saved[step])


def test_a_failed_save_leaves_the_disk_cache_on_the_last_good_step(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "s", predecessor_cache="disk", chunk_elements=2048, bundle_below=0)
    checkpoints = train_checkpoints(4)
    store.save(*checkpoints[0])
    calls = {"n": 0}
    encode = save_module._core.encode

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise TPDEError("injected", "corrupt")
        return encode(*args, **kwargs)

    monkeypatch.setattr(save_module._core, "encode", failing)
    with pytest.raises(TPDEError, match="injected"):
        store.save(*checkpoints[1])
    monkeypatch.setattr(save_module._core, "encode", encode)
    for step, state in checkpoints[1:]:
        store.save(step, state)
    assert store.info(3).kind == "delta"
    reader = CheckpointStore(tmp_path / "s", mode="r")
    for step, state in checkpoints:
        assert_same_state(reader.load(step), state)


@pytest.mark.parametrize("kwargs, message", [
    (dict(predecessor_cache="ram"), "predecessor_cache must be 'memory' or 'disk'"),
    (dict(predecessor_cache="disk", cache_dir="/nonexistent/tpde"), "is not an existing directory"),
])
def test_bad_cache_arguments_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(TPDEError, match=message) as caught:
        CheckpointStore(tmp_path / "s", **kwargs)
    assert caught.value.code == "invalid_argument"
    assert not (tmp_path / "s").exists()


def test_spilled_arrays_read_and_write_contiguous_slabs():
    rng = np.random.default_rng(0)
    file = SpillFile(None)
    for shape in [(), (7,), (5, 3), (4, 3, 2), (1, 6, 5), (3, 1, 4)]:
        values = rng.standard_normal(shape).astype(np.float32)
        spilled = file.spill(values)
        assert np.array_equal(np.asarray(spilled), values)
        if not shape:
            continue
        for lo in range(shape[0]):
            for hi in range(lo, shape[0] + 1):
                assert np.array_equal(spilled[(slice(lo, hi),)], values[lo:hi])
        if len(shape) > 1:
            part = (slice(1, 2), slice(0, 1))
            assert np.array_equal(spilled[part], values[part])
            spilled[part] = -values[part]
            assert np.array_equal(spilled[part], -values[part])
            if shape[0] > 1 and shape[1] > 1:  # two partial rows: two runs
                with pytest.raises(ValueError, match="not contiguous"):
                    spilled[(slice(0, 2), slice(0, 1))]
    assert file.end % SpillFile.ALIGN == 0


def test_pack_codes_the_same_bytes_with_either_cache(tmp_path):
    from tpde.cli import main

    files = []
    for step, state in train_checkpoints(3):
        files.append(tmp_path / f"ckpt-{step}.pt")
        torch.save(state, files[-1])
    outputs = {}
    for cache in ("disk", "memory"):
        outputs[cache] = tmp_path / cache
        assert main(["pack", *map(str, files), "-o", str(outputs[cache]), "--bundle-below", "0",
                     "--predecessor-cache", cache]) == 0
    chunk_files = {cache: {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
                           if p.is_file() and CHUNK_KEY.match(str(p.relative_to(out)))}
                   for cache, out in outputs.items()}
    assert len(chunk_files["disk"]) > 10
    assert chunk_files["disk"] == chunk_files["memory"]
    assert [s.kind for s in CheckpointStore(outputs["disk"], mode="r").history()] == ["keyframe", "delta", "delta"]


def test_a_dcp_writer_keeps_its_reference_on_disk(tmp_path):
    import warnings

    import torch.distributed.checkpoint as dcp

    import tpde.dcp

    root = tmp_path / "ckpt"
    weights = [torch.randn(256, 64)]
    weights.append(weights[0] + 1e-3 * (torch.rand(256, 64) < 0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tpde.dcp.Writer(root, predecessor_cache="disk") as writer:
            for step, w in enumerate(weights):
                dcp.save({"w": w}, storage_writer=writer, checkpoint_id=step, no_dist=True)
            stores = list(writer_stores(root))
            assert stores and all(isinstance(a, SpilledArray) for s in stores
                                  for snap in s._snapshots.recent for a in snap.arrays.values())
        got = {"w": torch.zeros(256, 64)}
        dcp.load(got, storage_reader=tpde.dcp.Reader(root, step=1), no_dist=True)
    assert torch.equal(got["w"], weights[1])


def writer_stores(root):
    """The rank stores that tpde.dcp keeps open for writers under `root`."""
    from tpde.dcp import store_hooks

    return [s for key, s in store_hooks._OPEN.items() if str(root) in str(key)]


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_a_save_keeps_no_reference_to_the_callers_arrays(tmp_path, cache):
    """Without the cyclic collector: the state's arrays go when the caller drops them (a
    reference cycle in the state walk held them until a collection: `tpde-pack pack` had an
    extra state at its peak)."""
    import gc
    import weakref

    store = CheckpointStore(tmp_path / "s", predecessor_cache=cache, progress=False)
    r = np.random.default_rng(0)
    gc.collect()
    gc.disable()
    try:
        for step in range(3):
            w = r.standard_normal((256, 256)).astype(np.float32)
            alive = weakref.ref(w)
            store.save(step, {"w": w, "b": np.ones(4, np.float32)})  # copies: the store keeps its own
            del w
            assert alive() is None, step
    finally:
        gc.enable()
