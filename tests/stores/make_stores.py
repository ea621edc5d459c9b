"""Write the frozen stores of tests/stores/ (docs/store-format.md): one tiny store per
store format version, with what each step must restore.

    python tests/stores/make_stores.py v1 v2      # refuses to overwrite an existing folder
    python tests/stores/make_stores.py v1-first-writer   # with tpde built at 7e32e57 (store format 1's first writer)

Frozen means written once: every later tpde must read these bytes back bit-exactly, so
this script only ever adds a folder for a new version; it never rewrites one. Each folder
holds `store/` (the tpde store), `expected.json` (per step: the loaded state described by
`describe`, the marker summary, the store format version) and `expected.npz` (the raw
bytes of every tensor and array of every step, keyed "<step>/<path>").
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

import tpde

HERE = Path(__file__).resolve().parent


def describe(obj: object, path: str, arrays: dict[str, np.ndarray], seen: dict[int, str]) -> object:
    """A JSON description of a loaded state; tensors and arrays go to `arrays` as raw bytes."""
    if isinstance(obj, torch.Tensor):
        if id(obj) in seen:
            return {"same_object_as": seen[id(obj)]}
        seen[id(obj)] = path
        t = torch.view_as_real(obj) if obj.is_complex() else obj
        arrays[path] = t.contiguous().reshape(-1).view(torch.uint8).numpy().copy()
        return {"tensor": path, "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, np.ndarray):
        if id(obj) in seen:
            return {"same_object_as": seen[id(obj)]}
        seen[id(obj)] = path
        arrays[path] = np.frombuffer(np.ascontiguousarray(obj).tobytes(), np.uint8).copy()
        return {"ndarray": path, "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, (dict, OrderedDict)):
        node = {"odict" if isinstance(obj, OrderedDict) else "dict":
                [[k, describe(v, f"{path}/{k}", arrays, seen)] for k, v in obj.items()]}
        if getattr(obj, "_metadata", None) is not None:
            node["metadata"] = describe(obj._metadata, f"{path}/_metadata", arrays, seen)
        return node
    if isinstance(obj, torch.Size):
        return {"size": list(obj)}
    if isinstance(obj, (list, tuple)):
        return {type(obj).__name__: [describe(v, f"{path}/{i}", arrays, seen) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, str)):
        return {type(obj).__name__: obj}
    if isinstance(obj, int):
        return {"int": str(obj)}
    if isinstance(obj, float):
        return {"float": obj.hex()}
    if isinstance(obj, bytes):
        return {"bytes": obj.hex()}
    if isinstance(obj, np.generic):
        return {"np_scalar": obj.dtype.str, "hex": obj.tobytes().hex()}
    if isinstance(obj, (torch.dtype, torch.device)):
        return {type(obj).__name__: str(obj)}
    if isinstance(obj, (set, frozenset)):
        return {"set": sorted(obj)}
    raise TypeError(f"describe: {type(obj)} at {path}")


class Tiny(torch.nn.Module):
    """A module whose state_dict has weights, a tied weight, a buffer and _metadata."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8).to(dtype)
        self.fc = torch.nn.Linear(8, 24).to(dtype)
        self.head = torch.nn.Linear(8, 20, bias=False).to(dtype)
        self.head.weight = self.emb.weight  # tied: stored once, restored as one tensor
        self.register_buffer("seen", torch.zeros((), dtype=torch.int64))

    def forward(self, ids):
        h = torch.tanh(self.fc(self.emb(ids)))[..., :8]
        return self.head(h)


def train(model, opt, ids, n):
    for _ in range(n):
        loss = model(ids).float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        model.seen += 1


def extras(k: int, rng: np.random.Generator) -> dict:
    """Every other kind of leaf and skeleton node the store keeps."""
    walk = rng.integers(-3, 4, size=(3, 5)).astype(np.int16)
    return {
        "epoch": k,
        "big": 2**70 + k,
        "lr": 1e-3 / (k + 1),
        "not_a_number": math.nan,
        "minus_inf": -math.inf,
        "name": "frozen ünïcode %/.",
        "flag": k % 2 == 0,
        "nothing": None,
        "raw": bytes([k, 0, 255]),
        "np_scalar": np.float32(0.5 + k),
        "dtype": torch.bfloat16,
        "device": torch.device("cpu"),
        "size": torch.Size([2, k]),
        "pair": (k, [1.5, "x"]),
        "": "empty key",
        ".hidden/slash%": torch.arange(4, dtype=torch.int32) + k,
        7: "int key",
        "tensors": {
            "bf16": (torch.linspace(-2, 2, 40).reshape(5, 8) * (1 + k / 64)).bfloat16(),
            "f16": torch.linspace(-1, 1, 10, dtype=torch.float16) + k,
            "f64": torch.tensor([[math.pi, -0.0, math.inf], [math.nan, 1e-310, k]], dtype=torch.float64),
            "u8": torch.arange(9, dtype=torch.uint8).reshape(3, 3) * (k + 1),
            "u16": torch.tensor([60000, 1, 65535 - k], dtype=torch.uint16),
            "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
            "mask": torch.tensor([True, False, k % 2 == 1]),
            "c64": torch.complex(torch.ones(2, 3) * k, -torch.ones(2, 3)),
            "f8": torch.linspace(-4, 4, 6).to(torch.float8_e4m3fn),
            "empty": torch.empty(0, 4),
            "scalar": torch.tensor(3.25 + k),
        },
        "numpy": {
            "big_endian_i2": (np.arange(15, dtype=">i2").reshape(3, 5) + walk).astype(">i2"),
            "c128": np.array([1 + 2j, -k - 0.5j], dtype=np.complex128),
            "f32": np.linspace(0, 1, 7, dtype=np.float32) ** (k + 1),
        },
        "custom": {3, 1, 2},  # pickled: only with allow_pickle
    }


def make_v1(store_dir: Path, *, lossy: bool = True) -> dict:
    """Store format 1: manifests of format 1 only (no cross-state). A keyframe, a delta, a
    lossy delta with a prev-reference, a keyframe forced by a new tensor, a delta;
    multi-chunk arrays with edge padding; every dtype and skeleton node (steps 0 and 10)."""
    from tpde.store import CheckpointStore

    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 20, (4, 6))
    store = CheckpointStore(store_dir, mode="w-", keyframe_every=8, chunk_elements=128, workers=1)
    for k, step in enumerate((0, 10, 20, 30, 40)):
        train(model, opt, ids, 2)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": k}
        if step <= 10:
            state.update(extras(k, rng))
        if step >= 30:  # a tensor appears: step 30 is a keyframe
            state["late"] = torch.arange(12, dtype=torch.float32).reshape(3, 4) * (k + 1)
        if lossy and step == 20:
            bounds = tpde.ErrorBounds(weights=tpde.rms_bound(0.1), exp_avg=tpde.rms_bound(0.2),
                                      exp_avg_sq=tpde.log_bound(0.3))
            store.save(step, state, allow_pickle=True, meta={"frozen": "v1", "k": k}, error_bound=bounds)
        else:
            store.save(step, state, allow_pickle=True, meta={"frozen": "v1", "k": k})
    return {"allow_pickle": True}


def make_v1_first_writer(store_dir: Path) -> dict:
    """Store format 1 as its first writer (commit 7e32e57, package 0.1.0) wrote it: chunk
    format 1, per-array `.zattrs`, no lossy steps. Run with tpde built at that commit."""
    if hasattr(tpde, "ErrorBounds"):
        raise SystemExit("run v1-first-writer with tpde built at 7e32e57 (git worktree add ... 7e32e57)")
    options = make_v1(store_dir, lossy=False)
    return {**options, "writer_commit": "7e32e57"}


def make_v2(store_dir: Path) -> dict:
    """Store format 2: steps with cross-state predictions (manifest format 2): lossless
    (adam_direction terms at offsets 0 and 1) and lossy (exp_avg from scaled_delta).

    The writer keeps a prediction only where it saves its ~200 manifest bytes, which the
    lossy steps of so small a store never do; the cost is set aside here so that every
    term kind occurs (the format allows a prediction on any delta chunk)."""
    import tpde.store.save as writer

    if not hasattr(writer, "PREDICTION_COST"):
        raise SystemExit("tpde.store.save.PREDICTION_COST moved: update make_v2")
    writer.PREDICTION_COST = -(1 << 30)
    torch.manual_seed(2)
    lin = torch.nn.Linear(32, 32, bias=False).to(torch.bfloat16)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-2)
    x, y = torch.randn(64, 32).bfloat16(), torch.randn(64, 32).bfloat16()
    store = tpde.CheckpointStore(store_dir, mode="w-", keyframe_every=8, chunk_elements=512, workers=1)
    bounds = tpde.ErrorBounds(weights=tpde.rms_bound(0.1), exp_avg=tpde.rms_bound(0.2),
                              exp_avg_sq=tpde.log_bound(0.3))
    for step in (0, 100, 200, 300, 400):
        for _ in range(3):
            ((lin(x) - y) ** 2).mean().backward()
            opt.step()
            opt.zero_grad()
        lossy = step >= 300
        info = store.save(step, {"model": lin.state_dict(), "optimizer": opt.state_dict(), "step": step},
                          cross_state=True, error_bound=bounds if lossy else None)
        if step > 0 and not (info.predicted and (not lossy or info.tensors["optimizer/state/0/exp_avg"].predicted)):
            raise SystemExit(f"step {step} took no prediction: the v2 store would not cover format 2")
    return {"allow_pickle": False}


def make_v3(store_dir: Path) -> dict:
    """Store format 3: steps with blobs (manifest format 3) between steps without: zlib
    and raw blobs, an empty one, a nested name; a delta whose base has blobs."""
    torch.manual_seed(3)
    lin = torch.nn.Linear(16, 8)
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-2)
    rng = np.random.default_rng(3)
    store = tpde.CheckpointStore(store_dir, mode="w-", keyframe_every=8, chunk_elements=64, workers=1)
    for step in (0, 10, 20):
        ((lin(torch.randn(4, 16)) ** 2).mean()).backward()
        opt.step()
        opt.zero_grad()
        blobs = None if step == 10 else {
            "trainer_state.json": json.dumps({"global_step": step, "log": list(range(40))}).encode(),
            "rng_state.pth": rng.bytes(300),
            "tokenizer/vocab.txt": b"[PAD]\n[UNK]\nhello\n" * 20,
            "empty": b"",
        }
        info = store.save(step, {"model": lin.state_dict(), "optimizer": opt.state_dict()}, blobs=blobs)
        if blobs and {b.codec for b in info.blobs} != {"raw", "zlib"}:
            raise SystemExit(f"step {step}: the v3 store would not cover both blob codecs")
    return {"allow_pickle": False}


def make_v4(store_dir: Path) -> dict:
    """Store format 4: bundled arrays (manifest format 4). Small tensors bundled (one chunk,
    three chunks with edge padding, 0-d, empty) beside multi-chunk arrays with keys of their
    own; AdamW moments with cross-state predictions on bundled arrays; blobs in one step;
    then, the setting turned off, a keyframe without bundles (manifest format 1) and a delta."""
    import tpde.store.save as writer

    if not hasattr(writer, "PREDICTION_COST"):
        raise SystemExit("tpde.store.save.PREDICTION_COST moved: update make_v4")
    writer.PREDICTION_COST = -(1 << 30)
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Linear(24, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    extra = {"multi": torch.randn(150), "scalar": torch.tensor(1.5), "empty": torch.empty(0, 3)}
    store = tpde.CheckpointStore(store_dir, mode="w-", keyframe_every=8, chunk_elements=64, bundle_below=200,
                                 workers=1)
    for step in (0, 10, 20, 30, 40):
        ((model(torch.randn(4, 24)) ** 2).mean()).backward()
        opt.step()
        opt.zero_grad()
        extra = {**extra, "multi": extra["multi"] + 0.01 * torch.randn(150), "scalar": extra["scalar"] + 1}
        if step == 30:
            store.bundle_below = 0
        blobs = {"trainer_state.json": json.dumps({"global_step": step}).encode()} if step == 20 else None
        info = store.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(), "extra": extra},
                          blobs=blobs, cross_state=step in (10, 20))
        if (info.kind == "keyframe") != (step in (0, 30)):
            raise SystemExit(f"step {step} is a {info.kind}: the v4 store would not cover the layout change")
        if step in (10, 20) and not info.predicted:
            raise SystemExit(f"step {step} took no prediction: the v4 store would not cover it")
    return {"allow_pickle": False}


MAKERS = {"v1": (1, make_v1), "v2": (2, make_v2), "v3": (3, make_v3), "v4": (4, make_v4),
          "v1-first-writer": (1, make_v1_first_writer)}


def main(argv: list[str]) -> int:
    from tpde.store import CheckpointStore

    for name in argv or ["v1", "v2"]:
        version, make = MAKERS[name]
        folder = HERE / name
        if folder.exists():
            print(f"{folder} exists: frozen stores are never rewritten", file=sys.stderr)
            return 1
        folder.mkdir()
        try:
            options = make(folder / "store")
            store = CheckpointStore(folder / "store", mode="r")
            steps, arrays = {}, {}
            for info in store.history():
                state = store.load(info.step, allow_pickle=options["allow_pickle"])
                found: dict[str, np.ndarray] = {}
                tree = describe(state, str(info.step), found, {})
                arrays.update(found)
                steps[str(info.step)] = {
                    "kind": info.kind, "base_step": info.base_step, "prev_step": info.prev_step,
                    "lossy": getattr(info, "lossy", False), "predicted": getattr(info, "predicted", False),
                    "tensors": store.tensors(info.step),
                    "state": tree,
                }
                blobs = store.load_blobs(info.step) if hasattr(store, "load_blobs") else {}
                if blobs:
                    steps[str(info.step)]["blobs"] = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                    cwd=HERE).stdout.strip()
            commit = options.pop("writer_commit", commit)
            doc = {"store_format": version, "written_by": {"tpde": tpde.__version__, "commit": commit},
                   **options, "steps": steps}
            (folder / "expected.json").write_text(json.dumps(doc, ensure_ascii=False) + "\n")
            np.savez_compressed(folder / "expected.npz", **arrays)
        except BaseException:
            shutil.rmtree(folder)
            raise
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        print(f"{folder}: {len(steps)} steps, {size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
