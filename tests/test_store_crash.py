"""A save killed with SIGKILL at a random point leaves every committed step intact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tpde.store import CheckpointStore

# The child saves steps 0, 1, 2, ... forever; each state is a pure function of the step,
# so the parent can rebuild what every committed step must hold.
CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tpde.store import CheckpointStore

    def states():
        w = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
        step = 0
        while True:
            b = np.random.default_rng(10_000 + step).integers(0, 2**16, 5000, dtype=np.uint16)
            yield step, {"w": w.copy(), "b": b, "step": step}
            step += 1
            r = np.random.default_rng(step)
            w[r.random(w.shape) < 0.2] += np.float32(1e-3)

    if __name__ == "__main__":
        # takeover: the previous run was SIGKILLed holding the writer lease; durable=False: a
        # SIGKILL is survived either way, the fsyncs would only slow the saves
        store = CheckpointStore(sys.argv[1], keyframe_every=4, chunk_elements=2048, workers=2, takeover=True,
                                durable=False)
        done = store.steps()
        print("ready", flush=True)
        for step, state in states():
            if done and step <= done[-1]:
                continue
            store.save(step, state)
            print(step, flush=True)
    """
)


def expected_states() -> object:
    namespace: dict = {}
    exec(CHILD.split("if __name__")[0], namespace)
    return namespace["states"]()


def run_and_kill(script: Path, store: Path, delay: float) -> list[int]:
    """Start the saver, SIGKILL it `delay` seconds after it is ready to save, return the steps it reported.

    The clock starts when the child has imported tpde and opened the store: on a loaded machine the
    import alone can take longer than any fixed delay, and a kill before the first save tests nothing.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, str(script), str(store)], stdout=subprocess.PIPE, env=env)
    assert child.stdout.readline().strip() == b"ready"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    return [int(line) for line in out.split()]


@pytest.mark.slow
def test_sigkill_mid_save_keeps_committed_steps_bit_exact(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(CHILD)
    path = tmp_path / "run.tpde"
    rng = random.Random(1234)
    reported: list[int] = []
    killed_mid_save = 0
    for _ in range(5):
        reported += run_and_kill(script, path, rng.uniform(0.4, 1.5))
        store = CheckpointStore(path, takeover=True)
        steps = store.steps()
        # what the child reported as saved is committed; at most one more made it
        assert set(reported) <= set(steps) and len(steps) <= len(reported) + 1
        leftovers = store.uncommitted()
        killed_mid_save += bool(leftovers)
        assert all(not name.startswith("steps/") or int(name.split("/")[1]) > steps[-1]
                   for name in leftovers)
        assert store.verify(steps[-2:]) == []
        reported = steps
        store.clean()
        assert store.uncommitted() == []
        store.close()  # give the writer lease back to the next run
    assert killed_mid_save >= 1, "no kill landed inside a save; lengthen the saves"
    assert store.verify() == []
    committed = store.steps()
    for step, want in expected_states():
        if step > committed[-1]:
            break
        got = store.load(step)
        assert got["step"] == step
        assert got["w"].tobytes() == want["w"].tobytes()
        assert got["b"].tobytes() == want["b"].tobytes()
    # the runs resumed each other: deltas continue across process boundaries
    kinds = [h.kind for h in store.history()]
    assert kinds.count("delta") > kinds.count("keyframe")
    assert np.all(np.diff(store.steps()) == 1)
