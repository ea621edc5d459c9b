"""DCP's FileSystemWriter against tpde.dcp.Writer, same run, same states.

Two gloo ranks (CPU) train the bench's largest default model (the 8k-vocabulary GPT of
bench/series.py, 7.4 M parameters, AdamW) sharded with FSDP2 `fully_shard`, on random
tokens, and save it every `--save-every` steps, `--saves` times, through both writers
(DCP's `FileSystemWriter`, one folder per step; `tpde.dcp.Writer`, one folder). Reports
bytes per step, save and load wall times (rank 0, between barriers), the bit-exactness
of both loads, and what a partial restore reads: one tensor (the token embedding) loaded
in one process through each reader, counted as files opened / store keys read and bytes.

    python bench/bench_dcp.py [--saves 4] [--save-every 5] [--out bench/.cache/dcp]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.distributed.checkpoint.state_dict import get_state_dict  # noqa: E402

from bench import series as S  # noqa: E402

SERIES = "scratch-8k"


def _model_and_opt(sharded: bool):
    cfg = S.config_for(SERIES)
    torch.manual_seed(cfg.seed)
    model = S._build_model(cfg)
    if sharded:
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
    return cfg, model, S._make_optimizer(model, cfg, cfg.lr)


def _train(model, opt, cfg, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randint(0, cfg.vocab, (4, cfg.ctx), generator=g)
        logits = model(x[:, :-1])
        torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab), x[:, 1:].reshape(-1)).backward()
        opt.step()
        opt.zero_grad()


def _timed(fn) -> float:
    dist.barrier()
    t = time.perf_counter()
    fn()
    dist.barrier()
    return time.perf_counter() - t


def _rank(rank: int, world: int, port: int, out: str, saves: int, save_every: int, results) -> None:
    import tpde.dcp

    warnings.simplefilter("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=600))
    torch.set_num_threads(1)
    cfg, model, opt = _model_and_opt(True)
    writer = tpde.dcp.Writer(os.path.join(out, "tpde"))
    rows = []
    for i in range(saves):
        _train(model, opt, cfg, save_every, seed=100 * i + rank)
        msd, osd = get_state_dict(model, opt)
        state = {"model": msd, "optim": osd}
        step = (i + 1) * save_every
        t_fs = _timed(lambda: dcp.save(state, storage_writer=dcp.FileSystemWriter(os.path.join(out, f"fs/{step}"))))
        t_tp = _timed(lambda: dcp.save(state, storage_writer=writer, checkpoint_id=step))
        rows.append((step, t_fs, t_tp))
    last = saves * save_every
    loaded = {}
    for name, reader in (("fs", lambda: dcp.FileSystemReader(os.path.join(out, f"fs/{last}"))),
                         ("tpde", lambda: tpde.dcp.Reader(os.path.join(out, "tpde"), step=last))):
        _, m2, o2 = _model_and_opt(True)
        _train(m2, o2, cfg, 1, seed=999)
        msd, osd = get_state_dict(m2, o2)
        state = {"model": msd, "optim": osd}
        seconds = _timed(lambda state=state, reader=reader: dcp.load(state, storage_reader=reader()))
        loaded[name] = (seconds, state)
    same = all(
        a.to_local().reshape(-1).view(torch.uint8).equal(b.to_local().reshape(-1).view(torch.uint8))
        if hasattr(a, "to_local") else torch.equal(a, b)
        for a, b in zip(_leaves(loaded["fs"][1]), _leaves(loaded["tpde"][1])))
    if rank == 0:
        results.put({"rows": rows, "load_fs": loaded["fs"][0], "load_tpde": loaded["tpde"][0], "same": same})
    dist.destroy_process_group()


def _leaves(tree):
    if isinstance(tree, dict):
        for k in sorted(tree, key=str):
            yield from _leaves(tree[k])
    elif isinstance(tree, torch.Tensor):
        yield tree


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _partial_restore(out: Path, step: int) -> dict:
    """Load only the token embedding (whole) in one process through each reader."""
    import zarr.storage
    from torch.distributed.checkpoint import filesystem as fsmod

    import tpde.dcp

    cfg = S.config_for(SERIES)
    counts = {}
    opened: list[str] = []
    original_stream = fsmod.FileSystem.create_stream

    def counting_stream(self, path, mode):
        opened.append(str(path))
        return original_stream(self, path, mode)

    fsmod.FileSystem.create_stream = counting_stream
    target = {"model": {"tok.weight": torch.zeros(cfg.vocab, cfg.d_model)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = dcp.FileSystemReader(out / f"fs/{step}")
        dcp.load(target, storage_reader=reader, no_dist=True)
    md = reader.storage_data
    fs_bytes = sum(md[k].length for k in md if k.fqn == "model.tok.weight")
    fsmod.FileSystem.create_stream = original_stream
    counts["fs"] = (len([p for p in opened if p.endswith(".distcp")]), fs_bytes, target["model"]["tok.weight"].clone())

    keys: list[tuple[str, int]] = []
    original_get = zarr.storage.LocalStore.get_sync

    def counting_get(self, key, *args, **kwargs):
        buf = original_get(self, key, *args, **kwargs)
        keys.append((key, 0 if buf is None else len(buf.to_bytes())))
        return buf

    zarr.storage.LocalStore.get_sync = counting_get
    target = {"model": {"tok.weight": torch.zeros(cfg.vocab, cfg.d_model)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(target, storage_reader=tpde.dcp.Reader(out / "tpde", step=step), no_dist=True)
    zarr.storage.LocalStore.get_sync = original_get
    chunks = [(k, n) for k, n in keys if "/steps/" in f"/{k}" and not k.rsplit("/", 1)[-1].startswith(".")]
    counts["tpde"] = (len(chunks), sum(n for _, n in keys), target["model"]["tok.weight"])
    counts["tpde_keys"] = len(keys)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--saves", type=int, default=4)
    ap.add_argument("--save-every", type=int, default=5)
    ap.add_argument("--out", type=Path, default=HERE / ".cache" / "dcp")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.start_processes(_rank, args=(2, port, str(args.out), args.saves, args.save_every, results), nprocs=2,
                       start_method="spawn")
    res = results.get()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    print(f"commit {commit}, command: python bench/bench_dcp.py --saves {args.saves} "
          f"--save-every {args.save_every}, load average {os.getloadavg()[0]:.2f} at the end")
    print(f"2 gloo ranks (CPU), FSDP2, series {SERIES} model with AdamW, random tokens; loads bit-identical "
          f"(fs vs tpde, last step): {res['same']}")
    print("\n| step | FileSystemWriter bytes | tpde.dcp bytes | ratio | FileSystemWriter save s | tpde.dcp save s |")
    print("|---|---|---|---|---|---|")
    tp_root = args.out / "tpde"
    total_fs = total_tp = 0
    for step, t_fs, t_tp in res["rows"]:
        b_fs = _size(args.out / f"fs/{step}")
        b_tp = sum(_size(p / "steps" / str(step)) + _size_commit(p, step) for p in (tp_root / "ranks").iterdir())
        b_tp += (tp_root / "commits" / str(step)).stat().st_size
        total_fs += b_fs
        total_tp += b_tp
        print(f"| {step} | {b_fs / 2**20:.2f} MiB | {b_tp / 2**20:.2f} MiB | {b_fs / b_tp:.2f}x "
              f"| {t_fs:.2f} | {t_tp:.2f} |")
    print(f"| all | {total_fs / 2**20:.2f} MiB | {total_tp / 2**20:.2f} MiB | {total_fs / total_tp:.2f}x | | |")
    print(f"\nload of the last step into 2 ranks: FileSystemReader {res['load_fs']:.2f} s, "
          f"tpde.dcp.Reader {res['load_tpde']:.2f} s")
    last = args.saves * args.save_every
    part = _partial_restore(args.out, last)
    same = torch.equal(part["fs"][2], part["tpde"][2])
    print(f"partial restore (model.tok.weight only, one process, step {last}): FileSystemReader opens "
          f"{part['fs'][0]} .distcp files and reads {part['fs'][1] / 2**20:.2f} MiB of them; tpde.dcp.Reader reads "
          f"{part['tpde'][0]} chunks ({part['tpde_keys']} keys, {part['tpde'][1] / 2**20:.2f} MiB); "
          f"bit-identical: {same}")


def _size_commit(rank_root: Path, step: int) -> int:
    marker = rank_root / "commits" / str(step)
    return marker.stat().st_size if marker.exists() else 0


if __name__ == "__main__":
    main()
