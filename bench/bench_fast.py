"""Fast level benchmark: tpde ``level="fast"`` against ZipNN 0.5.4, zstd-3 and tpde's default
level, one thread each, in this one process, on the bench series' fp32 and bf16 steps.

For each timed pair (t-1, t) of each series, every tensor of step t is cut into the chunks
of bench/bench_codec.py and coded by

  a  zstd-3               the raw bytes of step t
  z  ZipNN 0.5.4          step t alone (ZipNN has no delta mode; threads=1)
  e  tpde                 step t alone, default level (a keyframe)
  g  tpde fast            step t alone, level="fast" (a keyframe)
  f  tpde delta           step t against t-1, default level
  h  tpde fast delta      step t against t-1, level="fast"

Ratio = raw / compressed bytes; MB/s = raw bytes per CPU-second of this process, best of
--reps (CPU time keeps the other jobs of a shared machine out; it does not keep out their
effect on caches and memory bandwidth: compare the ratios of speeds). The loaded series
is frozen out of Python's cyclic garbage collector while timing (gc.freeze). Every round trip is
checked bit-exactly. Writes the "Fast level" section of bench/results.md (between
``<!-- fast-level -->`` markers, which bench_codec.py keeps when it rewrites the file).

    python bench/bench_fast.py                       # scratch and scratch-bf16, 3 pairs each
    python bench/bench_fast.py --series scratch finetune scratch-bf16 finetune-bf16 --pairs 2
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import bench_codec as B  # noqa: E402
from bench import series as S  # noqa: E402

KEYS = ("a", "z", "e", "g", "f", "h")
TAG = "fast-level"


def run(series_names, *, pairs=3, reps=3, small=False, log=print) -> dict:
    """{series: {method: aggregate over the timed pairs}} plus the methods' labels."""
    methods = [m for m in B.make_methods(B.TPDE is not None) if m.key in KEYS]
    out = {}
    for sname in series_names:
        data = S.load_series(sname, None, small=small)
        bf16 = bool(data[0][1].bf16)
        chunks = [(step, B.build_chunks(t)) for step, t in data]
        # The loaded series is many Python objects: without this, the cyclic collector's
        # full passes (triggered by every codec's allocations) cost up to a fifth of the
        # measured CPU time, the same for every method.
        gc.collect()
        gc.freeze()
        n = len(chunks) - 1
        idx = sorted({int(v) for v in np.linspace(1, n, min(pairs, n)).round()})
        results = []
        for i in idx:
            t0 = time.perf_counter()
            res, _ = B.bench_pair(methods, chunks[i][1], chunks[i - 1][1], None, bf16, timed=True, reps=reps)
            results.append({"methods": res})
            log(f"[{sname}] pair {chunks[i - 1][0]}->{chunks[i][0]} ({time.perf_counter() - t0:.1f} s)")
        out[sname] = {"raw": sum(c.nbytes for cs in chunks[0][1].values() for _, c in cs),
                      "pairs": [f"{chunks[i - 1][0]}->{chunks[i][0]}" for i in idx],
                      "agg": {m.key: {k: B._agg(results, m.key, k) for k in B.KINDS + ("overall",)}
                              for m in methods}}
        del data, chunks
        gc.unfreeze()
    return {"series": out, "labels": {m.key: m.label for m in methods}}


def _speed(a, key):
    return f"{a[key]:.0f}" if a.get(key) else "n/a"


def markdown(res: dict, command: str, load0: str, load1: str, seconds: float) -> str:
    labels = res["labels"]
    L = [f"<!-- {TAG} -->", "## Fast level", ""]
    L.append(f"- date: {_dt.datetime.now():%Y-%m-%d %H:%M}; commit: {B._git_commit()}; CPU: {B._cpu_model()} "
             f"({os.cpu_count()} logical cores); every codec on one thread")
    L.append(f"- run: `{command}` ({seconds:.0f} s); load average at start / end: {load0} / {load1} "
             "(other jobs share the cores: compare ratios of speeds, not absolute MB/s)")
    L.append("- keyframe rows code step t alone, delta rows step t against t-1; ratio over all tensors "
             "(weights, exp_avg, exp_avg_sq, counters); MB/s = raw bytes per CPU-second of this process, "
             "best of the reps; x ZipNN = speed over ZipNN's in the same run")
    L.append("")
    for sname, sr in res["series"].items():
        L += [f"### {B.SERIES_TITLES.get(sname, sname)} ({sr['raw'] / 1e6:.1f} MB per step; pairs "
              f"{', '.join(sr['pairs'])})", "",
              "| method | ratio | weights | exp_avg | exp_avg_sq | encode MB/s | decode MB/s | "
              "encode x ZipNN | decode x ZipNN |", "|---|---|---|---|---|---|---|---|---|"]
        z = sr["agg"].get("z", {}).get("overall", {})
        for key in KEYS:
            if key not in sr["agg"]:
                continue
            a = sr["agg"][key]["overall"]
            if a["ratio"] is None:
                L.append(f"| {key} {labels[key]} | {a.get('err') or a.get('na') or 'n/a'} |||||||")
                continue
            rel = [f"{a[k] / z[k]:.2f}" if a.get(k) and z.get(k) else "n/a" for k in ("enc", "dec")]
            kinds = [B._fmt(sr["agg"][key][k]["ratio"], 3) for k in B.KINDS]
            L.append(f"| {key} {labels[key]} | {a['ratio']:.3f} | " + " | ".join(kinds) +
                     f" | {_speed(a, 'enc')} | {_speed(a, 'dec')} | {rel[0]} | {rel[1]} |")
        L.append("")
    L += ["Targets (issue 16): fast delta ratio >= ZipNN's on the same data, >= 1,000 MB/s encode and "
          ">= 1,500 MB/s decode per core on fp32 and bf16 deltas.", "",
          "| series | fast delta ratio / ZipNN ratio | fast delta encode MB/s | decode MB/s |",
          "|---|---|---|---|"]
    for sname, sr in res["series"].items():
        h, z = sr["agg"].get("h", {}).get("overall"), sr["agg"].get("z", {}).get("overall")
        if h and z and h["ratio"] and z["ratio"]:
            L.append(f"| {B.SERIES_TITLES.get(sname, sname)} | {h['ratio']:.3f} / {z['ratio']:.3f} "
                     f"({100 * (h['ratio'] / z['ratio'] - 1):+.1f} %) | {_speed(h, 'enc')} | {_speed(h, 'dec')} |")
    L.append(f"<!-- /{TAG} -->")
    return "\n".join(L) + "\n"


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"<!-- {TAG} -->\n.*?<!-- /{TAG} -->\n?", flags=re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="tpde fast level vs ZipNN, zstd-3 and the default level")
    ap.add_argument("--series", nargs="*", default=["scratch", "scratch-bf16"])
    ap.add_argument("--pairs", type=int, default=3, help="timed pairs per series")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--small", action="store_true", help="tiny series (smoke test); writes under bench/.cache")
    ap.add_argument("--out", default=None, help="markdown file (default bench/results.md)")
    a = ap.parse_args(argv)
    out = Path(a.out or (HERE / ".cache" / "results-fast-small.md" if a.small else HERE / "results.md"))
    load0 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    t0 = time.perf_counter()
    res = run(a.series, pairs=a.pairs, reps=a.reps, small=a.small)
    load1 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    command = "python bench/bench_fast.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(res, command.strip(), load0, load1, time.perf_counter() - t0)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_section(out, text)
    print(text)
    bad = [(s, k) for s, sr in res["series"].items() for k, a in sr["agg"].items() if not a["overall"]["ok"]]
    if bad:
        print(f"ROUND TRIP MISMATCH: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
