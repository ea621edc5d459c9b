"""Done-means test: a run restored from the store in a fresh process trains bit-identically."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from store_helpers import assert_same_state, make_run, train_step, training_state
from tpde.store import CheckpointStore

TESTS = Path(__file__).parent

# For each start step: restore it from the store into a fresh model and optimizer, train
# to `until`, saving every `every` steps (0: no saves); print the losses per start step.
RESUME = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    from store_helpers import make_run, train_step, training_state
    from tpde.store import CheckpointStore

    path, starts, until, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = CheckpointStore(path)
    out = {}
    for step in map(int, starts.split(",")):
        state = store.load(step)
        model, opt = make_run(seed=99)  # a different init: everything must come from the store
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        losses = out[step] = []
        for s in range(step + 1, until + 1):
            losses.append(train_step(model, opt, s).hex())
            if every and s % every == 0:
                store.save(s, training_state(model, opt, s))
    print(json.dumps(out))
    """
)


def resume(store: Path, starts: str, until: int, every: int) -> dict[int, list[str]]:
    """Run RESUME in a fresh Python process."""
    script = store.parent / "resume.py"
    script.write_text(RESUME)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), *sys.path]))
    out = subprocess.run(
        [sys.executable, str(script), str(store), starts, str(until), str(every)],
        capture_output=True, text=True, env=env, check=True,
    )
    return {int(k): v for k, v in json.loads(out.stdout).items()}


@pytest.mark.slow
def test_resumed_training_is_bit_identical(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, opt = make_run()
        losses, states = {}, {}
        store = CheckpointStore(tmp_path / "run.tpde", keyframe_every=4, chunk_elements=1024)
        for s in range(1, 13):
            losses[s] = train_step(model, opt, s).hex()
            if s % 2 == 0:
                states[s] = copy.deepcopy(training_state(model, opt, s))
                if s <= 6:  # the run "dies" after saving step 6
                    store.save(s, states[s])
        store.close()  # the dead run's writer lease goes with it
    finally:
        torch.set_num_threads(threads)

    # any saved step restores into the same trajectory
    path = tmp_path / "run.tpde"
    for start, got in resume(path, "2,4,6", 12, 0).items():
        assert got == [losses[s] for s in range(start + 1, 13)], f"resumed from step {start}"
    # the run continues from its last step in a fresh process, saving into the same store
    assert resume(path, "6", 12, 2)[6] == [losses[s] for s in range(7, 13)]

    # the fresh process reloaded step 6 to code step 8 as a delta; every step is exact
    store = CheckpointStore(tmp_path / "run.tpde", mode="r")
    history = store.history()
    assert [(h.step, h.kind, h.base_step) for h in history] == [
        (2, "keyframe", None), (4, "delta", 2), (6, "delta", 4), (8, "delta", 6),
        (10, "keyframe", None), (12, "delta", 10),
    ]
    for s, state in states.items():
        assert_same_state(store.load(s), state)
    assert store.verify() == []
