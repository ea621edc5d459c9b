"""`tpde-pack pack` and `unpack`: checkpoint files and folders in, the same out.

Each input (file or checkpoint folder) becomes one step. An input already in the store
(same name, size and SHA-256, as recorded in its step's meta) is skipped with a line
saying so, so running `pack` again after an interruption resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import TPDEError
from ..folders import (
    HEADERS,
    Loaded,
    Source,
    find_sources,
    read_source,
    source_kind,
    step_numbers,
    write_file,
    write_folder,
)
from ..progress import byte_progress
from ..store import CheckpointStore
from .args import output_path
from .checkpoint_files import write_checkpoint

_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def pack_sources(args, bound, interactive: bool, storage_options: dict | None = None,
                 level: str = "default") -> None:
    """Pack `args.checkpoints` into `args.output` (see the module docstring);
    `storage_options` go to fsspec for a URL store, `level` to the store."""
    sources = find_sources(args.checkpoints)
    known = _stored_identities(args.output, storage_options)
    todo: list[tuple[Source, dict]] = []
    for source in sources:
        identity = source.identity()
        step = known.get(_key(identity))
        if step is not None:
            print(f"skipped {source.path}: already in {args.output} as step {step} (same name, size and SHA-256)")
        else:
            todo.append((source, identity))
    if not todo:
        print(f"nothing to pack: every input is already in {args.output}")
        return
    first = read_source(todo[0][0], allow_pickle=args.allow_pickle, identity=todo[0][1])  # before creating a store
    store = CheckpointStore(
        args.output, mode="a", keyframe_every=args.keyframe_every, chunk_elements=args.chunk_elements,
        bundle_below=args.bundle_below, storage_options=storage_options, level=level,
        predecessor_cache=args.predecessor_cache, cache_dir=args.cache_dir,
    )
    existing = store.steps()
    start = existing[-1] + 1 if existing else 0
    new = [s for s, _ in todo]
    steps = list(range(args.first_step, args.first_step + len(new))) if args.first_step is not None \
        else step_numbers(new, start)
    file_bytes = raw = stored = 0
    total = sum(identity["size"] for _, identity in todo)
    with byte_progress("packing", total, interactive) as advance:
        for i, (step, (source, identity)) in enumerate(zip(steps, todo)):
            # each input is released before the next is read (the store keeps what it needs as
            # the next reference: this very state in memory, or its own copy on disk)
            loaded = first if i == 0 else read_source(source, allow_pickle=args.allow_pickle, identity=identity)
            first = None
            if step in existing:
                raise TPDEError(f"step {step} is already in {args.output}, from other content than {source.path}; "
                                "pack it with --first-step N, or into another store", "step_exists")
            size = identity["size"]
            coded = _ScaledProgress(advance, size, _coded_bytes(loaded))
            info = store.save(step, loaded.state, blobs=loaded.blobs, allow_pickle=args.allow_pickle,
                              meta=loaded.meta, error_bound=bound, cross_state=args.cross_state,
                              progress=coded, copy=False)  # the store keeps the read tensors: no copy
            coded.finish()
            del loaded
            existing.append(step)
            file_bytes, raw, stored = file_bytes + size, raw + info.raw_bytes, stored + info.stored_bytes
            blobs = len(info.blobs or [])
            extra = f"  ({len(info.tensors)} tensor(s), {blobs} blob(s))" if source.kind != "file" else ""
            print(f"step {step:>8}  {info.kind:<8}  {human_size(size):>10} -> {human_size(info.stored_bytes):>10}"
                  f"  {size / info.stored_bytes:6.2f}x  {source.path}{extra}")
    if bound is not None:
        print(f"lossy: {bound}; unpack gives values within these bounds, not the input bits")
    print(f"packed {len(todo)} checkpoint(s) into {args.output}: {human_size(file_bytes)} of files, "
          f"{human_size(raw)} of tensors, stored in {human_size(stored)} "
          f"(ratio {file_bytes / max(stored, 1):.2f}x vs the files, {raw / max(stored, 1):.2f}x vs raw tensors)")


def unpack_step(store: CheckpointStore, step: int, output: str, *, allow_pickle: bool) -> None:
    """Write `step` back to `output`: its folder, or the file it was packed from (or any .pt)."""
    meta = store.info(step).meta or {}
    kind = source_kind(meta)
    if kind in ("folder", "dcp"):
        out = Path(output)
        files = write_folder(store, step, out, allow_pickle=allow_pickle)
        size = sum(f.stat().st_size for f in files)
        print(f"wrote step {step} to {out}/ ({len(files)} file(s), {human_size(size)})")
        return
    out = output_path(output, _FILE_SUFFIXES, ".pt, .pth, .bin, .ckpt or .safetensors")
    state = store.load(step, allow_pickle=allow_pickle)
    entry = (meta.get("input") or {}).get("files", [{}])[0] if kind == "file" else {}
    if entry.get("as") == "safetensors" and out.suffix == ".safetensors":
        header = HEADERS + entry["name"]
        stored = {b.name for b in store.info(step).blobs or []}
        write_file(out, entry, state, store.load_blobs(step, [header] if header in stored else []))
    elif out.suffix == ".ckpt":  # Lightning: a torch.save file
        import torch

        torch.save(state, out)
    else:
        write_checkpoint(out, state, meta)
    print(f"wrote step {step} to {out} ({human_size(out.stat().st_size)})")


def _stored_identities(output: str, storage_options: dict | None) -> dict[tuple, int]:
    """(name, size, sha256) -> step of every step of an existing store packed from an input."""
    if "://" not in output and not Path(output).exists():
        return {}
    try:
        store = CheckpointStore(output, mode="r", storage_options=storage_options)
    except TPDEError as e:
        if e.code == "not_a_store" and "empty" in str(e):
            return {}
        raise
    known = {}
    for step in store.steps():
        identity = (store.info(step).meta or {}).get("input")
        if isinstance(identity, dict):
            known[_key(identity)] = step
    return known


def _key(identity: dict) -> tuple:
    return (identity.get("name"), identity.get("size"), identity.get("sha256"))


def _coded_bytes(loaded: Loaded) -> int:
    """Bytes a save of `loaded` codes: its tensors' and its blobs'."""
    total = sum(len(b) for b in loaded.blobs.values())
    todo = [loaded.state]
    while todo:
        obj = todo.pop()
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            todo.extend(obj)
        else:
            nbytes = getattr(obj, "nbytes", None)
            if isinstance(nbytes, int):
                total += nbytes
    return total


class _ScaledProgress:
    """Progress of one input in file bytes, advanced as its tensors and blobs are coded."""

    def __init__(self, advance, file_bytes: int, coded_bytes: int):
        self.advance, self.file_bytes = advance, file_bytes
        self.scale = file_bytes / coded_bytes if coded_bytes else 0.0
        self.done = 0.0
        self.shown = 0

    def __call__(self, nbytes: int) -> None:
        self.done += nbytes * self.scale
        step = min(int(self.done), self.file_bytes) - self.shown
        if step > 0:
            self.shown += step
            self.advance(step)

    def finish(self) -> None:
        if self.shown < self.file_bytes:
            self.advance(self.file_bytes - self.shown)
            self.shown = self.file_bytes


def human_size(n: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
