"""SIGKILL at random points of save_async and prune, and a reader beside a pruning writer:
committed steps stay loadable and bit-exact, no half step is ever visible."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tpde import TPDEError
from tpde.store import CheckpointStore

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tpde.store import CheckpointStore

    def state(step):
        r = np.random.default_rng(step)
        w = np.random.default_rng(0).standard_normal((384, 384)).astype(np.float32)
        w[r.random(w.shape) < 0.2] += np.float32(step * 1e-3)
        return {"w": w, "b": r.integers(0, 2**16, 3000, dtype=np.uint16), "step": step}

    if __name__ == "__main__":
        path, mode = sys.argv[1], sys.argv[2]
        store = CheckpointStore(path, keyframe_every=3, chunk_elements=4096, workers=2, takeover=True)
        done = store.steps()
        step = done[-1] + 1 if done else 0
        print("ready", flush=True)
        while True:
            if mode == "async":
                future = store.save_async(step, state(step))
                future.add_done_callback(lambda f, s=step: print(s, flush=True))
            else:
                store.save(step, state(step))
                print(step, flush=True)
                if mode == "prune" and step % 2:
                    store.prune(keep_last=2)
            step += 1
    """
)


def _expected(step: int) -> dict:
    namespace: dict = {}
    exec(CHILD.split("if __name__")[0], namespace)
    return namespace["state"](step)


def _start(tmp_path, mode: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "s"), mode],
                             stdout=subprocess.PIPE, env=env, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def _check_intact(path) -> list[int]:
    store = CheckpointStore(path, mode="r")
    steps = store.steps()
    assert store.verify(steps) == []
    assert all(not u.startswith("steps/") or int(u.split("/")[1]) not in steps for u in store.uncommitted())
    for step in steps[-3:]:
        got, want = store.load(step), _expected(step)
        assert got["step"] == step and got["w"].tobytes() == want["w"].tobytes()
        assert got["b"].tobytes() == want["b"].tobytes()
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["async", "prune"])
def test_sigkill_at_random_points(tmp_path, mode):
    rng = random.Random(f"kill-{mode}")
    reported: set[int] = set()
    for _ in range(3):
        child = _start(tmp_path, mode)
        time.sleep(rng.uniform(0.3, 1.5))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        reported.update(int(s) for s in out.split())
        steps = _check_intact(tmp_path / "s")
        if mode == "async":  # a step whose future completed is committed
            assert reported <= set(steps)
    assert len(steps) >= 2


@pytest.mark.slow
def test_reader_beside_a_pruning_writer(tmp_path):
    """The writer saves and prunes for a few seconds; the reader loads whatever is listed:
    each load is bit-exact, or fails with "was pruned" / unknown step, nothing else."""
    child = _start(tmp_path, "prune")
    store = CheckpointStore(tmp_path / "s", mode="r")
    loads = pruned = 0
    end = time.time() + 4
    try:
        while time.time() < end:
            steps = store.steps()
            if not steps:
                continue
            step = random.choice(steps)
            try:
                got = store.load(step)
            except TPDEError as e:
                assert e.code in ("pruned", "unknown_step"), e
                pruned += 1
                continue
            want = _expected(step)
            assert got["w"].tobytes() == want["w"].tobytes() and got["step"] == step
            loads += 1
    finally:
        child.kill()
        child.communicate()
    assert loads >= 5
    assert np.all(np.diff(CheckpointStore(tmp_path / "s", mode="r").steps()) > 0)
