"""tpde-pack: pack/unpack bit-exact, inspection commands, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from store_helpers import assert_same_state, raw_bytes, train_checkpoints
from tpde.cli import main, parse_slice, tensor_group
from tpde.store import CheckpointStore


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    """torch.save files of a real (tiny) training run: ckpt-3.pt ... ckpt-12.pt."""
    folder = tmp_path_factory.mktemp("ckpts")
    for step, state in train_checkpoints(12, every=3):
        torch.save(state, folder / f"ckpt-{step}.pt")
    return folder


@pytest.fixture(scope="module")
def packed(ckpt_dir, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("store") / "run.tpde"
    assert main(["pack", str(ckpt_dir), "-o", str(store), "--keyframe-every", "3"]) == 0
    return store


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_pack_then_unpack_is_bit_identical(ckpt_dir, packed, tmp_path, capsys):
    store = CheckpointStore(packed, mode="r")
    assert store.steps() == [3, 6, 9, 12]  # natural order; ckpt-12 after ckpt-9
    assert [h.kind for h in store.history()] == ["keyframe", "delta", "delta", "keyframe"]
    for step in store.steps():
        out = tmp_path / f"out-{step}.pt"
        code, text, _ = run(capsys, "unpack", str(packed), "--step", str(step), "-o", str(out))
        assert code == 0 and f"wrote step {step}" in text
        original = torch.load(ckpt_dir / f"ckpt-{step}.pt", weights_only=True)
        assert_same_state(torch.load(out, weights_only=True), original)


@pytest.mark.parametrize(("flag", "bundled"), [([], True), (["--bundle-below", "0"], False)])
def test_pack_bundle_below(ckpt_dir, tmp_path, capsys, flag, bundled):
    out = tmp_path / "s"
    code, _, _ = run(capsys, "pack", str(ckpt_dir / "ckpt-3.pt"), str(ckpt_dir / "ckpt-6.pt"), "-o", str(out), *flag)
    assert code == 0
    assert CheckpointStore(out, mode="r").bundle_below == (2**20 if bundled else 0)
    assert CheckpointStore(out, mode="r").steps() == [3, 6]
    for step in (3, 6):
        assert (out / "steps" / str(step) / ".bundle").is_file() == bundled
        assert_same_state(CheckpointStore(out, mode="r").load(step),
                          torch.load(ckpt_dir / f"ckpt-{step}.pt", weights_only=True))


def test_pack_prints_sizes_and_ratio(ckpt_dir, tmp_path, capsys):
    files = sorted(ckpt_dir.glob("*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    code, out, _ = run(capsys, "pack", *map(str, files[:2]), "-o", str(tmp_path / "s"), "--first-step", "100")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("step      100  keyframe") and "ckpt-3.pt" in lines[0]
    assert lines[1].startswith("step      101  delta")
    assert "packed 2 checkpoint(s)" in lines[2] and "ratio" in lines[2]
    # packing more into the same store appends after the last step
    code, out, _ = run(capsys, "pack", str(files[2]), "-o", str(tmp_path / "s"))
    assert code == 0 and out.startswith("step      102")


def rms_of(t: torch.Tensor) -> float:
    v = t.double()
    v = v[v.isfinite()]
    return float(v.square().mean().sqrt()) if v.numel() else 0.0


def test_pack_lossy_rel_error_keeps_bounds(ckpt_dir, tmp_path, capsys):
    store = tmp_path / "lossy.tpde"
    code, out, _ = run(capsys, "pack", str(ckpt_dir), "-o", str(store), "--lossy", "--rel-error", "0.1",
                       "--keyframe-every", "3")
    assert code == 0
    assert "lossy: weights rms:0.1, exp_avg rms:0.1, exp_avg_sq log:0.1, other none;" in out
    reader = CheckpointStore(store, mode="r")
    assert [(h.kind, h.lossy) for h in reader.history()] == [("keyframe", True), ("delta", True),
                                                             ("delta", True), ("keyframe", True)]
    for step in reader.steps():
        keyframe = torch.load(ckpt_dir / f"ckpt-{3 if step < 12 else 12}.pt", weights_only=True)
        original = torch.load(ckpt_dir / f"ckpt-{step}.pt", weights_only=True)
        back = reader.load(step)
        tensors = reader.info(step).tensors
        for name, w in original["model"].items():  # weights: 0.1 x their RMS at the keyframe
            bound = 0.1 * rms_of(keyframe["model"][name])
            t = tensors[f"model/{name}"]
            assert t.rms == pytest.approx(rms_of(keyframe["model"][name]))
            same = back["model"][name] == w  # the attention mask holds -inf: RMS 0, exact
            assert ((back["model"][name] - w).abs()[~same] <= bound).all(), name
        for i, s in original["optimizer"]["state"].items():
            got = back["optimizer"]["state"][i]
            bound = 0.1 * rms_of(keyframe["optimizer"]["state"][i]["exp_avg"])
            assert ((got["exp_avg"] - s["exp_avg"]).abs() <= bound).all()
            assert ((got["exp_avg_sq"] - s["exp_avg_sq"]).abs() <= 0.1 * s["exp_avg_sq"].abs()).all()
            assert raw_bytes(got["step"]) == raw_bytes(s["step"])
        assert back["rng"].equal(original["rng"]) and back["step"] == original["step"]
    code, out, _ = run(capsys, "ls", str(store))
    assert code == 0 and [line.split()[-1] for line in out.splitlines()[1:5]] == ["lossy"] * 4
    code, out, _ = run(capsys, "info", str(store), "--step", "6")
    lines = out.splitlines()
    assert code == 0 and lines[1].startswith("lossy: weights rms:0.1, exp_avg rms:0.1, exp_avg_sq log:0.1, other none;")
    assert lines[2].split()[-2:] == ["changed", "bound"]
    rows = {line.split()[0]: line for line in lines[3:]}
    pos = tensors_at(store, 6)["model/pos"]
    assert rows["model/pos"].endswith(f"rms:0.1 -> abs:{pos.error_bound['abs_error']:.3g}")
    assert rows["model/mask"].endswith("rms:0.1 (RMS 0: exact)")
    assert rows["optimizer/state/0/exp_avg_sq"].endswith("log:0.1")
    assert rows["optimizer/state/0/step"].endswith("  -")


def tensors_at(store: Path, step: int) -> dict:
    return CheckpointStore(store, mode="r").info(step).tensors


def test_pack_lossy_abs_error_and_per_kind_overrides(ckpt_dir, tmp_path, capsys):
    store = tmp_path / "abs.tpde"
    code, out, _ = run(capsys, "pack", str(ckpt_dir), "-o", str(store), "--lossy", "--abs-error", "1e-4",
                       "--exp-avg-sq-error", "log:0.01")
    assert code == 0 and "lossy: weights abs:0.0001, exp_avg abs:0.0001, exp_avg_sq log:0.01, other none;" in out
    t = tensors_at(store, 12)
    assert t["model/head.weight"].error_bound == {"abs_error": 1e-4} and t["model/head.weight"].bound == "abs:0.0001"
    assert t["optimizer/state/0/exp_avg"].error_bound == {"abs_error": 1e-4}
    assert t["optimizer/state/0/exp_avg_sq"].error_bound == {"log_rel_error": 0.01}
    back = CheckpointStore(store, mode="r").load(12)
    original = torch.load(ckpt_dir / "ckpt-12.pt", weights_only=True)
    for name, w in original["model"].items():
        same = back["model"][name] == w
        assert ((back["model"][name] - w).abs()[~same] <= 1e-4).all(), name
    # --abs-error alone leaves exp_avg_sq exact; overrides replace the level's bound per kind
    store = tmp_path / "mixed.tpde"
    code, out, _ = run(capsys, "pack", str(ckpt_dir), "-o", str(store), "--lossy", "--rel-error", "0.1",
                       "--exp-avg-error", "none", "--weights-error", "abs:1e-3")
    assert code == 0 and "lossy: weights abs:0.001, exp_avg none, exp_avg_sq log:0.1, other none;" in out
    t = tensors_at(store, 12)
    assert t["model/head.weight"].error_bound == {"abs_error": 1e-3}
    assert not t["optimizer/state/0/exp_avg"].lossy and t["optimizer/state/0/exp_avg"].bound is None
    store = tmp_path / "plain.tpde"
    code, out, _ = run(capsys, "pack", str(ckpt_dir), "-o", str(store), "--lossy", "--abs-error", "1e-3")
    assert code == 0 and "exp_avg_sq none" in out
    assert not tensors_at(store, 12)["optimizer/state/0/exp_avg_sq"].lossy
    # a lossless store says so
    code, out, _ = run(capsys, "pack", str(ckpt_dir), "-o", str(tmp_path / "exact.tpde"), "--lossless")
    assert code == 0 and "\nlossy: " not in out
    code, out, _ = run(capsys, "info", str(tmp_path / "exact.tpde"), "--step", "6")
    assert out.splitlines()[1] == "lossless: every tensor bit-exact"
    code, out, _ = run(capsys, "ls", str(tmp_path / "exact.tpde"))
    assert out.splitlines()[1].endswith("lossless")


@pytest.mark.parametrize(
    ("flags", "status", "message"),
    [
        (["--abs-error", "1e-3"], 1, "--abs-error needs --lossy (lossy packing is opt-in"),
        (["--exp-avg-sq-error", "log:0.1"], 1, "--exp-avg-sq-error needs --lossy"),
        (["--lossy"], 1, "--lossy needs a bound: --abs-error E, --rel-error R"),
        (["--lossy", "--weights-error", "none"], 1, "--lossy needs a bound"),
        (["--lossless", "--lossy", "--rel-error", "0.1"], 1, "--lossless excludes --lossy and --rel-error"),
        (["--lossless", "--abs-error", "1"], 1, "--lossless excludes --abs-error"),
        (["--lossy", "--rel-error", "1.5"], 1,
         "--rel-error 1.5 is also exp_avg_sq's log-relative bound, which must be below 1"),
        (["--lossy", "--abs-error", "1", "--rel-error", "0.1"], 2,
         "argument --rel-error: not allowed with argument --abs-error"),
        (["--lossy", "--abs-error", "-1"], 2, "argument --abs-error: must be a positive number, not '-1'"),
        (["--lossy", "--abs-error", "inf"], 2, "must be a positive number, not 'inf'"),
        (["--lossy", "--rel-error", "x"], 2, "argument --rel-error: 'x' is not a number"),
        (["--lossy", "--weights-error", "foo"], 2,
         "argument --weights-error: bad error bound 'foo': expected abs:E, rms:F, log:R or none"),
        (["--lossy", "--exp-avg-error", "rms:0"], 2, "bad error bound 'rms:0': rms bound must be a positive number"),
        (["--lossy", "--exp-avg-sq-error", "log:2"], 2, "bad error bound 'log:2': log bound must be below 1"),
        (["--lossy", "--other-error", "abs:"], 2, "bad error bound 'abs:': '' is not a number"),
    ],
)
def test_bad_lossy_flags_are_one_line_errors(ckpt_dir, tmp_path, capsys, flags, status, message):
    argv = ["pack", str(ckpt_dir), "-o", str(tmp_path / "s"), *flags]
    if status == 2:
        with pytest.raises(SystemExit) as e:
            main(argv)
        code = e.value.code
    else:
        code = main(argv)
    out, err = capsys.readouterr()
    assert code == status and out == "" and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s").exists()


def test_safetensors_round_trip_keeps_metadata(tmp_path, capsys):
    tensors = {"a.weight": torch.randn(4, 3).to(torch.bfloat16), "b": torch.arange(5)}
    save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt", "note": "x"})
    store = tmp_path / "s.tpde"
    assert run(capsys, "pack", str(tmp_path / "m.safetensors"), "-o", str(store))[0] == 0
    out = tmp_path / "back.safetensors"
    assert run(capsys, "unpack", str(store), "--step", "0", "-o", str(out))[0] == 0
    back = load_file(out)
    assert back.keys() == tensors.keys()
    for k in tensors:
        assert back[k].dtype == tensors[k].dtype and raw_bytes(back[k]) == raw_bytes(tensors[k])
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "note": "x"}


def test_ls_info_stats_verify(packed, tmp_path, capsys):
    code, out, _ = run(capsys, "ls", str(packed))
    rows = out.splitlines()
    assert code == 0 and rows[0].split() == ["step", "kind", "base", "raw", "stored", "ratio", "coding"]
    assert rows[2].split()[:3] == ["6", "delta", "3"] and rows[-1].startswith("4 step(s)")
    code, out, _ = run(capsys, "info", str(packed), "--step", "6")
    assert code == 0 and out.startswith("step 6: delta against step 3, depth 1")
    assert any(line.startswith("optimizer/state/0/exp_avg ") for line in out.splitlines())
    code, out, _ = run(capsys, "stats", str(packed))
    assert code == 0 and "optimizer/state/*/exp_avg_sq" in out
    code, out, _ = run(capsys, "verify", str(packed))
    assert code == 0 and "verified 4 step(s)" in out


def test_stats_plot(packed, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "ratio.png"
    code, out, _ = run(capsys, "stats", str(packed), "--plot", str(plot))
    assert code == 0 and out.endswith(f"wrote {plot}\n") and plot.read_bytes()[:4] == b"\x89PNG"


def test_get_slice_to_npy_and_pt(packed, tmp_path, capsys):
    name = "model/layers.layers.1.linear1.weight"
    full = CheckpointStore(packed, mode="r").load(9)["model"]["layers.layers.1.linear1.weight"]
    out = tmp_path / "w.npy"
    code, text, _ = run(capsys, "get", str(packed), "--step", "9", "--tensor", name, "--slice", "0:8, 4:",
                        "-o", str(out))
    assert code == 0 and "(8, 28)" in text
    assert np.load(out).tobytes() == full[0:8, 4:].numpy().tobytes()
    code, _, _ = run(capsys, "get", str(packed), "--step", "9", "--tensor", name, "--slice", "-1",
                     "-o", str(tmp_path / "w.pt"))
    assert code == 0 and raw_bytes(torch.load(tmp_path / "w.pt")) == raw_bytes(full[-1])
    code, text, _ = run(capsys, "get", str(packed), "--step", "9", "--tensor", "optimizer/state/0/step")
    assert code == 0 and "float32 ()" in text and text.splitlines()[1] == "9.0"


def test_get_bfloat16_writes_exact_float32(tmp_path, capsys):
    store = CheckpointStore(tmp_path / "s")
    w = torch.randn(3, 4).to(torch.bfloat16)
    store.save(0, {"w": w})
    code, _, err = run(capsys, "get", str(tmp_path / "s"), "--step", "0", "--tensor", "w",
                       "-o", str(tmp_path / "w.npy"))
    assert code == 0 and "float32 (values exact)" in err
    assert np.array_equal(np.load(tmp_path / "w.npy"), w.float().numpy())


def test_prune_and_clean(ckpt_dir, tmp_path, capsys):
    store = tmp_path / "s.tpde"
    assert main(["pack", str(ckpt_dir), "-o", str(store), "--keyframe-every", "2"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "prune", str(store), "--keep-last", "1", "--dry-run")
    assert code == 0 and out.startswith("would delete 2 step(s): 3, 6")
    code, out, _ = run(capsys, "prune", str(store), "--keep-last", "1")
    assert code == 0 and out.startswith("deleted 2 step(s): 3, 6; kept 2")
    assert CheckpointStore(store, mode="r").steps() == [9, 12]
    (store / "steps" / "99").mkdir()
    (store / "steps" / "99" / "junk").write_bytes(b"x")
    code, out, _ = run(capsys, "verify", str(store))
    assert code == 0 and "leftover" in out
    code, out, _ = run(capsys, "clean", str(store))
    assert code == 0 and out.strip() == "removed 1 leftover(s): steps/99"


def test_verify_fails_on_corruption(tmp_path, capsys):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, {"w": torch.randn(100)})
    bundle = tmp_path / "s" / "steps" / "0" / ".bundle"  # small tensors share one object per step
    bundle.write_bytes(bundle.read_bytes()[:-3] + b"abc")
    code, out, err = run(capsys, "verify", str(tmp_path / "s"))
    assert code == 1 and out.startswith("step 0: ")
    assert err.strip() == "tpde-pack: error: 1 of 1 step(s) failed verification"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ls", "{tmp}/nope"], "no such tpde store"),
        (["ls", "{tmp}"], "is not a tpde checkpoint store"),
        (["pack", "{tmp}/missing.pt", "-o", "{tmp}/s2"], "missing.pt: no such file or directory"),
        (["pack", "{tmp}/notes.txt", "-o", "{tmp}/s2"], "not a checkpoint file"),
        (["pack", "{tmp}/empty", "-o", "{tmp}/s2"], "empty: no .pt/.pth/.bin/.safetensors files"),
        (["pack", "{tmp}/garbage.pt", "-o", "{tmp}/s2"], "garbage.pt: cannot read checkpoint"),
        (["info", "{store}", "--step", "7"], "unknown step 7; steps are 0"),
        (["get", "{store}", "--step", "0", "--tensor", "model/w"], "has no tensor 'model/w'; did you mean 'model/w1'"),
        (["get", "{store}", "--step", "0", "--tensor", "model/w1", "--slice", "0:x"], "bad slice '0:x'"),
        (["get", "{store}", "--step", "0", "--tensor", "model/w1", "--slice", "5"], "out of range for axis 0"),
        (["get", "{store}", "--step", "0", "--tensor", "model/w1", "-o", "{tmp}/w.txt"], "name it .npy or .pt"),
        (["unpack", "{store}", "--step", "0", "-o", "{tmp}/o.safetensors"], "unpack it to a .pt file"),
        (["unpack", "{store}", "--step", "0", "-o", "{tmp}/o.zip"], "unknown output type"),
        (["prune", "{store}"], "prune needs keep_last"),
    ],
)
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, message):
    store = CheckpointStore(tmp_path / "s")
    store.save(0, {"model": {"w1": torch.ones(3)}, "step": 0})
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    args = [a.format(tmp=tmp_path, store=tmp_path / "s") for a in argv]
    code, out, err = run(capsys, *args)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("tpde-pack: error: ") and message in err
    assert not (tmp_path / "s2").exists()  # a failed pack creates no store


def test_bad_command_lines_exit_2_with_one_line(capsys):
    for argv in ([], ["info", "x"], ["ls", "a", "b"], ["get", "s", "--step", "x", "--tensor", "t"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


def test_console_script_runs_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-m", "tpde.cli", "ls", str(tmp_path / "nope")],
        capture_output=True, text=True, env=env,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"tpde-pack: error: {tmp_path / 'nope'}: no such tpde store\n"


def test_parse_slice_and_groups():
    assert parse_slice("0:128,:") == (slice(0, 128), slice(None))
    assert parse_slice(" 3 , ::-2 ") == (3, slice(None, None, -2))
    assert tensor_group("model/layers.12.attn.q_proj.weight") == "model/layers.*.attn.q_proj.weight"
    assert tensor_group("optimizer/state/7/exp_avg") == "optimizer/state/*/exp_avg"


def test_pack_cross_state_round_trips_and_records_predictions(ckpt_dir, tmp_path, capsys):
    store_path = tmp_path / "xs.tpde"
    code, _, _ = run(capsys, "pack", str(ckpt_dir), "-o", str(store_path), "--cross-state")
    assert code == 0
    store = CheckpointStore(store_path, mode="r")
    assert any(h.predicted for h in store.history()[1:])
    delta = next(h.step for h in store.history() if h.predicted)
    assert any(t.predicted > 0 for t in store.info(delta).tensors.values())
    code, out, _ = run(capsys, "info", str(store_path), "--step", str(delta))
    assert code == 0 and "cross-state:" in out
    code, out, _ = run(capsys, "ls", str(store_path))
    assert code == 0 and "lossless, cross-state" in out
    for step in store.steps():
        original = torch.load(ckpt_dir / f"ckpt-{step}.pt", weights_only=True)
        assert_same_state(store.load(step), original)
