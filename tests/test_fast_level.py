"""level="fast" through the codecs, CheckpointStore and tpde-pack: bit-exact, format-6
chunks where asked, and the default level's configs and bytes unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from numcodecs import get_codec

import tpde
from store_helpers import assert_same_state, train_checkpoints
from tpde.cli import main
from tpde.store import CheckpointStore


def chunk_versions(root: Path) -> set[int]:
    """Format versions of every tpde chunk file under a directory."""
    versions = set()
    for p in root.rglob("*"):
        if p.is_file():
            head = p.read_bytes()[:5]
            if head[:4] == b"TPDE":
                versions.add(head[4])
    return versions


def test_numcodecs_codec_fast_level():
    x = (np.random.default_rng(1).standard_normal((64, 300)) * 0.02).astype(np.float32)
    codec = tpde.TPDECodec(level="fast")
    chunk = codec.encode(x)
    assert tpde.read_header(chunk)["version"] == 6
    assert np.array_equal(codec.decode(chunk), x)
    assert codec.get_config() == {"id": "tpde", "level": "fast"}
    assert get_codec(codec.get_config()) == codec
    assert tpde.TPDECodec().get_config() == {"id": "tpde"}  # the default config is unchanged
    assert tpde.TPDECodec().decode(chunk).tobytes() == x.tobytes()  # any level decodes any chunk
    with pytest.raises(tpde.TPDEError, match="level"):
        tpde.TPDECodec(level="turbo")


def test_zarr_v3_codec_fast_level(tmp_path):
    x = (np.random.default_rng(2).standard_normal((128, 256)) * 0.02).astype(np.float32)
    z = zarr.create_array(tmp_path / "a.zarr", shape=x.shape, chunks=(64, 256), dtype="f4",
                          serializer=tpde.TPDEZarrCodec(level="fast"), compressors=None)
    z[...] = x
    assert '"level": "fast"' in (tmp_path / "a.zarr" / "zarr.json").read_text()
    assert chunk_versions(tmp_path / "a.zarr") == {6}
    assert np.array_equal(zarr.open_array(tmp_path / "a.zarr", mode="r")[...], x)
    assert tpde.TPDEZarrCodec().to_dict() == {"name": "tpde"}
    assert tpde.TPDEZarrCodec.from_dict({"name": "tpde", "configuration": {"level": "fast"}}).level == "fast"
    with pytest.raises(tpde.TPDEError):
        tpde.TPDEZarrCodec.from_dict({"name": "tpde", "configuration": {"speed": 3}})


@pytest.fixture(scope="module")
def checkpoints():
    return train_checkpoints(6, every=2)


def test_store_fast_level_round_trip(checkpoints, tmp_path):
    path = tmp_path / "fast.tpde"
    with CheckpointStore(path, mode="w", level="fast", keyframe_every=4) as store:
        for step, state in checkpoints:
            store.save(step, state)
        kinds = [h.kind for h in store.history()]
    assert kinds == ["keyframe", "delta", "delta"]
    assert chunk_versions(path) == {6}
    reader = CheckpointStore(path, mode="r")
    for step, state in checkpoints:
        assert_same_state(reader.load(step), state)
    assert not reader.verify()


def test_store_level_per_save_and_default_unchanged(checkpoints, tmp_path):
    path = tmp_path / "mixed.tpde"
    with CheckpointStore(path, mode="w") as store:
        (s0, st0), (s1, st1), (s2, st2) = checkpoints
        store.save(s0, st0)
        default_versions = chunk_versions(path)
        store.save(s1, st1, level="fast")
        store.save_async(s2, st2, level="fast").result()
        with pytest.raises(tpde.TPDEError, match="level"):
            store.save(99, st2, level="turbo")
    assert default_versions == {5}
    assert chunk_versions(path) == {5, 6}
    reader = CheckpointStore(path, mode="r")
    for step, state in checkpoints:
        assert_same_state(reader.load(step), state)


def test_pack_fast(checkpoints, tmp_path, capsys):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    for step, state in checkpoints:
        torch.save(state, folder / f"ckpt-{step}.pt")
    store = tmp_path / "run.tpde"
    assert main(["pack", str(folder), "-o", str(store), "--fast"]) == 0
    assert chunk_versions(store) == {6}
    out = tmp_path / "back.pt"
    step = checkpoints[-1][0]
    assert main(["unpack", str(store), "--step", str(step), "-o", str(out)]) == 0
    assert_same_state(torch.load(out, weights_only=True), torch.load(folder / f"ckpt-{step}.pt", weights_only=True))
    capsys.readouterr()
    assert main(["pack", str(folder), "-o", str(tmp_path / "x.tpde"), "--fast", "--lossy", "--rel-error", "0.1"]) != 0
    err = capsys.readouterr().err
    assert "--fast" in err and len(err.strip().splitlines()) == 1
