"""The store's root: open modes, the settings in the root `.zattrs`, creating a store."""

from __future__ import annotations

import json
import os
import time

from .. import _core
from ..errors import TPDEError
from .bundle import DEFAULT_BUNDLE_BELOW, check_bundle_below
from .kv import KeyValueAccess
from .schema import ROOT_ATTRS, ROOT_GROUP, STEPS, STORE_FORMAT, group_bytes, json_bytes

DEFAULT_KEYFRAME_EVERY = 8  # docs/design.md section 3.0
DEFAULT_CHUNK_ELEMENTS = 2**20
MODES = ("r", "r+", "a", "w", "w-")


def check_mode(mode: str) -> str:
    """`mode` if it is one of `MODES`, else TPDEError."""
    if mode not in MODES:
        raise TPDEError(f"mode must be one of {MODES}, not {mode!r}", "invalid_argument")
    return mode


def positive(what: str, value: object) -> int:
    """`value` if it is a positive int, else TPDEError naming `what`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TPDEError(f"{what} must be a positive integer, not {value!r}", "invalid_argument")
    return value


def open_root(kv: KeyValueAccess, mode: str) -> dict:
    """The store's settings ({} when a new store is to be created), checking `mode`;
    mode "w" erases an existing tpde store here."""
    where = kv.describe()
    local_root = getattr(kv.store, "root", None)
    missing = local_root is not None and not os.path.isdir(local_root)
    if missing and mode in ("r", "r+"):
        raise TPDEError(f"no tpde store at {where} (it does not exist)", "not_a_store")
    if missing or kv.is_empty():
        if mode in ("r", "r+"):
            raise TPDEError(f"no tpde store at {where} (it is empty)", "not_a_store")
        return {}
    if mode == "w-":
        raise TPDEError(f"{where} already holds data; use mode 'a' or 'w'", "store_exists")
    raw = kv.get(ROOT_ATTRS)
    try:
        settings = json.loads(raw)["tpde_store"] if raw else None
    except (ValueError, KeyError, TypeError):
        settings = None
    if not isinstance(settings, dict):
        hint = " (mode 'w' erases only tpde stores)" if mode == "w" else ""
        raise TPDEError(f"{where} is not a tpde checkpoint store{hint}", "not_a_store")
    if mode == "w":
        from .lease import LEASE_KEY

        for key in kv.list_dir(""):
            if key != LEASE_KEY:  # the lease this writer holds
                kv.delete(key)  # a folder key removes the folder
        return {}
    if settings.get("format") != STORE_FORMAT:
        raise TPDEError(
            f"{where} is a tpde store of format {settings.get('format')}; "
            f"this tpde reads format {STORE_FORMAT}",
            "unsupported_version",
        )
    return settings


def bundle_setting(asked: int | None, settings: dict) -> int:
    """The `bundle_below` a writer uses: the one asked for, else the store's; a new store
    gets the default, a store made before bundles existed keeps writing without them
    (so that the tpde that made it still reads its new steps)."""
    if asked is not None:
        return check_bundle_below(asked)
    if not settings:
        return DEFAULT_BUNDLE_BELOW
    value = settings.get("bundle_below", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TPDEError(f"the store's bundle_below setting is {str(value)[:40]!r}, not an integer >= 0", "corrupt")
    return value


def create_root(kv: KeyValueAccess, keyframe_every: int, chunk_elements: int, bundle_below: int = 0) -> None:
    """Write the root group and settings of a new store."""
    settings = {
        "format": STORE_FORMAT,
        "keyframe_every": keyframe_every,
        "chunk_elements": chunk_elements,
        "bundle_below": bundle_below,
        "created": time.time(),
        "tpde_version": _core.__version__,
    }
    for key, value in (
        (ROOT_GROUP, group_bytes()),
        (f"{STEPS}/{ROOT_GROUP}", group_bytes()),
        (ROOT_ATTRS, json_bytes({"tpde_store": settings})),
    ):
        kv.set(key, value)
