"""Blobs: files kept byte for byte with a step, never unpickled, checked on every read."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from tpde import CheckpointStore, TPDEError
from tpde.store.blobs import check_blob_name


def manifest_path(root, step):
    return root / "steps" / str(step) / ".zattrs"


def test_blobs_round_trip_byte_exact_and_recorded(tmp_path):
    store = CheckpointStore(tmp_path / "s", bundle_below=0)
    text = b'{"global_step": 5}\n' * 50
    noise = np.random.default_rng(0).bytes(3000)
    info = store.save(5, {"w": np.arange(10.0)}, blobs={"trainer_state.json": text, "sub/rng.pth": noise, "e": b""})
    assert [(b.name, b.size) for b in info.blobs] == [("trainer_state.json", 950), ("sub/rng.pth", 3000), ("e", 0)]
    assert info.blobs[0].codec == "zlib" and info.blobs[0].stored_bytes < 100 and info.blobs[1].codec == "raw"
    body = json.loads(manifest_path(tmp_path / "s", 5).read_bytes())["tpde_step"]
    assert body["format"] == 3 and body["blobs"][1]["sha256"] == info.blobs[1].sha256
    again = CheckpointStore(tmp_path / "s", mode="r")
    assert again.load_blobs(5) == {"trainer_state.json": text, "sub/rng.pth": noise, "e": b""}
    assert again.load_blobs(5, ["e"]) == {"e": b""}
    assert again.info(5).raw_bytes == 80 + 3950 and again.verify() == []
    store.save(6, {"w": np.arange(10.0) + 1})  # a step without blobs keeps format 1
    assert json.loads(manifest_path(tmp_path / "s", 6).read_bytes())["tpde_step"]["format"] == 1
    assert store.load_blobs(6) == {}
    with pytest.raises(TPDEError, match="no blob 'nope'"):
        store.load_blobs(5, ["nope"])


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../b", "a//b", "a\\b", "x\x00", ".", "a/./b", 3])
def test_unsafe_blob_names_are_refused(tmp_path, name):
    with pytest.raises(TPDEError):
        check_blob_name(name)
    store = CheckpointStore(tmp_path / "s")
    with pytest.raises(TPDEError):
        store.save(0, {}, blobs={name: b"x"})
    assert store.steps() == []


def test_blob_values_must_be_bytes(tmp_path):
    with pytest.raises(TPDEError, match="must be bytes"):
        CheckpointStore(tmp_path / "s").save(0, {}, blobs={"a": "text"})


def test_corrupted_blob_fails_verify_and_load(tmp_path):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, {"w": np.ones(3)}, blobs={"a.bin": bytes(range(200))})
    blob = tmp_path / "s" / "steps" / "0" / ".blobs" / "0"
    blob.write_bytes(b"\x01" + blob.read_bytes()[1:])
    with pytest.raises(TPDEError, match="SHA-256 mismatch"):
        store.load_blobs(0)
    assert "SHA-256 mismatch" in store.verify()[0]
    blob.write_bytes(b"short")
    with pytest.raises(TPDEError, match="5 stored bytes"):
        store.load_blobs(0)


def _rewrite_manifest(root, step, edit):
    """Edit a step's manifest and re-seal it in the commit marker (a hostile writer)."""
    path = manifest_path(root, step)
    doc = json.loads(path.read_bytes())
    edit(doc["tpde_step"])
    data = json.dumps(doc).encode()
    path.write_bytes(data)
    marker = root / "commits" / str(step)
    fields = json.loads(marker.read_bytes())
    fields["manifest_crc32"] = zlib.crc32(data)
    marker.write_bytes(json.dumps(fields).encode())


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b["blobs"][0].update(name="../../evil"),
        lambda b: b["blobs"][0].update(size=-1),
        lambda b: b["blobs"][0].update(sha256="xyz"),
        lambda b: b["blobs"][0].update(codec="pickle"),
        lambda b: b["blobs"][0].update(extra=1),
        lambda b: b["blobs"].append(dict(b["blobs"][0])),
        lambda b: b.update(blobs={"a": 1}),
    ],
)
def test_hostile_blob_entries_are_corrupt(tmp_path, edit):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, {"w": np.ones(3)}, blobs={"a.json": b"{}" * 100})
    _rewrite_manifest(tmp_path / "s", 0, edit)
    with pytest.raises(TPDEError) as e:
        CheckpointStore(tmp_path / "s", mode="r").load_blobs(0)
    assert e.value.code == "corrupt"


def test_inflating_stops_at_the_recorded_size(tmp_path):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, {}, blobs={"a": b"\0" * 1000})
    (tmp_path / "s" / "steps" / "0" / ".blobs" / "0").write_bytes(zlib.compress(b"\0" * 10**8))

    def lie(body):
        body["blobs"][0]["stored_bytes"] = len(zlib.compress(b"\0" * 10**8))

    _rewrite_manifest(tmp_path / "s", 0, lie)
    with pytest.raises(TPDEError, match="1001 bytes, the manifest says 1000"):
        CheckpointStore(tmp_path / "s", mode="r").load_blobs(0)
