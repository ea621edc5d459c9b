"""A store whose bytes were written by someone else: chunks that claim more than their
array's metadata allows, chunks of another dtype or shape, skeletons nested too deep,
malformed array specs. Every load fails with a one-line TPDEError that names the step and
tensor, and allocates nothing on the chunk's word (issue 13, items 6 and 7).

The manifest checksum in the commit marker is unkeyed, so an attacker recomputes it;
`rewrite_manifest` does the same.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

import chunkfmt
import tpde
from tpde import CheckpointStore, TPDEError


def rewrite_manifest(root: Path, step: int, edit, raw_tree: str | None = None) -> None:
    """Apply `edit` to step `step`'s manifest body (or put the JSON text `raw_tree` in
    place of its tree) and reseal the commit marker's CRC."""
    attrs = root / "steps" / str(step) / ".zattrs"
    doc = json.loads(attrs.read_bytes())
    edit(doc["tpde_step"])
    if raw_tree is not None:
        doc["tpde_step"]["tree"] = "@TREE@"
    data = json.dumps(doc).encode()
    if raw_tree is not None:
        data = data.replace(b'"@TREE@"', raw_tree.encode())
    attrs.write_bytes(data)
    marker_path = root / "commits" / str(step)
    marker = json.loads(marker_path.read_bytes())
    marker["manifest_crc32"] = zlib.crc32(data)
    marker_path.write_bytes(json.dumps(marker).encode())


def chunk_path(root: Path, step: int, name: str) -> Path:
    files = [p for p in (root / "steps" / str(step) / name).iterdir() if not p.name.startswith(".")]
    assert len(files) == 1
    return files[0]


def with_shape(chunk: bytes, shape: tuple[int, ...]) -> bytes:
    c = bytearray(chunk)
    hs = chunkfmt.header_size(c)
    c = c[:32] + b"".join(struct.pack("<Q", d) for d in shape) + c[hs - 4:]
    c[8] = len(shape)
    return chunkfmt.reseal(c, fix_payload_size=False)


def load_fails(store: CheckpointStore, step: int, *words: str) -> TPDEError:
    with pytest.raises(TPDEError) as info:
        store.load(step)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return info.value


@pytest.fixture
def saved(tmp_path):
    root = tmp_path / "s"
    store = CheckpointStore(root, mode="w", bundle_below=0)  # one file per chunk; bundles: test_store_bundle
    store.save(0, {"w": torch.arange(64, dtype=torch.float32), "i": torch.arange(64, dtype=torch.int32), "n": 1})
    return root, CheckpointStore(root, mode="r")


# --- chunks ---------------------------------------------------------------------------------


def test_a_chunk_claiming_a_gigabyte_allocates_nothing(saved):
    root, store = saved
    path = chunk_path(root, 0, "w")
    bomb = with_shape(path.read_bytes(), (1 << 28,))  # a few hundred bytes claiming 1 GiB of float32
    assert len(bomb) < 1024
    path.write_bytes(bomb)
    tracemalloc.start()
    try:
        error = load_fails(store, 0, "step 0", "'w'", f"chunk holds float32 ({1 << 28},), expected float32 (64,)")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code == "corrupt"
    assert peak < 64 << 20, f"peak {peak} bytes"


def test_a_chunk_claiming_64_gib(saved):
    root, store = saved
    path = chunk_path(root, 0, "w")
    path.write_bytes(with_shape(path.read_bytes(), (1 << 34,)))
    assert load_fails(store, 0, "step 0", "'w'").code in ("corrupt", "too_large")


def test_a_chunk_of_another_dtype_same_size(saved):
    """An int32 chunk put in place of a float32 one (the content hash recomputed to match)."""
    root, store = saved
    ints = np.arange(64, dtype=np.int32)
    chunk_path(root, 0, "w").write_bytes(tpde.encode(ints))
    rewrite_manifest(root, 0, lambda body: body["arrays"]["w"].update(crc32c=[tpde.fingerprint(ints)]))
    error = load_fails(store, 0, "step 0", "'w'", "chunk holds int32 (64,), expected float32 (64,)")
    assert error.code == "corrupt"


def test_a_chunk_of_another_shape_same_size(saved):
    root, store = saved
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    chunk_path(root, 0, "w").write_bytes(tpde.encode(x))
    rewrite_manifest(root, 0, lambda body: body["arrays"]["w"].update(crc32c=[tpde.fingerprint(x)]))
    assert load_fails(store, 0, "step 0", "'w'", "chunk holds float32 (8, 8), expected float32 (64,)").code == "corrupt"


def test_a_manifest_shape_too_big_to_allocate(saved):
    root, store = saved

    def edit(body):
        body["arrays"]["w"].update(shape=[1 << 40, 1 << 20], storage_shape=[1 << 40, 1 << 20])

    rewrite_manifest(root, 0, edit)
    with pytest.raises(TPDEError) as info:
        store.load(0)
    assert "\n" not in str(info.value)


# --- skeletons and specs -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [150, 400, 5000])
def test_a_deep_skeleton(saved, depth):
    root, store = saved

    rewrite_manifest(root, 0, lambda body: None, raw_tree='{"list": [' * depth + "0" + "]}" * depth)
    error = load_fails(store, 0)
    assert error.code == "corrupt"


@pytest.mark.parametrize("tree", [
    {"bogus": 1},
    {"dict": [[["k"], 1]]},
    {"dict": "x"},
    {"float": "1.5"},
    {"float": "nan", "bits": "zz"},
    {"bytes": "!!!"},
    {"np_scalar": "O", "hex": "00"},
    {"np_scalar": "<f4", "hex": "00"},
    {"torch_dtype": "load"},
    {"torch_device": "nonsense:99"},
    {"array": "nope"},
    ["bare", "list"],
])
def test_a_malformed_skeleton(saved, tree):
    root, store = saved
    rewrite_manifest(root, 0, lambda body: body.update(tree=tree))
    assert load_fails(store, 0).code == "corrupt"


@pytest.mark.parametrize("field,value", [
    ("kind", "shell"),
    ("codec_dtype", "float31"),
    ("dtype", "O"),
    ("shape", [-1]),
    ("shape", "64"),
    ("shape", [8, 8, 2]),
    ("storage_shape", [True] * 64),
    ("tensor_type", "module"),
    ("requires_grad", "yes"),
])
def test_a_malformed_array_spec(saved, field, value):
    root, store = saved

    def edit(body):
        entry = body["arrays"]["w"]
        entry[field] = value
        if field == "dtype":
            entry["kind"] = "numpy"

    rewrite_manifest(root, 0, edit)
    assert load_fails(store, 0).code == "corrupt"


def test_requires_grad_on_an_integer_tensor_is_refused(saved):
    root, store = saved
    rewrite_manifest(root, 0, lambda body: body["arrays"]["i"].update(requires_grad=True))
    assert load_fails(store, 0, "gradients").code == "corrupt"


def test_the_untouched_store_loads(saved):
    _, store = saved
    state = store.load(0)
    assert state["w"].tolist() == list(range(64)) and state["n"] == 1
