"""A second reader of tpde stores, written from docs/store-format.md alone: it shares no code
with the package (chunks go through tests/refdecoder.py, the pure-Python chunk decoder
written from docs/format.md). tests/test_frozen_stores.py runs it over the frozen stores:
if it restores them, the store format is specified well enough to implement.

Slow (Python loops per value); meant for the kilobyte stores of tests/stores/.
`read_step(root, step)` returns {"state": description, "arrays": {path: raw bytes}} in
the shape of tests/stores/make_stores.py's `describe`, so both readers are compared on
the same expected files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import pickle
import zlib
from pathlib import Path

import refdecoder
from chunkfmt import crc32c


class StoreError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


# section 6.2: codec dtype -> (item size, format.md dtype code or 0 for non-floats)
ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2, "int8": 1, "uint8": 1, "int16": 2,
            "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1}
FLOAT_CODE = {"float32": 1, "float64": 2, "float16": 3, "bfloat16": 4}
EPS = 1e-8  # section 10


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        settings = json.loads(self.get(".zattrs"))["tpde_store"]
        if settings.get("format") != 1:  # section 2.2
            raise StoreError("unsupported_version", f"root format {settings.get('format')}")

    def get(self, key: str) -> bytes | None:
        parts = key.split("/")
        if any(p in ("", "..") or p.startswith("..") for p in parts):
            raise StoreError("corrupt", f"bad key {key!r}")
        path = self.root.joinpath(*parts)
        return path.read_bytes() if path.is_file() else None

    def steps(self) -> list[int]:  # section 2.1
        names = [p.name for p in (self.root / "commits").iterdir()]
        return sorted(int(n) for n in names if n.isascii() and n.isdigit() and str(int(n)) == n)

    def marker(self, step: int) -> dict:  # section 5
        data = self.get(f"commits/{step}")
        if data is None:
            raise StoreError("missing_reference", f"step {step} is not committed")
        marker = json.loads(data)
        if marker["step"] != step:
            raise StoreError("corrupt", "marker names another step")
        return marker

    def manifest(self, step: int) -> dict:  # section 4
        marker = self.marker(step)
        data = self.get(f"steps/{step}/.zattrs")
        if data is None or zlib.crc32(data) != marker["manifest_crc32"]:
            raise StoreError("corrupt", f"manifest of step {step}")
        manifest = json.loads(data)["tpde_step"]
        if manifest["format"] not in (1, 2, 3, 4):
            raise StoreError("unsupported_version", f"manifest format {manifest['format']}")
        if manifest["step"] != step or manifest["kind"] != marker["kind"]:
            raise StoreError("corrupt", "manifest and marker disagree")
        return manifest

    def chain(self, step: int) -> list[dict]:  # section 8
        chain = [self.marker(step)]
        while chain[-1]["kind"] == "delta":
            base = chain[-1]["base_step"]
            if not isinstance(base, int) or base >= chain[-1]["step"]:
                raise StoreError("corrupt", "bad base step")
            chain.append(self.marker(base))
        chain.reverse()
        for i, m in enumerate(chain):
            if m["prev_step"] is not None and (i < 2 or chain[i - 2]["step"] != m["prev_step"]):
                raise StoreError("corrupt", "bad prev step")
        return chain


def grid(entry: dict) -> tuple[list[int], list[tuple[int, ...]]]:
    """Chunk counts per axis and every chunk index in C order (section 7)."""
    shape, chunks = entry["storage_shape"], entry["chunks"]
    counts = [-(-s // c) for s, c in zip(shape, chunks)]
    indices: list[tuple[int, ...]] = [()]
    for n in counts:
        indices = [i + (k,) for i in indices for k in range(n)]
    return counts, indices


def chunk_key(index: tuple[int, ...]) -> str:
    return ".".join(map(str, index)) if index else "0"


def predict(entry: dict, ref: bytes, inputs: list[tuple[str, list[bytes]]], coefs: list[float]) -> bytes:
    """Section 10: the predicted reference, element by element in binary64."""
    dtype = entry["codec_dtype"]
    code, size = FLOAT_CODE[dtype], ITEMSIZE[dtype]
    n = len(ref) // size

    def value(buf: bytes, i: int) -> float:
        return refdecoder.to_float(int.from_bytes(buf[i * size:(i + 1) * size], "little"), code)

    out = bytearray()
    k = len(inputs)
    for i in range(n):
        r = value(ref, i)
        acc = coefs[k] * r
        for j, (kind, arrays) in enumerate(inputs):
            a, b = value(arrays[0], i), value(arrays[1], i)
            if kind == "adam_direction":
                f = a / (math.sqrt(b) + EPS)
            else:
                f = (a - b) * (math.sqrt(value(arrays[2], i)) + EPS)
            acc = acc + coefs[j] * f
        out += refdecoder.from_float(r + acc, code).to_bytes(size, "little")
    return bytes(out)


def reconstruct(store: Store, step: int, names: list[str]) -> dict[str, list[bytes]]:
    """Section 8: every chunk (C order) of `names` at `step`, with the chunks of the
    prediction inputs they need."""
    chain = store.chain(step)
    manifests = [store.manifest(m["step"]) for m in chain]
    recon: list[dict[str, list[bytes]]] = []  # per chain position: name -> chunks

    def terms(j: int, name: str) -> list:
        return (manifests[j]["arrays"][name].get("predict") or {}).get("terms", [])

    def close(j: int, wanted: set[str]) -> list[str]:
        """`wanted` plus the same-step inputs of their predictions, inputs first."""
        order: list[str] = []

        def visit(name: str, stack: tuple) -> None:
            if name in order:
                return
            if name in stack:
                raise StoreError("corrupt", "circular prediction")
            for _, inputs in terms(j, name):
                for input_name, offset in inputs:
                    if offset == 0:
                        visit(input_name, stack + (name,))
            order.append(name)

        for name in sorted(wanted):
            visit(name, ())
        return order

    # what each chain position decodes: the next position's names (their references) and
    # the base-step inputs (offset 1) of the next position's predictions
    wanted: list[list[str]] = [[] for _ in chain]
    wanted[-1] = close(len(chain) - 1, set(names))
    for j in range(len(chain) - 2, -1, -1):
        need = set(wanted[j + 1])
        for name in wanted[j + 1]:
            need.update(n for _, inputs in terms(j + 1, name) for n, offset in inputs if offset == 1)
        wanted[j] = close(j, need)

    for j, (marker, manifest) in enumerate(zip(chain, manifests)):
        here: dict[str, list[bytes]] = {}
        for name in wanted[j]:
            entry = manifest["arrays"][name]
            predict_entry = entry.get("predict")
            if predict_entry is not None:
                for kind, inputs in predict_entry["terms"]:
                    if kind not in ("adam_direction", "scaled_delta") or \
                            len(inputs) != {"adam_direction": 2, "scaled_delta": 3}[kind]:
                        raise StoreError("corrupt", f"prediction term {kind}")
            _, indices = grid(entry)
            ranges = entry.get("bundle")  # section 13
            if ranges is not None and (not isinstance(ranges, list) or len(ranges) != len(indices)):
                raise StoreError("corrupt", f"bundle ranges of {name}")
            bundle = store.get(f"steps/{marker['step']}/.bundle") if ranges else None
            chunks = []
            for flat, index in enumerate(indices):
                if ranges is None:
                    blob = store.get(f"steps/{marker['step']}/{name}/{chunk_key(index)}")
                else:
                    offset, length = ranges[flat]
                    blob = None if bundle is None or offset + length > len(bundle) else \
                        bundle[offset:offset + length]
                if blob is None:
                    raise StoreError("missing_reference", f"chunk {name} {index}")
                if j == 0:
                    chunks.append(refdecoder.decode(blob))
                    continue
                ref = recon[j - 1][name][flat]
                prev = recon[j - 2][name][flat] if marker["prev_step"] is not None else None
                coefs = None if predict_entry is None else predict_entry["coefs"][flat]
                if coefs is not None:
                    inputs = [(kind, [(here if off == 0 else recon[j - 1])[n][flat] for n, off in ins])
                              for kind, ins in predict_entry["terms"]]
                    ref, prev = predict(entry, ref, inputs, [float(c) for c in coefs]), None
                chunks.append(refdecoder.decode(blob, ref, prev))
            size = ITEMSIZE[entry["codec_dtype"]] * math.prod(entry["chunks"])
            if any(len(c) != size for c in chunks):
                raise StoreError("corrupt", f"chunk size of {name}")
            here[name] = chunks
        recon.append(here)
    last = manifests[-1]
    for name in names:
        if [crc32c(c) for c in recon[-1][name]] != last["arrays"][name]["crc32c"]:
            raise StoreError("checksum", name)
    return recon[-1]


def assemble(entry: dict, chunks: list[bytes]) -> bytes:
    """The array's storage bytes in C order, edge padding dropped (section 7)."""
    shape, cshape = entry["storage_shape"], entry["chunks"]
    size = ITEMSIZE[entry["codec_dtype"]]
    out = bytearray(math.prod(shape) * size)
    _, indices = grid(entry)
    for index, chunk in zip(indices, chunks):
        for local in _positions(cshape):
            pos = [i * c + p for i, c, p in zip(index, cshape, local)]
            if any(p >= s for p, s in zip(pos, shape)):
                continue
            src = _flat(local, cshape) * size
            dst = _flat(pos, shape) * size
            out[dst:dst + size] = chunk[src:src + size]
    return bytes(out)


def _positions(shape):
    out: list[tuple[int, ...]] = [()]
    for n in shape:
        out = [p + (k,) for p in out for k in range(n)]
    return out


def _flat(pos, shape) -> int:
    flat = 0
    for p, s in zip(pos, shape):
        flat = flat * s + p
    return flat


def user_bytes(entry: dict, storage: bytes) -> bytes:
    """Section 6.2: the bytes of the user's tensor or array (C order)."""
    dtype = entry["dtype"]
    if entry["kind"] == "numpy" and dtype[0] == ">":  # stored little-endian
        size = int(dtype[2:]) // (2 if dtype[1] == "c" else 1)
        return b"".join(storage[i:i + size][::-1] for i in range(0, len(storage), size))
    return storage


def read_step(root: Path, step: int, *, allow_pickle: bool = False) -> dict:
    """The state of `step` as tests/stores/make_stores.py's `describe` describes it."""
    store = Store(root)
    manifest = store.manifest(step)
    names = list(manifest["arrays"])
    for name in names:
        parts = name.split("/")
        if any(p == "" or p.startswith(".") for p in parts):  # section 6.3
            raise StoreError("corrupt", f"array name {name!r}")
    chunks = reconstruct(store, step, names)
    arrays: dict[str, bytes] = {}
    first_path: dict[str, str] = {}

    def leaf(name: str, path: str) -> dict:
        entry = manifest["arrays"][name]
        if name in first_path:
            return {"same_object_as": first_path[name]}
        first_path[name] = path
        arrays[path] = user_bytes(entry, assemble(entry, chunks[name]))
        if entry["kind"] == "torch":
            return {"tensor": path, "dtype": f"torch.{entry['dtype']}", "shape": entry["shape"]}
        return {"ndarray": path, "dtype": entry["dtype"], "shape": entry["shape"]}

    def node(n: object, path: str) -> object:  # section 6.1
        if n is None or isinstance(n, (bool, str)):
            return {type(n).__name__: n}
        if isinstance(n, int):
            return {"int": str(n)}
        if isinstance(n, float):
            return {"float": n.hex()}
        tag, value = next(iter(n.items()))
        if tag in ("dict", "odict"):
            out = {tag: [[k, node(v, f"{path}/{k}")] for k, v in value]}
            if "meta" in n:
                out["metadata"] = node(n["meta"], f"{path}/_metadata")
            return out
        if tag in ("list", "tuple"):
            return {tag: [node(v, f"{path}/{i}") for i, v in enumerate(value)]}
        if tag == "size":
            return {"size": value}
        if tag == "float":
            return {"float": float(value).hex()}
        if tag == "bytes":
            return {"bytes": base64.b64decode(value).hex()}
        if tag == "np_scalar":
            return {"np_scalar": value, "hex": n["hex"]}
        if tag == "torch_dtype":
            return {"dtype": f"torch.{value}"}
        if tag == "torch_device":
            return {"device": value}
        if tag == "array":
            return leaf(value, path)
        if tag == "alias":
            return {"same_object_as": first_path[value]}
        if tag == "pickle":
            if not allow_pickle:
                raise StoreError("pickle_refused", value)
            obj = pickle.loads(assemble(manifest["arrays"][value], chunks[value]))
            return {"set": sorted(obj)} if isinstance(obj, (set, frozenset)) else {"repr": repr(obj)}
        raise StoreError("corrupt", f"skeleton tag {tag!r}")

    return {"state": node(manifest["tree"], str(step)), "arrays": arrays, "blobs": read_blobs(store, manifest)}


def read_blobs(store: Store, manifest: dict) -> dict[str, bytes]:
    """Section 11: the blobs of a manifest of format 3 or 4, checked (none for formats 1
    and 2, nor for format 4 without a `blobs` list)."""
    if manifest["format"] < 3 or (manifest["format"] == 4 and "blobs" not in manifest):
        return {}
    out: dict[str, bytes] = {}
    for i, entry in enumerate(manifest["blobs"]):
        if set(entry) != {"name", "size", "sha256", "stored_bytes", "codec"}:
            raise StoreError("corrupt", "blob entry fields")
        name = entry["name"]
        parts = name.split("/")
        if (not 1 <= len(name) <= 1024 or any(p in ("", ".", "..") for p in parts) or name in out
                or any(ord(c) < 0x20 or c in "\x7f\\" for c in name)):  # section 11.1
            raise StoreError("corrupt", f"blob name {name!r}")
        data = store.get(f"steps/{manifest['step']}/.blobs/{i}")
        if data is None or len(data) != entry["stored_bytes"]:
            raise StoreError("corrupt", f"blob {name!r} stored bytes")
        if entry["codec"] == "zlib":
            data = zlib.decompressobj().decompress(data, entry["size"] + 1)
        elif entry["codec"] != "raw":
            raise StoreError("corrupt", f"blob codec {entry['codec']!r}")
        if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise StoreError("checksum", f"blob {name!r}")
        out[name] = data
    return out
