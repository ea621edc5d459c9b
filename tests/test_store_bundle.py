"""Bundles (store format 4): small arrays' chunks in one object per step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from zarr.storage import MemoryStore

import tpde
from store_craft import edit_manifest
from store_helpers import assert_same_state, train_checkpoints
from tpde.store import CheckpointStore


def many_small(k: int) -> dict:
    """300 small tensors, a 0-d one, an empty one, and two that are not small."""
    g = torch.Generator().manual_seed(k)
    model = {f"layers.{i}.norm.weight": torch.full((16,), float(i)) + 0.01 * k for i in range(300)}
    model["embed.weight"] = torch.randn(1025, 1024, generator=g)  # above 2^20 elements: keys of its own
    model["head.bias"] = torch.randn(1000, generator=g)
    return {"model": model, "step": torch.tensor(float(k)), "empty": torch.empty(0, 5), "epoch": k}


def step_files(root: Path, step: int) -> list[Path]:
    return [p for p in (root / "steps" / str(step)).rglob("*") if p.is_file()]


def test_bundled_store_round_trips_and_writes_a_handful_of_files(tmp_path):
    store = CheckpointStore(tmp_path / "s", keyframe_every=4)
    saved = [many_small(k) for k in range(6)]
    for k, state in enumerate(saved):
        store.save(k, state)
    reader = CheckpointStore(tmp_path / "s", mode="r")
    for k, state in enumerate(saved):
        assert_same_state(reader.load(k), state)
    assert [i.kind for i in reader.history()] == ["keyframe", "delta", "delta", "delta", "keyframe", "delta"]
    # .bundle, .zattrs, .zgroup, model/.zgroup, embed.weight's .zarray and two chunks
    assert sorted(p.name for p in step_files(tmp_path / "s", 3)) == [".bundle", ".zarray", ".zattrs", ".zgroup",
                                                                        ".zgroup", "0.0", "1.0"]
    got = reader.load_tensor(3, "model/layers.7.norm.weight", (slice(2, 5),))
    assert torch.equal(got, saved[3]["model"]["layers.7.norm.weight"][2:5])
    assert torch.equal(reader.load_tensor(3, "step"), saved[3]["step"])
    assert reader.verify() == []


def test_without_bundles_every_array_has_its_own_files(tmp_path):
    store = CheckpointStore(tmp_path / "s", bundle_below=0)
    store.save(0, many_small(0))
    files = step_files(tmp_path / "s", 0)
    assert len(files) > 600 and not any(p.name == ".bundle" for p in files)


def test_chunk_bytes_are_the_same_bundled_or_not(tmp_path):
    a = CheckpointStore(tmp_path / "a", bundle_below=0, workers=1)
    b = CheckpointStore(tmp_path / "b", workers=1)
    for k in range(3):
        a.save(k, many_small(k))
        b.save(k, many_small(k))
    manifest = json.loads((tmp_path / "b" / "steps" / "2" / ".zattrs").read_bytes())["tpde_step"]
    bundle = (tmp_path / "b" / "steps" / "2" / ".bundle").read_bytes()
    bundled = {n: e["bundle"] for n, e in manifest["arrays"].items() if "bundle" in e}
    assert len(bundled) == 303 and "model/embed.weight" not in bundled and bundled["empty"] == []
    for name, ranges in bundled.items():
        for index, (offset, length) in enumerate(ranges):
            key = "0" if name == "step" else str(index)
            assert bundle[offset:offset + length] == (tmp_path / "a" / "steps" / "2" / name / key).read_bytes()
    assert sum(length for ranges in bundled.values() for _, length in ranges) == len(bundle)


def test_changing_the_setting_starts_a_keyframe(tmp_path):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, many_small(0))
    store.save(1, many_small(1))
    store.bundle_below = 0
    assert store.save(2, many_small(2)).kind == "keyframe"
    assert store.save(3, many_small(3)).kind == "delta"
    assert_same_state(CheckpointStore(tmp_path / "s", mode="r").load(3), many_small(3))
    with pytest.raises(tpde.TPDEError, match="bundle_below"):
        store.bundle_below = -1
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(tpde.TPDEError) as info:
            CheckpointStore(tmp_path / "t", bundle_below=bad)
        assert info.value.code == "invalid_argument"


def test_a_store_made_before_bundles_keeps_writing_without(tmp_path):
    CheckpointStore(tmp_path / "s").save(0, many_small(0))
    attrs = tmp_path / "s" / ".zattrs"
    doc = json.loads(attrs.read_bytes())
    del doc["tpde_store"]["bundle_below"]  # as stores of package 0.6 were made
    attrs.write_text(json.dumps(doc))
    store = CheckpointStore(tmp_path / "s")
    assert store.bundle_below == 0
    assert store.save(1, many_small(1)).kind == "keyframe"  # the layout changed
    assert not (tmp_path / "s" / "steps" / "1" / ".bundle").exists()
    assert CheckpointStore(tmp_path / "s", bundle_below=100).bundle_below == 100


def test_checkpoints_of_a_real_training_run_round_trip_bundled(tmp_path):
    store = CheckpointStore(tmp_path / "s", keyframe_every=3)
    ckpts = train_checkpoints(5)
    for step, state in ckpts:
        store.save(step, state, cross_state=True)
    assert any(p.name == ".bundle" for p in step_files(tmp_path / "s", ckpts[-1][0]))
    reader = CheckpointStore(tmp_path / "s", mode="r")
    for step, state in ckpts:
        assert_same_state(reader.load(step), state)


class CountingStore(MemoryStore):
    """Counts reads, and which of them were byte ranges."""

    def __init__(self):
        super().__init__()
        self.reads: list[tuple[str, bool]] = []

    def get_sync(self, key, *, prototype=None, byte_range=None):  # noqa: D102
        self.reads.append((key, byte_range is not None))
        return super().get_sync(key, prototype=prototype, byte_range=byte_range)


def test_reads_take_ranges_for_one_tensor_and_the_whole_bundle_for_a_step():
    memory = CountingStore()
    store = CheckpointStore(memory)
    for k in range(3):
        store.save(k, many_small(k))
    reader = CheckpointStore(memory, mode="r")
    memory.reads.clear()
    name = "model/layers.3.norm.weight"
    assert torch.equal(reader.load_tensor(2, name), many_small(2)["model"]["layers.3.norm.weight"])
    bundle_reads = [r for r in memory.reads if r[0].endswith("/.bundle")]
    assert sorted(bundle_reads) == [("steps/0/.bundle", True), ("steps/1/.bundle", True), ("steps/2/.bundle", True)]
    memory.reads.clear()
    assert_same_state(reader.load(2), many_small(2))
    bundle_reads = [r for r in memory.reads if r[0].endswith("/.bundle")]
    assert sorted(bundle_reads) == [("steps/0/.bundle", False), ("steps/1/.bundle", False), ("steps/2/.bundle", False)]
    assert len(memory.reads) < 20  # not one per tensor


@pytest.mark.parametrize("edit, code", [
    (lambda e: e.__setitem__("bundle", [[0, 10**9]]), "missing_reference"),  # past the bundle's end
    (lambda e: e.__setitem__("bundle", [[0, 4], [4, 4]]), "corrupt"),  # more ranges than chunks
    (lambda e: e.__setitem__("bundle", [[-1, 4]]), "corrupt"),
    (lambda e: e.__setitem__("bundle", "0:4"), "corrupt"),
    (lambda e: e.__setitem__("bundle", [[0, 2**60]]), "corrupt"),
])
def test_hostile_bundle_ranges_are_one_line_errors(tmp_path, edit, code):
    CheckpointStore(tmp_path / "s").save(0, many_small(0))
    edit_manifest(tmp_path / "s", 0, lambda body: edit(body["arrays"]["model/layers.3.norm.weight"]))
    with pytest.raises(tpde.TPDEError) as info:
        CheckpointStore(tmp_path / "s", mode="r").load_tensor(0, "model/layers.3.norm.weight")
    assert info.value.code == code and "\n" not in str(info.value)


def test_a_damaged_bundle_is_found_by_verify_and_load(tmp_path):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, many_small(0))
    store.save(1, many_small(1))
    bundle = tmp_path / "s" / "steps" / "0" / ".bundle"
    data = bytearray(bundle.read_bytes())
    bundle.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    problems = CheckpointStore(tmp_path / "s", mode="r").verify()
    assert len(problems) == 2 and all("missing" in p for p in problems)
    data[len(data) // 3] ^= 0x10
    bundle.write_bytes(bytes(data))
    with pytest.raises(tpde.TPDEError) as info:
        CheckpointStore(tmp_path / "s", mode="r").load(1)
    assert info.value.code in ("checksum", "corrupt", "missing_reference")


def test_bundled_at_some_steps_of_a_chain_and_not_others_is_corrupt(tmp_path):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, many_small(0))
    store.save(1, many_small(1))
    name = "model/layers.3.norm.weight"
    edit_manifest(tmp_path / "s", 0, lambda body: body["arrays"][name].pop("bundle"))
    with pytest.raises(tpde.TPDEError) as info:
        CheckpointStore(tmp_path / "s", mode="r").load_tensor(1, name)
    assert info.value.code == "corrupt" and "bundled at some steps" in str(info.value)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open descriptors in /proc")
def test_loads_close_the_bundle_files_they_open(tmp_path):
    store = CheckpointStore(tmp_path / "s", keyframe_every=4)
    saved = [many_small(k) for k in range(3)]
    for k, state in enumerate(saved):
        store.save(k, state)
    reader = CheckpointStore(tmp_path / "s", mode="r", workers=2)
    reader.load(2)
    before = len(list(Path("/proc/self/fd").iterdir()))
    for _ in range(3):
        assert_same_state(reader.load(2), saved[2])
        name = "layers.3.norm.weight"
        assert torch.equal(reader.load_tensor(2, f"model/{name}"), saved[2]["model"][name])
    assert len(list(Path("/proc/self/fd").iterdir())) == before


def test_a_failing_bundle_read_is_one_storage_error_line(tmp_path, monkeypatch):
    import errno
    import os

    from tpde.errors import StorageError
    from tpde.store import kv as kv_module

    store = CheckpointStore(tmp_path / "s")
    store.save(0, many_small(0))
    reader = CheckpointStore(tmp_path / "s", mode="r")

    def pread(*args):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(kv_module.os, "pread", pread)
    with pytest.raises(StorageError) as e:
        reader.load(0)
    assert "cannot read" in str(e.value) and "Input/output error" in str(e.value) and "\n" not in str(e.value)
    assert e.value.errno == errno.EIO
