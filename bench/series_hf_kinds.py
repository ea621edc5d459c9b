"""Where the int-diff baseline stands against tpde's deltas on the MiniLM fine-tune, per
kind of tensor (issue 16, fine-tuning ratio).

Reads the checkpoint folders that bench/series_hf.py makes (bench/.cache/series-hf/), and
for every pair (t-1, t) that has a t-2, cuts each fp32 tensor of step t into chunks of at
most 1 Mi elements and codes them as

  d2  int-diff + byte groups + zstd-3 (bench/bench_codec.py's d2) against step t-1
  f   tpde.encode(x, reference=t-1)
  f2  tpde.encode(x, reference=t-1, prev_reference=t-2)

Kinds: embedding matrices, other model weights, Adam's exp_avg and exp_avg_sq. Reported
per kind: the raw MB, each method's ratio, tpde's gain over d2, and the share of positions
whose bits changed since t-1. Sizes are exact; no timing.

    python bench/series_hf.py --no-write      # makes the series if it is missing
    python bench/series_hf_kinds.py           # prints the table, writes bench/finetune_kinds.md
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import numpy as np
import torch
import zstandard
from safetensors.numpy import load_file

import tpde

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench.sections import head_commit  # noqa: E402

SERIES = HERE / ".cache" / "series-hf" / "minilm-40-5"
CHUNK = 1 << 20


def tensors(folder: Path) -> dict[str, np.ndarray]:
    """The model's and the optimizer's tensors of one checkpoint folder, by a flat name."""
    out = {f"model/{k}": v for k, v in load_file(folder / "model.safetensors").items()}
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    for pid, state in optimizer["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v) and v.numel() > 1:
                out[f"optimizer/{pid}/{k}"] = v.numpy()
    return out


def kind(name: str) -> str:
    """embedding, weight, exp_avg or exp_avg_sq."""
    if name.startswith("optimizer/"):
        return name.rsplit("/", 1)[-1]
    return "embedding" if "embeddings" in name else "weight"


def int_diff(x: np.ndarray, ref: np.ndarray, zc) -> int:
    """Bytes of d2: zigzag(bits(x) - bits(ref)) split into byte planes, zstd-3."""
    d = x.view(np.uint32).astype(np.int64) - ref.view(np.uint32).astype(np.int64)
    z = ((d << 1) ^ (d >> 63)).astype(np.uint64).astype(np.uint32)
    return len(zc.compress(z.view(np.uint8).reshape(-1, 4).T.copy().tobytes()))


def main() -> int:
    """Print the per-kind table."""
    folders = sorted(SERIES.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if len(folders) < 3:
        sys.exit(f"needs the series in {SERIES}: python bench/series_hf.py --no-write")
    states = [tensors(f) for f in folders]
    zc = zstandard.ZstdCompressor(level=3)
    totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for t in range(2, len(states)):
        for name, x in states[t].items():
            if x.dtype != np.float32:
                continue
            row = totals[kind(name)]
            flat, ref, ctx = (s[name].reshape(-1) for s in (states[t], states[t - 1], states[t - 2]))
            for i in range(0, flat.size, CHUNK):
                a, b, c = flat[i:i + CHUNK], ref[i:i + CHUNK], ctx[i:i + CHUNK]
                row["raw"] += a.nbytes
                row["d2"] += int_diff(a, b, zc)
                row["f"] += len(tpde.encode(a, reference=b))
                row["f2"] += len(tpde.encode(a, reference=b, prev_reference=c))
                row["changed"] += int(np.count_nonzero(a.view(np.uint32) != b.view(np.uint32)))
                row["n"] += a.size
    totals["all"] = sum(totals.values(), collections.Counter())
    lines = [
        "# Int-diff against tpde's deltas on the MiniLM fine-tune, per kind (bench/series_hf_kinds.py)",
        "",
        f"- commit {head_commit()} · `python bench/series_hf_kinds.py` · {len(states) - 2} pairs with a t-2 of "
        f"bench/series_hf.py's series, fp32 tensors, chunks of {CHUNK} elements; sizes are exact",
        "- d2: int-diff + byte groups + zstd-3 against t-1; f: tpde delta against t-1; f2: tpde delta against "
        "t-1 with t-2 as context; changed: positions whose bits differ from t-1",
        "",
        "| kind | raw MB | d2 | f (vs d2) | f2 (vs d2) | changed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in totals.items():
        lines.append(f"| {name} | {r['raw'] / 1e6:.1f} | {r['raw'] / r['d2']:.3f} | {r['raw'] / r['f']:.3f} "
                     f"({r['d2'] / r['f'] - 1:+.1%}) | {r['raw'] / r['f2']:.3f} ({r['d2'] / r['f2'] - 1:+.1%}) | "
                     f"{r['changed'] / r['n']:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (HERE / "finetune_kinds.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
