"""The frozen stores of tests/stores/ (one per store format version, docs/store-format.md)
must read back bit-exactly, with this package and with tests/store_reader.py, a second
reader written from the specification alone. Never regenerate a frozen store to make
these tests pass: a failure here means stores written by earlier versions no longer read."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import store_reader
import tpde

HERE = Path(__file__).resolve().parent
STORES = HERE / "stores"
sys.path.insert(0, str(STORES))
from make_stores import describe  # noqa: E402

FOLDERS = sorted(p for p in STORES.iterdir() if (p / "expected.json").is_file())


def _readable_store_formats() -> tuple[int, ...]:
    """The store format versions this package reads (the manifest versions it accepts)."""
    from tpde.store.schema import READABLE_FORMATS

    return tuple(READABLE_FORMATS)


def _expected(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    doc = json.loads((folder / "expected.json").read_text())
    with np.load(folder / "expected.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return doc, arrays


def _bits(t) -> bytes:
    import torch

    t = torch.view_as_real(t) if t.is_complex() else t
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def test_every_store_format_version_has_a_frozen_store():
    frozen = {json.loads((f / "expected.json").read_text())["store_format"] for f in FOLDERS}
    assert set(_readable_store_formats()) == frozen
    assert max(frozen) == int(
        (HERE.parent / "docs" / "store-format.md").read_text().splitlines()[0].rsplit(" ", 1)[1]
    ), "docs/store-format.md's title names another version than the newest frozen store"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_frozen_store_reads_back_bit_exactly(folder):
    doc, arrays = _expected(folder)
    store = tpde.CheckpointStore(folder / "store", mode="r")
    assert [str(s) for s in store.steps()] == list(doc["steps"])
    history = {str(h.step): h for h in store.history()}
    used = set()
    for step, want in doc["steps"].items():
        h = history[step]
        assert (h.kind, h.base_step, h.prev_step, h.lossy, h.predicted) == (
            want["kind"], want["base_step"], want["prev_step"], want["lossy"], want["predicted"])
        assert store.tensors(int(step)) == want["tensors"]
        found: dict[str, np.ndarray] = {}
        state = store.load(int(step), allow_pickle=doc["allow_pickle"])
        assert describe(state, step, found, {}) == want["state"]
        assert found.keys() <= arrays.keys()
        for path, raw in found.items():
            assert raw.tobytes() == arrays[path].tobytes(), path
        used |= found.keys()
        blobs = store.load_blobs(int(step)) if "blobs" in want else {}
        assert {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()} == want.get("blobs", {})
    assert used == arrays.keys()
    assert store.verify() == []


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_frozen_store_partial_reads_match_whole_loads(folder):
    doc, _ = _expected(folder)
    store = tpde.CheckpointStore(folder / "store", mode="r")
    step = int(list(doc["steps"])[-1])
    state = store.load(step, allow_pickle=doc["allow_pickle"])
    for name in store.tensors(step):
        node = state
        for key in name.split("/"):
            node = node[int(key)] if isinstance(node, dict) and key.isdigit() and int(key) in node else node[key]
        whole = store.load_tensor(step, name)
        assert _bits(whole) == _bits(node), name
        if whole.ndim and whole.shape[0] > 1:
            part = store.load_tensor(step, name, (slice(1, None),))
            assert _bits(part) == _bits(node[1:]), name


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_second_reader_from_the_specification(folder):
    doc, arrays = _expected(folder)
    for step, want in doc["steps"].items():
        got = store_reader.read_step(folder / "store", int(step), allow_pickle=doc["allow_pickle"])
        assert got["state"] == want["state"], step
        assert got["arrays"].keys() == {k for k in arrays if k.split("/", 1)[0] == step}
        for path, raw in got["arrays"].items():
            assert raw == arrays[path].tobytes(), path
        assert {n: hashlib.sha256(b).hexdigest() for n, b in got["blobs"].items()} == want.get("blobs", {}), step


def test_second_reader_refuses_a_damaged_store(tmp_path):
    import shutil

    folder = FOLDERS[-1]
    doc, _ = _expected(folder)
    copy = tmp_path / "store"
    shutil.copytree(folder / "store", copy)
    step = list(doc["steps"])[-1]
    manifest = copy / "steps" / step / ".zattrs"
    manifest.write_bytes(manifest.read_bytes().replace(b'"format":', b'"format" :', 1))
    with pytest.raises(store_reader.StoreError, match="corrupt"):
        store_reader.read_step(copy, int(step))
    with pytest.raises(tpde.TPDEError) as err:
        tpde.CheckpointStore(copy, mode="r").load(int(step))
    assert err.value.code == "corrupt"
