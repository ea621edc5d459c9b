"""Real checkpoint series for the tpde benchmark.

Trains a small decoder-only (GPT-style) byte-level transformer with AdamW on text that
is on every machine with Python: the standard library's ``.py`` sources ("scratch"),
then fine-tunes the trained model with a fresh optimizer on C headers from
``sys.prefix/include`` ("finetune"). "scratch-8k" and "finetune-8k" do the same with an
8,192-token word vocabulary learned on the scratch text (bench/vocab.py), as real
language models have: the fine-tune leaves the embedding rows of unused tokens alone.
"scratch-32k" and "finetune-32k" (made only when named) widen that vocabulary to 32,768.
Every ``save_every`` steps it writes

    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": k}, path)

to ``<out_dir>/<series>/step_XXXXXX.pt`` (default ``bench/.cache/series``). Existing
files are reused (cache). A bf16 copy of each series (floating tensors cast to
torch.bfloat16, optimizer ``step`` counters left as they are) is written beside it as
``<series>-bf16``.

Python use::

    from bench.series import make_series, load_series, classify
    make_series("scratch")                    # full size, cached
    make_series("finetune", tmp, small=True)  # tiny, a few seconds, for tests/demo
    for step, tensors in load_series("scratch", bf16=True):
        tensors.bf16   # True: values are np.uint16 bit views of bfloat16
        for name, arr in tensors.items(): classify(name)  # weights/exp_avg/exp_avg_sq/other

Command line::

    python bench/series.py [--small] [--out DIR] [--force]
                           [scratch finetune scratch-8k finetune-8k scratch-32k finetune-32k]

Determinism: fixed seeds, fixed file selection (sorted paths), fixed thread count
(``torch.set_num_threads(2)``), so the same machine type and torch version give the
same bytes. Another thread count or CPU may change low-order bits (float summation
order), which does not matter for a benchmark but is why the files are cached.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import sysconfig
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / ".cache" / "series"
SERIES = ("scratch", "finetune")  # byte vocabulary
SUBWORD_SERIES = ("scratch-8k", "finetune-8k")  # word vocabulary (bench/vocab.py)
# A wider word vocabulary, made only on request (4.3 GB, ~20 min): most of its rows are
# untouched by the fine-tuning text, as when a large pretrained vocabulary meets a small domain.
WIDE_SERIES = ("scratch-32k", "finetune-32k")
ALL_SERIES = SERIES + SUBWORD_SERIES + WIDE_SERIES
KINDS = ("weights", "exp_avg", "exp_avg_sq", "other")


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class Config:
    n_layer: int = 4
    d_model: int = 256
    n_head: int = 4
    ctx: int = 128
    vocab: int = 256
    batch: int = 16
    save_every: int = 40
    n_saves: int = 10           # scratch saves
    ft_save_every: int = 30
    ft_n_saves: int = 8         # finetune saves
    lr: float = 1e-3
    warmup: int = 30
    min_lr_frac: float = 0.1
    ft_lr: float = 3e-5
    ft_warmup: int = 10
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    corpus_bytes: int = 6_000_000   # cap on the .py corpus
    seed: int = 1234
    threads: int = 2


FULL = Config()
SMALL = Config(n_layer=2, d_model=32, n_head=2, ctx=32, batch=4, save_every=3, n_saves=4,
               ft_save_every=3, ft_n_saves=3, warmup=2, ft_warmup=1,
               corpus_bytes=300_000)
SUBWORD_VOCAB = 8192
WIDE_VOCAB = 32768


def config_for(name: str, small: bool = False) -> Config:
    """The configuration of a series (``-bf16`` copies share their source's)."""
    base = name[:-5] if name.endswith("-bf16") else name
    cfg = SMALL if small else FULL
    if base in SUBWORD_SERIES:
        cfg = replace(cfg, vocab=SUBWORD_VOCAB if not small else 512)
    if base in WIDE_SERIES:
        cfg = replace(cfg, vocab=WIDE_VOCAB if not small else 1024)
    return cfg


def _stage(name: str) -> str:
    """'scratch' or 'finetune' for any series name."""
    return "scratch" if name.startswith("scratch") else "finetune"


def _family_scratch(name: str) -> str:
    """The scratch series a fine-tune continues from."""
    return "scratch" + name[len("finetune"):]


# --------------------------------------------------------------------------- text
def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _py_files() -> list[Path]:
    """Stdlib .py sources, sorted, without site-packages and test suites."""
    root = _stdlib_dir()
    out = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root).as_posix()
        parts = rel.split("/")
        if parts[0] in ("site-packages", "dist-packages", "test", "idlelib", "lib2to3"):
            continue
        if "tests" in parts or "test" in parts:
            continue
        out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _header_files() -> list[Path]:
    roots = [Path(sys.prefix) / "include", Path(sysconfig.get_paths()["include"])]
    seen, out = set(), []
    for r in roots:
        if not r.is_dir():
            continue
        for p in sorted(r.rglob("*.h")):
            rp = p.resolve()
            if rp not in seen:
                seen.add(rp)
                out.append(p)
    return out


def _read_concat(files: list[Path], cap: int) -> bytes:
    chunks, total = [], 0
    for p in files:
        try:
            b = p.read_bytes()
        except OSError:
            continue
        chunks.append(b)
        total += len(b)
        if total >= cap:
            break
    return b"".join(chunks)[:cap]


def corpus(which: str, cap: int) -> tuple[bytes, str]:
    """Return (bytes, description). 'scratch': stdlib .py; 'finetune': C headers,
    or (if no headers) the .py files the scratch corpus did not use."""
    py = _py_files()
    if which == "scratch":
        # every file whose path hash is not 0 mod 8 (the others are the fallback
        # fine-tune set), in sorted order, capped
        root = _stdlib_dir()
        sel = [p for p in py if zlib.crc32(p.relative_to(root).as_posix().encode()) % 8 != 0]
        data = _read_concat(sel, cap)
        return data, f"stdlib .py sources under {root} ({len(data)/1e6:.2f} MB)"
    hdr = _header_files()
    data = _read_concat(hdr, cap)
    if len(data) >= 200_000 or (len(data) > 20_000 and cap < 1_000_000):
        return data, f"C headers under {Path(sys.prefix) / 'include'} ({len(data)/1e6:.2f} MB)"
    root = _stdlib_dir()
    sel = [p for p in py if zlib.crc32(p.relative_to(root).as_posix().encode()) % 8 == 0]
    data = _read_concat(sel, cap)
    return data, f"held-out stdlib .py sources ({len(data)/1e6:.2f} MB)"


# --------------------------------------------------------------------------- model
def _build_model(cfg: Config):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.d_model)
            self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
            self.proj = nn.Linear(cfg.d_model, cfg.d_model)
            self.ln2 = nn.LayerNorm(cfg.d_model)
            self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model)
            self.fc_out = nn.Linear(4 * cfg.d_model, cfg.d_model)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            h = cfg.n_head
            q = q.view(B, T, h, C // h).transpose(1, 2)
            k = k.view(B, T, h, C // h).transpose(1, 2)
            v = v.view(B, T, h, C // h).transpose(1, 2)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
            x = x + self.fc_out(F.gelu(self.fc(self.ln2(x))))
            return x

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(cfg.vocab, cfg.d_model)
            self.pos = nn.Embedding(cfg.ctx, cfg.d_model)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.ln_f = nn.LayerNorm(cfg.d_model)
            self.head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)  # untied
            self.apply(self._init)
            for n, p in self.named_parameters():
                if n.endswith("proj.weight") or n.endswith("fc_out.weight"):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

        @staticmethod
        def _init(m):
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, 0.02)

        def forward(self, idx):
            T = idx.shape[1]
            x = self.tok(idx) + self.pos(torch.arange(T))
            for b in self.blocks:
                x = b(x)
            return self.head(self.ln_f(x))

    return GPT()


def _make_optimizer(model, cfg: Config, lr: float):
    import torch
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95), eps=1e-8)


def tokens(name: str, cfg: Config) -> tuple[np.ndarray, str]:
    """(token ids, description) of a series' training text: bytes, or word ids when
    ``cfg.vocab > 256`` (vocabulary learned on the scratch text, bench/vocab.py)."""
    try:
        from bench.vocab import build_vocab, encode
    except ImportError:  # run as a script from bench/
        from vocab import build_vocab, encode
    data, desc = corpus(_stage(name), cfg.corpus_bytes)
    if cfg.vocab <= 256:
        return np.frombuffer(data, dtype=np.uint8), desc
    words = build_vocab(corpus("scratch", cfg.corpus_bytes)[0], cfg.vocab)
    ids = encode(data, words)
    used = np.unique(ids).size
    return ids, f"{desc}, {ids.size:,} tokens using {used:,} of the {cfg.vocab:,}-token vocabulary"


def _batches(data, cfg: Config, seed: int):
    """Endless (x, y) batches of ``cfg.batch`` random windows of bytes or token ids."""
    import torch
    if isinstance(data, (bytes, bytearray)):
        arr = torch.from_numpy(np.frombuffer(data, dtype=np.uint8).astype(np.int64))
    else:
        arr = torch.from_numpy(np.asarray(data, dtype=np.int64))
    g = torch.Generator().manual_seed(seed)
    n = len(arr) - cfg.ctx - 1
    while True:
        ix = torch.randint(0, n, (cfg.batch,), generator=g)
        x = torch.stack([arr[i:i + cfg.ctx] for i in ix.tolist()])
        y = torch.stack([arr[i + 1:i + 1 + cfg.ctx] for i in ix.tolist()])
        yield x, y


def _step_path(d: Path, step: int) -> Path:
    return d / f"step_{step:06d}.pt"


def _expected_steps(name: str, cfg: Config) -> list[int]:
    if _stage(name) == "scratch":
        return [cfg.save_every * (i + 1) for i in range(cfg.n_saves)]
    return [cfg.ft_save_every * (i + 1) for i in range(cfg.ft_n_saves)]


def param_count(cfg: Config) -> int:
    import torch
    torch.manual_seed(0)
    return sum(p.numel() for p in _build_model(cfg).parameters())


def _train(name: str, cfg: Config, out: Path, log=print) -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(cfg.threads)
    stage = _stage(name)
    seed = cfg.seed + (0 if stage == "scratch" else 1)
    torch.manual_seed(seed)
    data, desc = tokens(name, cfg)
    model = _build_model(cfg)
    if stage == "finetune":
        src_name = _family_scratch(name)
        src_step = _expected_steps(src_name, cfg)[-1]
        model.load_state_dict(torch.load(_step_path(out / src_name, src_step), weights_only=True)["model"])
        lr_max, warmup = cfg.ft_lr, cfg.ft_warmup
        desc = f"fine-tune (fresh AdamW) of {src_name} step {src_step} on " + desc
    else:
        lr_max, warmup = cfg.lr, cfg.warmup
    opt = _make_optimizer(model, cfg, lr_max)
    steps = _expected_steps(name, cfg)
    total = steps[-1]
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    batches = _batches(data, cfg, seed)
    t0 = time.perf_counter()
    losses = {}
    model.train()
    for k in range(1, total + 1):
        if k <= warmup:
            lr = lr_max * k / warmup
        elif stage == "scratch":  # cosine to min_lr_frac
            pr = (k - warmup) / max(1, total - warmup)
            lr = lr_max * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * pr)))
        else:
            lr = lr_max
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(batches)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, cfg.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if k in steps:
            losses[k] = loss.item()
            tmp = _step_path(d, k).with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": k}, tmp)
            os.replace(tmp, _step_path(d, k))
            log(f"  {name} step {k:5d}  loss {losses[k]:.3f}  lr {lr:.2e}  "
                f"{time.perf_counter() - t0:6.1f}s")
    secs = time.perf_counter() - t0
    return {"description": desc, "steps": steps, "losses": losses, "train_seconds": round(secs, 1),
            "lr": lr_max, "warmup": warmup, "schedule": "cosine" if stage == "scratch" else "constant"}


def _write_bf16(name: str, out: Path, steps: list[int]) -> None:
    import torch
    src, dst = out / name, out / f"{name}-bf16"
    dst.mkdir(parents=True, exist_ok=True)

    def cast(obj, key=""):
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and key != "step":
                return obj.to(torch.bfloat16)
            return obj
        if isinstance(obj, dict):
            return {k: cast(v, k if isinstance(k, str) else key) for k, v in obj.items()}
        if isinstance(obj, list):
            return [cast(v, key) for v in obj]
        return obj

    for s in steps:
        p = _step_path(dst, s)
        if p.exists():
            continue
        ck = torch.load(_step_path(src, s), weights_only=True)
        tmp = p.with_suffix(".tmp")
        torch.save(cast(ck), tmp)
        os.replace(tmp, p)


def make_series(name: str = "scratch", out_dir: str | os.PathLike | None = None, *,
                small: bool = False, force: bool = False, log=print) -> list[Path]:
    """Generate (or reuse) one series; return its checkpoint paths in step order.

    ``name``: one of ALL_SERIES (a fine-tune trains its scratch series first if missing);
    a "-bf16" suffix returns the bf16 copy. ``small=True`` trains a tiny model for a few
    steps (seconds). Default ``out_dir``: bench/.cache/series (small: .../series-small).
    """
    bf16 = name.endswith("-bf16")
    base = name[:-5] if bf16 else name
    if base not in ALL_SERIES:
        raise ValueError(f"unknown series {name!r}; expected one of {ALL_SERIES} (+ '-bf16')")
    cfg = config_for(base, small)
    out = Path(out_dir) if out_dir is not None else (DEFAULT_OUT.with_name("series-small") if small else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    steps = _expected_steps(base, cfg)
    meta_path = out / base / "meta.json"
    have = all(_step_path(out / base, s).exists() for s in steps) and meta_path.exists()
    if force or not have:
        if _stage(base) == "finetune":
            make_series(_family_scratch(base), out, small=small, force=force, log=log)
        log(f"training series {base!r} ({'small' if small else 'full'}) into {out / base}")
        meta = _train(base, cfg, out, log=log)
        meta.update(series=base, small=small, params=param_count(cfg), config=asdict(cfg),
                    torch=__import__("torch").__version__)
        meta_path.write_text(json.dumps(meta, indent=1))
        if force:
            for s in steps:
                _step_path(out / f"{base}-bf16", s).unlink(missing_ok=True)
    if bf16:
        _write_bf16(base, out, steps)
    return [_step_path(out / name, s) for s in steps]


def series_meta(name: str, out_dir=None, *, small: bool = False) -> dict:
    base = name[:-5] if name.endswith("-bf16") else name
    out = Path(out_dir) if out_dir is not None else (DEFAULT_OUT.with_name("series-small") if small else DEFAULT_OUT)
    return json.loads((out / base / "meta.json").read_text())


# --------------------------------------------------------------------------- loading
class TensorDict(dict):
    """name -> numpy array; ``bf16`` is True when uint16 arrays hold bfloat16 bits."""
    bf16: bool = False


def classify(name: str) -> str:
    """'weights' (model/...), 'exp_avg', 'exp_avg_sq', or 'other' (step counters, ...)."""
    if name.startswith("model/"):
        return "weights"
    leaf = name.rsplit("/", 1)[-1]
    if leaf in ("exp_avg", "exp_avg_sq"):
        return leaf
    return "other"


def _to_numpy(t):
    import torch
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.uint16).numpy().copy() if hasattr(torch, "uint16") else \
            t.view(torch.int16).numpy().view(np.uint16).copy()
    return t.numpy().copy()


def flatten_checkpoint(ck: dict) -> TensorDict:
    """{'model': sd, 'optimizer': osd} -> TensorDict of 'model/<p>',
    'optimizer/state/<i>/<key>' numpy arrays (tensors only; hyper-parameters dropped)."""
    import torch
    out = TensorDict()
    for k, v in ck["model"].items():
        out[f"model/{k}"] = _to_numpy(v)
    for i, st in ck["optimizer"]["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                out[f"optimizer/state/{i}/{k}"] = _to_numpy(v)
    out.bf16 = any(isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16
                   for v in ck["model"].values())
    return out


def load_series(name: str, out_dir=None, *, small: bool = False, bf16: bool = False,
                generate: bool = True) -> list[tuple[int, TensorDict]]:
    """[(step, TensorDict)] for a series, generating it first if needed.
    ``bf16=True`` (or a name ending in "-bf16") gives the bf16 copy as uint16 bits."""
    import torch
    if bf16 and not name.endswith("-bf16"):
        name = name + "-bf16"
    if generate:
        paths = make_series(name, out_dir, small=small)
    else:
        default = DEFAULT_OUT.with_name("series-small") if small else DEFAULT_OUT
        out = Path(out_dir) if out_dir is not None else default
        paths = sorted((out / name).glob("step_*.pt"))
    res = []
    for p in paths:
        ck = torch.load(p, weights_only=True)
        res.append((int(ck["step"]), flatten_checkpoint(ck)))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=list(SERIES),
                    help=f"series to make, of {', '.join(ALL_SERIES)} (default: {' '.join(SERIES)})")
    ap.add_argument("--small", action="store_true", help="tiny model, a few seconds")
    ap.add_argument("--out", default=None, help="output dir (default bench/.cache/series[-small])")
    ap.add_argument("--force", action="store_true", help="regenerate even if cached")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 copies")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    for n in a.names:
        make_series(n, a.out, small=a.small, force=a.force)
        if not a.no_bf16 and not n.endswith("-bf16"):
            make_series(n + "-bf16", a.out, small=a.small)
        m = series_meta(n, a.out, small=a.small)
        print(f"{n}: {m['description']}; {m['params']:,} params; steps {m['steps']}; "
              f"trained in {m['train_seconds']} s")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
