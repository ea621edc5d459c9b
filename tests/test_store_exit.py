"""save_async never loses a step: pending saves finish at interpreter exit, a failure there
exits with status 1 naming the step, and a background failure reaches the next call."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from zarr.storage import MemoryStore

import tpde

_FAILING = textwrap.dedent('''
    from zarr.storage import LocalStore

    class Failing(LocalStore):
        """Refuses every write of step 3's data."""

        def _check(self, key):
            if key.startswith("steps/3/"):
                raise OSError("disk full")

        def set_sync(self, key, value):
            self._check(key)
            return super().set_sync(key, value)

        async def set(self, key, value, byte_range=None):
            self._check(key)
            return await super().set(key, value)
''')


def run_script(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, timeout=300)


def test_script_ending_right_after_save_async_commits_the_step(tmp_path):
    path = tmp_path / "run.tpde"
    proc = run_script(textwrap.dedent(f'''
        import torch, tpde
        store = tpde.CheckpointStore({str(path)!r})
        store.save(6, {{"w": torch.zeros(256, 256)}})
        store.save_async(7, {{"w": torch.ones(256, 256)}})
    '''))
    assert proc.returncode == 0, proc.stderr
    store = tpde.CheckpointStore(path, mode="r")
    assert store.steps() == [6, 7]
    assert torch.equal(store.load(7)["w"], torch.ones(256, 256))


def test_failure_at_exit_is_loud_and_names_the_step(tmp_path):
    path = tmp_path / "run.tpde"
    proc = run_script(_FAILING + textwrap.dedent(f'''
        import torch, tpde
        store = tpde.CheckpointStore(Failing({str(path)!r}))
        store.save(2, {{"w": torch.zeros(64)}})
        store.save_async(3, {{"w": torch.ones(64)}})
        print("script done")
    '''))
    assert proc.returncode == 1
    assert "script done" in proc.stdout
    assert "background save of step 3 failed at exit" in proc.stderr and "disk full" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tpde.CheckpointStore(path, mode="r").steps() == [2]


class _FailingMemory(MemoryStore):
    def set_sync(self, key, value):
        if key.startswith("steps/3/"):
            raise OSError("disk full")
        return super().set_sync(key, value)


def test_background_failure_reaches_the_next_save_async():
    store = tpde.CheckpointStore(_FailingMemory())
    store.save_async(3, {"w": torch.ones(64)}).exception()  # done (failed)
    with pytest.raises(OSError, match="background save of step 3 failed: .*disk full"):
        store.save_async(4, {"w": torch.ones(64)})
    store.save_async(4, {"w": torch.ones(64)})  # reported once; the store goes on
    store.wait()
    assert store.steps() == [4]
    store.close()
