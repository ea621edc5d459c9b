"""Peak memory of save, load and pack against the state's size (issue 16, Memory).

Each operation runs in a fresh interpreter, and its peak resident set size (VmHWM, see
EPILOGUE) is reported beside the raw size of the tensors it handles. The interpreter with torch,
tpde and numpy imported is measured too; each peak is reported with that baseline
subtracted, as a multiple of the state.

  torch.load      torch.load of one checkpoint file (the reference: one copy of the state)
  save 3 steps    CheckpointStore.save of three consecutive checkpoints (a keyframe, a delta,
                  a delta with the keyframe as its coding context), loaded one at a time with
                  torch.load
  load delta      a fresh CheckpointStore's load of that delta
  pack N files    tpde-pack pack of the N checkpoint files into a new store
  ... (disk)      the same save and pack with predecessor_cache="disk" (store/spill.py)

Each operation's wall time is reported too (the cost of the disk cache).

States: the store_scale sizes (bench/store_scale.py, trained on demand into bench/.cache/scale).

    python bench/store_memory.py [--sizes 200MB 800MB]

Writes the `store_memory` section of bench/store_results.md.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from bench import store_scale  # noqa: E402
from bench.sections import head_commit, write_section  # noqa: E402

PRELUDE = ("import sys, time, torch, numpy, tpde\nfrom tpde.store import CheckpointStore\n"
           "started = time.perf_counter()\n")
# VmHWM: the high-water mark of this process image (ru_maxrss would carry the parent's
# peak across fork and exec)
EPILOGUE = ("\nprint(time.perf_counter() - started)\n"
            "print(1024 * int(next(line.split()[1] for line in open('/proc/self/status') "
            "if line.startswith('VmHWM:'))))\n")


def peak_bytes(code: str) -> tuple[int, float]:
    """Peak RSS in bytes of a fresh interpreter running PRELUDE + code, and the code's seconds."""
    out = subprocess.run([sys.executable, "-c", PRELUDE + code + EPILOGUE], check=True, capture_output=True,
                         text=True).stdout
    seconds, peak = out.strip().splitlines()[-2:]
    return int(peak), float(seconds)


def measure(size: str, work: Path) -> dict:
    """Peaks of each operation on one size, in bytes, and the state's raw tensor bytes."""
    meta = store_scale.ensure(size)
    files = [str(p) for p in store_scale.step_paths(size)]
    store, packed = str(work / size), str(work / f"{size}-pack")
    for folder in (store, packed):
        shutil.rmtree(folder, ignore_errors=True)
    state = torch.load(files[-1], weights_only=True)
    row = dict(size=size, params=meta["params"], files=len(files), state=store_scale.raw_bytes(state))
    del state
    row["baseline"], _ = peak_bytes("")
    row["torch_load"], row["torch_load_s"] = peak_bytes(f"torch.load({files[-1]!r}, weights_only=True)")
    for cache, suffix in (("memory", ""), ("disk", "_disk")):
        for folder in (store, packed):
            shutil.rmtree(folder, ignore_errors=True)
        row["save" + suffix], row["save_s" + suffix] = peak_bytes(
            f"st = CheckpointStore({store!r}, mode='w', progress=False, predecessor_cache={cache!r})\n"
            f"for i, f in enumerate({files[:3]!r}):\n"
            "    s = torch.load(f, weights_only=True)\n"
            "    st.save(i, s)\n"
            "    del s\n"
            "st.close()")
        row["pack" + suffix], row["pack_s" + suffix] = peak_bytes(
            "from tpde.cli import main\n"
            f"assert main(['pack', *{files!r}, '-o', {packed!r}, '--predecessor-cache', {cache!r}]) == 0")
    row["load"], row["load_s"] = peak_bytes(f"CheckpointStore({store!r}, mode='r', progress=False).load(2)")
    for folder in (store, packed):
        shutil.rmtree(folder, ignore_errors=True)
    return row


def report(rows: list[dict], commit: str, command: str, load: tuple[float, float]) -> str:
    """The `store_memory` section of bench/store_results.md."""
    def x(row: dict, key: str) -> str:
        return f"{(row[key] - row['baseline']) / row['state']:.2f}x"

    lines = [
        "<!-- store_memory -->",
        "## Peak memory against the state's size (bench/store_memory.py)",
        "",
        f"- commit {commit} · `{command}` · {os.cpu_count()} cores · load average (1 min) before / after "
        f"{load[0]:.2f} / {load[1]:.2f}",
        "- peak RSS of a fresh interpreter per operation, less that of the interpreter with torch and tpde "
        "imported (baseline column), as a multiple of the state's raw tensor bytes; fp32 weights + AdamW moments",
        "- save: three consecutive checkpoints (a keyframe, a delta coded against the keyframe's "
        "reconstruction, a delta coded against that one with the keyframe as context); load: the last; "
        "pack: every checkpoint file of the size; memory / disk: "
        "`predecessor_cache` (where the saver keeps that reconstruction); seconds of each operation "
        "in brackets",
        "",
        "| size | state | baseline | torch.load | load delta | save 3 steps, memory / disk "
        "| pack (files), memory / disk |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} | {r['state'] / 1e6:.0f} MB | {r['baseline'] / 1e6:.0f} MB "
            f"| {x(r, 'torch_load')} ({r['torch_load_s']:.1f} s) | {x(r, 'load')} ({r['load_s']:.1f} s) "
            f"| {x(r, 'save')} ({r['save_s']:.1f} s) / {x(r, 'save_disk')} ({r['save_s_disk']:.1f} s) "
            f"| {x(r, 'pack')} ({r['pack_s']:.1f} s) / {x(r, 'pack_disk')} ({r['pack_s_disk']:.1f} s) ({r['files']}) |")
    lines.append("<!-- /store_memory -->")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure the sizes and write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["200MB", "800MB"], choices=list(store_scale.SIZES))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    work = HERE / ".cache" / "store-bench" / "memory"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        rows.append(measure(size, work))
        print(json.dumps(rows[-1]), flush=True)
    command = "python bench/store_memory.py" + (" --sizes " + " ".join(args.sizes) if argv or sys.argv[1:] else "")
    section = report(rows, head_commit(), command, (load_before, os.getloadavg()[0]))
    print(section)
    write_section(HERE / "store_results.md", "store_memory", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
