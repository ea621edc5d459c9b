"""tpde-pack on checkpoint folders and framework files: one step per input, blobs byte-exact,
idempotent and resumable packing, JSON output for scripts."""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from store_helpers import assert_same_state
from tpde.cli import main
from tpde.store import CheckpointStore


class Evil:
    """Unpickling this runs code: tpde must keep it as bytes, never load it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def make_trainer_folder(root: Path, step: int, model: torch.nn.Module, opt, evil_marker: str) -> Path:
    """A checkpoint-N/ folder as the HF Trainer writes it (same file names and kinds)."""
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    torch.save(opt.state_dict(), folder / "optimizer.pt")
    torch.save({"last_epoch": step, "_last_lr": [1e-3]}, folder / "scheduler.pt")
    torch.save({"python": (3, (1, 2), None), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
               folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}, indent=2))
    (folder / "training_args.bin").write_bytes(pickle.dumps(argparse.Namespace(evil=Evil(evil_marker), lr=1e-3)))
    (folder / "tokenizer").mkdir()
    (folder / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hf") / "out"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Linear(16, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(1, 31):
        x = torch.randint(0, 10, (8,))  # rows 10..49 of the embedding never train
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        if step % 10 == 0:
            make_trainer_folder(root, step, model, opt, str(root.parent / "PWNED"))
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_trainer_folders_are_one_step_each_and_unpack_exactly(run_dir, tmp_path, capsys):
    store_path = tmp_path / "s.tpde"
    code, out, err = run(capsys, "pack", str(run_dir), "-o", str(store_path))
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["10", "20", "30"]  # from checkpoint-N
    assert "checkpoint-20" in lines[1] and "blob(s)" in lines[1]
    store = CheckpointStore(store_path, mode="r")
    assert store.steps() == [10, 20, 30] and [h.kind for h in store.history()] == ["keyframe", "delta", "delta"]
    blobs = {b.name for b in store.info(20).blobs}
    assert {"files/rng_state.pth", "files/training_args.bin", "files/trainer_state.json",
            "files/tokenizer/vocab.txt", "headers/model.safetensors"} == blobs
    assert "optimizer.pt/state/0/exp_avg" in store.tensors(20)
    out_dir = tmp_path / "back"
    code, out, _ = run(capsys, "unpack", str(store_path), "--step", "20", "-o", str(out_dir))
    assert code == 0 and out.startswith(f"wrote step 20 to {out_dir}/ (7 file(s)")
    original = run_dir / "checkpoint-20"
    exact = ("model.safetensors", "rng_state.pth", "training_args.bin", "trainer_state.json", "tokenizer/vocab.txt")
    for name in exact:
        assert (out_dir / name).read_bytes() == (original / name).read_bytes(), name
    for name in ("optimizer.pt", "scheduler.pt"):  # tensor-identical and loadable
        assert_same_state(torch.load(out_dir / name, weights_only=True), torch.load(original / name, weights_only=True))
    assert not (run_dir.parent / "PWNED").exists()  # training_args.bin was never unpickled


def test_pack_again_skips_what_is_stored(run_dir, tmp_path, capsys):
    store_path = tmp_path / "s.tpde"
    assert run(capsys, "pack", str(run_dir / "checkpoint-10"), "-o", str(store_path))[0] == 0
    code, out, _ = run(capsys, "pack", str(run_dir), "-o", str(store_path))
    assert code == 0
    assert out.splitlines()[0] == (f"skipped {run_dir / 'checkpoint-10'}: already in {store_path} as step 10 "
                                   "(same name, size and SHA-256)")
    assert CheckpointStore(store_path, mode="r").steps() == [10, 20, 30]
    code, out, _ = run(capsys, "pack", str(run_dir), "-o", str(store_path))
    assert code == 0 and out.count("skipped") == 3 and "nothing to pack" in out
    assert CheckpointStore(store_path, mode="r").steps() == [10, 20, 30]


def test_changed_input_at_a_stored_step_is_refused(run_dir, tmp_path, capsys):
    store_path = tmp_path / "s.tpde"
    assert run(capsys, "pack", str(run_dir / "checkpoint-10"), "-o", str(store_path))[0] == 0
    other = tmp_path / "checkpoint-10"
    other.mkdir()
    (other / "trainer_state.json").write_text("{}")
    code, _, err = run(capsys, "pack", str(other), "-o", str(store_path), "--first-step", "10")
    assert code == 1 and err.count("\n") == 1 and "step 10 is already in" in err
    code, out, _ = run(capsys, "pack", str(other), "-o", str(store_path))  # numbers go on after the store's
    assert code == 0 and out.startswith("step       11")


def test_lightning_ckpt_files_take_their_step(tmp_path, capsys):
    state = {"global_step": 7, "epoch": 0, "state_dict": {"w": torch.randn(5, 3)}, "hyper_parameters": {"lr": 0.1}}
    torch.save(state, tmp_path / "epoch=0-step=7.ckpt")
    torch.save({**state, "global_step": 9}, tmp_path / "last.ckpt")
    store_path = tmp_path / "s.tpde"
    assert run(capsys, "pack", str(tmp_path / "epoch=0-step=7.ckpt"), "-o", str(store_path))[0] == 0
    assert run(capsys, "pack", str(tmp_path / "last.ckpt"), "-o", str(store_path))[0] == 0  # global_step field
    store = CheckpointStore(store_path, mode="r")
    assert store.steps() == [7, 9]
    assert run(capsys, "unpack", str(store_path), "--step", "9", "-o", str(tmp_path / "back.ckpt"))[0] == 0
    assert_same_state(torch.load(tmp_path / "back.ckpt", weights_only=True), {**state, "global_step": 9})


def test_dcp_folder_needs_allow_pickle(tmp_path, capsys):
    import torch.distributed.checkpoint as dcp

    state = {"model": {"w": torch.randn(6, 4)}, "step": 3}
    with pytest.warns(UserWarning):
        dcp.save(state, storage_writer=dcp.FileSystemWriter(str(tmp_path / "ckpt")), no_dist=True)
    code, _, err = run(capsys, "pack", str(tmp_path / "ckpt"), "-o", str(tmp_path / "s"))
    assert code == 1 and "--allow-pickle" in err and not (tmp_path / "s").exists()
    assert run(capsys, "pack", str(tmp_path / "ckpt"), "-o", str(tmp_path / "s"), "--allow-pickle")[0] == 0
    assert run(capsys, "unpack", str(tmp_path / "s"), "--step", "0", "-o", str(tmp_path / "b"))[0] == 0
    back = {"model": {"w": torch.zeros(6, 4)}, "step": 0}
    with pytest.warns(UserWarning):
        dcp.load(back, storage_reader=dcp.FileSystemReader(str(tmp_path / "b")), no_dist=True)
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["step"] == 3


def test_json_output_and_version(run_dir, tmp_path, capsys):
    store_path = tmp_path / "s.tpde"
    assert run(capsys, "pack", str(run_dir), "-o", str(store_path))[0] == 0
    code, out, _ = run(capsys, "ls", str(store_path), "--json")
    doc = json.loads(out)
    assert code == 0 and [s["step"] for s in doc["steps"]] == [10, 20, 30] and doc["steps"][1]["base_step"] == 10
    assert doc["stored_bytes"] == sum(s["stored_bytes"] for s in doc["steps"])
    doc = json.loads(run(capsys, "info", str(store_path), "--step", "20", "--json")[1])
    assert doc["kind"] == "delta" and any(b["name"] == "files/rng_state.pth" for b in doc["blobs"])
    assert doc["meta"]["input"]["name"] == "checkpoint-20" and len(doc["meta"]["input"]["sha256"]) == 64
    doc = json.loads(run(capsys, "stats", str(store_path), "--json")[1])
    assert len(doc["steps"]) == 3 and any(g["group"] == "optimizer.pt/state/*/exp_avg" for g in doc["groups"])
    code, out, _ = run(capsys, "verify", str(store_path), "--json")
    assert code == 0 and json.loads(out) == {"steps": 3, "ok": True, "problems": [], "leftovers": []}
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("tpde-pack ")


def _cli(*argv: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "tpde.cli", *argv], capture_output=True, env=env, **kw)


def test_get_to_stdout_writes_npy(run_dir, tmp_path, capsys):
    store_path = tmp_path / "s.tpde"
    assert run(capsys, "pack", str(run_dir / "checkpoint-10"), "-o", str(store_path))[0] == 0
    done = _cli("get", str(store_path), "--step", "10", "--tensor", "model.safetensors/1.weight", "--slice", "0:4",
                "-o", "-")
    assert done.returncode == 0 and done.stderr == b""
    expected = CheckpointStore(store_path, mode="r").load(10)["model.safetensors"]["1.weight"][:4]
    assert np.load(io.BytesIO(done.stdout)).tobytes() == expected.numpy().tobytes()


def test_killed_pack_resumes_with_the_right_steps(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1 << 19, generator=g)
    states = {}
    for i, name in enumerate("abcdef"):  # no numbers in the names: steps follow the store
        states[name] = {"w": w + i * 1e-3, "v": torch.randn(1 << 19, generator=g)}
        torch.save(states[name], src / f"{name}.pt")
    store_path = tmp_path / "s.tpde"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "tpde.cli", "pack", str(src), "-o", str(store_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not (store_path / "commits" / "1").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {int(p.name) for p in (store_path / "commits").iterdir() if p.name.isdigit()}
    assert done >= {0, 1}
    unlocked = _cli("unlock", str(store_path), text=True)  # the killed pack's stale writer lease
    assert unlocked.returncode == 0, unlocked.stderr
    finished = _cli("pack", str(src), "-o", str(store_path), text=True)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.count("skipped") == len(done)
    store = CheckpointStore(store_path, mode="r")
    assert store.steps() == [0, 1, 2, 3, 4, 5] and store.verify() == []
    for step, name in enumerate("abcdef"):
        assert store.info(step).meta["source"] == f"{name}.pt"
        assert_same_state(store.load(step), states[name])
