"""Cross-state prediction in the store (`save(..., cross_state=True)`, docs/store.md).

AdamW moves a weight by about -lr * exp_avg / (sqrt(exp_avg_sq) + eps) per step, so a
delta step can code a weight chunk against a *prediction* made from the optimizer state
instead of against the base step's weights, and exp_avg against a prediction made from
the weight change. This module pairs weights with their moments, plans which tensors of
a step get a prediction and from what, and builds the predicted reference of one chunk;
the arithmetic is the core's (`_core.fit_prediction`, `_core.predict`).

A plan maps a tensor name to its terms, each ``(term kind, ((name, offset), ...))`` where
offset 0 is the step being coded and 1 its base step:

  lossless moments:  weights <- adam_direction(m, v @ step), adam_direction(m, v @ base)
  lossy moments:     weights <- adam_direction(m, v @ base)
                     exp_avg <- scaled_delta(weights @ step, weights @ base, v @ step)
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from .. import _core
from ..dtypes import FLOAT_DTYPES
from ..kinds import tensor_kind
from ..state.arrays import ArraySpec

EPS = 1e-8  # torch.optim.AdamW's default
MIN_EXPLAINED = 0.05  # below this, a chunk is coded against its base as usual
_ARITY = {"adam_direction": 2, "scaled_delta": 3}
_EXP_AVG = re.compile(r"^(?P<prefix>.+)/state/(?P<index>\d+)/exp_avg$")

Terms = list[tuple[str, tuple[tuple[str, int], ...]]]
Plan = dict[str, Terms]


def find_links(specs: dict[str, ArraySpec], chunks: dict[str, tuple]) -> list[tuple[str, str, str]]:
    """(weights, exp_avg, exp_avg_sq) name triples of the same layout.

    Optimizer state indices follow the optimizer's parameter order; each index takes the
    first free weight tensor, in state order, with the layout of its moments. A wrong
    pairing (param groups in another order than the model's tensors, tensors of equal
    shape) costs ratio, never correctness: the fit then explains nothing and the chunk is
    coded as usual."""
    def layout(n: str) -> tuple:
        return specs[n].codec_dtype, specs[n].storage_shape, chunks[n]

    states: dict[str, list[tuple[int, str, str]]] = {}
    for name in specs:
        match = _EXP_AVG.match(name)
        sq = name + "_sq"
        if match and sq in specs and layout(name) == layout(sq) and _float_tensor(specs[name]):
            states.setdefault(match["prefix"], []).append((int(match["index"]), name, sq))
    weights = [n for n, s in specs.items() if tensor_kind(n) == "weights" and _float_tensor(s)]
    links = []
    for prefix, found in states.items():
        free = [n for n in weights if not n.startswith(prefix + "/")]
        for _, m, v in sorted(found):
            w = next((n for n in free if layout(n) == layout(m)), None)
            if w is not None:
                free.remove(w)
                links.append((w, m, v))
    return links


def plan_step(links: list[tuple[str, str, str]], lossy: set[str]) -> Plan:
    """Which tensors of a delta step are predicted, from what (module docstring)."""
    plan: Plan = {}
    for w, m, v in links:
        if m in lossy:
            plan[w] = [("adam_direction", ((m, 1), (v, 1)))]
            plan[m] = [("scaled_delta", ((w, 0), (w, 1), (v, 0)))]
        else:
            plan[w] = [("adam_direction", ((m, 0), (v, 0))), ("adam_direction", ((m, 1), (v, 1)))]
    return plan


def coding_order(names: list[str], plan: Plan) -> list[str]:
    """`names` ordered so that every tensor comes after the same-step inputs it needs."""
    done: list[str] = []
    pending = list(names)
    while pending:
        for n in pending:
            needs = {i for _, inputs in plan.get(n, []) for i, off in inputs if off == 0 and i in names}
            if needs <= set(done):
                done.append(n)
                pending.remove(n)
                break
        else:
            raise ValueError(f"circular prediction among {pending}")
    return done


def groups(names: list[str], plans: list[Plan]) -> list[list[str]]:
    """`names` and the tensors their predictions read, split into groups that must be
    decoded together (union over the plans of every step of a chain)."""
    parent: dict[str, str] = {}

    def root(n: str) -> str:
        parent.setdefault(n, n)
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    todo, seen = list(names), set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        root(n)
        for plan in plans:
            for _, inputs in plan.get(n, []):
                for i, _ in inputs:
                    parent[root(i)] = root(n)
                    todo.append(i)
    out: dict[str, list[str]] = {}
    for n in parent:
        out.setdefault(root(n), []).append(n)
    return list(out.values())


def term_arrays(terms: Terms, chunk_of: Callable[[str, int], np.ndarray]) -> list[tuple]:
    """The core's term tuples for one chunk; `chunk_of(name, offset)` gives the inputs."""
    return [(kind, *(chunk_of(n, off) for n, off in inputs)) for kind, inputs in terms]


def fit(data: np.ndarray, reference: np.ndarray, terms: list[tuple], dtype: str) -> list[float] | None:
    """Coefficients worth using for this chunk, or None (code it against its base)."""
    result = _core.fit_prediction(data, reference, terms, eps=EPS, dtype=dtype)
    if result is None or not result[1] >= MIN_EXPLAINED:
        return None
    return list(result[0])


def predicted_reference(reference: np.ndarray, terms: list[tuple], coefs: list[float], dtype: str) -> np.ndarray:
    """The reference a predicted chunk is coded against."""
    return _core.predict(reference, terms, coefs, eps=EPS, dtype=dtype)


def terms_to_json(terms: Terms) -> list:
    """Terms as manifest JSON: [[kind, [[name, offset], ...]], ...]."""
    return [[kind, [[n, off] for n, off in inputs]] for kind, inputs in terms]


def terms_from_json(obj: list) -> Terms:
    """Inverse of `terms_to_json`; ValueError on anything else."""
    terms = [(str(kind), tuple((str(n), int(off)) for n, off in inputs)) for kind, inputs in obj]
    for kind, inputs in terms:
        if kind not in _ARITY or len(inputs) != _ARITY[kind] or any(off not in (0, 1) for _, off in inputs):
            raise ValueError(f"unknown prediction term {kind!r} with inputs {inputs}")
    return terms


def _float_tensor(spec: ArraySpec) -> bool:
    return spec.kind != "pickle" and len(spec.storage_shape) > 0 and spec.codec_dtype in FLOAT_DTYPES
