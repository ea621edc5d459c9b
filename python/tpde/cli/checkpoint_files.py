"""Reading and writing the checkpoint files `tpde-pack` imports and exports.

`.pt`/`.pth`/`.bin` files are `torch.save` pickles, read with `weights_only=True` (no code
runs); `.safetensors` files hold a flat name -> tensor mapping plus string metadata.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import TPDEError

TORCH_SUFFIXES = (".pt", ".pth", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
SUFFIXES = TORCH_SUFFIXES + (SAFETENSORS_SUFFIX,)


def find_checkpoints(paths: list[str]) -> list[Path]:
    """Checkpoint files named by `paths`, in order; a directory contributes its checkpoint
    files (searched recursively) in natural order (step-9 before step-10)."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES]
            if not files:
                raise TPDEError(f"{text}: no {'/'.join(SUFFIXES)} files in this directory", "not_found")
            found.extend(sorted(files, key=lambda p: _natural_key(str(p.relative_to(path)))))
        elif path.is_file():
            if path.suffix not in SUFFIXES:
                raise TPDEError(f"{text}: not a checkpoint file (expected {', '.join(SUFFIXES)})", "invalid_argument")
            found.append(path)
        else:
            raise TPDEError(f"{text}: no such file or directory", "not_found")
    return found


def step_numbers(files: list[Path], first: int) -> list[int]:
    """Step numbers for imported files: the last integer in each file's name when those
    strictly increase and start at `first` or later, else first, first+1, ..."""
    numbers = []
    for f in files:
        digits = re.findall(r"\d+", f.stem) or re.findall(r"\d+", f.parent.name)
        numbers.append(int(digits[-1]) if digits else None)
    if None not in numbers and numbers and numbers[0] >= first and all(
        a < b for a, b in zip(numbers, numbers[1:])
    ):
        return numbers
    return list(range(first, first + len(files)))


def read_checkpoint(path: Path) -> tuple[object, dict]:
    """The state held by a checkpoint file, and metadata to keep with it."""
    meta = {"source": path.name}
    try:
        if path.suffix == SAFETENSORS_SUFFIX:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as f:
                extra = f.metadata()
            if extra:
                meta["safetensors_metadata"] = extra
            return load_file(str(path)), meta
        import torch

        return torch.load(path, map_location="cpu", weights_only=True), meta
    except Exception as e:  # torch/safetensors raise many types for unreadable files
        raise TPDEError(f"{path}: cannot read checkpoint ({_reason(e)})", "corrupt") from e


def write_checkpoint(path: Path, state: object, meta: dict) -> None:
    """Write `state` as a torch.save file or, for a flat name -> tensor dict, safetensors."""
    if path.suffix in TORCH_SUFFIXES:
        import torch

        torch.save(state, path)
    elif path.suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import save_file

        save_file(_flat_tensors(state, path), str(path), metadata=meta.get("safetensors_metadata"))
    else:
        raise TPDEError(
            f"{path}: unknown output type; name it .pt, .pth, .bin or .safetensors", "invalid_argument"
        )


def _flat_tensors(state: object, path: Path) -> dict:
    import torch

    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise TPDEError(
            f"{path}: safetensors holds a flat name -> tensor mapping, and this step holds "
            "nested or non-tensor state; unpack it to a .pt file",
            "invalid_argument",
        )
    seen: set[int] = set()
    out = {}
    for name, tensor in state.items():  # safetensors refuses tensors that share memory
        ptr = tensor.untyped_storage().data_ptr()
        out[name] = tensor.clone() if ptr in seen and tensor.numel() else tensor
        seen.add(ptr)
    return out


def _reason(error: Exception) -> str:
    """The informative part of a loader's (often multi-paragraph) error message."""
    text = str(error).strip()
    unpickler = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", text)
    if unpickler:
        return f"not loadable with weights_only=True: {unpickler.group(1).strip()}"
    return text.splitlines()[0] if text else type(error).__name__


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
