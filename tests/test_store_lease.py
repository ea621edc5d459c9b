"""One writer at a time: the writer lease (python/tpde/store/lease.py, docs/security.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from zarr.storage import MemoryStore

from tpde import TPDEError
from tpde.cli import main as cli_main
from tpde.store import CheckpointStore
from tpde.store.kv import KeyValueAccess, open_zarr_store
from tpde.store.lease import BOOT, HOST, LEASE_KEY, LeaseInfo, WriterLease, read_lease


def _state(seed: int, step: int, n: int = 64) -> dict:
    r = np.random.default_rng(seed * 1_000_003 + step)
    return {"w": r.standard_normal((n, n)).astype(np.float32), "step": step, "writer": seed}


def _fake_lease(path, **changes) -> LeaseInfo:
    now = time.time()
    fields = dict(owner="dead", pid=2**22 + 12345, host=HOST, boot=BOOT, started=now - 5, heartbeat=now - 5)
    fields.update(changes)
    info = LeaseInfo(**fields)
    (path / LEASE_KEY).write_bytes(info.to_bytes())
    return info


def _other_writer(path, **changes) -> LeaseInfo:
    """A live lease of another process: a different host with a fresh heartbeat."""
    return _fake_lease(path, owner="other", pid=4242, host="another-host", heartbeat=time.time(), **changes)


def test_second_writer_gets_one_line_error_naming_the_holder(tmp_path):
    path = tmp_path / "s"
    CheckpointStore(path).save(0, _state(1, 0))
    _other_writer(path)
    second = CheckpointStore(path)  # opening is free: the lease is taken by the first write
    with pytest.raises(TPDEError) as e:
        second.save(1, _state(2, 1))
    assert e.value.code == "store_locked"
    assert "pid 4242 on host 'another-host'" in str(e.value) and "\n" not in str(e.value)
    for verb in (lambda s: s.prune(keep_last=1), lambda s: s.delete(0), lambda s: s.clean()):
        with pytest.raises(TPDEError, match="another writer"):
            verb(second)
    # readers need no lease
    assert CheckpointStore(path, mode="r").load(0)["writer"] == 1
    (path / LEASE_KEY).unlink()
    second.save(1, _state(2, 1))
    assert second.steps() == [0, 1]


def test_objects_of_one_process_share_the_lease(tmp_path):
    path = tmp_path / "s"
    first = CheckpointStore(path)
    first.save(0, _state(1, 0))
    second = CheckpointStore(path)
    second.save(1, _state(1, 1))
    owner = read_lease(KeyValueAccess(open_zarr_store(path, read_only=True)))[1].owner
    first.close()
    assert read_lease(KeyValueAccess(open_zarr_store(path, read_only=True)))[1].owner == owner
    second.close()  # the last user gives it back
    assert not (path / LEASE_KEY).exists()
    del first, second
    third = CheckpointStore(path)
    third.save(2, _state(1, 2))
    del third  # collected: the lease goes with it
    assert not (path / LEASE_KEY).exists()


def test_stale_lease_is_taken_over_only_when_asked(tmp_path):
    path = tmp_path / "s"
    CheckpointStore(path).close()
    _fake_lease(path)  # a pid that is not running, on this host
    store = CheckpointStore(path)
    with pytest.raises(TPDEError, match="stale writer lease.*takeover=True") as e:
        store.save(0, _state(0, 0))
    assert e.value.code == "store_locked"
    assert store.steps() == []
    taker = CheckpointStore(path, takeover=True)
    taker.save(0, _state(0, 0))
    _, info = read_lease(KeyValueAccess(open_zarr_store(path, read_only=True)))
    assert info.pid == os.getpid() and info.owner != "dead"
    taker.close()


def test_live_lease_is_not_taken_over(tmp_path):
    path = tmp_path / "s"
    CheckpointStore(path).save(0, _state(0, 0))
    _fake_lease(path, pid=os.getppid())  # a running process on this host
    with pytest.raises(TPDEError, match="another writer"):
        CheckpointStore(path, takeover=True).save(1, _state(0, 1))
    # another host's lease with a recent heartbeat is live too; an old heartbeat is stale
    _fake_lease(path, host="elsewhere", heartbeat=time.time())
    with pytest.raises(TPDEError, match="another writer"):
        CheckpointStore(path, takeover=True).save(1, _state(0, 1))
    _fake_lease(path, host="elsewhere", heartbeat=time.time() - 3600)
    CheckpointStore(path, takeover=True).save(1, _state(0, 1))


def test_a_writer_that_lost_its_lease_commits_nothing(tmp_path):
    path = tmp_path / "s"
    store = CheckpointStore(path)
    store.save(0, _state(0, 0))
    _fake_lease(path, owner="thief", pid=os.getpid())  # someone took the lease over
    with pytest.raises(TPDEError) as e:
        store.save(1, _state(0, 1))
    assert e.value.code == "lease_lost"
    assert CheckpointStore(path, mode="r").steps() == [0]
    assert not (path / "commits" / "1").exists()


def test_unlock_cli_removes_only_stale_leases(tmp_path, capsys):
    path = tmp_path / "s"
    CheckpointStore(path).save(0, _state(0, 0))
    _other_writer(path)
    assert cli_main(["unlock", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another writer" in err
    (path / LEASE_KEY).unlink()
    assert cli_main(["unlock", str(path)]) == 0
    assert "no writer lease" in capsys.readouterr().out
    _fake_lease(path)
    assert cli_main(["unlock", str(path)]) == 0
    assert "removed a stale writer lease" in capsys.readouterr().out
    assert not (path / LEASE_KEY).exists()
    _fake_lease(path, pid=os.getpid())  # live (this process)
    assert cli_main(["unlock", "--force", str(path)]) == 0
    assert not (path / LEASE_KEY).exists()


def test_lease_on_a_store_without_files():
    memory = MemoryStore()
    a = CheckpointStore(memory)
    a.save(0, _state(0, 0))
    kv = KeyValueAccess(memory)
    with pytest.raises(TPDEError, match="another writer"):
        WriterLease(kv, "memory").acquire()  # another claimant (as another process would be)
    a.close()
    assert kv.get(LEASE_KEY) is None
    other = LeaseInfo("other", 4242, "another-host", "", time.time(), time.time())
    kv.set(LEASE_KEY, other.to_bytes())
    with pytest.raises(TPDEError, match="pid 4242 on host 'another-host'"):
        CheckpointStore(memory).save(1, _state(0, 1))


def test_a_store_another_writer_is_creating_names_that_writer(tmp_path):
    """The creator takes the lease, then writes the root: a second writer opening the
    store in between is told who holds it, not that it is not a tpde store (a CI failure
    of the two-writer test)."""
    path = tmp_path / "s"
    path.mkdir()
    _other_writer(path)
    (path / ".zgroup").write_bytes(b'{"zarr_format":2}')  # the root is half written
    with pytest.raises(TPDEError, match="another writer.*pid 4242") as e:
        CheckpointStore(path)
    assert e.value.code == "store_locked"
    with pytest.raises(TPDEError) as e:  # a reader is not a writer: the store is not readable yet
        CheckpointStore(path, mode="r")
    assert e.value.code == "not_a_store"
    (path / LEASE_KEY).unlink()  # no lease: a folder that is not a tpde store
    with pytest.raises(TPDEError, match="not a tpde checkpoint store"):
        CheckpointStore(path)


def test_mode_w_keeps_out_a_second_writer(tmp_path):
    path = tmp_path / "s"
    CheckpointStore(path).save(0, _state(0, 0))
    _other_writer(path)
    with pytest.raises(TPDEError, match="another writer"):
        CheckpointStore(path, mode="w")  # erasing is writing
    assert CheckpointStore(path, mode="r").steps() == [0]


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from tpde import TPDEError
    from tpde.store import CheckpointStore

    def state(seed, step):
        r = np.random.default_rng(seed * 1_000_003 + step)
        return {"w": r.standard_normal((256, 256)).astype(np.float32), "step": step, "writer": seed}

    path, seed, start, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    try:
        # Opening a store that does not exist yet creates it, and so takes the lease: the
        # loser may be told here rather than at its first save.
        store = CheckpointStore(path, keyframe_every=4, chunk_elements=8192)
        while time.time() < start:
            time.sleep(0.001)
        while time.time() < start + seconds:
            done = store.steps()
            step = done[-1] + 1 if done else 0
            store.save(step, state(seed, step))
            print(step, flush=True)
    except TPDEError as e:
        print(f"writer {seed}: {e}", file=sys.stderr)
        sys.exit(1)
    """
)


def test_a_lease_being_created_is_never_read_half_written(tmp_path):
    """A claimant that reads the lease while another process creates it must see either no
    lease or the whole of it: a half-written one reads as unreadable, which is stale, and
    the second writer was told to take over a live writer's lease (a CI failure)."""
    from tpde.store.lease import _LocalBackend

    backend = _LocalBackend(str(tmp_path))
    data = LeaseInfo(owner="a" * 32, pid=os.getpid(), host=HOST, boot=BOOT, started=time.time(),
                     heartbeat=time.time(), pid_start=None).to_bytes()
    script = textwrap.dedent(f"""
        import sys
        from tpde.store.lease import _LocalBackend
        backend, data = _LocalBackend({str(tmp_path)!r}), {data!r}
        for _ in range(3000):
            assert backend.create(data)
            assert backend.remove_if(data)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    seen = set()
    while child.poll() is None:
        seen.add(backend.read())
    assert child.wait() == 0
    assert seen <= {None, data} and data in seen
    assert os.listdir(tmp_path) == []  # no temporary file left behind


@pytest.mark.slow
def test_two_writer_processes(tmp_path):
    """Two processes save to one store for a few seconds: one wins the lease, the other
    gets the one-line error when it opens the new store or at its first save; every listed
    step loads bit-exactly as the winner saved it."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    path = tmp_path / "s"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    start = time.time() + 4.0  # both processes have imported tpde by then
    children = [
        subprocess.Popen([sys.executable, str(script), str(path), str(seed), str(start), "5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        for seed in (1, 2)
    ]
    results = [(c, *c.communicate(timeout=120)) for c in children]
    codes = sorted(c.returncode for c, _, _ in results)
    assert codes == [0, 1], [(c.returncode, err) for c, _, err in results]
    (winner, out, _), = [r for r in results if r[0].returncode == 0]
    (_, _, err), = [r for r in results if r[0].returncode == 1]
    assert err.count("\n") == 1 and "another writer" in err and f"pid {winner.pid}" in err
    seed = 1 if winner is children[0] else 2
    saved = [int(s) for s in out.split()]
    store = CheckpointStore(path, mode="r")
    assert store.steps() == saved and len(saved) >= 3
    for step in saved:
        got = store.load(step)
        want = _state(seed, step, 256)
        assert got["writer"] == seed and got["step"] == step
        assert got["w"].tobytes() == want["w"].tobytes()
    assert store.verify() == []


def test_lease_on_s3_is_a_conditional_create(monkeypatch):
    """On S3 (a local moto server) the lease object is created with If-None-Match: a
    second claimant's create fails and it gets the holder's name."""
    server_mod = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    import boto3
    from zarr.storage import FsspecStore

    from tpde.store.lease import _StoreBackend

    for var, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(var, value)
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="leases")
        options = {"endpoint_url": url, "key": "x", "secret": "y"}

        def open_s3():
            return FsspecStore.from_url("s3://leases/run", storage_options=options, read_only=False)

        writer = CheckpointStore(open_s3())
        writer.save(0, _state(0, 0))
        kv = KeyValueAccess(open_s3())
        held = kv.get(LEASE_KEY)
        assert LeaseInfo.from_bytes(held).pid == os.getpid()
        assert _StoreBackend(kv)._create_exclusive(b"mine") is False  # If-None-Match refused it
        assert kv.get(LEASE_KEY) == held
        with pytest.raises(TPDEError, match="another writer"):
            WriterLease(kv, "s3").acquire()
        writer.close()
        assert kv.get(LEASE_KEY) is None
        assert CheckpointStore(open_s3(), mode="r").load(0)["writer"] == 0
    finally:
        server.stop()


def test_mode_w_erases_everything_but_its_own_lease(tmp_path):
    path = tmp_path / "s"
    CheckpointStore(path).save(5, _state(0, 5))
    fresh = CheckpointStore(path, mode="w")
    assert fresh.steps() == [] and (path / LEASE_KEY).exists()
    fresh.save(0, _state(0, 0))
    assert CheckpointStore(path, mode="r").steps() == [0]


def test_a_store_deleted_and_made_again_gets_a_new_lease(tmp_path):
    path = tmp_path / "s"
    old = CheckpointStore(path)
    old.save(0, {"w": np.arange(4, dtype=np.float32)})
    shutil.rmtree(path)  # the run's folder removed while the process still holds an object on it
    new = CheckpointStore(path)
    new.save(0, {"w": np.ones(4, dtype=np.float32)})
    assert np.array_equal(CheckpointStore(path, mode="r").load(0)["w"], np.ones(4, dtype=np.float32))
    w1 = np.arange(4, dtype=np.float32) * 3
    old.save(1, {"w": w1})  # one process, one writer: the old object writes to the new store, correctly
    assert np.array_equal(CheckpointStore(path, mode="r").load(1)["w"], w1)
    new.close()
    old.close()


def test_framework_integrations_take_over_only_a_dead_runs_lease(tmp_path):
    """A training job restarted after a crash saves through its callback again; a second
    live job on the same store is still refused."""
    pytest.importorskip("lightning")
    from tpde.integrations.lightning import CheckpointIO

    path = tmp_path / "s"
    CheckpointStore(path).close()
    _fake_lease(path)  # the crashed run: a pid that is not running, on this host
    io = CheckpointIO(path)
    io.save_checkpoint({"global_step": 3, "state_dict": {"w": torch_tensor()}}, str(tmp_path / "a.ckpt"))
    _, info = read_lease(KeyValueAccess(open_zarr_store(path, read_only=True)))
    assert info.pid == os.getpid()
    io.store.close()
    _other_writer(path)  # a live run elsewhere
    with pytest.raises(TPDEError, match="another writer"):
        CheckpointIO(path).save_checkpoint({"global_step": 4, "state_dict": {"w": torch_tensor()}},
                                           str(tmp_path / "b.ckpt"))


def torch_tensor():
    import torch

    return torch.arange(6, dtype=torch.float32)


def test_a_finalizer_never_waits_for_the_lease_lock(tmp_path):
    """A store object collected on a thread that `share` is starting (while it holds the
    lock) must not wait for that lock: that was a deadlock. Its lease is given back later."""
    import threading

    from tpde.store import lease_share as lease_mod

    path = tmp_path / "s"
    CheckpointStore(path).close()
    lease = lease_mod.share(KeyValueAccess(open_zarr_store(path, read_only=False)), "s")
    assert (path / LEASE_KEY).exists()
    returned = threading.Event()
    with lease_mod._shared_lock:  # as share() holds it while it starts the heartbeat thread
        worker = threading.Thread(target=lambda: (lease_mod.unshare_later(lease), returned.set()))
        worker.start()
        assert returned.wait(10)
        assert (path / LEASE_KEY).exists()  # deferred, not lost
    worker.join()
    lease_mod.release_deferred()
    assert not (path / LEASE_KEY).exists()
