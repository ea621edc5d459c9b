"""Pack the bench series with two builds of tpde and compare the stores byte for byte.

Issue 12 moved the Python package into folders; the stores it writes must not change.
This script packs every checkpoint of the bench series (bench/series.py) with an old
build and with the current one, under several store settings, and compares every file of
the two trees (chunks, `.zarray`, manifests, commit markers, root settings). Wall-clock
times in the root settings and markers, and the version string in the root settings and
manifests, are pinned in the packing processes (`time.time` returns a constant,
`tpde._core.__version__` is replaced), so every file must match exactly.

    git worktree add /work/wt/old15 15bba7f   # the old code, built in its own venv:
    python -m venv --system-site-packages /tmp/old && /tmp/old/bin/pip install --no-build-isolation -e /work/wt/old15
    python bench/check_identical.py --old-python /tmp/old/bin/python          # small series (a minute)
    python bench/check_identical.py --old-python /tmp/old/bin/python --full   # full-size series

Since store format 4 the current build bundles small arrays by default
(docs/store-format.md section 13); the script packs with `bundle_below=0` where the build
has it, so the layouts compare file for file (the chunk bytes are the same either way); the root
settings then differ by their `bundle_below` field, and only by it.

Exit status 0 when every file is identical; prints the counts and the first differences.
Series are cached under bench/.cache (series-small / series); stores go to --out.
"""

from __future__ import annotations

import argparse
import filecmp
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERIES = ("scratch", "finetune", "scratch-8k", "finetune-8k")
PINNED_TIME = 1_750_000_000.0
PINNED_VERSION = "0.0.0-pinned"

# name -> CheckpointStore settings and save arguments; "bound" is built in the worker
CONFIGS = {
    "lossless": {"store": {"keyframe_every": 3, "chunk_elements": 4096}, "save": {}},
    "lossless-k16": {"store": {"keyframe_every": 16}, "save": {}},
    "lossy": {"store": {"keyframe_every": 3, "chunk_elements": 4096}, "save": {"bound": "adam"}},
    "lossy-rms": {"store": {"keyframe_every": 4, "chunk_elements": 2048}, "save": {"bound": "rms"}},
    "cross-state": {"store": {"keyframe_every": 4, "chunk_elements": 4096}, "save": {"cross_state": True}},
    "cross-state-lossy": {"store": {"keyframe_every": 4, "chunk_elements": 4096},
                          "save": {"cross_state": True, "bound": "adam"}},
    "async": {"store": {"keyframe_every": 3, "chunk_elements": 8192}, "save": {"async": True}},
}


def pack_worker(jobs_file: Path) -> None:
    """Pack the listed series (run in the interpreter of the build under test)."""
    time.time = lambda: PINNED_TIME  # root settings and commit markers record time.time()
    import torch

    from tpde import _core
    _core.__version__ = PINNED_VERSION  # the store reads it at each save: a version bump is no difference
    from tpde import ErrorBounds, abs_bound, adam_error_bounds, log_bound, rms_bound
    from tpde.store import CheckpointStore

    bounds = {
        "adam": adam_error_bounds(abs_error=1e-4, rel_error=0.05),
        "rms": ErrorBounds(weights=rms_bound(0.05), exp_avg=abs_bound(1e-5), exp_avg_sq=log_bound(0.1)),
    }
    for job in json.loads(jobs_file.read_text()):
        config = CONFIGS[job["config"]]
        save = dict(config["save"])
        use_async = save.pop("async", False)
        if "bound" in save:
            save["error_bound"] = bounds[save.pop("bound")]
        settings = dict(config["store"])
        if "bundle_below" in inspect.signature(CheckpointStore).parameters:
            settings["bundle_below"] = 0  # store format 4 bundles small arrays; the old build cannot
        store = CheckpointStore(job["out"], mode="w-", workers=2, progress=False, **settings)
        for step, path in enumerate(job["files"]):
            state = torch.load(path, map_location="cpu", weights_only=True)
            if use_async:
                store.save_async(step, state, meta={"source": Path(path).name}, **save)
            else:
                store.save(step, state, meta={"source": Path(path).name}, **save)
        store.close()


def make_jobs(series_files: dict[str, list[str]], out: Path) -> list[dict]:
    """One job per (config, series): the store path and the checkpoint files."""
    return [
        {"config": c, "series": s, "files": files, "out": str(out / c / s)}
        for c in CONFIGS for s, files in series_files.items()
    ]


def run_side(python: str, jobs: list[dict], out: Path) -> float:
    """Pack `jobs` with `python`; returns the seconds it took."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    jobs_file = out / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    env = dict(os.environ, PYTHONPATH="")  # each interpreter imports its own tpde
    start = time.perf_counter()
    subprocess.run([python, str(Path(__file__).resolve()), "--worker", str(jobs_file)], check=True, env=env,
                   cwd=out)
    jobs_file.unlink()
    return time.perf_counter() - start


def compare(old: Path, new: Path) -> tuple[int, int, list[str]]:
    """(files, chunk files, differences) of two store trees."""
    def listing(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    a, b = listing(old), listing(new)
    problems = [f"only in old: {n}" for n in sorted(a - b)] + [f"only in new: {n}" for n in sorted(b - a)]
    common = sorted(a & b)
    problems += [f"differs: {n}" for n in common if not filecmp.cmp(old / n, new / n, shallow=False)]
    chunks = sum(1 for n in common if "/steps/" in f"/{n}" and not Path(n).name.startswith("."))
    return len(common), chunks, problems


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-python", help="interpreter with the old tpde build installed")
    parser.add_argument("--new-python", default=sys.executable, help="interpreter with the new build (this one)")
    parser.add_argument("--full", action="store_true", help="full-size series (default: small ones)")
    parser.add_argument("--series", nargs="+", default=list(SERIES), choices=SERIES)
    parser.add_argument("--out", default=str(HERE / ".cache" / "identical"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        pack_worker(Path(args.worker))
        return 0
    if not args.old_python:
        parser.error("--old-python is required")
    sys.path.insert(0, str(HERE.parent))
    from bench import series as S

    series_files = {}
    for name in args.series:
        for variant in (name, f"{name}-bf16"):
            paths = S.make_series(variant, small=not args.full, log=lambda *a: None)
            series_files[variant] = [str(p) for p in paths]
    out = Path(args.out).resolve()
    jobs_old = make_jobs(series_files, out / "old")
    jobs_new = make_jobs(series_files, out / "new")
    t_old = run_side(args.old_python, jobs_old, out / "old")
    t_new = run_side(args.new_python, jobs_new, out / "new")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    files, chunks, problems = compare(out / "old", out / "new")
    load = os.getloadavg()
    print(f"commit {commit} · {' '.join(sys.argv)} · load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"{len(series_files)} series x {len(CONFIGS)} store settings, "
          f"{sum(len(f) for f in series_files.values()) * len(CONFIGS)} steps packed "
          f"(old {t_old:.0f} s, new {t_new:.0f} s)")
    print(f"{files - len([p for p in problems if p.startswith('differs')])} of {files} files identical "
          f"({chunks} chunks); {len(problems)} differences")
    for p in problems[:20]:
        print("  " + p)
    return 0 if not problems and files else 1


if __name__ == "__main__":
    sys.exit(main())
