"""The TPDE threshold recipe at equal error: how far does thresholding without error
feedback get when its thresholds are tied to tpde's bounds instead of the published 1e-3?

The published recipe (bench/bench_lossy.py, threshold 1e-3 on every raw delta) is
degenerate on the fine-tuning series: at lr 3e-5 almost no delta reaches 1e-3, so it
stores next to nothing (519x) while its errors reach 8-1.5e5x the reference bounds and a
resumed run diverges. This script gives the recipe per-kind thresholds, a fraction f of
the reference bounds (weights 0.1 x RMS, exp_avg 0.2 x RMS at the keyframe; exp_avg_sq
0.3 x |previous value|, relative), and sweeps f. Without error feedback the dropped
deltas add up along the chain, so the recipe stays within the bounds only for small f;
the table gives, per series, its ratio and max error / bound at each f, and the largest f
that keeps every restored value of every save within the bounds. tpde's lossy chain at
the same bounds (bench/lossy_results.md) is the comparison.

    python bench/recipe_sweep.py          # both fp32 series, ~2 min
    python bench/recipe_sweep.py --small  # tiny series, smoke test

Writes the "recipe_sweep" section of bench/lossy_results.md (not with --small).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import series as S  # noqa: E402
from bench.bench_codec import _cpu_model, _git_commit  # noqa: E402
from bench.bench_lossy import (  # noqa: E402
    ALL_KINDS,
    KINDS,
    REF_BOUNDS,
    _ratio,
    chunks_of,
    rms,
    threshold_recipe,
    write_section,
)

FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01)


def thresholds(rms_kf: dict, f: float):
    """Per-chunk thresholds at fraction f of the reference bounds."""
    def thr(kind, key, prev):
        if kind in ("weights", "exp_avg"):
            return f * REF_BOUNDS[kind] * rms_kf[key]
        if kind == "exp_avg_sq":
            return f * REF_BOUNDS[kind] * np.abs(prev.astype(np.float32))
        return 0.0  # step counters: every change kept
    return thr


def sweep(series) -> list[dict]:
    rms_kf = {key: rms(c) for key, _, c in chunks_of(series[0][1])}
    rows = []
    for f in FRACTIONS:
        r = threshold_recipe(series, thresholds(rms_kf, f))
        k = r["kinds"]
        rows.append({"f": f, "ratio": {kind: _ratio(k, [kind]) for kind in KINDS},
                     "overall": _ratio(k, ALL_KINDS),
                     "max_err": {kind: k[kind]["max_err_over_ref"] for kind in KINDS}})
    return rows


def render(res: dict, meta: dict) -> str:
    L = ["## Threshold recipe at equal error (`bench/recipe_sweep.py`)", "",
         f"- date {meta['date']}, commit {meta['commit']}, {meta['cpu']}; run `{meta['cmd']}` in {meta['secs']:.0f} s",
         "- thresholds = f x the reference bounds (weights 0.1 x RMS, exp_avg 0.2 x RMS at the keyframe, "
         "exp_avg_sq 0.3 x |previous value|); no error feedback; ratio on delta saves; max err / bound "
         "against the reference bounds over every restored save (<= 1: within tpde's bounds at scale 1)", "",
         "| series | f | ratio (weights / exp_avg / exp_avg_sq / overall) | max err / bound (w / m / v) "
         "| within bounds |",
         "|---|---|---|---|---|"]
    for name, rows in res.items():
        for r in rows:
            ok = all(v <= 1.0 for v in r["max_err"].values())
            L.append(f"| {name} | {r['f']:g} | " + " / ".join(f"{r['ratio'][k]:.2f}" for k in KINDS)
                     + f" / **{r['overall']:.2f}** | " + " / ".join(f"{r['max_err'][k]:.3g}" for k in KINDS)
                     + f" | {'yes' if ok else 'no'} |")
    L.append("")
    for name, rows in res.items():
        ok = [r for r in rows if all(v <= 1.0 for v in r["max_err"].values())]
        best = max(ok, key=lambda r: r["f"]) if ok else None
        L.append(f"- {name}: " + (f"largest f within the bounds: {best['f']:g}, ratio {best['overall']:.2f}"
                                  if best else "no f of the sweep stays within the bounds"))
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny series (smoke test)")
    args = ap.parse_args(argv)
    t0 = time.time()
    res = {name: sweep(S.load_series(name, small=args.small)) for name in S.SERIES}
    meta = {"date": time.strftime("%Y-%m-%d"), "commit": _git_commit(), "cpu": _cpu_model(),
            "cmd": "python bench/recipe_sweep.py" + (" --small" if args.small else ""), "secs": time.time() - t0}
    body = render(res, meta)
    print(body)
    if not args.small:
        write_section(HERE / "lossy_results.md", "recipe_sweep", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
