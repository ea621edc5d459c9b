"""Shared helpers for the checkpoint-store, torch and CLI tests."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from zarr.storage import MemoryStore, WrapperStore


def raw_bytes(t: torch.Tensor) -> bytes:
    """The exact bytes of a tensor's data (NaN payloads and -0.0 included)."""
    if t.numel() == 0:
        return b""
    return bytes(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def assert_same_state(a: object, b: object, path: str = "") -> None:
    """Nested states equal: same container types, keys, scalar types and tensor bits."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        assert raw_bytes(a) == raw_bytes(b), f"{path}: tensor bits differ"
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), f"{path}: array bits differ"
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        assert [type(k) for k in a] == [type(k) for k in b], f"{path}: key types differ"
        for k in a:
            assert_same_state(a[k], b[k], f"{path}/{k}")
        if isinstance(a, OrderedDict):
            assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None), f"{path}: _metadata"
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}/{i}")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


class CountingStore(WrapperStore):
    """A zarr store that counts reads of chunk keys (not .zarray/.zattrs/commit markers)."""

    def __init__(self, store=None):
        super().__init__(store if store is not None else MemoryStore())
        self.chunk_reads: list[str] = []

    async def get(self, key, prototype=None, byte_range=None):
        name = key.rsplit("/", 1)[-1]
        if key.startswith("steps/") and not name.startswith("."):
            self.chunk_reads.append(key)
        return await self._store.get(key, prototype, byte_range)


class TinyTransformer(torch.nn.Module):
    """A two-layer causal transformer LM over a small vocabulary (for training tests)."""

    def __init__(self, vocab: int = 32, dim: int = 32, layers: int = 2, context: int = 16):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.pos = torch.nn.Parameter(torch.zeros(context, dim))
        layer = torch.nn.TransformerEncoderLayer(
            dim, nhead=4, dim_feedforward=2 * dim, dropout=0.1, batch_first=True
        )
        self.layers = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(dim)
        self.head = torch.nn.Linear(dim, vocab)
        self.register_buffer("mask", torch.nn.Transformer.generate_square_subsequent_mask(context))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        h = self.embed(tokens) + self.pos[:n]
        h = self.layers(h, mask=self.mask[:n, :n], is_causal=True)
        return self.head(self.norm(h))


def batch(step: int, vocab: int = 32, context: int = 16, size: int = 8) -> torch.Tensor:
    """The training batch of a step: deterministic, so a resumed run sees the same data."""
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randint(0, vocab, (size, context + 1), generator=g)


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, step: int) -> float:
    """One AdamW step on `batch(step)`; returns the loss."""
    tokens = batch(step)
    logits = model(tokens[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def make_run(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """A fresh model and AdamW optimizer."""
    torch.manual_seed(seed)
    model = TinyTransformer()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    return model, opt


def training_state(model, opt, step: int) -> dict:
    """What a training script saves: model, optimizer, RNG and counters."""
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "step": step,
    }


def train_checkpoints(n_steps: int, every: int = 1, seed: int = 0) -> list[tuple[int, dict]]:
    """Train a tiny model and return deep copies of its state every `every` steps."""
    import copy

    model, opt = make_run(seed)
    out = []
    for step in range(1, n_steps + 1):
        train_step(model, opt, step)
        if step % every == 0:
            out.append((step, copy.deepcopy(training_state(model, opt, step))))
    return out
