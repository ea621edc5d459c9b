"""CheckpointStore with and without `cross_state=True` on the bench series.

For each series (bench/series.py), every checkpoint is saved into two fresh stores, one
plain and one with cross-state prediction (weights against a prediction from the Adam
moments; with lossy moments, exp_avg against a prediction from the weight change; see
docs/store.md), losslessly and at the reference lossy bounds (weights rms:0.1, exp_avg
rms:0.2, exp_avg_sq log:0.3). Reported: ratio of the delta steps (raw tensor bytes /
stored bytes), save time per step, full load of the last step from a fresh store object
(checked bit-exact in the lossless runs, and equal between the lossless runs), and the
partial restore of one layer (the largest 2-D weight) at the last step.

    python bench/store_cross_state.py            # fp32 scratch + finetune, bf16 finetune (~3 min)
    python bench/store_cross_state.py --small    # tiny series, smoke test

Writes the "store_cross_state" section of bench/store_results.md (not with --small).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import tpde  # noqa: E402
from bench import series as S  # noqa: E402
from bench.bench_codec import _cpu_model, _git_commit  # noqa: E402
from bench.bench_lossy import write_section  # noqa: E402
from bench.bench_store import same_bits  # noqa: E402

BOUNDS = tpde.ErrorBounds(weights=tpde.rms_bound(0.1), exp_avg=tpde.rms_bound(0.2), exp_avg_sq=tpde.log_bound(0.3))


def run_store(paths: list[Path], work: Path, *, cross_state: bool, lossy: bool) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    store = tpde.CheckpointStore(work, mode="w")
    save_s, states = 0.0, []
    for p in paths:
        ck = torch.load(p, weights_only=True)
        t = time.perf_counter()
        store.save(int(ck["step"]), ck, cross_state=cross_state, error_bound=BOUNDS if lossy else None)
        save_s += time.perf_counter() - t
        states.append(ck)
    deltas = [store.info(s) for s in store.steps()[1:]]
    last = store.steps()[-1]
    reader = tpde.CheckpointStore(work, mode="r")
    t = time.perf_counter()
    back = reader.load(last)
    load_s = time.perf_counter() - t
    if not lossy:
        assert same_bits(back, states[-1]), "lossless store load is not bit-exact"
    model = states[-1]["model"]
    layer = max((k for k, v in model.items() if v.ndim == 2), key=lambda k: model[k].numel())
    t = time.perf_counter()
    reader.load_tensor(last, f"model/{layer}")
    part_s = time.perf_counter() - t
    return {"ratio": sum(i.raw_bytes for i in deltas) / sum(i.stored_bytes for i in deltas),
            "save_s": save_s / len(paths), "load_s": load_s, "part_s": part_s, "layer": layer,
            "depth": store.info(last).depth, "raw_mb": deltas[0].raw_bytes / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    work = HERE / ".cache" / "store-cross-state"
    rows = []
    for name in ("scratch", "finetune", "finetune-bf16"):
        paths = S.make_series(name, small=args.small)
        for lossy in (False, True):
            r = {cs: run_store(paths, work / f"{name}-{cs}", cross_state=cs, lossy=lossy) for cs in (False, True)}
            rows.append((name, lossy, r))
            print(name, "lossy" if lossy else "lossless", {cs: round(v["ratio"], 4) for cs, v in r.items()}, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    L = ["## Cross-state prediction in the store (`bench/store_cross_state.py`)", "",
         f"- {time.strftime('%Y-%m-%d')}, commit {_git_commit()}, {_cpu_model()}, workers = CPU count (2); "
         f"run `python bench/store_cross_state.py` in {time.time() - t0:.0f} s; "
         "times are wall seconds on a shared machine",
         "- ratio: raw tensor bytes / stored bytes over the delta steps; save: mean per step; load: whole last "
         "step from a fresh store object; layer: `load_tensor` of the largest 2-D weight at the last step "
         f"(depth {rows[0][2][False]['depth']})", "",
         "| series | coding | ratio plain / cross-state (gain) | save s | load s | layer load s |",
         "|---|---|---|---|---|---|"]
    for name, lossy, r in rows:
        a, b = r[False], r[True]
        L.append(f"| {name} ({a['raw_mb']:.1f} MB/step) | {'lossy (reference bounds)' if lossy else 'lossless'} | "
                 f"{a['ratio']:.4f} / {b['ratio']:.4f} ({100 * (b['ratio'] / a['ratio'] - 1):+.2f} %) | "
                 f"{a['save_s']:.2f} / {b['save_s']:.2f} | {a['load_s']:.2f} / {b['load_s']:.2f} | "
                 f"{a['part_s']:.3f} / {b['part_s']:.3f} |")
    body = "\n".join(L) + "\n"
    print(body)
    if not args.small:
        write_section(HERE / "store_results.md", "store_cross_state", body,
                      title="# CheckpointStore vs torch.save / torch.load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
