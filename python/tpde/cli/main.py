"""`tpde-pack`: pack checkpoint files into a tpde store, inspect it, get them back.

Every failure prints one line on stderr and exits non-zero (1 for errors, 2 for bad
command lines); no tracebacks for user mistakes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..bounds import ErrorBounds, abs_bound, log_bound, parse_bound, rms_bound
from ..errors import TPDEError
from ..kinds import KINDS
from ..store import CheckpointStore, StepInfo, TensorInfo
from . import maintenance
from .args import bound_arg, count, non_negative, one_line, output_path, parse_slice, positive, step_number
from .json_output import dump_json, history_json, info_json, stats_json
from .pack import human_size as _size
from .pack import pack_sources, unpack_step


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tpde-pack` console script; returns the exit status."""
    args = _parser().parse_args(argv)  # a bad command line exits 2 with one line (_Parser.error)
    try:
        return args.run(args) or 0
    except TPDEError as e:
        _error(str(e))
    except BrokenPipeError:  # output piped into `head` & co: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, MemoryError) as e:
        _error(str(e) or type(e).__name__)
    except KeyboardInterrupt:
        print("tpde-pack: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a library's own error or a bug: still one line, no traceback
        _error(f"{type(e).__name__}: {e}")
    return 1


def _error(message: str) -> None:
    print(f"tpde-pack: error: {one_line(message)}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tpde-pack", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tpde-pack {_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("pack", help="import checkpoint files and folders, each as one step, in order")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help=".pt/.pth/.bin/.ckpt/.safetensors files, checkpoint folders (checkpoint-N/, "
                        "DCP), or directories of them; inputs already in the store are skipped")
    p.add_argument("-o", "--output", required=True, metavar="STORE")
    p.add_argument("--lossless", action="store_true", help="bit-exact coding (the default)")
    p.add_argument("--lossy", action="store_true",
                   help="code float tensors within error bounds (needs --abs-error, --rel-error "
                        "or a per-kind --*-error; every other tensor stays bit-exact)")
    level = p.add_mutually_exclusive_group()
    level.add_argument("--abs-error", type=positive, metavar="E",
                       help="with --lossy: weights and exp_avg within E (abs:E); exp_avg_sq "
                            "stays exact unless --exp-avg-sq-error is given")
    level.add_argument("--rel-error", type=positive, metavar="R",
                       help="with --lossy: weights and exp_avg within R x their RMS at the "
                            "keyframe (rms:R), exp_avg_sq within R x |x| (log:R, R < 1)")
    for kind in KINDS:
        which = {"weights": "parameters and buffers", "other": "other optimizer tensors (momentum_buffer, ...)"}.get(
            kind, f"{kind} tensors")
        p.add_argument(f"--{kind.replace('_', '-')}-error", type=bound_arg, metavar="SPEC",
                       help=f"with --lossy: bound of {which}: abs:E, rms:F, log:R or none "
                            "(overrides --abs-error/--rel-error)")
    p.add_argument("--keyframe-every", type=count, metavar="K")
    p.add_argument("--chunk-elements", type=count, metavar="N")
    p.add_argument("--bundle-below", type=non_negative, metavar="N",
                   help="tensors of fewer than N elements share one object per step (default: the "
                        "store's setting, 1048576 (2^20) for a new store; 0: every tensor its own objects)")
    p.add_argument("--predecessor-cache", choices=("memory", "disk"), default="disk",
                   help="where the previous checkpoint is kept as the reference of the next: disk "
                        "(the default: unnamed files in --cache-dir; memory peaks near one checkpoint) "
                        "or memory (about 6%% faster; three checkpoints' worth at the peak)")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="with --predecessor-cache disk: the folder of its files (default: the store's "
                        "folder, or the system's temporary folder for a URL)")
    p.add_argument("--first-step", type=step_number, metavar="N",
                   help="number the files N, N+1, ... (default: numbers in the file names "
                        "when they increase, else the store's next step)")
    p.add_argument("--cross-state", action="store_true",
                   help="code weights against a prediction from the Adam moments of the same "
                        "checkpoint (smaller; restoring a weight then decodes its moments too)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="unpickle inputs that weights_only=True refuses (only inputs you trust): "
                        "tensor-only ones are then coded as tensors, and a lone file's other objects "
                        "pickled into the store")
    _storage_arg(p)
    p.add_argument("--fast", action="store_true",
                   help="lossless fast level: byte planes and static rANS, several times faster "
                        "to pack and unpack, a few percent larger (not with --lossy)")
    p.set_defaults(run=_pack)

    p = sub.add_parser("unpack", help="write one step back as its folder, .pt or .safetensors")
    _store_step(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="a folder for steps packed from folders, else a .pt/.safetensors file")
    p.add_argument("--allow-pickle", action="store_true", help="unpickle pickled objects")
    _storage_arg(p)
    p.set_defaults(run=_unpack)

    p = sub.add_parser("ls", help="list steps: kind, base, stored size, ratio")
    p.add_argument("store", metavar="STORE")
    _storage_arg(p)
    _json_flag(p)
    p.set_defaults(run=_ls)

    p = sub.add_parser("info", help="per-tensor sizes and ratios of one step")
    _store_step(p)
    _storage_arg(p)
    _json_flag(p)
    p.set_defaults(run=_info)

    p = sub.add_parser("get", help="extract one tensor (or a slice) of one step")
    _store_step(p)
    p.add_argument("--tensor", required=True, metavar="NAME")
    p.add_argument("--slice", metavar="SPEC", help='numpy-style, e.g. "0:128,:" or "3"')
    p.add_argument("-o", "--output", metavar="OUT", help=".npy or .pt, or - for .npy on stdout (default: print it)")
    _storage_arg(p)
    p.set_defaults(run=_get)

    p = sub.add_parser("stats", help="ratio and changed fraction per step and tensor group")
    p.add_argument("store", metavar="STORE")
    p.add_argument("--plot", metavar="PNG", help="also plot them into an image")
    _storage_arg(p)
    _json_flag(p)
    p.set_defaults(run=_stats)

    p = sub.add_parser("verify", help="reconstruct every step and check every content hash")
    p.add_argument("store", metavar="STORE")
    _storage_arg(p)
    _json_flag(p)
    p.set_defaults(run=_verify)

    maintenance.add_parsers(sub, storage_arg=_storage_arg, open_store=_open, options_of=storage_options)
    return parser


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="fsspec option for a URL store (repeatable), e.g. endpoint_url=http://127.0.0.1:9000")


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def _version() -> str:
    from .. import _core

    return _core.__version__


def _store_step(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE")
    p.add_argument("--step", type=int, required=True, metavar="N")


def _open(path: str, mode: str = "r", options: list[str] | None = None) -> CheckpointStore:
    if "://" not in path and not Path(path).exists():
        raise TPDEError(f"{path}: no such tpde store", "not_a_store")
    try:
        return CheckpointStore(path, mode=mode, storage_options=storage_options(options))
    except TPDEError:
        raise
    except (ValueError, ImportError) as e:  # fsspec: unknown protocol, missing driver, bad URL
        raise TPDEError(f"{path}: cannot open a store there ({type(e).__name__}: {one_line(str(e))})",
                        "not_a_store") from e


def storage_options(pairs: list[str] | None) -> dict | None:
    """`--storage-option KEY=VALUE` pairs as fsspec options; a VALUE that parses as JSON
    (true, 3, {"region_name": "x"}) is taken as such, else as a string."""
    if not pairs:
        return None
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise TPDEError(f"bad --storage-option {pair!r}: expected KEY=VALUE", "invalid_argument")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


# ---------------------------------------------------------------------------- commands


def _pack(args: argparse.Namespace) -> None:
    bound = error_bounds(args)
    if args.fast and bound is not None:
        raise TPDEError("--fast is a lossless level; it excludes --lossy", "invalid_argument")
    pack_sources(args, bound, _interactive(), storage_options(args.storage_option),
                 level="fast" if args.fast else "default")


def _unpack(args: argparse.Namespace) -> None:
    unpack_step(_open(args.store, options=args.storage_option), args.step, args.output,
                allow_pickle=args.allow_pickle)


def _ls(args: argparse.Namespace) -> int:
    store = _open(args.store, options=args.storage_option)
    history = store.history()
    unreadable = store.unreadable()
    if args.json:
        dump_json(history_json(history))
        return _report_unreadable(unreadable)
    print(f"{'step':>10}  {'kind':<8}  {'base':>8}  {'raw':>10}  {'stored':>10}  {'ratio':>7}  coding")
    for h in history:
        base = "-" if h.base_step is None else str(h.base_step)
        print(f"{h.step:>10}  {h.kind:<8}  {base:>8}  {_size(h.raw_bytes):>10}  "
              f"{_size(h.stored_bytes):>10}  {h.ratio:6.2f}x  {'lossy' if h.lossy else 'lossless'}"
              f"{', cross-state' if h.predicted else ''}")
    raw = sum(h.raw_bytes for h in history)
    stored = sum(h.stored_bytes for h in history)
    print(f"{len(history)} step(s), {_size(raw)} of tensors stored in {_size(stored)} "
          f"({raw / max(stored, 1):.2f}x)")
    return _report_unreadable(unreadable)


def _report_unreadable(unreadable: dict[int, str]) -> int:
    """One stderr line for steps whose commit marker is unreadable (exit status 1)."""
    if not unreadable:
        return 0
    steps = ", ".join(map(str, list(unreadable)[:10])) + (", ..." if len(unreadable) > 10 else "")
    first = next(iter(unreadable.values()))
    print(f"tpde-pack: error: {len(unreadable)} step(s) have an unreadable commit marker: {steps} ({first})",
          file=sys.stderr)
    return 1


def _info(args: argparse.Namespace) -> None:
    store = _open(args.store, options=args.storage_option)
    info = store.info(args.step)
    if args.json:
        return dump_json(info_json(info, describe_bound))
    base = "" if info.base_step is None else f" against step {info.base_step}"
    print(f"step {info.step}: {info.kind}{base}, depth {info.depth}, {len(info.tensors)} tensor(s), "
          f"{_size(info.raw_bytes)} -> {_size(info.stored_bytes)} ({info.ratio:.2f}x)")
    if info.lossy or info.error_bounds:
        asked = ", ".join(f"{k} {v or 'none'}" for k, v in (info.error_bounds or {}).items())
        lossy = sum(t.lossy for t in info.tensors.values())
        print(f"lossy: {asked or 'bounds per tensor'}; {lossy} tensor(s) within a bound, the rest bit-exact")
    else:
        print("lossless: every tensor bit-exact")
    predicted = [t for t in info.tensors.values() if t.predicted]
    if predicted:
        print(f"cross-state: {len(predicted)} tensor(s) coded against a prediction from the optimizer "
              "state of the same checkpoint (restoring one decodes its inputs too)")
    width = max([len(n) for n in info.tensors] + [6])
    print(f"{'tensor':<{width}}  {'dtype':<9}  {'shape':<16}  {'raw':>10}  {'stored':>10}  {'ratio':>7}  "
          "changed  bound")
    for t in info.tensors.values():
        changed = "-" if t.changed_fraction is None else f"{100 * t.changed_fraction:.1f}%"
        shape = "x".join(map(str, t.shape)) or "()"
        print(f"{t.name:<{width}}  {t.dtype:<9}  {shape:<16}  {_size(t.raw_bytes):>10}  "
              f"{_size(t.stored_bytes):>10}  {t.ratio:6.2f}x  {changed:>7}  {describe_bound(t)}")


def _get(args: argparse.Namespace) -> None:
    if args.output is not None and args.output != "-":
        output_path(args.output, (".npy", ".pt", ".pth"), ".npy or .pt, or - for .npy on stdout")
    store = _open(args.store, options=args.storage_option)
    index = parse_slice(args.slice) if args.slice else None
    tensor = store.load_tensor(args.step, args.tensor, index)
    if args.output is None:
        print(f"{args.tensor} at step {args.step}: {_describe(tensor)}")
        print(_as_numpy(tensor)[0])
        return
    if args.output == "-":
        array, note = _as_numpy(tensor)
        np.save(sys.stdout.buffer, array)
        sys.stdout.buffer.flush()
        if note:
            print(f"note: {note}", file=sys.stderr)
        return
    out = Path(args.output)
    if out.suffix == ".npy":
        array, note = _as_numpy(tensor)
        np.save(out, array)
        if note:
            print(f"note: {note}", file=sys.stderr)
    elif out.suffix in (".pt", ".pth"):
        import torch

        torch.save(tensor, out)
    else:
        raise TPDEError(f"{out}: unknown output type; name it .npy or .pt", "invalid_argument")
    print(f"wrote {args.tensor} at step {args.step} ({_describe(tensor)}) to {out}")


def _stats(args: argparse.Namespace) -> int:
    store = _open(args.store, options=args.storage_option)
    unreadable = store.unreadable()
    infos = [store.info(h.step) for h in store.history()]
    if args.json:
        if args.plot:
            _plot(infos, Path(args.plot))
        dump_json(stats_json(infos, tensor_group, _changed))
        return _report_unreadable(unreadable)
    print(f"{'step':>10}  {'kind':<8}  {'ratio':>7}  changed")
    for info in infos:
        print(f"{info.step:>10}  {info.kind:<8}  {info.ratio:6.2f}x  {_fmt_changed(_changed(info.tensors.values()))}")
    groups: dict[str, list] = defaultdict(list)
    for info in infos:
        for t in info.tensors.values():
            groups[tensor_group(t.name)].append(t)
    width = max([len(g) for g in groups] + [5])
    print()
    print(f"{'group':<{width}}  {'tensors':>7}  {'raw':>10}  {'stored':>10}  {'ratio':>7}  changed")
    for group, members in groups.items():
        raw = sum(t.raw_bytes for t in members)
        stored = sum(t.stored_bytes for t in members)
        print(f"{group:<{width}}  {len(members):>7}  {_size(raw):>10}  {_size(stored):>10}  "
              f"{raw / max(stored, 1):6.2f}x  {_fmt_changed(_changed(members))}")
    if args.plot:
        _plot(infos, Path(args.plot))
        print(f"wrote {args.plot}")
    return _report_unreadable(unreadable)


def _verify(args: argparse.Namespace) -> int:
    store = _open(args.store, options=args.storage_option)
    steps = store.steps()
    problems = store.verify()
    leftovers = store.uncommitted()
    if args.json:
        dump_json({"steps": len(steps), "ok": not problems, "problems": problems, "leftovers": leftovers})
        return 1 if problems else 0
    for line in problems:
        print(line)
    if leftovers:
        print(f"note: {len(leftovers)} leftover(s) of interrupted saves; `tpde-pack clean` removes them")
    if problems:
        print(f"tpde-pack: error: {len(problems)} of {len(steps)} step(s) failed verification", file=sys.stderr)
        return 1
    print(f"verified {len(steps)} step(s): every tensor reconstructs to its stored content hash")
    return 0


# ---------------------------------------------------------------------------- helpers


def error_bounds(args: argparse.Namespace) -> ErrorBounds | None:
    """The ErrorBounds of `pack`'s flags (None: lossless); TPDEError for a bad combination.

    --abs-error E: weights and exp_avg abs:E; --rel-error R: weights and exp_avg rms:R,
    exp_avg_sq log:R; the per-kind --*-error flags override them; the rest stay exact.
    """
    overrides = {k: getattr(args, f"{k}_error") for k in KINDS}
    given = [f for f, v in (("--abs-error", args.abs_error), ("--rel-error", args.rel_error)) if v is not None]
    given += [f"--{k.replace('_', '-')}-error" for k, v in overrides.items() if v is not None]
    if args.lossless and (args.lossy or given):
        raise TPDEError(f"--lossless excludes {' and '.join((['--lossy'] if args.lossy else []) + given)}",
                        "invalid_argument")
    if not args.lossy:
        if given:
            raise TPDEError(f"{given[0]} needs --lossy (lossy packing is opt-in: "
                            f"--lossy {given[0]} ...)", "invalid_argument")
        return None
    kinds: dict = {}
    if args.abs_error is not None:
        kinds = {"weights": abs_bound(args.abs_error), "exp_avg": abs_bound(args.abs_error)}
    if args.rel_error is not None:
        kinds = {"weights": rms_bound(args.rel_error), "exp_avg": rms_bound(args.rel_error)}
        if overrides["exp_avg_sq"] is None:
            if args.rel_error >= 1:
                raise TPDEError(f"--rel-error {args.rel_error:g} is also exp_avg_sq's log-relative bound, "
                                "which must be below 1; lower it or set --exp-avg-sq-error", "invalid_argument")
            kinds["exp_avg_sq"] = log_bound(args.rel_error)
    for kind, spec in overrides.items():
        if spec is not None:
            kinds[kind] = parse_bound(spec)
    bounds = ErrorBounds(**kinds)
    if bounds.lossless:
        raise TPDEError("--lossy needs a bound: --abs-error E, --rel-error R, or a --weights-error, "
                        "--exp-avg-error, --exp-avg-sq-error or --other-error other than none",
                        "invalid_argument")
    return bounds


def describe_bound(t: TensorInfo) -> str:
    """A tensor's bound for `info`: "-" (bit-exact), "abs:0.001", "log:0.3",
    "rms:0.1 -> abs:0.000231" (the absolute bound the RMS gave)."""
    if t.bound is None:
        if t.error_bound is None:
            return "-"
        (key, value), = t.error_bound.items()  # a store written before specs were recorded
        return f"{'abs' if key == 'abs_error' else 'log'}:{value!r}"
    if t.error_bound is None:
        return f"{t.bound} (RMS 0: exact)"
    if t.bound.startswith("rms:"):
        return f"{t.bound} -> abs:{t.error_bound['abs_error']:.3g}"
    return t.bound


def tensor_group(name: str) -> str:
    """Group of a tensor name for statistics: numeric parts become "*" ("layers.*.q.weight")."""
    return re.sub(r"(?<=[./])\d+(?=[./]|$)|^\d+(?=[./]|$)", "*", name)


def _changed(tensors) -> float | None:
    """Share of changed positions over the delta-coded tensors among `tensors`."""
    deltas = [(t.changed_fraction, math.prod(t.shape)) for t in tensors if t.changed_fraction is not None]
    numel = sum(n for _, n in deltas)
    if not numel:
        return None
    return sum(f * n for f, n in deltas) / numel


def _fmt_changed(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.1f}%"


def _plot(infos: list[StepInfo], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise TPDEError("--plot needs matplotlib (pip install matplotlib)", "invalid_argument") from e
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8, 6))
    steps = [i.step for i in infos]
    top.plot(steps, [i.ratio for i in infos], marker="o")
    top.set_ylabel("compression ratio")
    changed = [_changed(i.tensors.values()) for i in infos]
    bottom.plot(steps, [np.nan if c is None else 100 * c for c in changed], marker="o", color="C1")
    bottom.set_ylabel("changed positions (%)")
    bottom.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _as_numpy(tensor: object) -> tuple[np.ndarray, str | None]:
    """A numpy array of the tensor; dtypes numpy lacks become float32 (exactly)."""
    if isinstance(tensor, np.ndarray):
        return tensor, None
    import torch

    try:
        return tensor.numpy(), None
    except TypeError:
        return tensor.to(torch.float32).numpy(), f"{tensor.dtype} written as float32 (values exact)"


def _describe(tensor: object) -> str:
    dtype = str(tensor.dtype).removeprefix("torch.")
    return f"{dtype} {tuple(tensor.shape)}"


def _interactive() -> bool:
    return sys.stderr.isatty()


if __name__ == "__main__":
    sys.exit(main())
