"""Checkpoint files and folders as store steps (`tpde-pack pack/unpack`, the integrations).

A *source* becomes one step: a checkpoint file (`torch.save` .pt/.pth/.bin, Lightning
.ckpt, .safetensors), or a checkpoint folder (a Hugging Face `checkpoint-N/`, any folder
with a `trainer_state.json`, a torch.distributed.checkpoint folder). In a folder,
safetensors files and pickles that load with `weights_only=True` are coded as tensors
(keyed per file: "optimizer.pt/state/0/exp_avg"); every other file (JSON, RNG states,
`training_args.bin`, tokenizer files) is a blob kept byte for byte, never unpickled.

Unpacking writes safetensors files and blobs back byte-identical (each checked against
its recorded SHA-256) and pickle containers tensor-identical and loadable (torch.save of
the same state; the file bytes may differ).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import TPDEError
from .store.blobs import check_blob_name

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS = ".safetensors"
SUFFIXES = PICKLE_SUFFIXES + (SAFETENSORS,)
FOLDER_NAME = re.compile(r"checkpoint[-_](\d+)")
FILES, HEADERS = "files/", "headers/"  # blob name prefixes: whole files, safetensors headers
_READ = 1 << 20


@dataclass(frozen=True)
class Source:
    """One input of `pack`: a checkpoint file ("file") or folder ("folder", "dcp")."""

    path: Path
    kind: str

    def files(self) -> list[str]:
        """Relative POSIX names of the files it holds, in natural order."""
        if self.kind == "file":
            return [self.path.name]
        found = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]
        return sorted(found, key=natural_key)

    def identity(self) -> dict:
        """{"name", "size", "sha256"}: what `pack` compares to skip inputs already stored."""
        if self.kind == "file":
            size, digest = file_digest(self.path)
            return {"name": self.path.name, "size": size, "sha256": digest}
        total, lines = 0, []
        for rel in self.files():
            size, digest = file_digest(self.path / rel)
            total += size
            lines.append(f"{rel}\t{size}\t{digest}\n")
        return {"name": self.path.name, "size": total,
                "sha256": hashlib.sha256("".join(lines).encode()).hexdigest()}


def folder_kind(path: Path) -> str | None:
    """"dcp", "folder" (a Trainer checkpoint folder) or None (a folder of checkpoints)."""
    if (path / ".metadata").is_file():
        return "dcp"
    if FOLDER_NAME.fullmatch(path.name) or (path / "trainer_state.json").is_file():
        return "folder"
    return None


def find_sources(paths: list[str]) -> list[Source]:
    """The sources named by `paths`, in order. A checkpoint folder is one source; any other
    folder contributes the checkpoint folders and files under it, in natural order."""
    found: list[Source] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            kind = folder_kind(path)
            if kind is not None:
                found.append(Source(path, kind))
                continue
            inner = _sources_under(path)
            if not inner:
                raise TPDEError(f"{text}: no .pt/.pth/.bin/.safetensors files (nor .ckpt files or checkpoint "
                                "folders) in this directory", "not_found")
            found.extend(inner)
        elif path.is_file():
            if path.suffix not in SUFFIXES:
                raise TPDEError(f"{text}: not a checkpoint file (expected {', '.join(SUFFIXES)}, "
                                "or a checkpoint folder)", "invalid_argument")
            found.append(Source(path, "file"))
        else:
            raise TPDEError(f"{text}: no such file or directory", "not_found")
    return found


def _sources_under(root: Path) -> list[Source]:
    out: list[Source] = []

    def walk(folder: Path) -> None:
        for p in folder.iterdir():
            if p.is_dir():
                kind = folder_kind(p)
                if kind is None:
                    walk(p)
                else:
                    out.append(Source(p, kind))
            elif p.is_file() and p.suffix in SUFFIXES:
                out.append(Source(p, "file"))

    walk(root)
    return sorted(out, key=lambda s: natural_key(s.path.relative_to(root).as_posix()))


def name_step(source: Source) -> int | None:
    """The step a source's name gives: checkpoint-500 -> 500, step_000040.pt -> 40."""
    match = FOLDER_NAME.fullmatch(source.path.name)
    if match:
        return int(match.group(1))
    digits = re.findall(r"\d+", source.path.stem if source.kind == "file" else source.path.name)
    return int(digits[-1]) if digits else None


def content_step(source: Source) -> int | None:
    """The step a source records itself: trainer_state.json's global_step, or a
    checkpoint's top-level "global_step" or "step" integer."""
    if source.kind == "folder":
        try:
            state = json.loads((source.path / "trainer_state.json").read_text())
            step = state.get("global_step")
        except (OSError, ValueError, AttributeError):
            return None
    elif source.kind == "file" and source.path.suffix in PICKLE_SUFFIXES:
        try:
            state = _torch_load(source.path, mmap=True)
        except Exception:  # unreadable here; read_source reports it
            return None
        step = next((state.get(k) for k in ("global_step", "step") if isinstance(state, dict) and k in state), None)
    else:
        return None
    return step if type(step) is int and step >= 0 else None


def step_numbers(sources: list[Source], first: int) -> list[int]:
    """Steps for new sources: the numbers in their names (else the ones they record) when
    those strictly increase from `first` on, else first, first + 1, ..."""
    numbers = [name_step(s) for s in sources]
    if None in numbers or not _increasing(numbers, first):
        numbers = [content_step(s) for s in sources]
    if None in numbers or not _increasing(numbers, first):
        numbers = list(range(first, first + len(sources)))
    return numbers


def _increasing(numbers: list, first: int) -> bool:
    return bool(numbers) and numbers[0] >= first and all(a < b for a, b in zip(numbers, numbers[1:]))


@dataclass
class Loaded:
    """A source read for saving: the state, the blobs and the step's meta."""

    state: object
    blobs: dict[str, bytes]
    meta: dict


def read_source(source: Source, *, allow_pickle: bool = False, identity: dict | None = None) -> Loaded:
    """Read a source for `CheckpointStore.save(step, loaded.state, blobs=..., meta=...)`."""
    identity = identity or source.identity()
    if source.kind == "dcp":
        return _read_dcp(source, allow_pickle, identity)
    if source.kind == "file":
        state, blobs, entry = _read_file(source.path, source.path.name, allow_pickle, lone=True)
        meta = {"source": source.path.name, "input": {**identity, "kind": "file", "files": [entry]}}
        if entry.get("safetensors_metadata"):
            meta["safetensors_metadata"] = entry["safetensors_metadata"]
        return Loaded(state, blobs, meta)
    state: dict = {}
    blobs: dict[str, bytes] = {}
    entries = []
    for rel in source.files():
        check_blob_name(rel)
        tree, file_blobs, entry = _read_file(source.path / rel, rel, allow_pickle, lone=False)
        if entry["as"] != "blob":
            state[rel] = tree
        blobs.update(file_blobs)
        entries.append(entry)
    meta = {"source": source.path.name, "input": {**identity, "kind": "folder", "files": entries}}
    return Loaded(state, blobs, meta)


def _read_file(path: Path, rel: str, allow_pickle: bool, *, lone: bool) -> tuple[object, dict, dict]:
    """(tensor tree or None, blobs, file entry) of one file of a source."""
    data_size, digest = file_digest(path)
    entry = {"name": rel, "size": data_size, "sha256": digest}
    if path.suffix == SAFETENSORS:
        read = _read_safetensors(path)
        if read is not None:
            tensors, header, metadata = read
            entry.update({"as": "safetensors", "safetensors_metadata": metadata})
            return tensors, ({} if header is None else {HEADERS + rel: header}), entry
    elif path.suffix in PICKLE_SUFFIXES:
        try:
            return _torch_load(path), {}, {**entry, "as": "torch"}
        except Exception as e:  # torch raises many types for files it refuses
            refused = e
        if allow_pickle:
            state = _torch_load(path, weights_only=False)
            if _tensor_only(state):
                return state, {}, {**entry, "as": "torch"}
        if lone:
            raise TPDEError(f"{path}: cannot read checkpoint ({_reason(refused)})", "corrupt")
    if lone:
        raise TPDEError(f"{path}: cannot read checkpoint (not a safetensors file)", "corrupt")
    return None, {FILES + rel: path.read_bytes()}, {**entry, "as": "blob"}


def _tensor_only(state: object) -> bool:
    from .state.torch_adapter import alias_key, is_array
    from .state.tree import flatten_state

    try:
        flatten_state(state, is_array=is_array, alias_key=alias_key, allow_pickle=False)
    except TPDEError:
        return False
    return True


def _read_safetensors(path: Path) -> tuple[dict, bytes | None, dict | None] | None:
    """Tensors (in file order), the header bytes (None when header and tensors do not
    rebuild the file exactly) and the metadata of a safetensors file; None if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            metadata = f.metadata()
            tensors = {k: f.get_tensor(k) for k in names}
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = f.read(n)
        layout = json.loads(header)
        spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k)
                       for k, v in layout.items() if k != "__metadata__")
    except Exception:  # not a safetensors file
        return None
    end = 0
    for lo, hi, _ in spans:
        if lo != end:
            return tensors, None, metadata
        end = hi
    if 8 + n + end != path.stat().st_size:
        return tensors, None, metadata
    return {k: tensors[k] for _, _, k in spans}, header, metadata


def _torch_load(path: Path, *, weights_only: bool = True, mmap: bool = False) -> object:
    import torch

    return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=mmap)


def _read_dcp(source: Source, allow_pickle: bool, identity: dict) -> Loaded:
    if not allow_pickle:
        raise TPDEError(f"{source.path}: a torch.distributed.checkpoint folder, whose .metadata is a pickle; "
                        "pass --allow-pickle to read it (only for checkpoints you trust)", "pickle_refused")
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    state: dict = {}
    try:
        with warnings.catch_warnings():  # "torch.distributed is disabled ...": one process is the intent
            warnings.simplefilter("ignore", UserWarning)
            _load_state_dict(state, storage_reader=FileSystemReader(str(source.path)),
                             planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    except Exception as e:
        raise TPDEError(f"{source.path}: cannot read the DCP checkpoint ({_reason(e)})", "corrupt") from e
    return Loaded(state, {}, {"source": source.path.name, "input": {**identity, "kind": "dcp", "files": []}})


def same_as_stored(store, step: int, loaded: Loaded) -> bool:
    """Whether `loaded` holds what `step` of `store` holds: the same files, the
    byte-compared ones (safetensors, blobs) with the same SHA-256, the pickle containers
    with the same tensors bit for bit (their file bytes may differ from run to run)."""
    stored_meta = store.info(step).meta or {}
    files = (stored_meta.get("input") or {}).get("files")
    mine = loaded.meta["input"]["files"]
    if not isinstance(files, list) or [(f.get("name"), f.get("as")) for f in files] != \
            [(f["name"], f["as"]) for f in mine]:
        return False
    if any(a.get("sha256") != b["sha256"] for a, b in zip(files, mine) if b["as"] != "torch"):
        return False
    torch_files = [f["name"] for f in mine if f["as"] == "torch"]
    if not torch_files:
        return True
    state = store.load(step)
    return all(same_tree(state.get(rel), loaded.state[rel]) for rel in torch_files)


def same_tree(a: object, b: object) -> bool:
    """Nested states equal: same containers, keys and scalars, tensors bit for bit."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        bits = [t.reshape(-1).view(torch.uint8) for t in (a, b)]
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(*bits)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype and \
            a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same_tree(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))


# ---------------------------------------------------------------------------- writing


def source_kind(meta: dict | None) -> str | None:
    """"file", "folder" or "dcp" for a step packed from a source; None for other steps."""
    entry = (meta or {}).get("input")
    kind = entry.get("kind") if isinstance(entry, dict) else None
    return kind if kind in ("file", "folder", "dcp") else None


def write_folder(store, step: int, out: Path, *, allow_pickle: bool = False) -> list[Path]:
    """Recreate the folder packed as `step` into `out` (new or empty); returns its files."""
    meta = store.info(step).meta or {}
    kind = source_kind(meta)
    if kind not in ("folder", "dcp"):
        raise TPDEError(f"step {step} is not a checkpoint folder; unpack it to a file", "invalid_argument")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TPDEError(f"{out}: exists and is not an empty directory", "invalid_argument")
    state = store.load(step, allow_pickle=allow_pickle)
    if kind == "dcp":
        return _write_dcp(state, out)
    files = meta["input"].get("files")
    if not isinstance(files, list):
        raise TPDEError(f"step {step}: bad file list in its meta", "corrupt")
    blobs = store.load_blobs(step)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for entry in files:
        rel = check_blob_name(entry.get("name") if isinstance(entry, dict) else None)
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        write_file(target, entry, state.get(rel) if isinstance(state, dict) else None, blobs)
        written.append(target)
    return written


def write_file(target: Path, entry: dict, tree: object, blobs: dict[str, bytes]) -> None:
    """Write one file of a source back: blobs and safetensors byte for byte (checked)."""
    rel, how = entry.get("name"), entry.get("as")
    if how == "blob":
        data = blobs.get(FILES + rel)
        if data is None:
            raise TPDEError(f"{rel}: its blob is missing from the step", "corrupt")
        target.write_bytes(data)
    elif how == "safetensors":
        header = blobs.get(HEADERS + rel)
        if not isinstance(tree, dict):
            raise TPDEError(f"{rel}: its tensors are missing from the step", "corrupt")
        if header is None:  # a file with gaps or padding: same tensors, not the same bytes
            from safetensors.torch import save_file

            save_file(tree, str(target), metadata=entry.get("safetensors_metadata"))
            return
        _write_safetensors(target, header, tree)
    elif how == "torch":
        import torch

        torch.save(tree, target)
        return
    else:
        raise TPDEError(f"{rel}: unknown file kind {how!r} in the step's meta", "corrupt")
    if file_digest(target) != (entry.get("size"), entry.get("sha256")):
        raise TPDEError(f"{target}: written bytes differ from the packed file's SHA-256", "checksum")


def _write_safetensors(target: Path, header: bytes, tensors: dict) -> None:
    import torch

    with open(target, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for t in tensors.values():
            f.write(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _write_dcp(state: dict, out: Path) -> list[Path]:
    import torch.distributed.checkpoint as dcp

    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(state, storage_writer=dcp.FileSystemWriter(str(out)), no_dist=True)
    return sorted(p for p in out.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- helpers


def file_digest(path: Path, progress: Callable[[int], None] | None = None) -> tuple[int, str]:
    """(size, SHA-256 hex) of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(_READ):
            h.update(block)
            size += len(block)
            if progress is not None:
                progress(len(block))
    return size, h.hexdigest()


def natural_key(text: str) -> list:
    """Sort key putting step-9 before step-10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _reason(error: Exception) -> str:
    """The informative part of a loader's (often multi-paragraph) error message."""
    text = str(error).strip()
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", text)
    if unpickler:
        return f"not loadable with weights_only=True: {unpickler.group(1).strip()}"
    return text.splitlines()[0] if text else type(error).__name__
