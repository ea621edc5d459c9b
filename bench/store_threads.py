"""Store overhead, side by side: codec vs CheckpointStore at every thread count, torch beside.

For one series (bench/series.py) and its first `depth + 1` checkpoints (a keyframe, then
`depth` deltas, as `CheckpointStore(keyframe_every=16)` codes them), at every thread count
T from 1 to os.cpu_count(), in one process:

  codec encode   tpde.encode of every chunk (tensors cut in 2**20-element pieces, as the
                 store's default grid does), keyframe then delta against the previous
                 state with the one before as prev_reference, T threads
  store.save     the same states into a fresh CheckpointStore(workers=T)
  codec decode   every chunk decoded along its whole chain (keyframe + `depth` deltas),
                 T threads: what a load of the last step must decode
  store.load     the last step from a fresh store object, workers=T
  torch.save / torch.load of the last state (one .pt file, same disk)

MB/s is raw tensor bytes of the steps saved / time (save), and raw bytes of the last
step x (depth + 1) / time (decode, load), so `store/codec` is the share of the codec's
speed that the store keeps. Peak RSS (VmHWM of /proc/self/status) of a save of the chain, a
`tpde-pack pack` of its files, a load of the last step and torch.load/torch.save of it, each
in its own subprocess.

    python bench/bench_store.py --threads [--series scratch] [--depth 4] [--reps 3]

Writes the `store_threads` section of bench/store_results.md.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

import tpde
from tpde.store import CheckpointStore

HERE = Path(__file__).resolve().parent
CHUNK = 2**20


def flat_arrays(state: object, out: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Every tensor of a nested state as a flat numpy array (bf16 as its uint16 bits)."""
    out = [] if out is None else out
    if isinstance(state, torch.Tensor):
        t = state.detach().reshape(-1)
        out.append(t.view(torch.uint16).numpy() if t.dtype == torch.bfloat16 else t.numpy())
    elif isinstance(state, dict):
        for v in state.values():
            flat_arrays(v, out)
    elif isinstance(state, (list, tuple)):
        for v in state:
            flat_arrays(v, out)
    return out


def chunks(arrays: list[np.ndarray], bf16: bool) -> list[tuple[np.ndarray, str | None]]:
    """The arrays cut in CHUNK-element pieces, with the codec dtype to pass."""
    out = []
    for a in arrays:
        dtype = "bfloat16" if bf16 and a.dtype == np.uint16 else None
        out += [(a[i:i + CHUNK], dtype) for i in range(0, max(a.size, 1), CHUNK) if a.size]
    return out


def codec_encode(states: list[list], threads: int) -> tuple[float, list[list[bytes]]]:
    """Seconds to encode every delta step (not the keyframe), and every step's blobs."""
    blobs, t_delta = [], 0.0
    with ThreadPoolExecutor(threads) as pool:
        for k, cur in enumerate(states):
            ref = states[k - 1] if k >= 1 else None
            ctx = states[k - 2] if k >= 2 else None

            def one(i: int) -> bytes:
                data, dtype = cur[i]
                return tpde.encode(data, reference=None if ref is None else ref[i][0],
                                   prev_reference=None if ctx is None else ctx[i][0], dtype=dtype)

            t = time.perf_counter()
            blobs.append(list(pool.map(one, range(len(cur)))))
            if k:
                t_delta += time.perf_counter() - t
    return t_delta, blobs


def codec_decode_chain(blobs: list[list[bytes]], threads: int) -> float:
    """Seconds to decode every chunk along its whole chain."""
    def chain(i: int) -> np.ndarray:
        ref = ctx = None
        for step in blobs:
            ref, ctx = tpde.decode(step[i], reference=ref, prev_reference=ctx), ref
        return ref

    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(chain, range(len(blobs[0]))))
    return time.perf_counter() - t


_CHILD = r"""
import json, sys, time, torch
from tpde.store import CheckpointStore
def status(key):  # KiB; VmHWM is per address space, so exec resets it (ru_maxrss survives exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
what, store_path, pt, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
before = status("VmRSS")
t = time.perf_counter()
if what == "save":
    s = CheckpointStore(store_path, mode="w", keyframe_every=16)
    for k, p in enumerate(paths):
        state = torch.load(p, weights_only=True)
        s.save(k, state)
        del state
elif what == "pack":
    import contextlib, io
    from tpde.cli.main import main
    with contextlib.redirect_stdout(io.StringIO()):
        main(["pack", *paths, "-o", store_path])
elif what == "load":
    x = CheckpointStore(store_path, mode="r").load(len(paths) - 1)
elif what == "torch.load":
    x = torch.load(pt, weights_only=True)
elif what == "torch.save":
    state = torch.load(paths[-1], weights_only=True)
    torch.save(state, pt)
print(json.dumps(dict(before=before, peak=status("VmHWM"),
                      t=time.perf_counter() - t)))
"""


def peak_rss(what: str, store_path: Path, pt: Path, paths: list[Path]) -> dict:
    """Run one job in a fresh interpreter; its peak RSS before and after the job (KiB)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, what, str(store_path), str(pt), *map(str, paths)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(series: str, depth: int, work: Path, repeat: int = 1) -> dict:
    """All measurements of the module docstring for one series."""
    from bench import series as S
    paths = S.make_series(series)[:depth + 1]
    bf16 = series.endswith("-bf16")
    torch_states = [torch.load(p, weights_only=True) for p in paths]
    states = [chunks(flat_arrays(s), bf16) for s in torch_states]
    raw_step = sum(a.nbytes for a, _ in states[-1])
    # every store of the run in a folder of its own, deleted at the end: files deleted just
    # before a save slow down creating new ones on some file systems (ext4 skips inodes
    # deleted in the last seconds), so no measured save follows a deletion of the bench's own
    folder = work / f"threads-{series}"
    shutil.rmtree(folder, ignore_errors=True)  # leftovers of an interrupted run
    folder.mkdir(parents=True)
    pt = folder / "state.pt"
    try:
        t0 = time.perf_counter()
        torch.save(torch_states[-1], pt)
        t_tsave = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch.load(pt, weights_only=True)
        t_tload = time.perf_counter() - t0
        rows = []
        for threads in range(1, (os.cpu_count() or 1) + 1):
            best = dict(enc=0.0, save=0.0, dec=0.0, load=0.0, t_save=float("inf"), t_load=float("inf"))
            for rep in range(repeat):  # best of `repeat`: codec and store alternate
                t_enc, blobs = codec_encode(states, threads)
                t_dec = codec_decode_chain(blobs, threads)
                store_path = folder / f"t{threads}-{rep}.tpde"
                store = CheckpointStore(store_path, mode="w", keyframe_every=16, workers=threads, progress=False)
                t_save = 0.0
                for k, s in enumerate(torch_states):
                    t0 = time.perf_counter()
                    store.save(k, s)
                    if k:
                        t_save += time.perf_counter() - t0
                store.close()
                t0 = time.perf_counter()
                CheckpointStore(store_path, mode="r", workers=threads, progress=False).load(depth)
                t_load = time.perf_counter() - t0
                for key, value in (("enc", raw_step * depth / t_enc), ("save", raw_step * depth / t_save),
                                   ("dec", raw_step * (depth + 1) / t_dec),
                                   ("load", raw_step * (depth + 1) / t_load)):
                    best[key] = max(best[key], value)
                best["t_save"] = min(best["t_save"], t_save / depth)
                best["t_load"] = min(best["t_load"], t_load)
            rows.append(dict(threads=threads, **best))
        rss = {w: peak_rss(w, folder / (f"rss-{w}.tpde" if w in ("save", "pack") else "t1-0.tpde"), pt, paths)
               for w in ("save", "pack", "load", "torch.save", "torch.load")}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return dict(series=series, depth=depth, raw_step=raw_step, rows=rows, t_tsave=t_tsave, t_tload=t_tload,
                rss=rss, load_avg=os.getloadavg()[0], repeat=repeat)


def report(r: dict, commit: str, command: str, load_before: float) -> str:
    """The `store_threads` section of bench/store_results.md."""
    mb = r["raw_step"] / 1e6
    lines = [
        "<!-- store_threads -->",
        f"## Store overhead vs the codec, by thread count ({r['series']}, depth {r['depth']})",
        "",
        f"- commit {commit} · `{command}` · {os.cpu_count()} cores · load average (1 min) before / after "
        f"{load_before:.2f} / {r['load_avg']:.2f} (shared machine: compare the ratios, measured side by side)",
        f"- best of {r['repeat']} run(s) of each measure; state: {mb:.1f} MB of tensors a step; saves: "
        f"{r['depth']} delta steps after a keyframe; load: the last step, which decodes"
        f" {r['depth'] + 1} x {mb:.1f} MB along its chain",
        f"- torch.save {r['t_tsave']:.3f} s ({mb / r['t_tsave']:.0f} MB/s), torch.load {r['t_tload']:.3f} s "
        f"({mb / r['t_tload']:.0f} MB/s) of the same state, same disk",
        "",
        "| threads | codec encode MB/s | store.save MB/s | save / encode | store.save s/step | codec chain "
        "decode MB/s | store.load MB/s | load / decode | store.load s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['threads']} | {x['enc'] / 1e6:.0f} | {x['save'] / 1e6:.0f} | {x['save'] / x['enc']:.2f} | "
            f"{x['t_save']:.3f} | {x['dec'] / 1e6:.0f} | {x['load'] / 1e6:.0f} | {x['load'] / x['dec']:.2f} | "
            f"{x['t_load']:.3f} |")
    lines += ["", "Peak RSS (VmHWM of a fresh interpreter; `before`: its RSS after imports):", "",
              "| job | peak MB | peak - before MB | peak - before / state |", "|---|---:|---:|---:|"]
    for what, label in (("save", f"store.save of the {r['depth'] + 1} steps"),
                        ("pack", f"tpde-pack pack of the {r['depth'] + 1} files"), ("load", "store.load of the last"),
                        ("torch.save", "torch.load + torch.save"), ("torch.load", "torch.load")):
        x = r["rss"][what]
        extra = (x["peak"] - x["before"]) / 1024
        lines.append(f"| {label} | {x['peak'] / 1024:.0f} | {extra:.0f} | {extra / mb:.2f} |")
    lines.append("<!-- /store_threads -->")
    return "\n".join(lines) + "\n"


def main(series: str, depth: int, command: str, repeat: int = 1) -> str:
    """Run, print and write the section into bench/store_results.md; returns its text."""
    from bench.sections import head_commit, write_section
    load_before = os.getloadavg()[0]
    work = HERE / ".cache" / "store-bench"
    work.mkdir(parents=True, exist_ok=True)
    r = run(series, depth, work, repeat)
    text = report(r, head_commit(), command, load_before)
    write_section(HERE / "store_results.md", "store_threads", text)
    print(text)
    return text
