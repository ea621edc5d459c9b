"""Objects and requests per step, with and without bundles (store format 4).

For each state, three saves (a keyframe and two deltas: small random changes to every
tensor) into a CheckpointStore with `bundle_below=0` (every array its own `.zarray` and
chunk objects, as before store format 4) and with the default bundle, side by side:

  objects      values a step adds to the store (its files on a local disk, objects on S3)
  save PUTs    store writes of the last save (an object store: one request each)
  load GETs    store reads of a whole-step load of the last step (a delta at depth 2)
  tensor GETs  store reads of `load_tensor` of one small tensor at that step
  save s, load s   the same on a local folder (bench/.cache), best of --reps

Requests are counted on an in-memory zarr store wrapped to count get/set calls (what an
S3 store turns into requests; listings not counted).

States: `many-small` (3,000 tensors of 16 elements and a 512 x 256 embedding, the
tests/test_s3.py model), and the 40MB and 200MB GPT + AdamW states of bench/store_scale.py
(trained on demand, seconds).

    python bench/store_objects.py [--reps 3]

Writes the `store_objects` section of bench/store_results.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import torch
from zarr.storage import MemoryStore

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import store_scale  # noqa: E402
from bench.sections import head_commit, write_section  # noqa: E402
from tpde.store import CheckpointStore  # noqa: E402
from tpde.store.bundle import DEFAULT_BUNDLE_BELOW  # noqa: E402


class CountingStore(MemoryStore):
    """A MemoryStore that counts the reads and writes of values."""

    def __init__(self):
        super().__init__()
        self.gets = self.sets = 0

    def get_sync(self, *args, **kwargs):  # noqa: D102
        self.gets += 1
        return super().get_sync(*args, **kwargs)

    async def get(self, *args, **kwargs):  # noqa: D102
        self.gets += 1
        return await super().get(*args, **kwargs)

    def set_sync(self, *args, **kwargs):  # noqa: D102
        self.sets += 1
        return super().set_sync(*args, **kwargs)

    async def set(self, *args, **kwargs):  # noqa: D102
        self.sets += 1
        return await super().set(*args, **kwargs)


def many_small() -> dict:
    """The tests/test_s3.py model: 3,000 norms of 16 elements and an embedding."""
    g = torch.Generator().manual_seed(0)
    model = {f"layers.{i}.norm.weight": torch.randn(16, generator=g) for i in range(3000)}
    model["embed.weight"] = torch.randn(512, 256, generator=g)
    return {"model": model, "step": 0}


def gpt(size: str) -> dict:
    """The last checkpoint of a bench/store_scale.py size."""
    store_scale.ensure(size)
    return torch.load(store_scale.step_paths(size)[-1], weights_only=True)


def perturbed(state: object, k: int) -> object:
    """A copy of `state` with every floating tensor nudged (the k-th save)."""
    g = torch.Generator().manual_seed(k)
    if isinstance(state, torch.Tensor):
        if not state.is_floating_point() or k == 0:
            return state.clone()
        mask = torch.rand(state.shape, generator=g) < 0.3
        return torch.where(mask, state + 1e-3 * torch.randn(state.shape, generator=g), state)
    if isinstance(state, dict):
        return {key: perturbed(v, k) for key, v in state.items()}
    if isinstance(state, list):
        return [perturbed(v, k) for v in state]
    return state


def smallest_tensor(state: dict) -> str:
    """Name (store array name) of a small tensor of the model."""
    model = state["model"]
    name = min(model, key=lambda n: (model[n].numel(), n))
    return f"model/{name}"


def measure(label: str, state: dict, bundle_below: int | None, work: Path, reps: int) -> dict:
    """Objects and requests of one state at one setting (see the module docstring)."""
    saves = [perturbed(state, k) for k in range(3)]
    counting = CountingStore()
    store = CheckpointStore(counting, mode="w", bundle_below=bundle_below, progress=False)
    for k, s in enumerate(saves[:-1]):
        store.save(k, s)
    before = counting.sets
    store.save(2, saves[-1])
    puts = counting.sets - before
    objects = sum(1 for key in counting._store_dict if key.startswith("steps/2/") or key == "commits/2")
    reader = CheckpointStore(counting, mode="r", progress=False)
    before = counting.gets
    reader.load(2)
    load_gets = counting.gets - before
    name = smallest_tensor(state)
    before = counting.gets
    reader.load_tensor(2, name)
    tensor_gets = counting.gets - before
    t_save = t_load = float("inf")
    for rep in range(reps):
        path = work / f"{label}-{bundle_below}-{rep}.tpde"
        local = CheckpointStore(path, mode="w", bundle_below=bundle_below, progress=False)
        for k, s in enumerate(saves):
            t0 = time.perf_counter()
            local.save(k, s)
            if k:
                t_save = min(t_save, time.perf_counter() - t0)
        local.close()
        t0 = time.perf_counter()
        CheckpointStore(path, mode="r", progress=False).load(2)
        t_load = min(t_load, time.perf_counter() - t0)
    return dict(objects=objects, puts=puts, load_gets=load_gets, tensor_gets=tensor_gets, t_save=t_save,
                t_load=t_load, tensors=len(state["model"]), tensor=name)


def report(rows: list[tuple[str, dict, dict]], commit: str, command: str, load: tuple[float, float]) -> str:
    """The `store_objects` section of bench/store_results.md."""
    lines = [
        "<!-- store_objects -->",
        "## Objects and requests per step: bundles (store format 4) vs one object per array (bench/store_objects.py)",
        "",
        f"- commit {commit} · `{command}` · {os.cpu_count()} cores · load average (1 min) before / after "
        f"{load[0]:.2f} / {load[1]:.2f}",
        "- a keyframe and two deltas; the figures are the last delta's (depth 2); requests counted on a "
        "counting in-memory zarr store (listings not counted); times on a local folder, best of the runs",
        "- one small tensor costs 2 more reads with bundles at depth 2: its byte ranges are in the manifests of "
        "the chain's earlier steps, which are read too (without bundles, zarr's chunk keys need no manifest)",
        "",
        "| state | model tensors | bundle_below | objects / step | save PUTs | load GETs | one small tensor GETs "
        "| save s | load s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, off, on in rows:
        for setting, r in (("0 (off)", off), (f"{DEFAULT_BUNDLE_BELOW:,} (default)", on)):
            lines.append(f"| {label} | {r['tensors']} | {setting} | {r['objects']} | {r['puts']} | {r['load_gets']} "
                         f"| {r['tensor_gets']} | {r['t_save']:.3f} | {r['t_load']:.3f} |")
    lines.append("<!-- /store_objects -->")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure every state at both settings and write the section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    work = HERE / ".cache" / "store-bench" / "objects"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = []
    try:
        for label, make in (("many-small", many_small), ("GPT 40MB", lambda: gpt("40MB")),
                            ("GPT 200MB", lambda: gpt("200MB"))):
            state = make()
            rows.append((label, measure(label, state, 0, work, args.reps),
                         measure(label, state, None, work, args.reps)))
            print(label, rows[-1][1:], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(rows, head_commit(), "python bench/store_objects.py " + " ".join(sys.argv[1:]),
                  (load_before, os.getloadavg()[0]))
    write_section(HERE / "store_results.md", "store_objects", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
