"""Helpers that tamper with a saved store the way an attacker would: edit its JSON and
recompute the (unkeyed) checksums so that only tpde's own checks stand in the way."""

from __future__ import annotations

import json
import zlib
from pathlib import Path


def dump(obj: object) -> bytes:
    """JSON bytes as the store writes them."""
    return json.dumps(obj, separators=(",", ":")).encode()


def reseal(path: Path, step: int) -> None:
    """Recompute the manifest CRC in step's commit marker after the manifest was edited."""
    marker_path = path / "commits" / str(step)
    marker = json.loads(marker_path.read_bytes())
    marker["manifest_crc32"] = zlib.crc32((path / "steps" / str(step) / ".zattrs").read_bytes())
    marker_path.write_bytes(dump(marker))


def edit_manifest(path: Path, step: int, edit) -> None:
    """Apply edit(body) to step's manifest body (the "tpde_step" object) and reseal it."""
    attrs = path / "steps" / str(step) / ".zattrs"
    doc = json.loads(attrs.read_bytes())
    edit(doc["tpde_step"])
    attrs.write_bytes(dump(doc))
    reseal(path, step)


def rename_array(body: dict, old: str, new: str) -> None:
    """Rename a manifest entry and every skeleton reference to it."""
    body["arrays"] = {new if k == old else k: v for k, v in body["arrays"].items()}

    def walk(node):
        if isinstance(node, list):
            return [walk(n) for n in node]
        if isinstance(node, dict):
            return {k: (new if k in ("array", "alias", "pickle") and v == old else walk(v)) for k, v in node.items()}
        return node

    body["tree"] = walk(body["tree"])
