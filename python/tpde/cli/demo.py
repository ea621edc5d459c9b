"""tpde-demo: train a tiny transformer, save its checkpoints through tpde, compare with zstd.

Everything is made here: the model trains for a few seconds on the Python standard
library's own source text, saving model and AdamW state every few steps into a
:class:`tpde.CheckpointStore`. The demo then restores every step, checks it bit for bit,
and prints the stored size against ``torch.save`` and zstd (level 3) of the same bytes.
"""

from __future__ import annotations

import argparse
import io
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np


def _corpus(limit: int = 400_000) -> bytes:
    """Concatenated .py sources of the standard library (sorted, so deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, size = [], 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        size += len(data)
        if size >= limit:
            break
    return b"".join(chunks)


def _tiny_model(torch, vocab: int = 256, width: int = 64, layers: int = 2, context: int = 64):
    nn = torch.nn

    class TinyGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.position = nn.Parameter(torch.zeros(context, width))
            layer = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True,
                                               norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(width)
            self.head = nn.Linear(width, vocab, bias=False)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(context))

        def forward(self, tokens):
            h = self.embed(tokens) + self.position[: tokens.shape[1]]
            h = self.blocks(h, mask=self.mask[: tokens.shape[1], : tokens.shape[1]], is_causal=True)
            return self.head(self.norm(h))

    return TinyGPT()


def _tensor_arrays(state) -> list[tuple[np.ndarray, str]]:
    """Every tensor of a state as (stored array, codec dtype), in a fixed order."""
    from ..state.torch_adapter import is_array, to_storage

    out = []

    def walk(node):
        if is_array(node):
            arr, spec = to_storage(node)
            out.append((arr, spec.codec_dtype))
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(state)
    return out


def _raw_tensor_bytes(state) -> list[bytes]:
    return [arr.tobytes() for arr, _ in _tensor_arrays(state)]


def _time_codec(arrays, previous) -> float:
    """Seconds tpde's codec alone takes on a state's tensors: each coded against the same
    tensor of the previous save (standalone at the first), as the store does, without the
    store's file writes."""
    from .. import _core

    t0 = time.perf_counter()
    for j, (arr, codec_dtype) in enumerate(arrays):
        ref = previous[j][0] if previous is not None else None
        _core.encode(arr, reference=ref, dtype=codec_dtype)  # as the store calls it
    return time.perf_counter() - t0


def run(steps: int = 120, save_every: int = 10, store_path: str | None = None) -> dict:
    """Train, save every `save_every` steps through tpde, verify, and return the figures."""
    import torch
    from numcodecs import Zstd

    from ..store import CheckpointStore

    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    data = torch.frombuffer(bytearray(_corpus()), dtype=torch.uint8).long()
    model = _tiny_model(torch)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    tmp = None
    if store_path is None:
        tmp = tempfile.TemporaryDirectory(prefix="tpde-demo-")
        store_path = str(Path(tmp.name) / "run.tpde")
    zstd = Zstd(level=3)
    figures = {"steps": [], "torch_save_bytes": 0, "zstd_bytes": 0, "raw_bytes": 0,
               "tpde_seconds": 0.0, "codec_seconds": 0.0, "zstd_seconds": 0.0}
    previous = None
    saved = {}
    with CheckpointStore(store_path, mode="w", keyframe_every=16, progress=False) as store:
        for step in range(1, steps + 1):
            starts = torch.randint(0, len(data) - 65, (16,), generator=generator)
            batch = torch.stack([data[s: s + 65] for s in starts])
            logits = model(batch[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % save_every:
                continue
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "loss": loss.item()}
            buffer = io.BytesIO()
            torch.save(state, buffer)
            figures["torch_save_bytes"] += buffer.tell()
            t0 = time.perf_counter()
            store.save(step, state)
            figures["tpde_seconds"] += time.perf_counter() - t0
            arrays = _tensor_arrays(state)
            figures["codec_seconds"] += _time_codec(arrays, previous)
            previous = arrays
            raws = [arr.tobytes() for arr, _ in arrays]
            t0 = time.perf_counter()
            figures["zstd_bytes"] += sum(len(zstd.encode(raw)) for raw in raws)
            figures["zstd_seconds"] += time.perf_counter() - t0
            figures["raw_bytes"] += sum(len(raw) for raw in raws)
            saved[step] = b"".join(raws)
            info = store.info(step)
            figures["steps"].append((step, info.kind, loss.item(), info.raw_bytes, info.stored_bytes))
        for step, expected in saved.items():
            restored = store.load(step)
            if b"".join(_raw_tensor_bytes(restored)) != expected:
                raise AssertionError(f"step {step} did not restore bit-exactly")
        figures["tpde_bytes"] = sum(s.stored_bytes for s in store.history())
    if tmp is not None:
        tmp.cleanup()
    return figures


def main(argv: list[str] | None = None) -> int:
    """Console entry point of ``tpde-demo``."""
    parser = argparse.ArgumentParser(prog="tpde-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="training steps (default 120)")
    parser.add_argument("--save-every", type=int, default=10, help="save interval (default 10)")
    parser.add_argument("--store", help="keep the store at this path instead of a temporary folder")
    args = parser.parse_args(argv)
    print(f"training a tiny transformer for {args.steps} steps, saving every {args.save_every} ...")
    f = run(args.steps, args.save_every, args.store)
    print(f"{'step':>6} {'kind':>9} {'loss':>7} {'raw MB':>8} {'tpde MB':>8} {'ratio':>6}")
    for step, kind, loss, raw, stored in f["steps"]:
        print(f"{step:>6} {kind:>9} {loss:7.3f} {raw / 1e6:8.3f} {stored / 1e6:8.3f} {raw / stored:6.2f}")
    raw = f["raw_bytes"]
    print(f"all {len(f['steps'])} checkpoints restored bit-exactly")
    print(f"torch.save files : {f['torch_save_bytes'] / 1e6:8.2f} MB")
    print(f"zstd-3 of tensors: {f['zstd_bytes'] / 1e6:8.2f} MB  ratio {raw / f['zstd_bytes']:.3f}  "
          f"{raw / f['zstd_seconds'] / 1e6:6.0f} MB/s")
    print(f"tpde store       : {f['tpde_bytes'] / 1e6:8.2f} MB  ratio {raw / f['tpde_bytes']:.3f}  "
          f"{raw / f['tpde_seconds'] / 1e6:6.0f} MB/s (save: codec and file writes)")
    print(f"tpde codec alone :                           {raw / f['codec_seconds'] / 1e6:6.0f} MB/s "
          f"(the same tensors, one thread, like zstd-3 above)")
    print(f"tpde vs zstd-3   : {f['zstd_bytes'] / f['tpde_bytes']:.2f}x smaller")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
