"""SHA-256 of every chunk the encoder writes for a fixed set of inputs: proves that a
refactoring of the C++ encoder leaves the chunks byte-identical.

Inputs: every dtype in every mode (standalone, delta, delta with a prev-reference, without
prediction, restricted context schemes), lossy absolute and log-relative bounds, special
values, sparse and constant arrays, sizes below and above the plan sample (8,192 values),
and, unless ``--no-series``, every tensor of the small bench series (scratch, finetune and
their bf16 copies: standalone, against the previous step, against it with the step before
as prev-reference, and lossy for the float tensors).

Usage (run once per build, each in the venv of that build, then compare)::

    python bench/encoder_digest.py --out /tmp/new.json
    /path/to/old/venv/bin/python bench/encoder_digest.py --out /tmp/old.json
    python bench/encoder_digest.py --compare /tmp/old.json /tmp/new.json

The series are generated once into ``--series-dir`` (default ``bench/.cache/digest-series``,
gitignored) and read from there by later runs, so both builds see the same tensors.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SERIES = ROOT / "bench" / ".cache" / "digest-series"
INT_DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
FLOAT_DTYPES = ["float32", "float64", "float16", "bfloat16"]


def _floats(rng: np.random.Generator, dtype: str, n: int, scale: float = 1.0) -> np.ndarray:
    x = rng.standard_normal(n) * scale
    if dtype == "bfloat16":
        return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return x.astype(dtype)


def _ints(rng: np.random.Generator, dtype: str, n: int) -> np.ndarray:
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return rng.integers(lo, hi, n, dtype=dtype, endpoint=True)


def _nudge(rng: np.random.Generator, x: np.ndarray, dtype: str) -> np.ndarray:
    """A next step of x: a small move on about half the values, as training makes (bit
    patterns for bfloat16 and integers, wrapping)."""
    if x.dtype == np.bool_:
        return x ^ (rng.random(x.shape) < 0.05)
    if dtype == "bfloat16" or x.dtype.kind in "iu":
        step = rng.integers(-2, 3, x.shape).astype(x.dtype)
        return np.where(rng.random(x.shape) < 0.5, x, x + step)
    return (x + (rng.standard_normal(x.shape) * 1e-3).astype(x.dtype)).astype(x.dtype)


def synthetic_cases():
    """(name, array, encode kwargs) for the fixed synthetic set."""
    rng = np.random.default_rng(1234)
    for n in (0, 1, 7, 1000, 20000):
        for dt in FLOAT_DTYPES + INT_DTYPES + ["bool"]:
            if dt == "bool":
                x = rng.random(n) < 0.3
            elif dt in FLOAT_DTYPES:
                x = _floats(rng, dt, n)
            else:
                x = _ints(rng, dt, n)
            kw = {"dtype": dt} if dt == "bfloat16" else {}
            yield f"{dt}/n{n}/standalone", x, kw
            if n == 0:
                continue
            ref = _nudge(rng, x, dt)
            prev = _nudge(rng, ref, dt)
            yield f"{dt}/n{n}/delta", x, {**kw, "reference": ref}
            yield f"{dt}/n{n}/delta_prev", x, {**kw, "reference": ref, "prev_reference": prev}
            yield f"{dt}/n{n}/delta_prev_noextrap", x, {**kw, "reference": ref, "prev_reference": prev,
                                                         "extrapolate": False}
            yield f"{dt}/n{n}/ctx_none", x, {**kw, "reference": ref, "prev_reference": prev, "contexts": []}
            if dt in FLOAT_DTYPES:
                for bound in (1e-4, 1e-2):
                    yield f"{dt}/n{n}/abs{bound}", x, {**kw, "abs_error": bound}
                    yield f"{dt}/n{n}/abs{bound}_delta_prev", x, {**kw, "abs_error": bound, "reference": ref,
                                                                  "prev_reference": prev}
                    yield f"{dt}/n{n}/logrel{bound}", x, {**kw, "log_rel_error": bound}
                    yield f"{dt}/n{n}/logrel{bound}_delta", x, {**kw, "log_rel_error": bound, "reference": ref}
    # Shapes, specials, sparse moves, constants, decayed rows (scaled segments), extrapolation.
    for dt in ("float32", "float16", "bfloat16"):
        kw = {"dtype": dt} if dt == "bfloat16" else {}
        base = rng.standard_normal((64, 96)).astype(np.float32)
        prev = np.abs(base) + 0.1
        ref = prev * 0.99
        x = ref * 0.99
        x[::7] += 0.05  # rows with a gradient

        def conv(a: np.ndarray, dt: str = dt) -> np.ndarray:
            return (a.view(np.uint32) >> 16).astype(np.uint16) if dt == "bfloat16" else a.astype(dt)

        yield f"{dt}/scaled_rows", conv(x), {**kw, "reference": conv(ref), "prev_reference": conv(prev)}
        yield f"{dt}/scaled_rows_no_prev", conv(x), {**kw, "reference": conv(ref)}
        lin_prev = base
        lin_ref = base + 0.01
        lin_x = base + 0.0205
        yield f"{dt}/extrapolated", conv(lin_x), {**kw, "reference": conv(lin_ref), "prev_reference": conv(lin_prev)}
        yield f"{dt}/abs_predicted", conv(x), {**kw, "abs_error": 1e-3, "reference": conv(ref),
                                               "prev_reference": conv(prev)}
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38, -1.0] * 100, dtype=np.float32)
    yield "float32/specials", specials, {}
    yield "float32/specials_delta", specials, {"reference": specials[::-1].copy()}
    yield "float32/specials_abs", specials, {"abs_error": 1e-3}
    sparse = rng.standard_normal(30000).astype(np.float32)
    moved = sparse.copy()
    moved[rng.random(30000) < 0.02] += 1e-3
    yield "float32/sparse_delta", moved, {"reference": sparse}
    yield "float32/constant", np.full(30000, 0.25, dtype=np.float32), {}
    yield "float64/shape4d", rng.standard_normal((3, 4, 5, 6)), {}
    yield "uint8/noise_stored", rng.integers(0, 256, 5000, dtype=np.uint8), {}
    yield "uint64/extremes", np.array([0, 2**64 - 1, 1, 2**63] * 50, dtype=np.uint64), {}


def series_cases(series_dir: Path, generate: bool):
    """(name, array, encode kwargs) from the small bench series: each tensor standalone,
    against the previous step, with the step before as prev-reference, and lossy (floats)."""
    sys.path.insert(0, str(ROOT))
    from bench.series import load_series  # torch only when series are wanted

    for series in ("scratch", "finetune"):
        for bf16 in (False, True):
            steps = load_series(series, series_dir, small=True, bf16=bf16, generate=generate)
            label = series + ("-bf16" if bf16 else "")
            if not steps:
                raise SystemExit(f"no {label} series under {series_dir} (run once without --no-generate)")
            for k, (step, tensors) in enumerate(steps):
                prev_t = steps[k - 1][1] if k >= 1 else {}
                prev2_t = steps[k - 2][1] if k >= 2 else {}
                for name in sorted(tensors):
                    x = np.asarray(tensors[name])
                    if x.dtype.kind not in "fiub":
                        continue
                    kw = {"dtype": "bfloat16"} if bf16 and x.dtype == np.uint16 else {}
                    tag = f"series/{label}/{step}/{name}"
                    yield tag + "/standalone", x, kw
                    ref = prev_t.get(name)
                    has_ref = ref is not None and np.asarray(ref).shape == x.shape
                    if has_ref:
                        yield tag + "/delta", x, {**kw, "reference": np.asarray(ref)}
                        prev = prev2_t.get(name)
                        if prev is not None and np.asarray(prev).shape == x.shape:
                            yield tag + "/delta_prev", x, {**kw, "reference": np.asarray(ref),
                                                           "prev_reference": np.asarray(prev)}
                    if x.dtype.kind == "f" or kw:
                        lossy = {**kw, "abs_error": 1e-4}
                        if has_ref:
                            lossy["reference"] = np.asarray(ref)
                        yield tag + "/abs1e-4", x, lossy


def digests(series_dir: Path | None, generate: bool) -> dict[str, str]:
    """{case: SHA-256 of its chunk} (or "error: ..." when encode raises)."""
    import tpde

    cases = list(synthetic_cases())
    if series_dir is not None:
        cases += list(series_cases(series_dir, generate))
    out: dict[str, str] = {}
    for name, x, kw in cases:
        assert name not in out, name
        try:
            chunk = tpde.encode(x, **kw)
            out[name] = hashlib.sha256(bytes(chunk)).hexdigest()
        except (tpde.TPDEError, ValueError, TypeError) as e:  # an outcome too: must not change either
            out[name] = f"error: {type(e).__name__}: {e}"
    return out


def compare(old_path: Path, new_path: Path) -> int:
    """Prints how many chunks are identical; 0 if all are (and the case sets match)."""
    old = json.loads(old_path.read_text())["digests"]
    new = json.loads(new_path.read_text())["digests"]
    same = sum(1 for k in new if old.get(k) == new[k])
    differ = sorted(k for k in new if k in old and old[k] != new[k])
    only = sorted(set(old) ^ set(new))
    print(f"{same} of {len(new)} chunks identical; {len(differ)} differ; {len(only)} cases in one run only")
    for k in differ[:20]:
        print("  differs:", k)
    for k in only[:20]:
        print("  one run only:", k)
    return 0 if not differ and not only else 1


def main(argv: list[str] | None = None) -> int:
    """Command line: write digests (--out) or compare two digest files (--compare)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="write {case: sha256} JSON here")
    p.add_argument("--series-dir", type=Path, default=DEFAULT_SERIES)
    p.add_argument("--no-series", action="store_true", help="synthetic inputs only")
    p.add_argument("--no-generate", action="store_true", help="read cached series only")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"))
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    import tpde

    d = digests(None if args.no_series else args.series_dir, not args.no_generate)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=Path(tpde.__file__).parent,
                            capture_output=True, text=True).stdout.strip()
    total = hashlib.sha256("".join(f"{k}={v}\n" for k, v in sorted(d.items())).encode()).hexdigest()
    print(f"{len(d)} chunks, commit {commit}, combined sha256 {total}")
    if args.out:
        args.out.write_text(json.dumps({"commit": commit, "combined": total, "digests": d}, indent=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
