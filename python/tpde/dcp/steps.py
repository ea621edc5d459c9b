"""Listing, pruning and verifying the steps of a tpde.dcp checkpoint folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from ..errors import TPDEError
from . import store_hooks as hooks
from .layout import (
    COMMITS,
    FORMAT,
    RANKS,
    ROOT_KEY,
    commit_key,
    decode_commit,
    rank_folder,
)


def root_settings_bytes(raw: bytes | None = None, where: str = "") -> bytes:
    """The root marker's bytes for a new checkpoint folder; with `raw`, check an existing one."""
    if raw is None:
        return json.dumps({"tpde_dcp": {"format": FORMAT}}).encode()
    try:
        settings = json.loads(raw)["tpde_dcp"]
    except (ValueError, KeyError, TypeError):
        settings = None
    if not isinstance(settings, dict):
        raise TPDEError(f"{where} is not a tpde.dcp checkpoint ({ROOT_KEY} is damaged)", "not_a_store")
    if settings.get("format") != FORMAT:
        raise TPDEError(f"{where} is a tpde.dcp checkpoint of format {settings.get('format')}; "
                        f"this tpde reads format {FORMAT}", "unsupported_version")
    return raw


def committed_steps(kv) -> list[int]:
    """Steps with a commit record, ascending."""
    return sorted(int(n) for n in kv.list_dir(COMMITS) if n.isdigit())


def open_root(url: str, storage_options: dict | None, *, read_only: bool):
    """The root's key/value access, checked to be a tpde.dcp checkpoint."""
    kv = hooks.root_kv(url, storage_options, read_only=read_only)
    raw = kv.get(ROOT_KEY)
    if raw is None:
        raise TPDEError(f"no tpde.dcp checkpoint at {url}", "not_a_store")
    root_settings_bytes(raw, url)
    return kv


def steps(url: str | os.PathLike, *, storage_options: dict | None = None) -> list[int]:
    """Committed steps of the checkpoint folder at `url`, ascending."""
    root = hooks.normalize_root(url)
    return committed_steps(open_root(root, storage_options, read_only=True))


def read_commit(kv, url: str, step: int, *, allow_pickle: bool | None = False):
    """(Metadata, locations, ranks) of a committed step."""
    raw = kv.get(commit_key(step))
    if raw is None:
        have = committed_steps(kv)
        raise TPDEError(f"{url} has no committed step {step} (steps: {_summary(have)})", "unknown_step")
    return decode_commit(raw, step, url, allow_pickle=allow_pickle)


def rank_folders(kv) -> list[int]:
    """Ranks that have a folder under ranks/."""
    return sorted(int(n) for n in kv.list_dir(RANKS) if n.isdigit())


def prune(url: str | os.PathLike, keep_last: int | None = None, keep_every: int | None = None,
          keep: Iterable[int] = (), *, storage_options: dict | None = None, dry_run: bool = False) -> list[int]:
    """Delete committed steps except the last `keep_last`, multiples of `keep_every` and `keep`.

    Steps that a kept step's shards are coded against stay (in every rank). Commit records
    go first, then each rank's data, so an interrupted prune leaves no half step visible.
    Returns the steps whose commit records were deleted.
    """
    if keep_last is None and keep_every is None and not keep:
        raise TPDEError("prune needs keep_last, keep_every or keep", "invalid_argument")
    root = hooks.normalize_root(url)
    kv = open_root(root, storage_options, read_only=dry_run)
    committed = committed_steps(kv)
    wanted = set(keep) & set(committed)
    if keep_last:
        wanted.update(committed[-keep_last:])
    if keep_every:
        wanted.update(s for s in committed if s % keep_every == 0)
    stores = {r: hooks.rank_store(root, rank_folder(r), storage_options, mode="r" if dry_run else "r+",
                                  settings={}, cached=False) for r in rank_folders(kv)}
    needed_any: set[int] = set()
    for store in stores.values():
        needed_any |= _chain_closure(store.history(), wanted)
    retained = wanted | (needed_any & set(committed))
    doomed = sorted((s for s in committed if s not in retained), reverse=True)
    if dry_run:
        return sorted(doomed)
    for s in doomed:
        kv.delete(commit_key(s))
    for store in stores.values():
        mine = [s for s in store.steps() if s in retained]
        if mine:
            store.prune(keep=mine)
        else:
            for s in sorted(store.steps(), reverse=True):
                store.delete(s)
    hooks.forget_rank_stores(root)
    return sorted(doomed)


def _chain_closure(history, wanted: set[int]) -> set[int]:
    by_step = {h.step: h for h in history}
    needed: set[int] = set()
    todo = [s for s in wanted if s in by_step]
    while todo:
        s = todo.pop()
        if s in needed:
            continue
        needed.add(s)
        todo.extend(d for d in (by_step[s].base_step, by_step[s].prev_step) if d is not None and d in by_step)
    return needed


def verify(url: str | os.PathLike, steps: Iterable[int] | None = None, *,
           storage_options: dict | None = None) -> list[str]:
    """Check every committed step: its record parses, every rank's step and array exists,
    and every shard reconstructs to its stored content hash. One line per problem."""
    root = hooks.normalize_root(url)
    kv = open_root(root, storage_options, read_only=True)
    wanted = committed_steps(kv) if steps is None else list(steps)
    problems: list[str] = []
    per_rank: dict[int, list[int]] = {}
    stores: dict[int, object] = {}
    for step in wanted:
        try:
            _, locations, ranks = read_commit(kv, root, step, allow_pickle=None)
        except TPDEError as error:
            problems.append(f"step {step}: {error}")
            continue
        for r in ranks:
            try:
                if r not in stores:
                    stores[r] = hooks.rank_store(root, rank_folder(r), storage_options, mode="r",
                                                 settings={}, cached=False)
                have = set(stores[r].tensors(step))
            except TPDEError as error:
                problems.append(f"step {step}: rank {r}: {error}")
                continue
            missing = sorted({loc.array for loc in locations.values() if loc.rank == r} - have)
            if missing:
                problems.append(f"step {step}: rank {r} lacks array(s) {', '.join(missing[:3])}")
            per_rank.setdefault(r, []).append(step)
    for r, rank_steps in sorted(per_rank.items()):
        problems.extend(f"rank {r}: {line}" for line in stores[r].verify(rank_steps))
    return problems


def _summary(steps: list[int]) -> str:
    if not steps:
        return "none"
    if len(steps) <= 6:
        return ", ".join(map(str, steps))
    return f"{steps[0]}, {steps[1]}, ..., {steps[-1]} ({len(steps)} steps)"
