"""Verifying a store: decode every tensor of every step and check every content hash;
for the whole store also report step data without a commit marker (a deleted marker) and,
on local disks, symbolic links that lead out of the store."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np

from ..errors import TPDEError
from .blobs import read_blobs
from .chain import chain_markers
from .load import Reader
from .names import step_from_name
from .schema import ROOT_ATTRS, STEPS, step_prefix


def verify(reader: Reader, steps: Iterable[int] | None, progress: bool | None) -> list[str]:
    """Problems found in `steps` (default: all), one line each (`CheckpointStore.verify`).

    Steps are checked in order, each decoded from the previous one held in memory.
    """
    catalog = reader.catalog
    problems: list[str] = []
    memory: dict[int, dict[str, np.ndarray]] = {}
    for step in sorted(catalog.steps() if steps is None else steps):
        try:
            chain = chain_markers(catalog, step)
            manifest = catalog.manifest(step, chain[-1])
            names = list(manifest.arrays)
            arrays, _ = reader.reconstruct(chain, manifest, names, seed=memory, progress=progress)
            read_blobs(catalog.kv, manifest, None)
        except TPDEError as e:
            problems.append(f"step {step}: {e}")
            continue
        memory = {s: a for s, a in memory.items() if s in (manifest.base_step, manifest.step)}
        memory[step] = arrays
    if steps is None:
        problems += orphaned_steps(catalog) + links_out(catalog.kv)
    return problems


def orphaned_steps(catalog) -> list[str]:
    """Steps whose data is complete (a manifest of that step) but whose commit marker is
    missing: a deleted marker, or a save killed between its manifest and its marker.
    (Leftovers without a manifest are interrupted saves: `uncommitted()`.)"""
    committed = set(catalog.steps())
    found = []
    for name in catalog.kv.list_dir(STEPS):
        step = step_from_name(name)
        if step is None or step in committed:
            continue
        try:
            body = json.loads(catalog.kv.get(f"{step_prefix(step)}/{ROOT_ATTRS}") or b"null")
        except (ValueError, RecursionError, TPDEError):
            continue
        if isinstance(body, dict) and isinstance(body.get("tpde_step"), dict) and body["tpde_step"].get("step") == step:
            found.append(f"step {step}: its data and manifest are in the store but its commit marker is "
                         "missing (deleted, or the save died just before committing); it is not listed")
    return found


def links_out(kv) -> list[str]:
    """Symbolic links of a local store that resolve outside it (loads refuse them)."""
    root = getattr(kv, "_real_root", None)
    if root is None or not os.path.isdir(root):
        return []
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not os.path.realpath(path).startswith(root + os.sep):
                found.append(f"{os.path.relpath(path, root)}: a symbolic link to outside the store "
                             f"({os.readlink(path)[:200]}); loads refuse it")
    return found
