"""tpde-pack's command-line values: argument types, slices and output paths, each checked
before any work, with one-line errors."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..bounds import parse_bound
from ..errors import TPDEError


def one_line(text: str) -> str:
    """`text` on one line (error messages of other libraries span paragraphs)."""
    return " ".join(text.split())


def output_path(text: str, suffixes: tuple[str, ...], names: str) -> Path:
    """An output file path checked before any work: a known suffix, an existing folder,
    not a folder itself."""
    path = Path(text)
    if path.suffix not in suffixes:
        raise TPDEError(f"{text}: unknown output type; name it {names}", "invalid_argument")
    if path.is_dir():
        raise TPDEError(f"{text}: is a folder; give a file name", "invalid_argument")
    parent = path.parent
    if not parent.exists():
        raise TPDEError(f"{text}: folder {parent} does not exist", "not_found")
    if not parent.is_dir():
        raise TPDEError(f"{text}: {parent} is not a folder", "invalid_argument")
    return path


def int_at_least(text: str, low: int, too_low: str) -> int:
    """`text` as an integer >= `low`; else ArgumentTypeError (`too_low` formatted with the value)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(too_low.format(value))
    return value


def count(text: str) -> int:
    """An integer of 1 or more (--keyframe-every, --chunk-elements)."""
    return int_at_least(text, 1, "must be 1 or more, not {}")


def non_negative(text: str) -> int:
    """An integer of 0 or more (--bundle-below)."""
    return int_at_least(text, 0, "must be 0 or more, not {}")


def step_number(text: str) -> int:
    """A step number: an integer of 0 or more."""
    return int_at_least(text, 0, "steps are numbered from 0, not {}")


def positive(text: str) -> float:
    """A finite number above 0 (--abs-error, --rel-error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def bound_arg(text: str) -> str:
    """An error bound spec as `parse_bound` reads it (checked, kept as text)."""
    try:
        parse_bound(text)
    except TPDEError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def parse_slice(spec: str) -> tuple:
    """Parse a numpy-style index like "0:128,:" or "3,::2" into a tuple of ints/slices."""
    items = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if ":" in part:
                fields = part.split(":")
                if len(fields) > 3:
                    raise ValueError
                items.append(slice(*(int(f) if f.strip() else None for f in fields)))
            else:
                items.append(int(part))
        except ValueError:
            raise TPDEError(f"bad slice {spec!r}: {part!r} is not an int or start:stop:step",
                            "invalid_argument") from None
        if isinstance(items[-1], slice) and items[-1].step == 0:
            raise TPDEError(f"bad slice {spec!r}: {part!r} has a step of 0", "invalid_argument")
    return tuple(items)
