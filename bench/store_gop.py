"""Codec estimate of a two-level reference structure (video-style GOP) against plain chains.

On one series (bench/series.py), every step k >= 1 is coded with tpde.encode twice: as a
delta against step k-1 (with k-2 as prev_reference, as the store codes it), and as a
delta against the keyframe (step 0). From those sizes, per structure, over the series:

  chain K        a keyframe every K saves, deltas against the previous save (the store now)
  GOP M          one keyframe; every M-th save a delta against the keyframe (an anchor),
                 the saves between against the previous save

the stored bytes and the decodes a restore needs (depth + 1 per chunk: mean and worst).
Keyframe sizes in the K rows are the step's standalone code. Sizes are exact; restore
time is about (decodes) x (one decode of the state).

    python bench/store_gop.py [--series scratch] [--threads N]

Writes the `store_gop-SERIES` section of bench/store_results.md.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import tpde  # noqa: E402
from bench import series as S  # noqa: E402
from bench.store_threads import chunks, flat_arrays  # noqa: E402


def coded_bytes(pool, cur, ref=None, ctx=None) -> int:
    """Total bytes of every chunk of `cur` coded against ref (and ctx)."""
    def one(i: int) -> int:
        data, dtype = cur[i]
        return len(tpde.encode(data, reference=None if ref is None else ref[i][0],
                               prev_reference=None if ctx is None else ctx[i][0], dtype=dtype))
    return sum(pool.map(one, range(len(cur))))


def structures(key: list[int], prev: list[int], against_key: list[int]) -> list[tuple[str, int, list[int]]]:
    """(name, stored bytes, decodes per step) of each structure; index 0 is the first save."""
    n, out = len(key), []
    for k in (1, 2, 4, 8, 16):
        size = sum(key[i] if i % k == 0 else prev[i] for i in range(n))
        out.append((f"chain K={k}", size, [i % k + 1 for i in range(n)]))
    for m in (2, 3, 4):
        size, decodes = 0, []
        for i in range(n):
            if i == 0:
                size, d = size + key[0], 1
            elif i % m == 0:
                size, d = size + against_key[i], 2
            else:
                size, d = size + prev[i], (2 if i >= m else 1) + i % m
            decodes.append(d)
        out.append((f"GOP M={m} (one keyframe)", size, decodes))
    return out


def main(argv: list[str] | None = None) -> int:
    """Code the series both ways and write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", default="scratch")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    bf16 = args.series.endswith("-bf16")
    states = [chunks(flat_arrays(torch.load(x, weights_only=True)), bf16) for x in S.make_series(args.series)]
    with ThreadPoolExecutor(args.threads) as pool:
        key = [coded_bytes(pool, s) for s in states]
        prev = [key[0]] + [coded_bytes(pool, states[i], states[i - 1], states[i - 2] if i >= 2 else None)
                           for i in range(1, len(states))]
        against_key = [key[0]] + [coded_bytes(pool, states[i], states[0]) for i in range(1, len(states))]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    n = len(states)
    tag = f"store_gop-{args.series}"
    lines = [f"<!-- {tag} -->", f"## Two-level reference structure, codec estimate ({args.series}, {n} saves)", "",
             f"- commit {commit} · `python bench/store_gop.py {' '.join(sys.argv[1:])}` · load average (1 min) "
             f"before / after {load_before:.2f} / {os.getloadavg()[0]:.2f} (sizes are exact)",
             "- per save, MB: standalone " + ", ".join(f"{b / 1e6:.2f}" for b in key),
             "- against the previous save: " + ", ".join(f"{b / 1e6:.2f}" for b in prev[1:]),
             "- against the first save (the keyframe): " + ", ".join(f"{b / 1e6:.2f}" for b in against_key[1:]),
             "",
             "| structure | stored MB | vs chain K=16 | mean decodes a restore | worst |",
             "|---|---:|---:|---:|---:|"]
    rows = structures(key, prev, against_key)
    ref = next(s for name, s, _ in rows if name == "chain K=16")
    for name, size, dec in rows:
        lines.append(f"| {name} | {size / 1e6:.1f} | {size / ref:.3f} | {sum(dec) / n:.1f} | {max(dec)} |")
    lines.append(f"<!-- /{tag} -->")
    text = "\n".join(lines) + "\n"
    out = HERE / "store_results.md"
    old = out.read_text() if out.exists() else ""
    pattern = re.compile(rf"<!-- {re.escape(tag)} -->\n.*?<!-- /{re.escape(tag)} -->\n?", re.S)
    out.write_text(pattern.sub(lambda _m: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
