"""What durable commits cost: CheckpointStore.save with and without fsync, same process.

Each checkpoint of a series is saved into two stores, `durable=True` (every chunk, folder,
manifest and marker fsynced in commit order; docs/security.md) and `durable=False`
(scratch runs), alternating which goes first, best of --reps (a rep deletes the step and
saves it again). Both stores are checked to hold the same chunk bytes.

    python bench/store_durability.py                      # bench/.cache/series/scratch
    python bench/store_durability.py --dir PATH_OF_PT_FILES
    python bench/store_durability.py --small              # tiny series (seconds)

Writes its section of bench/store_results.md (between <!-- store_durability --> markers).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
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

TAG = "store_durability"


def save_time(store: CheckpointStore, step: int, state: object, reps: int) -> float:
    """Best time of saving `state` as `step` (deleted again between reps)."""
    best = float("inf")
    for rep in range(reps):
        if rep:
            store.delete(step)
        t = time.perf_counter()
        store.save(step, state)
        best = min(best, time.perf_counter() - t)
    return best


def run(paths: list[Path], reps: int, work: Path) -> list[dict]:
    """Save every checkpoint into a durable and a non-durable store; time both."""
    stores = {}
    for durable in (True, False):
        path = work / f"durable-{durable}.tpde"
        shutil.rmtree(path, ignore_errors=True)
        stores[durable] = CheckpointStore(path, mode="w", durable=durable)
    rows = []
    for i, path in enumerate(paths):
        step = int(re.findall(r"\d+", path.stem)[-1])
        state = torch.load(path, map_location="cpu", weights_only=True)
        order = (True, False) if i % 2 == 0 else (False, True)
        times = {d: save_time(stores[d], step, state, reps) for d in order}
        info = stores[True].info(step)
        files = sum(1 for _ in (work / "durable-True.tpde" / "steps" / str(step)).rglob("*"))
        rows.append(dict(step=step, kind=info.kind, raw=info.raw_bytes, files=files,
                         durable=times[True], scratch=times[False]))
    for s in stores.values():
        s.close()
    a, b = (work / f"durable-{d}.tpde" for d in (True, False))
    same = all((a / p.relative_to(b)).read_bytes() == p.read_bytes()
               for p in (b / "steps").rglob("*") if p.is_file() and p.name != ".zattrs")
    if not same:
        raise SystemExit("the durable and non-durable stores hold different chunk bytes")
    return rows


def report(name: str, rows: list[dict], args: argparse.Namespace, load_before: float) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    n = len(rows)
    d = sum(r["durable"] for r in rows) / n
    s = sum(r["scratch"] for r in rows) / n
    lines = [
        f"<!-- {TAG} -->",
        f"## Durable commits: save time with and without fsync (`bench/store_durability.py`, {name})",
        "",
        f"- {_dt.date.today()}, commit {commit}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, file system of `{args.work}`: `{_fs_type(args.work)}`; "
        f"save best of {args.reps}; load average (1 min) before / after: {load_before:.2f} / "
        f"{os.getloadavg()[0]:.2f} (a shared machine: times are noisy)",
        f"- command: `python bench/store_durability.py {' '.join(sys.argv[1:])}`",
        "",
        "| step | kind | raw MB | files | save durable s | save durable=False s | cost |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['step']} | {r['kind']} | {r['raw'] / 1e6:.1f} | {r['files']} | {r['durable']:.3f} | "
                     f"{r['scratch']:.3f} | {100 * (r['durable'] / r['scratch'] - 1):+.0f} % |")
    lines += ["", f"- mean per step: durable {d:.3f} s, durable=False {s:.3f} s: durability costs "
              f"{100 * (d / s - 1):+.0f} % of the save time here", f"<!-- /{TAG} -->", ""]
    return "\n".join(lines)


def _fs_type(path: Path) -> str:
    out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="scratch")
    parser.add_argument("--dir", type=Path, help="use the .pt files of this folder instead")
    parser.add_argument("--small", action="store_true", help="tiny series, smoke test")
    parser.add_argument("--limit", type=int, default=0, help="only the first N checkpoints")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, default=HERE / ".cache" / "store-durability")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    paths = sorted(args.dir.glob("*.pt")) if args.dir else S.make_series(args.series, small=args.small)
    paths = paths[: args.limit] if args.limit else paths
    args.work.mkdir(parents=True, exist_ok=True)
    rows = run(paths, args.reps, args.work)
    name = f"{args.dir.name if args.dir else args.series}{' (small)' if args.small else ''}"
    text = report(name, rows, args, load_before)
    print(text)
    if not args.small:  # replace this script's section of the file, or append it
        out = HERE / "store_results.md"
        old = out.read_text() if out.exists() else ""
        pattern = re.compile(rf"<!-- {TAG} -->.*?<!-- /{TAG} -->\n?", flags=re.S)
        new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
        out.write_text(new)
        print(f"wrote its section of {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
