"""The last saved step's reconstruction kept by the saver: the reference of the next delta,
so that a run of saves never reads back what it just wrote. In memory, or with
`on_disk` in unnamed files (spill.py) for states that do not fit in memory twice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema import KEYFRAME, ArrayEntry, Manifest
from .spill import SpilledArray, SpillFile


@dataclass
class Snapshot:
    """A step's reconstruction: the reference for the next delta."""

    step: int
    arrays: dict[str, np.ndarray | SpilledArray]
    entries: dict[str, ArrayEntry]
    owned: frozenset = frozenset()  # arrays in the store's own memory (not the caller's tensors)


class SnapshotCache:
    """The reconstructions of the latest saved step and of its base step."""

    def __init__(self, on_disk: bool = False, folder: str | None = None) -> None:
        self.recent: list[Snapshot] = []
        self.on_disk = on_disk  # keep reconstructions in files in `folder` (None: the temporary folder)
        self.folder = folder

    def new_file(self) -> SpillFile:
        """A file for one step's reconstruction (only with `on_disk`)."""
        return SpillFile(self.folder)

    def lookup(self, manifest: Manifest) -> tuple[Snapshot | None, Snapshot | None]:
        """The reconstructions of `manifest`'s step and of its base, if current
        ((None, None) unless every array's chunk hashes match)."""
        by_step = {s.step: s for s in self.recent}
        base = by_step.get(manifest.step)
        if base is None or any(
            base.entries.get(n) is None or base.entries[n].crc32c != e.crc32c
            for n, e in manifest.arrays.items()
        ):
            return None, None
        if manifest.kind == KEYFRAME:
            return base, None
        prev = by_step.get(manifest.base_step)
        return (base, prev) if prev is not None else (None, None)

    def keep(self, base: Snapshot | None, saved: Snapshot) -> None:
        """After a save: keep the saved step and the base it was coded against."""
        self.recent = [s for s in (base, saved) if s is not None]

    def drop(self, step: int) -> None:
        """Forget `step` (it was deleted)."""
        self.recent = [s for s in self.recent if s.step != step]

    def clear(self) -> None:
        """Forget everything."""
        self.recent = []
