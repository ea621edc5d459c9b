"""Error bounds for lossy saves: what the caller asks for, per tensor kind.

A bound is one of

    abs_bound(e)   every restored value within e of the saved one;
    rms_bound(f)   within f x RMS of the tensor at the keyframe of its chain (the store
                   measures the RMS when it codes the keyframe, records it, and reuses it
                   for the chain's deltas: the bound stays fixed along a chain);
    log_bound(r)   within r x max(|x|, 2 x smallest normal of the dtype), 0 < r < 1: a
                   relative bound, quantized in the log domain (for optimizer second
                   moments, which span many decades).

`ErrorBounds` picks a bound per tensor kind, from the tensor's name (kinds.py):

    exp_avg_sq   names ending in "exp_avg_sq" (Adam's second moments; AMSGrad's
                 "max_exp_avg_sq" too);
    exp_avg      names ending in "exp_avg" (first moments);
    other        other optimizer state tensors ("<...>/state/<int>/<key>": SGD's
                 momentum_buffer, step counters, ...);
    weights      everything else: parameters and buffers.

There is no default bound: a kind left None is stored losslessly, and so is every tensor
that is not floating point of one or more dimensions (0-d step counters, integers, bools,
complex, float8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import TPDEError
from .kinds import KINDS, tensor_kind

__all__ = [
    "KINDS", "BoundSpec", "ErrorBounds", "abs_bound", "as_spec", "describe", "log_bound", "parse_bound",
    "rms_bound", "tensor_kind",
]

BOUND_TYPES = ("abs", "rms", "log")


@dataclass(frozen=True)
class BoundSpec:
    """One requested bound: `type` "abs", "rms" or "log" and its `value`.

    `str(spec)` is the CLI spelling ("rms:0.1"); `parse_bound` reads it back.
    """

    type: str
    value: float

    def __post_init__(self) -> None:
        if self.type not in BOUND_TYPES:
            raise TPDEError(
                f"bound type must be one of {', '.join(BOUND_TYPES)}, not {self.type!r}", "invalid_argument"
            )
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise TPDEError(
                f"{self.type} bound must be a positive number, not {value!r}", "invalid_argument"
            )
        if self.type == "log" and value >= 1:
            raise TPDEError(f"log bound must be below 1 (a relative error), not {value!r}", "invalid_argument")
        object.__setattr__(self, "value", float(value))

    def __str__(self) -> str:
        return f"{self.type}:{self.value!r}"


def abs_bound(error: float) -> BoundSpec:
    """|restored - saved| <= `error` for every value."""
    return BoundSpec("abs", error)


def rms_bound(fraction: float) -> BoundSpec:
    """|restored - saved| <= `fraction` x the tensor's RMS at the keyframe of its chain."""
    return BoundSpec("rms", fraction)


def log_bound(ratio: float) -> BoundSpec:
    """|restored - saved| <= `ratio` x max(|saved|, 2 x smallest normal), same sign; 0 < ratio < 1."""
    return BoundSpec("log", ratio)


def parse_bound(text: str) -> BoundSpec | None:
    """Read "abs:1e-4", "rms:0.1", "log:0.3" or "none" (lossless: None)."""
    spec = text.strip().lower()
    if spec == "none":
        return None
    kind, sep, number = spec.partition(":")
    usage = "expected abs:E, rms:F, log:R or none"
    if not sep or kind not in BOUND_TYPES:
        raise TPDEError(f"bad error bound {text!r}: {usage}", "invalid_argument")
    try:
        value = float(number)
    except ValueError:
        raise TPDEError(f"bad error bound {text!r}: {number.strip()!r} is not a number", "invalid_argument") from None
    try:
        return BoundSpec(kind, value)
    except TPDEError as e:
        raise TPDEError(f"bad error bound {text!r}: {e}", "invalid_argument") from None


@dataclass(frozen=True)
class ErrorBounds:
    """The bound of each tensor kind (None: lossless). No kind has a default bound.

    `ErrorBounds(weights=rms_bound(0.1), exp_avg=rms_bound(0.2), exp_avg_sq=log_bound(0.3))`
    keeps weights within 10 % of their keyframe RMS, first moments within 20 %, second
    moments within 30 % of each value, and other optimizer tensors exact. Calling it with
    a tensor name gives that tensor's bound.
    """

    weights: BoundSpec | None = None
    exp_avg: BoundSpec | None = None
    exp_avg_sq: BoundSpec | None = None
    other: BoundSpec | None = None

    def __post_init__(self) -> None:
        for kind in KINDS:
            value = getattr(self, kind)
            if value is not None and not isinstance(value, BoundSpec):
                raise TPDEError(
                    f"ErrorBounds({kind}=...) takes abs_bound(e), rms_bound(f), log_bound(r) or None, "
                    f"not {value!r}",
                    "invalid_argument",
                )

    def __call__(self, name: str) -> BoundSpec | None:
        return getattr(self, tensor_kind(name))

    def to_json(self) -> dict[str, str | None]:
        """{kind: "rms:0.1" or None}: what the store records and `info` shows."""
        return {kind: None if getattr(self, kind) is None else str(getattr(self, kind)) for kind in KINDS}

    def __str__(self) -> str:
        return ", ".join(f"{k} {v or 'none'}" for k, v in self.to_json().items())

    @property
    def lossless(self) -> bool:
        """Whether no kind has a bound."""
        return all(getattr(self, kind) is None for kind in KINDS)


_DICT_FORMS = {"abs_error": "abs", "log_rel_error": "log"}


def as_spec(bound: object, name: str) -> BoundSpec | None:
    """A tensor's BoundSpec from what `save(error_bound=...)` (or its function) gave."""
    if bound is None or isinstance(bound, BoundSpec):
        return bound
    if isinstance(bound, dict) and len(bound) == 1 and next(iter(bound)) in _DICT_FORMS:
        key, value = next(iter(bound.items()))
        try:
            return BoundSpec(_DICT_FORMS[key], value)
        except TPDEError as e:
            raise TPDEError(f"error bound for {name!r}: {e}", "invalid_argument") from None
    raise TPDEError(
        f"error bound for {name!r} must be {{'abs_error': e}}, {{'log_rel_error': r}}, "
        f"abs_bound(e), rms_bound(f), log_bound(r) or None, not {bound!r}",
        "invalid_argument",
    )


def describe(error_bound: object) -> dict[str, str | None] | None:
    """The step-level record of what `save(error_bound=...)` asked for (None: lossless)."""
    if error_bound is None:
        return None
    if isinstance(error_bound, ErrorBounds):
        return None if error_bound.lossless else error_bound.to_json()
    if callable(error_bound):
        return {"custom": getattr(error_bound, "__qualname__", type(error_bound).__name__)}
    return {"all": str(as_spec(error_bound, "every tensor"))}
