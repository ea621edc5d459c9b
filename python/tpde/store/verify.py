"""Verifying a store: decode every tensor of every step and check every content hash."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import TPDEError
from .blobs import read_blobs
from .chain import chain_markers
from .load import Reader


def verify(reader: Reader, steps: Iterable[int] | None, progress: bool | None) -> list[str]:
    """Problems found in `steps` (default: all), one line each (`CheckpointStore.verify`).

    Steps are checked in order, each decoded from the previous one held in memory.
    """
    catalog = reader.catalog
    problems: list[str] = []
    memory: dict[int, dict[str, np.ndarray]] = {}
    for step in sorted(catalog.steps() if steps is None else steps):
        try:
            manifest = catalog.manifest(step)
            chain = chain_markers(catalog, step)
            names = list(manifest.arrays)
            arrays, _ = reader.reconstruct(chain, manifest, names, seed=memory, progress=progress)
            read_blobs(catalog.kv, manifest, None)
        except TPDEError as e:
            problems.append(f"step {step}: {e}")
            continue
        memory = {s: a for s, a in memory.items() if s in (manifest.base_step, manifest.step)}
        memory[step] = arrays
    return problems
