"""Does the store stay flat with size? Time per GB and bytes per parameter from 40 MB to 2 GB.

One model family (bench/series.py's GPT on bytes of Python source, AdamW), four widths and
depths, every one trained the same brief way (batch 4 x 128 tokens, lr 3e-4 after a 5-step
warmup, a save every 5 steps, 4 saves). A save holds the weights and both AdamW moments, fp32:

    size     layers  d_model  params    state
    40MB     4       256        3.3 M     40 MB
    200MB    6       512       19.2 M    230 MB
    800MB    10      768       71.3 M    856 MB
    2GB      9       1280     177.9 M   2.13 GB

For each size, in one process, step by step: torch.save of the state to a .pt file and
CheckpointStore.save (workers = all cores, the default keyframe interval) of the same
state into two stores, same disk, one at the default level and one at level="fast"; then
a fresh store's load of the last step from each (a delta at depth 3, checked bit-exact) and
torch.load of its .pt. Reported per size: seconds per GB of raw tensors for each, and stored
bytes per parameter of the keyframe and of the deltas (mean).

Checkpoints are trained on demand (each size in a subprocess, the 2 GB one in ~5-10 min on
2 cores) into bench/.cache/scale/ (~13 GB with all sizes) and reused by later runs.

    python bench/store_scale.py                     # all sizes
    python bench/store_scale.py --sizes 40MB 200MB  # some of them
    python bench/store_scale.py --reps 3            # best of 3 runs per size (a loaded machine)

Writes the `store_scale` section of bench/store_results.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import series as S  # noqa: E402
from bench.bench_store import same_bits  # noqa: E402
from bench.sections import head_commit, write_section  # noqa: E402
from tpde.store import CheckpointStore  # noqa: E402

CACHE = HERE / ".cache" / "scale"
SIZES = {"40MB": (4, 256), "200MB": (6, 512), "800MB": (10, 768), "2GB": (9, 1280)}
SAVE_EVERY, N_SAVES, WARMUP, LR = 5, 4, 5, 3e-4
LEVELS = ("default", "fast")


def config(size: str) -> S.Config:
    """The bench/series.py configuration of one size."""
    n_layer, d_model = SIZES[size]
    return replace(S.FULL, n_layer=n_layer, d_model=d_model, n_head=d_model // 64, batch=4,
                   lr=LR, threads=os.cpu_count() or 1)


def step_paths(size: str) -> list[Path]:
    """The checkpoint files of one size, in step order."""
    return [CACHE / size / f"step_{SAVE_EVERY * (i + 1):06d}.pt" for i in range(N_SAVES)]


def train(size: str) -> None:
    """Train one size briefly and write its N_SAVES checkpoints (run in a subprocess)."""
    import torch.nn.functional as F
    cfg = config(size)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data, _ = S.tokens("scratch", cfg)
    model = S._build_model(cfg)
    opt = S._make_optimizer(model, cfg, LR)
    batches = S._batches(data, cfg, cfg.seed)
    out = CACHE / size
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for k in range(1, SAVE_EVERY * N_SAVES + 1):
        for g in opt.param_groups:
            g["lr"] = LR * min(1.0, k / WARMUP)
        x, y = next(batches)
        loss = F.cross_entropy(model(x).reshape(-1, cfg.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if k % SAVE_EVERY == 0:
            path = out / f"step_{k:06d}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": k}, tmp)
            os.replace(tmp, path)
            print(f"  {size} step {k:3d}  loss {loss.item():.3f}  {time.perf_counter() - t0:6.1f}s", flush=True)
    params = sum(p.numel() for p in model.parameters())
    (out / "meta.json").write_text(json.dumps(dict(size=size, params=params, train_seconds=time.perf_counter() - t0)))


def ensure(size: str) -> dict:
    """The size's checkpoints exist (trained in a fresh interpreter if not); its meta."""
    meta = CACHE / size / "meta.json"
    if not (meta.exists() and all(p.exists() for p in step_paths(size))):
        print(f"training {size} into {CACHE / size}", flush=True)
        subprocess.run([sys.executable, __file__, "--train", size], check=True)
    return json.loads(meta.read_text())


def raw_bytes(state: object) -> int:
    """Bytes of every tensor in a nested state."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(raw_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(raw_bytes(v) for v in state)
    return 0


def measure(size: str, work: Path) -> dict:
    """torch and the store (default and fast level) side by side on one size (see the module
    docstring)."""
    meta = ensure(size)
    folder = work / size
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pt = folder / "state.pt"
    paths = {level: folder / f"{level}.tpde" for level in LEVELS}
    stores = {level: CheckpointStore(paths[level], mode="w", workers=os.cpu_count() or 1, progress=False,
                                     level=level) for level in LEVELS}
    steps = []
    t_load, t_tload = {}, 0.0
    try:
        for path in step_paths(size):
            state = torch.load(path, weights_only=True)
            t0 = time.perf_counter()
            torch.save(state, pt)
            row = dict(t_tsave=time.perf_counter() - t0)
            for level, store in stores.items():
                t0 = time.perf_counter()
                info = store.save(int(state["step"]), state)
                row.update({f"t_save_{level}": time.perf_counter() - t0, f"stored_{level}": info.stored_bytes,
                            "kind": info.kind, "raw": info.raw_bytes})
            steps.append(row)
            last = state
            del state
        for level, store in stores.items():
            store.close()
            t0 = time.perf_counter()
            back = CheckpointStore(paths[level], mode="r", workers=os.cpu_count() or 1, progress=False).load(
                int(last["step"]))
            t_load[level] = time.perf_counter() - t0
            if not same_bits(back, last):
                raise SystemExit(f"{size}: store load ({level}) is not bit-exact")
            del back
        t0 = time.perf_counter()
        torch.load(pt, weights_only=True)
        t_tload = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    deltas = [s for s in steps if s["kind"] != "keyframe"]
    gb = steps[-1]["raw"] / 1e9

    def mean(key: str, rows: list[dict]) -> float:
        return sum(r[key] for r in rows) / len(rows)

    return dict(size=size, params=meta["params"], gb=gb, kinds=[s["kind"] for s in steps],
                save_s_gb=mean("t_save_default", deltas) / gb, key_save_s_gb=steps[0]["t_save_default"] / gb,
                tsave_s_gb=mean("t_tsave", steps) / gb, load_s_gb=t_load["default"] / gb, tload_s_gb=t_tload / gb,
                key_bpp=steps[0]["stored_default"] / meta["params"],
                delta_bpp=mean("stored_default", deltas) / meta["params"],
                fast_save_s_gb=mean("t_save_fast", deltas) / gb, fast_load_s_gb=t_load["fast"] / gb,
                fast_delta_bpp=mean("stored_fast", deltas) / meta["params"])


def report(rows: list[dict], commit: str, command: str, load: tuple[float, float]) -> str:
    """The `store_scale` section of bench/store_results.md."""
    lines = [
        "<!-- store_scale -->",
        "## Scale: time per GB and bytes per parameter, 40 MB to 2 GB (bench/store_scale.py)",
        "",
        f"- commit {commit} · `{command}` · {os.cpu_count()} cores, workers = all of them · load average "
        f"(1 min) before / after {load[0]:.2f} / {load[1]:.2f} (a shared machine: compare the columns of one run)",
        f"- one GPT family trained briefly the same way at every size; {N_SAVES} saves {SAVE_EVERY} steps apart "
        "(a keyframe, then deltas); weights + AdamW moments, fp32; the load is the last step, a delta at depth "
        f"{N_SAVES - 1}, checked bit-exact; s/GB = seconds per GB of raw tensors; bytes/param = stored bytes of "
        "a step / parameters (raw: 12)",
        "",
        "| size | params | state GB | store.save s/GB (deltas) | keyframe s/GB | torch.save s/GB | store.load s/GB "
        "| torch.load s/GB | keyframe bytes/param | delta bytes/param |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['params'] / 1e6:.1f} M | {r['gb']:.3f} | {r['save_s_gb']:.2f} | "
            f"{r['key_save_s_gb']:.2f} | {r['tsave_s_gb']:.2f} | {r['load_s_gb']:.2f} | {r['tload_s_gb']:.2f} | "
            f"{r['key_bpp']:.3f} | {r['delta_bpp']:.3f} |")
    lines += [
        "",
        "The fast level (`level=\"fast\"`) in the same runs, against torch.save and torch.load of the same state "
        "(time ratios: below 1 is faster than torch):",
        "",
        "| size | fast save s/GB (deltas) | fast save / torch.save | fast load s/GB | fast load / torch.load "
        "| fast delta bytes/param |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['fast_save_s_gb']:.2f} | {r['fast_save_s_gb'] / r['tsave_s_gb']:.2f} | "
            f"{r['fast_load_s_gb']:.2f} | {r['fast_load_s_gb'] / r['tload_s_gb']:.2f} | {r['fast_delta_bpp']:.3f} |")
    if len(rows) > 1:
        def spread(key: str) -> str:
            vals = [r[key] for r in rows]
            return f"{max(vals) / min(vals):.2f}x"
        lines += ["", f"- largest / smallest across sizes: store.save s/GB {spread('save_s_gb')}, store.load s/GB "
                  f"{spread('load_s_gb')}, keyframe bytes/param {spread('key_bpp')}, delta bytes/param "
                  f"{spread('delta_bpp')}"]
    lines.append("<!-- /store_scale -->")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Train what is missing, measure every size, write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--reps", type=int, default=1, help="runs per size; each time column is the best")
    parser.add_argument("--train", choices=list(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train:
        train(args.train)
        return 0
    for size in args.sizes:
        ensure(size)
    load_before = os.getloadavg()[0]
    work = HERE / ".cache" / "store-bench" / "scale"
    rows = []
    for size in args.sizes:
        runs = [measure(size, work) for _ in range(args.reps)]
        rows.append({k: min(r[k] for r in runs) if k.endswith("_s_gb") else v for k, v in runs[0].items()})
        print(json.dumps(rows[-1]), flush=True)
    text = report(rows, head_commit(), "python bench/store_scale.py " + " ".join(sys.argv[1:]),
                  (load_before, os.getloadavg()[0]))
    write_section(HERE / "store_results.md", "store_scale", text)
    print(text)
    return 0 if math.isfinite(sum(r["save_s_gb"] for r in rows)) else 1


if __name__ == "__main__":
    sys.exit(main())
