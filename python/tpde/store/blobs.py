"""Blobs: files kept byte for byte in a step (JSON, RNG states, tokenizer files, ...).

A blob is stored under `steps/<step>/.blobs/<i>` (i: its position in the manifest's list,
so no name read from a store ever becomes a path) and described in the step manifest by
`{"name", "size", "sha256", "stored_bytes", "codec"}`. `codec` is "raw" or "zlib". Blobs
are never unpickled: they are bytes in, the same bytes out, checked against their size
and SHA-256 on every read.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import TPDEError

BLOBS = ".blobs"
CODECS = ("raw", "zlib")
MAX_NAME = 1024
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")
_ZLIB_LEVEL = 6


def blob_key(step_folder: str, index: int) -> str:
    """Key of the `index`-th blob of the step whose folder is `step_folder`."""
    return f"{step_folder}/{BLOBS}/{index}"


def check_blob_name(name: object) -> str:
    """`name` if it is a safe relative POSIX path ("tokenizer.json", "sub/x.bin"), else
    TPDEError: no absolute paths, no "." or ".." parts, no backslashes or control bytes."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise TPDEError(f"a blob name is a non-empty string of at most {MAX_NAME} characters, "
                        f"not {name!r:.80}", "invalid_argument")
    parts = name.split("/")
    if _BAD_NAME.search(name) or any(p in ("", ".", "..") for p in parts):
        raise TPDEError(f"blob name {name!r:.80} is not a plain relative path", "invalid_argument")
    return name


@dataclass(frozen=True)
class BlobEntry:
    """One blob of a step, as its manifest records it."""

    name: str
    size: int
    sha256: str
    stored_bytes: int
    codec: str = "raw"

    def to_json(self) -> dict:
        """The manifest entry."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, entry: object, step: int) -> BlobEntry:
        """Parse and check a manifest entry (a hostile store gets a TPDEError "corrupt")."""
        try:
            if not isinstance(entry, dict) or set(entry) != {"name", "size", "sha256", "stored_bytes", "codec"}:
                raise ValueError("unexpected fields")
            name = check_blob_name(entry["name"])
            size, stored, digest, codec = entry["size"], entry["stored_bytes"], entry["sha256"], entry["codec"]
            for value in (size, stored):
                if type(value) is not int or value < 0:
                    raise ValueError(f"bad size {value!r}")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError("bad sha256")
            if codec not in CODECS or (codec == "raw" and stored != size):
                raise ValueError(f"bad codec {codec!r}")
        except (ValueError, TPDEError) as e:
            raise TPDEError(f"step {step}: bad blob entry in the manifest ({e})", "corrupt") from None
        return cls(name, size, digest, stored, codec)


def blob_entries(body: object, step: int) -> list[BlobEntry]:
    """The blob list of a manifest body ([] when it has none), checked."""
    if body is None:
        return []
    if not isinstance(body, list):
        raise TPDEError(f"step {step}: the manifest's blobs are not a list", "corrupt")
    entries = [BlobEntry.from_json(e, step) for e in body]
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise TPDEError(f"step {step}: the manifest names a blob twice", "corrupt")
    return entries


def encode_blobs(blobs: Mapping[str, bytes] | None) -> list[tuple[BlobEntry, bytes]]:
    """Entries and stored bytes of the blobs given to a save (zlib where it saves space)."""
    if blobs is None:
        return []
    if not isinstance(blobs, Mapping):
        raise TPDEError(f"blobs must map names to bytes, not {type(blobs).__name__}", "invalid_argument")
    out = []
    for name, data in blobs.items():
        check_blob_name(name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TPDEError(f"blob {name!r} must be bytes, not {type(data).__name__}", "invalid_argument")
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        packed = zlib.compress(data, _ZLIB_LEVEL)
        codec, stored = ("zlib", packed) if len(packed) < len(data) else ("raw", data)
        out.append((BlobEntry(name, len(data), digest, len(stored), codec), stored))
    return out


def read_blobs(kv, manifest, names) -> dict[str, bytes]:
    """The blobs of a step's manifest (all, or those `names`), read from the key-value
    access `kv` and checked (`CheckpointStore.load_blobs`)."""
    step = manifest.step
    entries = {b.name: (i, b) for i, b in enumerate(manifest.blobs)}
    wanted = list(entries) if names is None else list(names)
    for name in wanted:
        if name not in entries:
            raise TPDEError(f"step {step} has no blob {name!r}", "unknown_blob")
    keys = [blob_key(f"steps/{step}", entries[n][0]) for n in wanted]
    return {n: decode_blob(entries[n][1], data, step) for n, data in zip(wanted, kv.get_many(keys))}


def decode_blob(entry: BlobEntry, stored: bytes | None, step: int) -> bytes:
    """The blob's original bytes; TPDEError if missing, the wrong size, or the wrong hash."""
    where = f"step {step}, blob {entry.name!r}"
    if stored is None:
        raise TPDEError(f"{where}: missing from the store", "corrupt")
    if len(stored) != entry.stored_bytes:
        raise TPDEError(f"{where}: {len(stored)} stored bytes, the manifest says {entry.stored_bytes}", "corrupt")
    if entry.codec == "zlib":
        inflater = zlib.decompressobj()
        try:  # never inflate past the recorded size (a zip bomb stops there)
            data = inflater.decompress(stored, entry.size + 1)
        except zlib.error as e:
            raise TPDEError(f"{where}: cannot inflate ({e})", "corrupt") from None
    else:
        data = stored
    if len(data) != entry.size:
        raise TPDEError(f"{where}: {len(data)} bytes, the manifest says {entry.size}", "checksum")
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise TPDEError(f"{where}: SHA-256 mismatch", "checksum")
    return data
