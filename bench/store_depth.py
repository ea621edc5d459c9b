"""Restore time against chain depth, and what the keyframe interval trades for it.

For one series (bench/series.py) and each keyframe interval K, every checkpoint is saved
into a fresh CheckpointStore(keyframe_every=K), then every step is loaded once from a
fresh store object: store size, mean and worst restore time, and the restore time at each
chain depth (depth d decodes d + 1 steps of every chunk). Same process, same data, in turn.

    python bench/store_depth.py [--series scratch] [--keyframe-every 1 2 4 8 16] [--workers N]

Writes the `store_depth-SERIES` section of bench/store_results.md.
"""
from __future__ import annotations

import argparse
import os
import re
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


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def one_interval(states: list, k: int, workers: int | None, work: Path) -> dict:
    """Save every state with keyframe_every=k, then restore every step once."""
    path = work / f"depth-k{k}.tpde"
    shutil.rmtree(path, ignore_errors=True)
    store = CheckpointStore(path, mode="w", keyframe_every=k, workers=workers, progress=False)
    t_save = []
    for step, s in enumerate(states):
        t = time.perf_counter()
        store.save(step, s)
        t_save.append(time.perf_counter() - t)
    depths = [store.info(step).depth for step in range(len(states))]
    store.close()
    t_load = []
    for step in range(len(states)):
        t = time.perf_counter()
        CheckpointStore(path, mode="r", workers=workers, progress=False).load(step)
        t_load.append(time.perf_counter() - t)
    return dict(k=k, size=dir_bytes(path), t_save=t_save, t_load=t_load, depths=depths)


def report(rows: list[dict], raw: int, series: str, command: str, load: tuple[float, float]) -> str:
    """The `store_depth` section."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    n = len(rows[0]["t_load"])
    lines = [
        f"<!-- store_depth-{series} -->",
        f"## Restore time vs chain depth and keyframe interval ({series}, {n} steps)",
        "",
        f"- commit {commit} · `{command}` · {os.cpu_count()} cores · load average (1 min) before / after "
        f"{load[0]:.2f} / {load[1]:.2f} (a shared machine: times are noisy, sizes exact)",
        f"- {raw / 1e6:.1f} MB of tensors a step; every step restored once from a fresh store object",
        "",
        "| keyframe_every | store MB | vs K=1 | mean save s | mean restore s | worst restore s | worst depth |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = next((r["size"] for r in rows if r["k"] == 1), rows[0]["size"])
    for r in rows:
        worst = max(range(n), key=lambda i: r["t_load"][i])
        lines.append(
            f"| {r['k']} | {r['size'] / 1e6:.1f} | {r['size'] / base:.3f} | {sum(r['t_save']) / n:.3f} | "
            f"{sum(r['t_load']) / n:.3f} | {r['t_load'][worst]:.3f} | {r['depths'][worst]} |")
    deepest = max(rows, key=lambda r: max(r["depths"]))
    lines += ["", f"Restore time by chain depth (keyframe_every={deepest['k']}):", "",
              "| depth | " + " | ".join(str(d) for d in deepest["depths"]) + " |",
              "|---|" + "---:|" * n,
              "| restore s | " + " | ".join(f"{t:.3f}" for t in deepest["t_load"]) + " |",
              f"<!-- /store_depth-{series} -->"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write its section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", default="scratch")
    p.add_argument("--keyframe-every", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    states = [torch.load(x, weights_only=True) for x in S.make_series(args.series)]
    raw = sum(t.numel() * t.element_size() for t in _tensors(states[-1]))
    work = HERE / ".cache" / "store-bench"
    work.mkdir(parents=True, exist_ok=True)
    rows = [one_interval(states, k, args.workers, work) for k in args.keyframe_every]
    text = report(rows, raw, args.series, f"python bench/store_depth.py {' '.join(sys.argv[1:])}".strip(),
                  (load_before, os.getloadavg()[0]))
    out = HERE / "store_results.md"
    old = out.read_text() if out.exists() else ""
    tag = re.escape(f"store_depth-{args.series}")
    pattern = re.compile(rf"<!-- {tag} -->\n.*?<!-- /{tag} -->\n?", re.S)
    out.write_text(pattern.sub(lambda _m: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text)
    print(text)
    return 0


def _tensors(state: object) -> list:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in _tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in _tensors(v)]
    return []


if __name__ == "__main__":
    sys.exit(main())
