"""Coder levels: how the chunk coder trades speed for size.

"default": context-modelled rANS with zero masking and Elias gaps (chunk format 5).
"fast": byte planes of a cheap residual, static order-0 rANS on 32 lanes x 2 streams,
no contexts (chunk format 6, docs/format.md section 14): several times faster to code and
decode, a few percent larger. Both are lossless; any reader of format 6 decodes both.
"""

from __future__ import annotations

from .errors import TPDEError

LEVELS = ("default", "fast")


def check_level(level: object) -> str:
    """`level` if it names a coder level; a one-line TPDEError otherwise."""
    if level not in LEVELS:
        raise TPDEError(f"level must be one of {', '.join(map(repr, LEVELS))}, not {level!r}", "invalid_argument")
    return level
