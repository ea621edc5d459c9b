"""Small arrays of a step kept together in one object, the step's bundle (store format 4).

A model's state holds thousands of small tensors (biases, norms, step counters). With a
chunk key and a `.zarray` of its own each, a step of such a model is thousands of objects:
thousands of requests per save on an object store, and of inodes on a local disk. Arrays
of fewer than `bundle_below` elements instead have their chunks written one after another
into `steps/<step>/.bundle`, their places recorded in their manifest entries
(`"bundle": [[offset, length], ...]`, one per chunk in C order), and no keys of their own.
Their chunks are coded exactly as before (each against the same array of the base step);
only where the bytes live changes. A reader fetches byte ranges of the bundle, or the
whole bundle when it needs much of it (docs/store-format.md section 2, 6).
"""

from __future__ import annotations

import math
import os
import threading

from ..errors import TPDEError
from .kv import KeyValueAccess
from .schema import ArrayEntry, Manifest, step_prefix

BUNDLE = ".bundle"
DEFAULT_BUNDLE_BELOW = 2**20  # elements: arrays smaller than one default chunk (design.md 3.2, "Bundles")
_WHOLE_AT = 4  # ranges of one bundle a read needs from which it fetches the whole bundle once


def bundle_key(step: int) -> str:
    """Key of a step's bundle."""
    return f"{step_prefix(step)}/{BUNDLE}"


def bundled_names(shapes: dict[str, tuple[int, ...]], bundle_below: int) -> set[str]:
    """The arrays (by storage shape) whose chunks go to the bundle: fewer than
    `bundle_below` elements (0: none)."""
    return {name for name, shape in shapes.items() if math.prod(shape) < bundle_below}


def check_bundle_below(value: object) -> int:
    """`value` if it is an int >= 0 (the `bundle_below` setting), else TPDEError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TPDEError(f"bundle_below must be an integer >= 0, not {value!r}", "invalid_argument")
    return value


class BundleWriter:
    """Collects the coded chunks of a step's bundled arrays (from any thread). With a
    `sink` (a local disk's `durable.AppendFile`) each chunk is written as it comes, in the
    order the threads finish them; otherwise they are kept and laid out at the end, array
    by array in manifest order, chunks in C order (one object for an object store)."""

    def __init__(self, names: set[str], sink=None):
        self.names = names
        self.sink = sink
        self._parts: dict[tuple[str, int], bytes] = {}
        self._places: dict[tuple[str, int], list[int]] = {}

    def add(self, name: str, flat_index: int, blob: bytes) -> None:
        """Keep (or write) chunk `flat_index` (C order) of bundled array `name`."""
        if self.sink is None:
            self._parts[(name, flat_index)] = blob
        else:
            self._places[(name, flat_index)] = [self.sink.append(blob), len(blob)]

    def assemble(self, order: list[str], chunk_counts: dict[str, int]) -> tuple[bytes, dict[str, list]]:
        """The bundle's bytes (empty: written already, or nothing bundled) and each bundled
        array's `[[offset, length], ...]`."""
        if self.sink is not None:
            return b"", {name: [self._places[(name, i)] for i in range(chunk_counts[name])]
                         for name in order if name in self.names}
        pieces, ranges, offset = [], {}, 0
        for name in order:
            if name not in self.names:
                continue
            ranges[name] = []
            for i in range(chunk_counts[name]):
                blob = self._parts[(name, i)]
                ranges[name].append([offset, len(blob)])
                pieces.append(blob)
                offset += len(blob)
        return b"".join(pieces), ranges


class ChunkFetcher:
    """Reads chunks for one reconstruction: plain chunk keys, or byte ranges of bundles
    (whole bundles fetched once when a read needs many of their ranges)."""

    def __init__(self, kv: KeyValueAccess):
        self.kv = kv
        self._whole: dict[int, bytes | None] = {}
        self._files: dict[str, tuple[int, int] | None] = {}  # bundle key -> (descriptor, size)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the bundle files this fetcher opened."""
        with self._lock:
            files, self._files = self._files, {}
        for opened in files.values():
            if opened is not None:
                os.close(opened[0])

    def _file(self, key: str) -> tuple[int, int] | None:
        with self._lock:
            if key not in self._files:
                self._files[key] = self.kv.open_file(key)
            return self._files[key]

    def _read_ranges(self, ranges: list[tuple[str, int, int]]) -> list[bytes | None]:
        """Ranges of local bundle files, each file opened once per fetcher (a load reads
        one range a chunk and step: an open and close for each cost as much as the read)."""
        out: list[bytes | None] = []
        for key, offset, length in ranges:
            opened = self._file(key)
            out.append(None if opened is None else self.kv.read_range(opened, offset, length))
        return out

    def prefetch(self, manifest: Manifest, names) -> None:
        """Fetch the whole bundle of `manifest`'s step when `names` need many of its ranges
        (a request each would cost more), except on a local disk, where each range is
        read by the thread that decodes it (a read of the whole bundle first would be one
        serial read before any decoding)."""
        if self.kv.reads_files():
            return
        ranges = [r for n in names if (e := manifest.arrays.get(n)) is not None and e.bundle for r in e.bundle]
        if len(ranges) >= _WHOLE_AT and manifest.step not in self._whole:
            self._whole[manifest.step] = self.kv.get(bundle_key(manifest.step))

    def fetch(self, wanted: list[tuple[int, ArrayEntry, str, int]]) -> list[bytes | None]:
        """The chunks `(step, entry, chunk key, flat index)`, None where missing."""
        out: list[bytes | None] = [None] * len(wanted)
        plain, ranged = [], []
        for i, (step, entry, key, flat) in enumerate(wanted):
            if entry.bundle is None:
                plain.append((i, f"{step_prefix(step)}/{entry.name}/{key}"))
                continue
            offset, length = entry.bundle[flat]
            whole = self._whole.get(step)
            if whole is not None:
                out[i] = whole[offset:offset + length] if offset + length <= len(whole) else None
            else:
                ranged.append((i, (bundle_key(step), offset, length)))
        for (i, _), data in zip(plain, self.kv.get_many([k for _, k in plain])):
            out[i] = data
        read = self._read_ranges if self.kv.reads_files() else self.kv.get_ranges
        for (i, _), data in zip(ranged, read([r for _, r in ranged])):
            out[i] = data
        return out
