"""Listing a damaged store, pruning safely, and steps pruned under a reader."""

from __future__ import annotations

import numpy as np
import pytest
from zarr.storage import MemoryStore, WrapperStore

from tpde import TPDEError
from tpde.cli import main as cli_main
from tpde.store import CheckpointStore


def _cli(argv: list[str]) -> int:
    """tpde-pack's exit status (bad command lines exit through SystemExit)."""
    try:
        return cli_main(argv)
    except SystemExit as e:
        return e.code


def _save_steps(path, n=5, **kw):
    store = CheckpointStore(path, **kw)
    for step in range(n):
        store.save(step, {"w": np.full(100, step, dtype=np.float32)})
    return store


def test_one_unreadable_marker_is_that_steps_problem(tmp_path, capsys):
    path = tmp_path / "s"
    store = _save_steps(path, keyframe_every=1)  # every step a keyframe
    (path / "commits" / "2").write_bytes(b"\xff{not json")
    assert store.steps() == [0, 1, 2, 3, 4]
    assert [h.step for h in store.history()] == [0, 1, 3, 4]
    assert list(store.unreadable()) == [2] and "commit marker of step 2" in store.unreadable()[2]
    assert store.load(4)["w"][0] == 4
    problems = store.verify()
    assert len(problems) == 1 and problems[0].startswith("step 2:")
    for verb in ("ls", "stats"):
        assert cli_main([verb, str(path)]) == 1
        out, err = capsys.readouterr()
        assert "step 2" in err and err.count("\n") == 1
        assert all(f"{s:>10}" in out for s in (0, 1, 3, 4))
    # prune works, and keeps every step before the unreadable one (its chain is unknown)
    assert store.prune(keep_last=1) == [3]
    assert store.steps() == [0, 1, 2, 4]


def test_prune_around_an_unreadable_marker(tmp_path):
    path = tmp_path / "s"
    store = _save_steps(path, n=8, keyframe_every=2)  # chains [0 1] [2 3] [4 5] [6 7]
    (path / "commits" / "5").write_bytes(b"")
    assert store.prune(keep_last=1) == []  # 0-4 may be 5's chain; 6 is 7's base
    (path / "commits" / "5").unlink()
    store.clean()
    assert store.prune(keep_last=1) == [0, 1, 2, 3, 4]
    assert store.verify() == []


def test_deleting_the_newest_marker_is_reported(tmp_path, capsys):
    path = tmp_path / "s"
    store = _save_steps(path)
    (path / "commits" / "4").unlink()
    assert store.steps() == [0, 1, 2, 3]
    problems = store.verify()
    assert len(problems) == 1 and problems[0].startswith("step 4:") and "commit marker" in problems[0]
    assert cli_main(["verify", str(path)]) == 1
    assert "step 4" in capsys.readouterr().out


class _PruneOnRead(WrapperStore):
    """Deletes step 3 (marker first, as prune does) when its first chunk or bundle is read."""

    def __init__(self, store):
        super().__init__(store)
        self.armed = True

    async def get(self, key, prototype, byte_range=None):
        if self.armed and key.startswith(("steps/3/w/", "steps/3/.bundle")):
            self.armed = False
            await self._store.delete("commits/3")
            await self._store.delete_dir("steps/3")
        return await self._store.get(key, prototype, byte_range)


def test_a_step_pruned_while_it_is_read_says_so():
    memory = MemoryStore()
    _save_steps(memory).close()
    store = CheckpointStore(_PruneOnRead(memory), mode="r")
    with pytest.raises(TPDEError, match="step 3 was pruned") as e:
        store.load(3)
    assert e.value.code == "pruned"


@pytest.mark.parametrize("kwargs", [dict(keep_last=0), dict(keep_last=-1), dict(keep_every=0), dict(keep_every=-5),
                                    dict(keep_last=True), dict(keep_last=1.5), dict(keep_last=2, keep_every=0)])
def test_prune_refuses_counts_below_one(tmp_path, kwargs):
    store = _save_steps(tmp_path / "s")
    with pytest.raises(TPDEError) as e:
        store.prune(**kwargs)
    assert e.value.code == "invalid_argument"
    assert store.steps() == [0, 1, 2, 3, 4]


def test_deleting_everything_is_explicit(tmp_path, capsys):
    path = tmp_path / "s"
    store = _save_steps(path)
    with pytest.raises(TPDEError, match="delete_all"):
        store.prune(keep=[99])  # would keep nothing
    for flags in (["--keep-last", "0"], ["--keep-every", "0"], ["--keep-last", "-1"], []):
        assert _cli(["prune", str(path), *flags]) in (1, 2)
        assert capsys.readouterr().err.count("\n") == 1
    assert store.steps() == [0, 1, 2, 3, 4]
    store.close()
    assert cli_main(["prune", str(path), "--all", "--dry-run"]) == 0
    assert CheckpointStore(path, mode="r").steps() == [0, 1, 2, 3, 4]
    assert cli_main(["prune", str(path), "--all"]) == 0
    assert "deleted 5 step(s)" in capsys.readouterr().out
    assert CheckpointStore(path, mode="r").steps() == []
    store = _save_steps(path)
    assert store.delete_all() == [0, 1, 2, 3, 4] and store.steps() == []
