"""tpde-pack under bad invocations: each one exits non-zero with exactly one line on stderr
and no traceback (issue 13: the CLI never prints a traceback).

Most cases call `main()` in process (fast); `test_console_script_*` run the installed
script in a subprocess to show the same holds for the real entry point.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tpde.cli import main
from tpde.store import CheckpointStore


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Paths the bad invocations point at: a good store, files, folders."""
    root = tmp_path_factory.mktemp("clierr")
    store = root / "good.tpde"
    writer = CheckpointStore(store, mode="w")
    for step in (0, 1):
        writer.save(step, {"w": torch.arange(12, dtype=torch.float32).reshape(4, 3) + step, "n": step})
    torch.save({"w": torch.ones(3)}, root / "ckpt-1.pt")
    (root / "notes.txt").write_text("not a checkpoint\n")
    (root / "garbage.pt").write_bytes(b"PK\x03\x04 this is not a zip")
    (root / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (root / "empty").mkdir()
    (root / "adir.pt").mkdir()
    (root / "adir.npy").mkdir()
    (root / "regular-file").write_text("x")
    broken = root / "broken.tpde"
    shutil.copytree(store, broken)
    for path in broken.rglob(".z*"):  # every zarr JSON document garbled (markers kept)
        path.write_text("{not json")
    return {
        "store": str(store),
        "broken": str(broken),
        "root": str(root),
        "ckpt": str(root / "ckpt-1.pt"),
        "txt": str(root / "notes.txt"),
        "badpt": str(root / "garbage.pt"),
        "badst": str(root / "garbage.safetensors"),
        "empty": str(root / "empty"),
        "dirpt": str(root / "adir.pt"),
        "dirnpy": str(root / "adir.npy"),
        "file": str(root / "regular-file"),
        "missing": str(root / "no-such-thing"),
        "new": str(root / "new-store-{n}"),
    }


def _fill(argv: tuple[str, ...], env: dict[str, str], n: int) -> list[str]:
    return [a.format(**env).replace("{n}", str(n)) if "{" in a else a for a in argv]


# (label, argv) with {store}, {missing}, ... filled from the env fixture. Each must exit
# non-zero with one line on stderr.
BAD = [
    # command line shape (argparse, exit 2)
    ("no arguments", ()),
    ("unknown verb", ("frobnicate",)),
    ("unknown verb like a flag", ("--frobnicate",)),
    ("unknown option of ls", ("ls", "{store}", "--bogus")),
    ("two stores to ls", ("ls", "{store}", "{store}")),
    ("pack without -o", ("pack", "{ckpt}")),
    ("pack without files", ("pack", "-o", "{new}")),
    ("unpack without --step", ("unpack", "{store}", "-o", "{root}/x.pt")),
    ("unpack without -o", ("unpack", "{store}", "--step", "0")),
    ("step not an int", ("info", "{store}", "--step", "abc")),
    ("step a float", ("info", "{store}", "--step", "1.5")),
    ("step empty", ("info", "{store}", "--step", "")),
    ("get without --tensor", ("get", "{store}", "--step", "0")),
    ("prune count not an int", ("prune", "{store}", "--keep-last", "x")),
    ("prune keep-last 0", ("prune", "{store}", "--keep-last", "0")),
    ("abs error negative", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--abs-error", "-1")),
    ("abs error zero", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--abs-error", "0")),
    ("abs error nan", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--abs-error", "nan")),
    ("abs error inf", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--abs-error", "inf")),
    ("abs error text", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--abs-error", "tiny")),
    ("abs and rel error", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--abs-error", "1", "--rel-error", "0.1")),
    ("bad bound spec", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--weights-error", "bogus")),
    ("bad bound number", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--weights-error", "abs:x")),
    ("log bound of 1", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--exp-avg-sq-error", "log:1")),
    ("negative bound", ("pack", "{ckpt}", "-o", "{new}", "--lossy", "--exp-avg-error", "rms:-0.1")),
    ("keyframe-every text", ("pack", "{ckpt}", "-o", "{new}", "--keyframe-every", "often")),
    ("first-step text", ("pack", "{ckpt}", "-o", "{new}", "--first-step", "one")),
    ("chunk-elements text", ("pack", "{ckpt}", "-o", "{new}", "--chunk-elements", "big")),
    ("verify extra argument", ("verify", "{store}", "extra")),
    # missing and wrong stores (exit 1)
    ("ls missing store", ("ls", "{missing}")),
    ("info missing store", ("info", "{missing}", "--step", "0")),
    ("get missing store", ("get", "{missing}", "--step", "0", "--tensor", "w")),
    ("unpack missing store", ("unpack", "{missing}", "--step", "0", "-o", "{root}/x.pt")),
    ("verify missing store", ("verify", "{missing}")),
    ("stats missing store", ("stats", "{missing}")),
    ("prune missing store", ("prune", "{missing}", "--keep-last", "1")),
    ("clean missing store", ("clean", "{missing}")),
    ("ls a regular file", ("ls", "{file}")),
    ("ls an empty folder", ("ls", "{empty}")),
    ("ls a checkpoint file", ("ls", "{ckpt}")),
    ("ls a store with garbled metadata", ("ls", "{broken}")),
    ("info on a garbled store", ("info", "{broken}", "--step", "0")),
    ("verify a garbled store", ("verify", "{broken}")),
    # URLs
    ("unknown URL scheme", ("ls", "nosuchscheme://bucket/store")),
    ("URL with no scheme name", ("ls", "://store")),
    ("memory URL of no store", ("ls", "memory://no/such/store")),
    ("file URL of no store", ("ls", "file://{missing}")),
    ("unpack from an unknown URL scheme", ("unpack", "bogus+x://h/s", "--step", "0", "-o", "{root}/x.pt")),
    ("storage option without =", ("ls", "memory://x", "--storage-option", "novalue")),
    ("storage option with no key", ("ls", "memory://x", "--storage-option", "=1")),
    ("storage option the driver refuses", ("ls", "memory://x", "--storage-option", "bogus_option=1")),
    # steps and tensors
    ("unknown step", ("info", "{store}", "--step", "7")),
    ("negative step", ("info", "{store}", "--step", "-1")),
    ("huge step", ("info", "{store}", "--step", "99999999999999999999999999")),
    ("unpack unknown step", ("unpack", "{store}", "--step", "5", "-o", "{root}/x.pt")),
    ("get unknown tensor", ("get", "{store}", "--step", "0", "--tensor", "nope")),
    ("get tensor named ..", ("get", "{store}", "--step", "0", "--tensor", "../../etc/passwd")),
    ("get a scalar as a tensor", ("get", "{store}", "--step", "0", "--tensor", "n")),
    # slices
    ("slice step 0", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "0:1:0")),
    ("slice step 0 on axis 2", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", ":,::0")),
    ("slice text", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "abc")),
    ("slice four fields", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "1:2:3:4")),
    ("slice too many axes", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "0,0,0")),
    ("slice index out of range", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "99")),
    ("slice negative out of range", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "-5")),
    ("slice float", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "0.5")),
    ("slice empty part", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "0,,1")),
    ("slice huge int", ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "99999999999999999999999")),
    # output paths
    ("get -o unknown type", ("get", "{store}", "--step", "0", "--tensor", "w", "-o", "{root}/w.txt")),
    ("get -o in a missing folder", ("get", "{store}", "--step", "0", "--tensor", "w", "-o", "{missing}/w.npy")),
    ("get -o onto a folder", ("get", "{store}", "--step", "0", "--tensor", "w", "-o", "{dirnpy}")),
    ("get -o under a file", ("get", "{store}", "--step", "0", "--tensor", "w", "-o", "{file}/w.npy")),
    ("unpack -o in a missing folder", ("unpack", "{store}", "--step", "0", "-o", "{missing}/out.pt")),
    ("unpack -o onto a folder", ("unpack", "{store}", "--step", "0", "-o", "{dirpt}")),
    ("unpack -o under a file", ("unpack", "{store}", "--step", "0", "-o", "{file}/out.pt")),
    ("unpack -o unknown type", ("unpack", "{store}", "--step", "0", "-o", "{root}/out.zip")),
    ("unpack nested state to safetensors", ("unpack", "{store}", "--step", "0", "-o", "{root}/o.safetensors")),
    ("stats --plot in a missing folder", ("stats", "{store}", "--plot", "{missing}/p.png")),
    ("pack -o onto a regular file", ("pack", "{ckpt}", "-o", "{file}")),
    ("pack -o under a regular file", ("pack", "{ckpt}", "-o", "{file}/store")),
    # checkpoint inputs
    ("pack a missing file", ("pack", "{missing}.pt", "-o", "{new}")),
    ("pack an empty folder", ("pack", "{empty}", "-o", "{new}")),
    ("pack a text file", ("pack", "{txt}", "-o", "{new}")),
    ("pack a garbled .pt", ("pack", "{badpt}", "-o", "{new}")),
    ("pack a garbled .safetensors", ("pack", "{badst}", "-o", "{new}")),
    ("pack a folder named .pt", ("pack", "{dirpt}", "-o", "{new}")),
    # pack options that parse but do not make sense
    ("lossy without a bound", ("pack", "{ckpt}", "-o", "{new}", "--lossy")),
    ("lossless and lossy", ("pack", "{ckpt}", "-o", "{new}", "--lossless", "--lossy", "--abs-error", "1")),
    ("bound without --lossy", ("pack", "{ckpt}", "-o", "{new}", "--abs-error", "1")),
    ("chunk-elements 0", ("pack", "{ckpt}", "-o", "{new}", "--chunk-elements", "0")),
    ("chunk-elements negative", ("pack", "{ckpt}", "-o", "{new}", "--chunk-elements", "-5")),
    ("keyframe-every 0", ("pack", "{ckpt}", "-o", "{new}", "--keyframe-every", "0")),
    ("keyframe-every negative", ("pack", "{ckpt}", "-o", "{new}", "--keyframe-every", "-2")),
    ("first-step negative", ("pack", "{ckpt}", "-o", "{new}", "--first-step", "-3")),
    ("bundle-below negative", ("pack", "{ckpt}", "-o", "{new}", "--bundle-below", "-1")),
    ("bundle-below text", ("pack", "{ckpt}", "-o", "{new}", "--bundle-below", "small")),
    ("first-step taken", ("pack", "{ckpt}", "-o", "{store}", "--first-step", "0")),
    ("predecessor-cache unknown", ("pack", "{ckpt}", "-o", "{new}", "--predecessor-cache", "ram")),
    ("cache-dir missing", ("pack", "{ckpt}", "-o", "{new}", "--cache-dir", "{missing}")),
]


def test_the_battery_is_large():
    assert len(BAD) >= 60
    assert len({label for label, _ in BAD}) == len(BAD)


WORDS = {  # what some of the lines must say
    "slice step 0": "step of 0",
    "slice step 0 on axis 2": "step of 0",
    "unpack -o in a missing folder": "does not exist",
    "unpack -o onto a folder": "folder",
    "get -o in a missing folder": "does not exist",
    "unknown URL scheme": "nosuchscheme",
    "first-step negative": "numbered from 0",
    "bundle-below negative": "must be 0 or more, not -1",
    "bundle-below text": "'small' is not an integer",
    "predecessor-cache unknown": "invalid choice: 'ram'",
    "cache-dir missing": "is not an existing directory",
    "prune keep-last 0": "must be at least 1, not 0 (--all deletes every step)",
    "prune count not an int": "'x' is not an integer",
}


@pytest.mark.parametrize(("label", "argv"), BAD, ids=[label for label, _ in BAD])
def test_bad_invocation_prints_one_line(label, argv, env, capfd):
    args = _fill(argv, env, BAD.index((label, argv)))
    try:
        code = main(args)
    except SystemExit as e:  # argparse exits through SystemExit
        code = e.code
    out, err = capfd.readouterr()
    assert code not in (0, None), f"{label}: exit status {code}; stdout {out!r}"
    assert "Traceback" not in err + out
    lines = err.splitlines()
    assert len(lines) == 1, f"{label}: stderr has {len(lines)} lines: {err!r}"
    assert lines[0].startswith("tpde-pack"), lines[0]
    assert WORDS.get(label, "") in lines[0]


def test_bad_invocations_leave_the_good_store_alone(env):
    store = CheckpointStore(env["store"], mode="r")
    assert store.steps() == [0, 1]
    assert np.array_equal(store.load(1)["w"].numpy(), np.arange(12, dtype=np.float32).reshape(4, 3) + 1)


def test_pack_failures_leave_no_new_store(env):
    """A pack that fails on its input or options creates no store."""
    leftovers = [p.name for p in Path(env["root"]).iterdir() if p.name.startswith("new-store-")]
    assert leftovers == []


def _script() -> str:
    found = shutil.which("tpde-pack", path=str(Path(sys.executable).parent)) or shutil.which("tpde-pack")
    if found is None:
        pytest.skip("the tpde-pack console script is not installed")
    return found


@pytest.mark.parametrize(
    "argv",
    [
        ("get", "{store}", "--step", "0", "--tensor", "w", "--slice", "0:1:0"),
        ("unpack", "{store}", "--step", "0", "-o", "{missing}/out.pt"),
        ("ls", "nosuchscheme://bucket/store"),
        ("frobnicate",),
    ],
    ids=["zero slice step", "unpack into a missing folder", "unknown URL scheme", "unknown verb"],
)
def test_console_script_prints_one_line(argv, env):
    result = subprocess.run(
        [_script(), *_fill(argv, env, 0)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_unexpected_exception_is_one_line(env, capfd, monkeypatch):
    """A bug that raises something unexpected still prints one line (and the kind of error)."""
    cli_module = importlib.import_module("tpde.cli.main")

    def boom(*_a, **_k):
        raise KeyError("line one\nline two")

    monkeypatch.setattr(cli_module, "CheckpointStore", boom)
    code = main(["ls", env["store"]])
    _, err = capfd.readouterr()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "KeyError" in err
