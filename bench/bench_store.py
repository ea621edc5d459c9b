"""CheckpointStore versus torch.save/torch.load on real checkpoint series.

For each series (bench/series.py: a GPT-style byte model trained with AdamW, fp32 and a
bf16 copy) every checkpoint is loaded once, then, step by step:

  torch.save   the state to a .pt file            (time, file bytes)
  store.save   the state into a CheckpointStore    (time, stored bytes, kind)
  torch.load   the .pt file, weights_only=True     (best of --reps)
  store.load   the step from a fresh store object  (best of --reps), checked bit-exact

and, on the last step (deepest in its delta chain), the partial restore of one layer
(the largest 2-D weight) and of 128 rows of it through `load_tensor`, versus loading
the whole .pt file and indexing it. All files live under bench/.cache/store-bench (the
page cache is warm for both sides; the store writes one file per chunk).

    python bench/bench_store.py                 # scratch + scratch-bf16, full size
    python bench/bench_store.py --small         # tiny series, smoke test (seconds)
    python bench/bench_store.py --threads       # codec vs store at 1..cpu_count threads,
                                                # torch beside, peak RSS (bench/store_threads.py)

Writes bench/store_results.md (store_results-small.md with --small).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import series as S  # noqa: E402
from tpde.store import CheckpointStore  # noqa: E402


def timed(fn, reps: int = 1) -> tuple[float, object]:
    """Best wall time of `reps` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def same_bits(a: object, b: object) -> bool:
    """Nested states hold the same tensors, bit for bit."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    return a == b


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_series(name: str, small: bool, keyframe_every: int, reps: int, work: Path) -> dict:
    """Time and size one series with one keyframe interval (see the module docstring)."""
    paths = S.make_series(name, small=small)
    store_path, pt = work / f"{name}.tpde", work / f"{name}.pt"
    shutil.rmtree(store_path, ignore_errors=True)
    store = CheckpointStore(store_path, mode="w", keyframe_every=keyframe_every)
    rows = []
    for path in paths:
        step = int(path.stem.split("_")[-1])
        state = torch.load(path, map_location="cpu", weights_only=True)
        t_save, _ = timed(lambda: torch.save(state, pt))
        t_store, info = timed(lambda: store.save(step, state))
        t_load, _ = timed(lambda: torch.load(pt, weights_only=True), reps)
        t_restore, back = timed(lambda: CheckpointStore(store_path, mode="r").load(step), reps)
        if not same_bits(back, state):
            raise SystemExit(f"{name} step {step}: store round trip is not bit-exact")
        rows.append(dict(step=step, kind=info.kind, depth=info.depth, pt_bytes=pt.stat().st_size,
                         raw=info.raw_bytes, stored=info.stored_bytes, t_save=t_save, t_store=t_store,
                         t_load=t_load, t_restore=t_restore))
    weights = {k: v for k, v in state["model"].items() if v.ndim == 2}
    layer = max(weights, key=lambda k: weights[k].numel())
    fresh = CheckpointStore(store_path, mode="r")
    t_layer, got = timed(lambda: fresh.load_tensor(step, f"model/{layer}"), reps)
    t_rows, got_rows = timed(lambda: fresh.load_tensor(step, f"model/{layer}", (slice(0, 128),)), reps)
    t_pt_layer, _ = timed(lambda: torch.load(pt, weights_only=True)["model"][layer].clone(), reps)
    if not (same_bits(got, state["model"][layer]) and same_bits(got_rows, state["model"][layer][:128])):
        raise SystemExit(f"{name}: partial restore is not bit-exact")
    return dict(name=name, keyframe_every=keyframe_every, rows=rows, layer=layer,
                layer_shape=tuple(weights[layer].shape),
                layer_depth=rows[-1]["depth"], t_layer=t_layer, t_rows=t_rows, t_pt_layer=t_pt_layer,
                store_dir=dir_bytes(store_path))


def report(results: list[dict], args: argparse.Namespace) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    lines = [
        "# CheckpointStore vs torch.save / torch.load",
        "",
        f"{_dt.date.today()} · commit {commit} · {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores · torch {torch.__version__} · loads best of {args.reps} · "
        f"`python bench/bench_store.py {' '.join(sys.argv[1:])}`",
        "",
        f"Load average (1 min) before / after the run: {args.load_before:.2f} / {os.getloadavg()[0]:.2f}: "
        "times on a shared machine are noisy, sizes are exact.",
        "",
        "Times in seconds; MB/s = raw tensor bytes / time. `ratio` = .pt file bytes / stored bytes.",
        "Every store load was checked bit-exact against the input in the same run.",
    ]
    for r in results:
        rows = r["rows"]
        lines += ["", f"## {r['name']}, keyframe_every={r['keyframe_every']}", "",
                  "| step | kind | depth | torch.save | store.save | torch.load | store.load | .pt MB | stored MB "
                  "| ratio |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in rows:
            lines.append(
                f"| {x['step']} | {x['kind']} | {x['depth']} | {x['t_save']:.3f} | {x['t_store']:.3f} | "
                f"{x['t_load']:.3f} | {x['t_restore']:.3f} | {x['pt_bytes'] / 1e6:.2f} | "
                f"{x['stored'] / 1e6:.2f} | {x['pt_bytes'] / x['stored']:.3f} |")
        n = len(rows)
        raw = sum(x["raw"] for x in rows)
        pt_total = sum(x["pt_bytes"] for x in rows)

        def mean(key: str) -> float:
            return sum(x[key] for x in rows) / n

        lines += [
            "",
            f"- mean per step: torch.save {mean('t_save'):.3f} s, store.save {mean('t_store'):.3f} s "
            f"({raw / n / mean('t_store') / 1e6:.0f} MB/s); torch.load {mean('t_load'):.3f} s, "
            f"store.load {mean('t_restore'):.3f} s ({raw / n / mean('t_restore') / 1e6:.0f} MB/s)",
            f"- bytes: {n} .pt files {pt_total / 1e6:.1f} MB, store directory {r['store_dir'] / 1e6:.1f} MB "
            f"(ratio {pt_total / r['store_dir']:.3f})",
            f"- partial restore at step {rows[-1]['step']} (depth {r['layer_depth']}), layer "
            f"`model/{r['layer']}` {r['layer_shape']}: load_tensor {r['t_layer'] * 1e3:.1f} ms, "
            f"128 rows {r['t_rows'] * 1e3:.1f} ms, vs torch.load of the whole .pt {r['t_pt_layer'] * 1e3:.1f} ms",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", nargs="+", default=["scratch", "scratch-bf16"])
    parser.add_argument("--small", action="store_true", help="tiny series, smoke test")
    parser.add_argument("--keyframe-every", type=int, nargs="+", default=[16])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", action="store_true",
                        help="only the store-overhead table: codec vs store at every thread count")
    parser.add_argument("--depth", type=int, default=4, help="--threads: delta steps after the keyframe")
    args = parser.parse_args(argv)
    if args.threads:
        from bench import store_threads
        for name in args.series:
            store_threads.main(name, args.depth, f"python bench/bench_store.py {' '.join(sys.argv[1:])}", args.reps)
        return 0
    args.load_before = os.getloadavg()[0]
    work = HERE / ".cache" / "store-bench"
    work.mkdir(parents=True, exist_ok=True)
    results = [bench_series(n, args.small, k, args.reps, work) for n in args.series for k in args.keyframe_every]
    text = report(results, args)
    out = HERE / ("store_results-small.md" if args.small else "store_results.md")
    from bench.bench_codec import _kept_sections  # other scripts' sections of the same file
    out.write_text(text + _kept_sections(out))
    print(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
