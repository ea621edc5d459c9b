"""`tpde-pack ... --json`: one JSON document on stdout, for scripts.

Sizes are bytes (integers), ratios floats (null when nothing was stored), steps integers.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Callable


def dump_json(document: object) -> None:
    """Print `document` as one line of JSON."""
    json.dump(document, sys.stdout, separators=(",", ":"), allow_nan=False)
    sys.stdout.write("\n")


def _ratio(raw: int, stored: int) -> float | None:
    return raw / stored if stored else None


def step_json(h) -> dict:
    """A StepInfo's summary fields."""
    return {
        "step": h.step, "kind": h.kind, "base_step": h.base_step, "prev_step": h.prev_step,
        "depth": h.depth, "raw_bytes": h.raw_bytes, "stored_bytes": h.stored_bytes,
        "ratio": _ratio(h.raw_bytes, h.stored_bytes), "lossy": h.lossy, "cross_state": h.predicted,
        "time": h.time,
    }


def history_json(history: list) -> dict:
    """`ls --json`: every step, and the totals."""
    raw = sum(h.raw_bytes for h in history)
    stored = sum(h.stored_bytes for h in history)
    return {"steps": [step_json(h) for h in history], "raw_bytes": raw, "stored_bytes": stored,
            "ratio": _ratio(raw, stored)}


def info_json(info, describe_bound: Callable) -> dict:
    """`info --json`: the step, its tensors, its blobs and its meta."""
    tensors = []
    for t in info.tensors.values():
        tensors.append({
            "name": t.name, "kind": t.kind, "dtype": t.dtype, "shape": list(t.shape), "chunks": list(t.chunks),
            "raw_bytes": t.raw_bytes, "stored_bytes": t.stored_bytes, "ratio": _ratio(t.raw_bytes, t.stored_bytes),
            "changed_fraction": t.changed_fraction, "bound": None if describe_bound(t) == "-" else describe_bound(t),
            "cross_state": t.predicted,
        })
    blobs = [{"name": b.name, "size": b.size, "sha256": b.sha256, "stored_bytes": b.stored_bytes}
             for b in info.blobs or []]
    return {**step_json(info), "error_bounds": info.error_bounds, "tensors": tensors, "blobs": blobs,
            "meta": info.meta or {}}


def stats_json(infos: list, group_of: Callable[[str], str], changed: Callable) -> dict:
    """`stats --json`: ratio and changed share per step and per tensor group."""
    steps = [{"step": i.step, "kind": i.kind, "ratio": _ratio(i.raw_bytes, i.stored_bytes),
              "changed_fraction": changed(i.tensors.values())} for i in infos]
    groups: dict[str, list] = defaultdict(list)
    for info in infos:
        for t in info.tensors.values():
            groups[group_of(t.name)].append(t)
    out = []
    for group, members in groups.items():
        raw = sum(t.raw_bytes for t in members)
        stored = sum(t.stored_bytes for t in members)
        out.append({"group": group, "tensors": len(members), "raw_bytes": raw, "stored_bytes": stored,
                    "ratio": _ratio(raw, stored), "changed_fraction": changed(members)})
    return {"steps": steps, "groups": out}

