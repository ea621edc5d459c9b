"""Deleting steps: one step (refused while a later delta needs it), pruning to a keep
policy (keeping every step a kept step's chain needs), and cleaning up after crashes.

A step is deleted marker first: a crash midway leaves an uncommitted folder, never a
committed step with missing chunks.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

from ..errors import TPDEError
from .catalog import Catalog
from .names import step_from_name
from .schema import COMMITS, STEPS, Marker, commit_key, step_prefix
from .snapshots import SnapshotCache


def delete_step(catalog: Catalog, snapshots: SnapshotCache, step: int) -> None:
    """Delete a committed step unless a later delta needs it (TPDEError "has_dependents")."""
    step = catalog.marker(step).step
    markers, unreadable = catalog.scan()
    dependents = _dependents([step], markers) + [s for s in unreadable if s > step]
    if dependents:
        raise TPDEError(
            f"cannot delete step {step}: step(s) {', '.join(map(str, dependents))} are "
            "coded against it; delete them first, or use prune() which keeps what is needed",
            "has_dependents",
        )
    _delete_committed(catalog, snapshots, step)


def prune(
    catalog: Catalog,
    snapshots: SnapshotCache,
    keep_last: int | None,
    keep_every: int | None,
    keep: Iterable[int],
    dry_run: bool,
) -> list[int]:
    """Delete steps but the kept ones and their chains (`CheckpointStore.prune`).

    Counts below 1 are refused, and so is a policy that keeps nothing (`delete_all` is the
    explicit way). Steps whose marker is unreadable are kept, with every step before them
    (their chains are unknown).
    """
    keep = list(keep)
    for what, value in (("keep_last", keep_last), ("keep_every", keep_every)):
        if value is not None and (not _is_count(value) or value < 1):
            raise TPDEError(f"prune: {what} must be an integer >= 1, not {value!r} "
                            "(delete_all() deletes every step)", "invalid_argument")
    if not all(_is_count(s) for s in keep):
        raise TPDEError("prune: keep must hold step numbers (ints)", "invalid_argument")
    keep_last = None if keep_last is None else int(keep_last)
    keep_every = None if keep_every is None else int(keep_every)
    keep = [int(s) for s in keep]
    if keep_last is None and keep_every is None and not keep:
        raise TPDEError("prune needs keep_last, keep_every or keep", "invalid_argument")
    history, unreadable = catalog.scan()
    steps = [h.step for h in history]
    wanted_steps = set(keep) | set(unreadable)
    if unreadable:
        wanted_steps.update(s for s in steps if s < max(unreadable))
    if keep_last:
        wanted_steps.update(steps[-keep_last:])
    if keep_every:
        wanted_steps.update(s for s in steps if s % keep_every == 0)
    by_step = {h.step: h for h in history}
    needed: set[int] = set()
    todo = [s for s in wanted_steps if s in by_step]
    while todo:
        s = todo.pop()
        if s in needed:
            continue
        needed.add(s)
        todo.extend(d for d in (by_step[s].base_step, by_step[s].prev_step) if d is not None)
    doomed = sorted((s for s in steps if s not in needed), reverse=True)
    if doomed and len(doomed) == len(steps) and not unreadable:
        raise TPDEError(f"prune would delete every step (keep={keep} matches none); delete_all() "
                        "(tpde-pack prune --all) does that explicitly", "invalid_argument")
    if not dry_run:
        for s in doomed:
            _delete_committed(catalog, snapshots, s)
    return sorted(doomed)


def delete_all(catalog: Catalog, snapshots: SnapshotCache, dry_run: bool = False) -> list[int]:
    """Delete every committed step, newest first (`CheckpointStore.delete_all`)."""
    steps = catalog.steps()
    if not dry_run:
        for s in reversed(steps):
            _delete_committed(catalog, snapshots, s)
    return steps


def uncommitted(catalog: Catalog) -> list[str]:
    """Leftovers of interrupted saves or deletes: step folders without a commit marker."""
    kv = catalog.kv
    committed = {str(s) for s in catalog.steps()}
    folders = [n for n in kv.list_dir(STEPS) if not n.startswith(".")]
    stray = [f"{COMMITS}/{n}" for n in kv.list_dir(COMMITS) if step_from_name(n) is None]
    return [f"{STEPS}/{n}" for n in folders if n not in committed] + stray


def clean(catalog: Catalog) -> list[str]:
    """Remove `uncommitted` leftovers; returns them."""
    leftovers = uncommitted(catalog)
    for prefix in leftovers:
        if prefix.startswith(f"{STEPS}/"):
            catalog.kv.delete_prefix(prefix)
        else:
            catalog.kv.delete(prefix)
    return leftovers


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _dependents(steps: Iterable[int], history: list[Marker]) -> list[int]:
    doomed = set(steps)
    return [
        h.step for h in history
        if h.step not in doomed and (h.base_step in doomed or h.prev_step in doomed)
    ]


def _delete_committed(catalog: Catalog, snapshots: SnapshotCache, step: int) -> None:
    catalog.kv.delete(commit_key(step))  # uncommit first: a crash leaves only leftovers
    catalog.kv.delete_prefix(step_prefix(step))
    snapshots.drop(step)
