"""Durable commits on local disks, and saves that fail (full disk) losing nothing."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from tpde import TPDEError
from tpde.store import CheckpointStore, durable


def _state(step: int) -> dict:
    r = np.random.default_rng(step)
    return {"model": {"w": r.standard_normal((64, 64)).astype(np.float32), "b": r.standard_normal(64)},
            "step": step}


class _Recorder:
    """Wraps os.fsync and os.replace, recording what they touched, in order."""

    def __init__(self, monkeypatch):
        self.events: list[tuple[str, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            return real_fsync(fd)

        def replace(src, dst, *a, **k):
            out = real_replace(src, dst, *a, **k)
            self.events.append(("replace", os.path.realpath(dst)))
            return out

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def index(self, kind: str, path: Path) -> int:
        target = str(path.resolve())
        hits = [i for i, e in enumerate(self.events) if e == (kind, target)]
        assert hits, f"no {kind} of {target}"
        return hits[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fsynced files")
def test_commit_order_chunks_manifest_then_marker(tmp_path, monkeypatch):
    path = tmp_path / "s"
    store = CheckpointStore(path, chunk_elements=1024, workers=2, bundle_below=0)
    store.save(0, _state(0))
    rec = _Recorder(monkeypatch)
    store.save(1, _state(1))
    step = path / "steps" / "1"
    marker_rename = rec.index("replace", path / "commits" / "1")
    files = [p for p in step.rglob("*") if p.is_file()]
    folders = [step, *[p for p in step.rglob("*") if p.is_dir()], path / "steps"]
    assert len(files) > 5 and step / ".zattrs" in files
    for p in files + folders:  # every chunk, metadata file, the manifest and folder: before the marker
        assert rec.index("fsync", p) < marker_rename, p
    # the marker: bytes synced under a temporary name, renamed, its folder synced
    commits = path / "commits"
    partial = [i for i, (kind, p) in enumerate(rec.events)
               if kind == "fsync" and os.path.dirname(p) == str(commits.resolve())
               and os.path.basename(p).startswith(".1.")]
    synced = [i for i, e in enumerate(rec.events) if e == ("fsync", str(commits.resolve())) and i > marker_rename]
    assert partial and partial[0] < marker_rename < synced[0]


def test_durable_false_never_fsyncs(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    store = CheckpointStore(tmp_path / "s", durable=False)
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    store.save(0, _state(0))
    store.save(1, _state(1))
    assert calls == []
    got = CheckpointStore(tmp_path / "s", mode="r").load(1)
    assert got["model"]["w"].tobytes() == _state(1)["model"]["w"].tobytes()


def _fail_after(monkeypatch, n: int, err: int = errno.ENOSPC, counts=lambda path: True):
    """Make the n-th write of a store file (0-based; of the files `counts` selects; each
    chunk appended to a bundle is a write) fail with `err`."""
    count = [0]
    real = durable.write_file

    def write_file(path, data, **kw):
        if not counts(path):
            return real(path, data, **kw)
        count[0] += 1
        if count[0] - 1 == n:
            raise OSError(err, os.strerror(err), path)
        return real(path, data, **kw)

    real_append = durable.AppendFile.append

    def append(self, data):  # a step's bundle, written chunk by chunk
        if not counts(self.path):
            return real_append(self, data)
        count[0] += 1
        if count[0] - 1 == n:
            raise OSError(err, os.strerror(err), self.path)
        return real_append(self, data)

    monkeypatch.setattr(durable, "write_file", write_file)
    monkeypatch.setattr(durable.AppendFile, "append", append)
    return count


@pytest.mark.parametrize("bundle_below", [0, None])
def test_every_failing_write_of_a_save_loses_nothing(tmp_path, monkeypatch, bundle_below):
    path = tmp_path / "s"
    store = CheckpointStore(path, chunk_elements=1024, bundle_below=bundle_below)
    store.save(0, _state(0))
    count = _fail_after(monkeypatch, 10**9)
    store.save(1, _state(1))
    writes = count[0]
    monkeypatch.undo()
    store.delete(1)
    assert writes > (5 if bundle_below == 0 else 2)  # chunks, or one bundle; manifest; marker
    for n in range(writes):
        _fail_after(monkeypatch, n)
        with pytest.raises(OSError) as e:
            store.save(1, _state(1))
        assert isinstance(e.value, TPDEError) and e.value.errno == errno.ENOSPC
        assert "step 1" in str(e.value) and "\n" not in str(e.value)
        monkeypatch.undo()
        assert store.steps() == [0] and store.uncommitted() in ([], ["steps/1"])  # invisible leftovers
        reader = CheckpointStore(path, mode="r")
        assert reader.load(0)["model"]["w"].tobytes() == _state(0)["model"]["w"].tobytes()
    store.save(1, _state(1))
    assert store.verify() == []


def test_failing_chunk_write_names_the_tensor(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "s", workers=1, bundle_below=0)
    _fail_after(monkeypatch, 0, counts=lambda path: not os.path.basename(path).startswith("."))  # chunk files
    with pytest.raises(TPDEError, match=r"step 0, tensor 'model/[wb]', chunk 0(\.0)*: .*No space left") as e:
        store.save(0, _state(0))
    assert e.value.code == "io_error"


def _can_mount_tmpfs() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="mounting a tmpfs needs root")
def test_out_of_space_sweep_on_a_small_tmpfs(tmp_path):
    """Fill small file systems at many different points of a save: the failing save raises
    an error naming its step, stays invisible, and every earlier step stays intact."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    failures = 0
    for size_kib in range(48, 200, 6):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tpde-enospc", str(mount)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        try:
            path = mount / uuid.uuid4().hex
            store = CheckpointStore(path, chunk_elements=512, keyframe_every=3)
            saved = []
            for step in range(200):
                try:
                    store.save(step, _state(step))
                except TPDEError as e:
                    assert isinstance(e, OSError) and f"step {step}" in str(e), e
                    failures += 1
                    break
                saved.append(step)
            else:
                raise AssertionError(f"{size_kib} KiB never filled up")
            assert store.steps() == saved and store.uncommitted() in ([], [f"steps/{step}"])
            store.clean()  # frees the failed step's leftovers
            reader = CheckpointStore(path, mode="r")
            for step in saved:
                got = reader.load(step)
                assert got["model"]["w"].tobytes() == _state(step)["model"]["w"].tobytes()
            store.close()
        finally:
            subprocess.run(["umount", str(mount)], check=True)
    assert failures >= 10


def test_failing_bundle_write_names_the_tensor(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path / "s", workers=2)  # both arrays go to the step's bundle
    _fail_after(monkeypatch, 1, counts=lambda path: os.path.basename(path) == ".bundle")
    with pytest.raises(TPDEError, match=r"step 0, tensor 'model/[wb]', chunk 0(\.0)*: .*bundle .*No space left") as e:
        store.save(0, _state(0))
    assert e.value.code == "io_error" and "\n" not in str(e.value)
    monkeypatch.undo()
    assert store.steps() == []
    store.save(0, _state(0))
    assert store.verify() == [] and store.load(0)["model"]["w"].tobytes() == _state(0)["model"]["w"].tobytes()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fsynced files")
def test_a_bundle_written_chunk_by_chunk_is_fsynced_before_the_marker(tmp_path, monkeypatch):
    path = tmp_path / "s"
    store = CheckpointStore(path, workers=2)
    rec = _Recorder(monkeypatch)
    store.save(0, _state(0))
    bundle = path / "steps" / "0" / ".bundle"
    assert bundle.is_file()
    assert rec.index("fsync", bundle) < rec.index("replace", path / "commits" / "0")


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fsynced files")
def test_a_large_bundle_is_fsynced_while_it_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(durable.AppendFile, "SYNC_EVERY", 4096)
    path = tmp_path / "s"
    store = CheckpointStore(path, chunk_elements=1024, workers=2)
    state = {f"w{i}": np.random.default_rng(i).standard_normal(4096).astype(np.float32) for i in range(8)}
    rec = _Recorder(monkeypatch)
    store.save(0, state)
    bundle = str((path / "steps" / "0" / ".bundle").resolve())
    synced = [i for i, e in enumerate(rec.events) if e == ("fsync", bundle)]
    assert len(synced) >= 4 and synced[-1] < rec.index("replace", path / "commits" / "0")
    assert store.load(0)["w3"].tobytes() == state["w3"].tobytes()
