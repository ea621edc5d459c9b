"""What a store holds: its committed steps, their commit markers and manifests.

Everything read here comes from a store that may be damaged or hostile: a marker or
manifest that does not parse, or does not match, raises TPDEError ("corrupt").
"""

from __future__ import annotations

import numpy as np

from ..errors import TPDEError
from .kv import KeyValueAccess
from .names import step_from_name
from .schema import COMMITS, ROOT_ATTRS, Manifest, Marker, commit_key, step_prefix


class Catalog:
    """Reads the commit markers and manifests of a store."""

    def __init__(self, kv: KeyValueAccess):
        self.kv = kv
        self._written: tuple[int, int, Manifest] | None = None  # (step, manifest CRC32, manifest)

    def wrote(self, manifest: Manifest, crc32: int) -> None:
        """Remember the manifest this object's writer just committed (CRC32 of its bytes):
        the next save codes against that step and need not read and parse it again."""
        self._written = (manifest.step, crc32, manifest)

    def steps(self) -> list[int]:
        """Committed steps, ascending."""
        return sorted(s for s in map(step_from_name, self.kv.list_dir(COMMITS)) if s is not None)

    def marker(self, step: int) -> Marker:
        """The commit marker of `step`; TPDEError "unknown_step" if it is not committed."""
        step = check_step(step)
        data = self.kv.get(commit_key(step))
        if data is None:
            known = self.steps()
            hint = f"; steps are {_summarize(known)}" if known else "; the store has no steps"
            raise TPDEError(f"unknown step {step}{hint}", "unknown_step")
        return Marker.from_bytes(step, data)

    def manifest(self, step: int, marker: Marker | None = None) -> Manifest:
        """The manifest of `step`, checked against its marker (read when not given)."""
        marker = marker or self.marker(step)
        return Manifest.from_bytes(marker, self.kv.get(f"{step_prefix(marker.step)}/{ROOT_ATTRS}"))

    def reference_manifest(self, marker: Marker) -> Manifest:
        """The manifest of `marker`'s step for the next save: the one `wrote` remembered if
        the marker vouches for it (same step and CRC32), else read and checked. Loads
        always read the store (`manifest`), so that they see what is on disk."""
        written = self._written
        if written is not None and written[:2] == (marker.step, marker.manifest_crc32):
            return written[2]
        return self.manifest(marker.step, marker)

    def markers(self) -> list[Marker]:
        """The markers of every committed step, ascending."""
        return [self.marker(s) for s in self.steps()]

    def scan(self) -> tuple[list[Marker], dict[int, str]]:
        """The readable markers, ascending, and {step: problem} for those that are not:
        one bad marker is that step's problem, not the whole store's."""
        markers, unreadable = [], {}
        for step in self.steps():
            try:
                markers.append(self.marker(step))
            except TPDEError as e:
                if e.code != "unknown_step":  # deleted meanwhile: not a problem
                    unreadable[step] = str(e)
        return markers, unreadable

    def was_pruned(self, step: int, error: TPDEError) -> TPDEError:
        """`error` (met while reading `step`), or "step N was pruned" when the step's marker
        is gone now: a concurrent prune or delete removed it under the reader."""
        if error.code == "pruned" or self.kv.exists(commit_key(step)):
            return error
        return TPDEError(f"step {step} was pruned (deleted by another process) while it was being read",
                         "pruned")


def check_step(step: object) -> int:
    """`step` as an int if it is an integer >= 0, else TPDEError."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise TPDEError(f"a step is an integer >= 0, not {step!r}", "invalid_argument")
    return int(step)


def _summarize(steps: list[int]) -> str:
    if len(steps) <= 6:
        return ", ".join(map(str, steps))
    return f"{steps[0]}, {steps[1]}, {steps[2]}, ..., {steps[-1]} ({len(steps)} steps)"
