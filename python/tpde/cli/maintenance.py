"""`tpde-pack` verbs that change a store's contents or its lease: prune, clean, unlock."""

from __future__ import annotations

import argparse

from ..errors import TPDEError
from ..store.kv import KeyValueAccess, open_zarr_store
from ..store.lease import unlock
from .args import int_at_least

_hooks: dict = {}  # main's --storage-option helpers (see add_parsers)


def add_parsers(sub, *, storage_arg, open_store, options_of) -> None:
    """Add the prune, clean and unlock sub-commands; `storage_arg(p)` adds the
    --storage-option flag, `open_store(path, mode, options)` opens a store, `options_of`
    turns the flag's pairs into fsspec options."""
    _hooks.update(open_store=open_store, options_of=options_of)
    p = sub.add_parser("prune", help="delete old steps, keeping what kept deltas need")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--keep-last", type=_count, metavar="N", help="keep the last N steps (N >= 1)")
    p.add_argument("--keep-every", type=_count, metavar="M", help="also keep multiples of M (M >= 1)")
    p.add_argument("--all", action="store_true", help="delete every step (nothing is kept)")
    p.add_argument("--dry-run", action="store_true")
    storage_arg(p)
    p.set_defaults(run=_prune)

    p = sub.add_parser("clean", help="remove leftovers of interrupted saves")
    p.add_argument("store", metavar="STORE")
    storage_arg(p)
    p.set_defaults(run=_clean)

    p = sub.add_parser("unlock", help="remove a stale writer lease (its holder is gone)")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--force", action="store_true",
                   help="remove the lease even if its holder may still run (it then loses it)")
    storage_arg(p)
    p.set_defaults(run=_unlock)


def _count(text: str) -> int:
    return int_at_least(text, 1, "must be at least 1, not {} (--all deletes every step)")


def _open(args: argparse.Namespace, mode: str):
    return _hooks["open_store"](args.store, mode, args.storage_option)


def _prune(args: argparse.Namespace) -> None:
    if args.all and (args.keep_last or args.keep_every):
        raise TPDEError("--all deletes every step; it excludes --keep-last and --keep-every", "invalid_argument")
    if not args.all and args.keep_last is None and args.keep_every is None:
        raise TPDEError("prune needs keep_last (--keep-last N), keep_every (--keep-every M) or --all",
                        "invalid_argument")
    store = _open(args, "r+")
    before = len(store.steps())
    if args.all:
        deleted = store.delete_all(dry_run=args.dry_run)
    else:
        deleted = store.prune(keep_last=args.keep_last, keep_every=args.keep_every, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {len(deleted)} step(s): {', '.join(map(str, deleted)) or '-'}; kept {before - len(deleted)}")
    store.close()


def _clean(args: argparse.Namespace) -> None:
    store = _open(args, "r+")
    removed = store.clean()
    store.close()
    print(f"removed {len(removed)} leftover(s)" + (": " + ", ".join(removed) if removed else ""))


def _unlock(args: argparse.Namespace) -> None:
    _open(args, "r")  # a tpde store, or a one-line error
    target = args.store
    kv = KeyValueAccess(open_zarr_store(target, read_only=False,
                                        storage_options=_hooks["options_of"](args.storage_option)))
    present, info = unlock(kv, target, force=args.force)
    if not present:
        print(f"{target}: no writer lease (nothing to do)")
    elif info is None:
        print(f"{target}: removed an unreadable writer lease")
    else:
        print(f"{target}: removed a stale writer lease held by {info.describe()}")
