"""The kind of a stored tensor, from its name: what error bounds and cross-state
prediction go by.

    exp_avg_sq   names ending in "exp_avg_sq" (Adam's second moments; AMSGrad's
                 "max_exp_avg_sq" too);
    exp_avg      names ending in "exp_avg" (first moments);
    other        other optimizer state tensors ("<...>/state/<int>/<key>": SGD's
                 momentum_buffer, step counters, ...);
    weights      everything else: parameters and buffers.
"""

from __future__ import annotations

import re

KINDS = ("weights", "exp_avg", "exp_avg_sq", "other")
_OPTIMIZER_STATE = re.compile(r"(^|/)state/\d+/[^/]+$")


def tensor_kind(name: str) -> str:
    """The kind of a stored tensor, from its name: "weights", "exp_avg", "exp_avg_sq" or "other"."""
    if name.endswith("exp_avg_sq"):
        return "exp_avg_sq"
    if name.endswith("exp_avg"):
        return "exp_avg"
    if _OPTIMIZER_STATE.search(name):
        return "other"
    return "weights"
