"""Codec benchmark on real checkpoint series: ratio and single-thread MB/s.

For each consecutive pair (t-1, t) of saves in each series (scratch and finetune with a
byte vocabulary, scratch-8k and finetune-8k with a word vocabulary, each in fp32 and bf16;
see bench/series.py), every tensor of step t is cut into
chunks of at most 1 Mi elements (row blocks along axis 0, like the zarr store's chunk
grid) and coded by:

  a   zstd-3            zstd level 3 on the raw bytes (zstandard)
  b   blosc2-shuf-zstd3 blosc2 byte shuffle + zstd clevel 3, nthreads=1
  c   group+zstd3       byte grouping (bytes split into planes) + zstd-3
  d   xor+zstd3         XOR with the predecessor's bit patterns + zstd-3
  d2  diff+group+zstd3  wrapping integer difference of the bit patterns with the
                        predecessor, zigzag-mapped, byte grouping, zstd-3
  e   tpde              tpde.encode(x) / tpde.decode(b)
  f   tpde-delta        tpde.encode(x, reference=prev)
  f2  tpde-delta2       tpde.encode(x, reference=prev, prev_reference=prevprev)
                        (pairs with two predecessors only)
  z   zipnn             ZipNN 0.5.4 (byte grouping + Huffman), threads=1, on the values
                        of step t alone (ZipNN has no delta mode): its numpy input path
                        for fp32, its byte path with bytearray_dtype="bfloat16" for bf16;
                        n/a when zipnn is not installed
  g   tpde fast         tpde.encode(x, dtype=dt, level="fast") (keyframe, no reference)
  h   tpde fast delta   tpde.encode(x, reference=prev, dtype=dt, level="fast")

Ratio = raw bytes / compressed bytes (payloads only, no container). Speed = raw bytes
per CPU-second of this process (ZipNN runs its work on a helper thread, so the calling
thread's time would miss it), best of --reps runs after a warm-up run; every chunk's
round trip is checked bit-exactly in the same run. Also reported: the order-0
(per-value, not per-byte) empirical entropy of the d2 residual pooled per kind, and the
fraction of positions whose bits changed.

tpde columns print "n/a" when ``import tpde`` fails or the API is missing.

    python bench/bench_codec.py            # all pairs timed (~several min)
    python bench/bench_codec.py --quick    # ratios on all pairs, speed on 3 per series
    python bench/bench_codec.py --small    # tiny series, smoke test (seconds)

Writes bench/results.md, bench/ratio_per_step.png and bench/.cache/results.json.
The 32,768-token series are not in the default run (4.3 GB, ~15 min to train); their
results live in bench/results-32k.md:

    python bench/bench_codec.py --quick --series scratch-32k finetune-32k \
        --out bench/results-32k.md --plot bench/.cache/ratio_per_step-32k.png \
        --json bench/.cache/results-32k.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import series as S  # noqa: E402

CHUNK_ELEMS = 1 << 20
KINDS = ("weights", "exp_avg", "exp_avg_sq")
ALL_KINDS = KINDS + ("other",)
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
SINT = {1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}


# --------------------------------------------------------------------------- tpde
def _load_tpde():
    try:
        import tpde  # noqa: F401
        tpde.encode, tpde.decode  # noqa: B018
        return tpde, None
    except Exception as e:  # ImportError, AttributeError, broken build...
        return None, f"{type(e).__name__}: {e}"


TPDE, TPDE_ERR = _load_tpde()


# --------------------------------------------------------------------------- methods
@dataclass
class Method:
    key: str
    label: str
    needs: int      # number of predecessors needed (0, 1, 2)
    enc: object     # (x, prev, prevprev, dtype) -> bytes
    dec: object     # (bytes, prev, prevprev, like) -> ndarray
    is_tpde: bool = False


def _zstd():
    import zstandard
    c = zstandard.ZstdCompressor(level=3)  # threads=0: single thread
    d = zstandard.ZstdDecompressor()
    return c, d


def _bits(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1).view(UINT[x.dtype.itemsize])


def _group(u: np.ndarray) -> np.ndarray:
    """uint array (n,) -> byte planes (itemsize, n) as contiguous bytes."""
    w = u.dtype.itemsize
    return np.ascontiguousarray(u.view(np.uint8).reshape(-1, w).T)


def _ungroup(b: bytes, w: int) -> np.ndarray:
    planes = np.frombuffer(b, dtype=np.uint8).reshape(w, -1)
    return np.ascontiguousarray(planes.T).reshape(-1).view(UINT[w])


def _zigzag(d: np.ndarray) -> np.ndarray:
    w = d.dtype.itemsize
    s = d.view(SINT[w])
    return ((s << 1) ^ (s >> (8 * w - 1))).view(UINT[w])


def _unzigzag(z: np.ndarray) -> np.ndarray:
    return (z >> 1) ^ (np.zeros_like(z) - (z & 1))


def _zipnn_methods() -> list[Method]:
    """ZipNN 0.5.4 as a baseline, one thread; [] when it is not installed."""
    try:
        import zipnn
    except ImportError:
        return []
    z32 = zipnn.ZipNN(input_format="numpy", threads=1)
    z16 = zipnn.ZipNN(input_format="byte", bytearray_dtype="bfloat16", threads=1)

    def pick(x, dt):
        if dt == "bfloat16":
            return z16, x.tobytes()
        if x.dtype == np.float32:
            return z32, x
        return None, x

    def enc(x, p, pp, dt):
        z, data = pick(x, dt)
        if z is None:  # ZipNN takes float32/bf16 (counters, other dtypes): zstd-3 as ZipNN would fall back
            return b"R" + _ZSTD_C.compress(x.tobytes())
        return b"Z" + z.compress(data)

    def dec(b, p, pp, x):
        if b[:1] == b"R":
            return np.frombuffer(_ZSTD_D.decompress(b[1:]), dtype=x.dtype).reshape(x.shape)
        z = z32 if x.dtype == np.float32 else z16
        out = z.decompress(b[1:])
        raw = out.tobytes() if hasattr(out, "tobytes") else bytes(out)
        return np.frombuffer(raw, dtype=x.dtype).reshape(x.shape)

    return [Method("z", "ZipNN 0.5.4", 0, enc, dec)]


_ZSTD_C = _ZSTD_D = None


def make_methods(with_tpde: bool = True) -> list[Method]:
    global _ZSTD_C, _ZSTD_D
    import blosc2
    blosc2.set_nthreads(1)
    zc, zd = _zstd()
    _ZSTD_C, _ZSTD_D = _zstd()

    def like(b, x):
        return b.view(x.dtype).reshape(x.shape)

    def a_enc(x, p, pp, dt):
        return zc.compress(memoryview(x).cast("B") if x.ndim else x.tobytes())

    def a_dec(b, p, pp, x):
        return like(np.frombuffer(zd.decompress(b), dtype=np.uint8), x)

    def b_enc(x, p, pp, dt):
        return blosc2.compress(x.tobytes() if x.ndim == 0 else x, typesize=x.dtype.itemsize,
                               clevel=3, filter=blosc2.Filter.SHUFFLE, codec=blosc2.Codec.ZSTD)

    def b_dec(b, p, pp, x):
        return like(np.frombuffer(blosc2.decompress(b), dtype=np.uint8), x)

    def c_enc(x, p, pp, dt):
        return zc.compress(_group(_bits(x)))

    def c_dec(b, p, pp, x):
        return like(_ungroup(zd.decompress(b), x.dtype.itemsize), x)

    def d_enc(x, p, pp, dt):
        return zc.compress(_bits(x) ^ _bits(p))

    def d_dec(b, p, pp, x):
        r = np.frombuffer(zd.decompress(b), dtype=UINT[x.dtype.itemsize])
        return like(r ^ _bits(p), x)

    def d2_enc(x, p, pp, dt):
        return zc.compress(_group(_zigzag(_bits(x) - _bits(p))))

    def d2_dec(b, p, pp, x):
        z = _ungroup(zd.decompress(b), x.dtype.itemsize)
        return like(_bits(p) + _unzigzag(z), x)

    ms = [Method("a", "zstd-3", 0, a_enc, a_dec),
          Method("b", "blosc2 shuffle+zstd-3", 0, b_enc, b_dec),
          Method("c", "bytegroup+zstd-3", 0, c_enc, c_dec),
          Method("d", "xor+zstd-3", 1, d_enc, d_dec),
          Method("d2", "intdiff+bytegroup+zstd-3", 1, d2_enc, d2_dec)]
    ms += _zipnn_methods()
    if with_tpde:
        ms += [Method("e", "tpde", 0,
                      lambda x, p, pp, dt: TPDE.encode(x, dtype=dt),
                      lambda b, p, pp, x: TPDE.decode(b), True),
               Method("f", "tpde delta", 1,
                      lambda x, p, pp, dt: TPDE.encode(x, reference=p, dtype=dt),
                      lambda b, p, pp, x: TPDE.decode(b, reference=p), True),
               Method("f2", "tpde delta+prev", 2,
                      lambda x, p, pp, dt: TPDE.encode(x, reference=p, prev_reference=pp, dtype=dt),
                      lambda b, p, pp, x: TPDE.decode(b, reference=p, prev_reference=pp), True),
               Method("g", "tpde fast", 0,
                      lambda x, p, pp, dt: TPDE.encode(x, dtype=dt, level="fast"),
                      lambda b, p, pp, x: TPDE.decode(b), True),
               Method("h", "tpde fast delta", 1,
                      lambda x, p, pp, dt: TPDE.encode(x, reference=p, dtype=dt, level="fast"),
                      lambda b, p, pp, x: TPDE.decode(b, reference=p), True)]
    else:
        ms += [Method("e", "tpde", 0, None, None, True),
               Method("f", "tpde delta", 1, None, None, True),
               Method("f2", "tpde delta+prev", 2, None, None, True),
               Method("g", "tpde fast", 0, None, None, True),
               Method("h", "tpde fast delta", 1, None, None, True)]
    return ms


# --------------------------------------------------------------------------- chunks
def chunk_array(a: np.ndarray, limit: int = CHUNK_ELEMS) -> list[np.ndarray]:
    """Row blocks along axis 0 with at most ``limit`` elements (flat slices if a row is
    already larger). Every chunk is C-contiguous."""
    a = np.ascontiguousarray(a)
    if a.ndim == 0 or a.size <= limit:
        return [a]
    row = int(np.prod(a.shape[1:])) if a.ndim > 1 else 1
    if row > limit or a.ndim == 1:
        f = a.reshape(-1)
        return [f[i:i + limit] for i in range(0, f.size, limit)]
    r = max(1, limit // row)
    return [a[i:i + r] for i in range(0, a.shape[0], r)]


def build_chunks(tensors: dict) -> dict[str, list[tuple[str, np.ndarray]]]:
    """kind -> [(name#k, chunk)] in a fixed order."""
    out = {k: [] for k in ALL_KINDS}
    for name in sorted(tensors):
        for k, c in enumerate(chunk_array(tensors[name])):
            out[S.classify(name)].append((f"{name}#{k}", c))
    return out


# --------------------------------------------------------------------------- stats
def residual_entropy(cur: list[np.ndarray], prev: list[np.ndarray]) -> tuple[float, float, float]:
    """Order-0 empirical entropy (bits/value) of the wrapping integer difference of the bit
    patterns pooled over chunks, fraction of distinct residual values, fraction changed."""
    if not cur:
        return float("nan"), float("nan"), float("nan")
    d = np.concatenate([(_bits(x) - _bits(p)) for x, p in zip(cur, prev)])
    n = d.size
    changed = float(np.count_nonzero(d)) / n
    if d.dtype.itemsize <= 2:
        cnt = np.bincount(d.astype(np.int64))
        cnt = cnt[cnt > 0]
    else:
        cnt = np.unique(d, return_counts=True)[1]
    p = cnt / n
    h = float(-(p * np.log2(p)).sum())
    return h, cnt.size / n, changed


def _best_time(fn, reps: int) -> float:
    """Best of `reps` runs in CPU time of this process: every codec here works on one thread
    (ZipNN's is not the caller's), and CPU time keeps other processes on a shared machine
    out of the figure."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a)
    if a.shape != b.shape or a.dtype.itemsize != b.dtype.itemsize:
        return False
    return np.array_equal(_bits(np.ascontiguousarray(a)), _bits(b))


def bench_pair(methods, cur, prev, prevprev, bf16: bool, timed: bool, reps: int):
    """One pair. cur/prev/prevprev: kind -> [(id, chunk)] (prev* may be None).
    Returns {method: {kind: {raw, comp, enc_s, dec_s, ok, err}}} and stats per kind."""
    res = {}
    for m in methods:
        if m.needs >= 1 and prev is None or m.needs >= 2 and prevprev is None:
            continue
        if m.enc is None:
            res[m.key] = {"na": TPDE_ERR or "unavailable"}
            continue
        mk = {}
        for kind in ALL_KINDS:
            xs = [c for _, c in cur[kind]]
            ps = [c for _, c in prev[kind]] if prev is not None else [None] * len(xs)
            pps = [c for _, c in prevprev[kind]] if prevprev is not None else [None] * len(xs)
            dts = ["bfloat16" if bf16 and x.dtype == np.uint16 else None for x in xs]
            raw = sum(x.nbytes for x in xs)
            r = {"raw": raw, "comp": 0, "enc_s": None, "dec_s": None, "ok": True, "err": None}
            try:
                encs = [m.enc(x, p, pp, dt) for x, p, pp, dt in zip(xs, ps, pps, dts)]
                r["comp"] = sum(len(b) for b in encs)
                for b, x, p, pp in zip(encs, xs, ps, pps):
                    if not _same_bits(m.dec(b, p, pp, x), x):
                        r["ok"] = False
                if timed and xs:
                    def enc_all():
                        for x, p, pp, dt in zip(xs, ps, pps, dts):
                            m.enc(x, p, pp, dt)

                    def dec_all():
                        for b, x, p, pp in zip(encs, xs, ps, pps):
                            m.dec(b, p, pp, x)
                    r["enc_s"] = _best_time(enc_all, reps)
                    r["dec_s"] = _best_time(dec_all, reps)
            except Exception as e:
                if not m.is_tpde:
                    raise
                r["err"] = f"{type(e).__name__}: {e}"[:200]
            mk[kind] = r
        res[m.key] = mk
        bad = [k for k, r in mk.items() if not r["ok"]]
        if bad and not m.is_tpde:
            raise AssertionError(f"round trip mismatch for {m.label} in {bad}")
    stats = {}
    if prev is not None:
        for kind in KINDS:
            h, distinct, changed = residual_entropy([c for _, c in cur[kind]], [c for _, c in prev[kind]])
            stats[kind] = {"H0": h, "distinct": distinct, "changed": changed,
                           "bits": 8 * (cur[kind][0][1].dtype.itemsize if cur[kind] else 4)}
    return res, stats


# --------------------------------------------------------------------------- driver
def _git_commit() -> str:
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                           text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(series_names, *, small=False, quick=False, reps=3, timed_pairs=3, out_dir=None,
        log=print) -> dict:
    methods = make_methods(TPDE is not None)
    results = {"series": {}, "meta": {}}
    for sname in series_names:
        base = sname[:-5] if sname.endswith("-bf16") else sname
        t0 = time.perf_counter()
        data = S.load_series(sname, out_dir, small=small)
        meta = S.series_meta(base, out_dir, small=small)
        bf16 = bool(data[0][1].bf16)
        chunks = [(step, build_chunks(t)) for step, t in data]
        raw_total = sum(c.nbytes for cs in chunks[0][1].values() for _, c in cs)
        npairs = len(chunks) - 1
        if quick:
            idx = sorted({int(v) for v in np.linspace(1, npairs, min(timed_pairs, npairs)).round()})
        else:
            idx = list(range(1, npairs + 1))
        log(f"[{sname}] {len(data)} saves, {raw_total / 1e6:.1f} MB per step, "
            f"timed pairs: {idx} (loaded in {time.perf_counter() - t0:.1f}s)")
        pairs = []
        for i in range(1, len(chunks)):
            t1 = time.perf_counter()
            step, cur = chunks[i]
            _, prev = chunks[i - 1]
            pp = chunks[i - 2][1] if i >= 2 else None
            res, stats = bench_pair(methods, cur, prev, pp, bf16, timed=i in idx, reps=reps)
            pairs.append({"step": step, "prev_step": chunks[i - 1][0], "timed": i in idx,
                          "methods": res, "stats": stats})
            ov = {k: _agg([pairs[-1]], k, "overall")["ratio"] for k in res}
            log(f"  step {chunks[i - 1][0]:>5}->{step:<5} " +
                "  ".join(f"{k}:{_fmt(v, 3)}" for k, v in ov.items()) +
                f"  ({time.perf_counter() - t1:.1f}s)")
        results["series"][sname] = {"bf16": bf16, "pairs": pairs, "raw_per_step": raw_total,
                                    "steps": [s for s, _ in data]}
        results["meta"][base] = meta
        del data, chunks
    results["methods"] = [(m.key, m.label) for m in methods]
    results["tpde"] = {"available": TPDE is not None, "error": TPDE_ERR,
                       "version": getattr(TPDE, "__version__", None) if TPDE else None}
    return results


def _agg(pairs, method, kind):
    """Sum raw/comp over pairs (all pairs for ratio; timed pairs for speed)."""
    raw = comp = traw = te = td = 0
    ok, err, na, present = True, None, None, False
    for p in pairs:
        r = p["methods"].get(method)
        if r is None:
            continue
        if "na" in r:
            na = r["na"]
            continue
        kinds = ALL_KINDS if kind == "overall" else (kind,)
        for k in kinds:
            q = r[k]
            present = True
            if q["err"]:
                err = q["err"]
                continue
            ok &= q["ok"]
            raw += q["raw"]
            comp += q["comp"]
            if q["enc_s"] is not None:
                traw += q["raw"]
                te += q["enc_s"]
                td += q["dec_s"]
    out = {"ratio": raw / comp if comp else None,
           "enc": traw / te / 1e6 if te else None,
           "dec": traw / td / 1e6 if td else None,
           "ok": ok, "err": err, "na": na if not present else None}
    return out


def _fmt(v, nd=2):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v != v:
        return "n/a"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _cell(a):
    if a["na"] is not None:
        return "n/a"
    if a["err"] and a["ratio"] is None:
        return "error"
    s = _fmt(a["ratio"], 3)
    if a["enc"] is not None:
        s += f" ({a['enc']:.0f} / {a['dec']:.0f})"
    if not a["ok"]:
        s += " **MISMATCH**"
    if a["err"]:
        s += " (partial: error)"
    return s


SERIES_TITLES = {"scratch": "fp32 scratch", "finetune": "fp32 finetune",
                 "scratch-bf16": "bf16 scratch", "finetune-bf16": "bf16 finetune",
                 "scratch-8k": "fp32 scratch-8k", "finetune-8k": "fp32 finetune-8k",
                 "scratch-8k-bf16": "bf16 scratch-8k", "finetune-8k-bf16": "bf16 finetune-8k",
                 "scratch-32k": "fp32 scratch-32k", "finetune-32k": "fp32 finetune-32k",
                 "scratch-32k-bf16": "bf16 scratch-32k", "finetune-32k-bf16": "bf16 finetune-32k"}
BASELINES = ("a", "b", "c", "d", "d2", "z")


def _agg_store_path(pairs, kind):
    """tpde delta as a store codes a series: f on the first pair, f2 (two predecessors)
    on every later one."""
    raw = comp = 0
    for p in pairs:
        r = p["methods"].get("f2") or p["methods"].get("f")
        if r is None or "na" in r:
            return None
        for k in (ALL_KINDS if kind == "overall" else (kind,)):
            if r[k]["err"]:
                return None
            raw += r[k]["raw"]
            comp += r[k]["comp"]
    return raw / comp if comp else None


def target_rows(results: dict) -> list[str]:
    """Markdown rows comparing tpde with the best baseline over the same pairs."""
    rows = []
    for sname, sr in results["series"].items():
        pairs = sr["pairs"]
        later = [p for p in pairs if "f2" in p["methods"]]
        best_all = max(BASELINES, key=lambda k: _agg(pairs, k, "overall")["ratio"] or 0)
        best_later = max(BASELINES, key=lambda k: _agg(later, k, "overall")["ratio"] or 0)
        ba = _agg(pairs, best_all, "overall")["ratio"]
        bl = _agg(later, best_later, "overall")["ratio"]
        zs = _agg(pairs, "a", "overall")["ratio"]
        st = _agg_store_path(pairs, "overall")
        f2 = _agg(later, "f2", "overall")["ratio"]
        if None in (ba, bl, zs, st, f2):
            continue
        rows.append(f"| {SERIES_TITLES.get(sname, sname)} | {best_all} {ba:.3f} | {st:.3f} | "
                    f"{100 * (st / ba - 1):+.1f} % | {best_later} {bl:.3f} | {f2:.3f} | "
                    f"{100 * (f2 / bl - 1):+.1f} % | {zs:.3f} | {st / zs:.2f}x |")
    return rows


def write_markdown(results: dict, path: Path, args_desc: str) -> str:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    L = ["# tpde codec benchmark", "",
         f"- date: {now}", f"- commit: {_git_commit()}", f"- CPU: {_cpu_model()} "
         f"({os.cpu_count()} logical cores); all codecs single-threaded",
         f"- python {platform.python_version()}, numpy {np.__version__}, "
         f"zstandard {__import__('zstandard').__version__}, blosc2 {__import__('blosc2').__version__}",
         "- tpde: " + (f"available ({results['tpde']['version']})" if results["tpde"]["available"]
                        else f"not importable -> tpde columns n/a ({results['tpde']['error']})"),
         f"- run: `{args_desc}` ({results.get('bench_seconds', '?')} s); load average at start / end: "
         f"{results.get('load_start', '?')} / {results.get('load_end', '?')} (other jobs share the 2 cores)",
         f"- chunks: row blocks of at most {CHUNK_ELEMS:,} elements per tensor (1 Mi)", ""]
    L += ["## Series", ""]
    for base, m in results["meta"].items():
        c = m["config"]
        L.append(f"- **{base}**: {m['description']}. GPT {c['n_layer']} layers, d_model {c['d_model']}, "
                 f"{c['n_head']} heads, context {c['ctx']}, "
                 + ("byte vocab" if c["vocab"] <= 256 else f"{c['vocab']:,}-token word vocab") +
                 f"; **{m['params']:,} params**; "
                 f"AdamW lr {m['lr']:g} ({m['schedule']}, warmup {m['warmup']}), batch {c['batch']}; "
                 f"saves at steps {m['steps'][0]}..{m['steps'][-1]} every "
                 f"{m['steps'][1] - m['steps'][0] if len(m['steps']) > 1 else '-'}; "
                 f"trained in {m['train_seconds']} s; losses "
                 + ", ".join(f"{float(v):.2f}" for v in list(m['losses'].values())[::max(1, len(m['losses']) // 4)]))
    if any(sr["bf16"] for sr in results["series"].values()):
        L.append("- bf16 series: the same checkpoints with every floating tensor cast to bfloat16 "
                 "(optimizer `step` counters unchanged).")
    L += ["", "## Summary", "",
          "Each cell: ratio (encode MB/s / decode MB/s). Ratio = raw / compressed bytes summed over "
          "all consecutive pairs (f2: pairs with 2 predecessors); MB/s = raw bytes per CPU-second "
          "of one thread (thread CPU time: other jobs on the machine do not count), best of the "
          "reps, over the timed pairs. Overall includes `other` "
          "(step counters). Round trips checked bit-exactly.", ""]
    labels = dict(results["methods"])
    for sname, sr in results["series"].items():
        L += [f"### {SERIES_TITLES.get(sname, sname)} ({sr['raw_per_step'] / 1e6:.1f} MB per step, "
              f"{len(sr['pairs'])} pairs)", "",
              "| method | weights | exp_avg | exp_avg_sq | overall |", "|---|---|---|---|---|"]
        for key, label in results["methods"]:
            row = [_cell(_agg(sr["pairs"], key, k)) for k in KINDS + ("overall",)]
            L.append(f"| {key} {label} | " + " | ".join(row) + " |")
        L.append("")
    L += ["## tpde delta against the best baseline, same pairs", "",
          "The issue's targets compare tpde delta with the best other lossless method. Both are "
          "summed over the same pairs here: *store path* is what a CheckpointStore codes (f on "
          "the first pair, f2 on every later one) against the best baseline over all pairs; "
          "*f2* against the best baseline over the pairs that have two predecessors.", "",
          "| series | best baseline, all pairs | tpde store path | gain | best baseline, later pairs "
          "| tpde f2 | gain | zstd-3 | store path / zstd-3 |",
          "|---|---|---|---|---|---|---|---|---|"]
    L += target_rows(results)
    L += ["", "## Residual entropy and changed positions", "",
          "H0 = order-0 empirical entropy of the wrapping integer difference of the bit patterns "
          "(per value, pooled per kind and pair, averaged over pairs); bound = bits per value / H0. "
          "When most residual values are distinct (distinct ~ 1) the empirical H0 is only "
          "log2(count) and the bound is *not* a real bound (fp32). changed = fraction of positions "
          "whose bits changed.", "",
          "| series | kind | H0 bits/value | distinct | order-0 bound | d2 ratio | tpde delta ratio | changed |",
          "|---|---|---|---|---|---|---|---|"]
    for sname, sr in results["series"].items():
        for kind in KINDS:
            st = [p["stats"][kind] for p in sr["pairs"] if kind in p["stats"]]
            if not st:
                continue
            h = float(np.mean([s["H0"] for s in st]))
            bits = st[0]["bits"]
            L.append(f"| {SERIES_TITLES.get(sname, sname)} | {kind} | {h:.2f} | "
                     f"{np.mean([s['distinct'] for s in st]):.3f} | {bits / h:.3f} | "
                     f"{_fmt(_agg(sr['pairs'], 'd2', kind)['ratio'], 3)} | "
                     f"{_cell({**_agg(sr['pairs'], 'f', kind), 'enc': None})} | "
                     f"{np.mean([s['changed'] for s in st]):.4f} |")
    L += ["", "## Overall ratio per step", ""]
    keys = [k for k, _ in results["methods"]]
    for sname, sr in results["series"].items():
        L += [f"### {SERIES_TITLES.get(sname, sname)}", "",
              "| step | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for p in sr["pairs"]:
            L.append(f"| {p['prev_step']}->{p['step']} | " +
                     " | ".join(_fmt(_agg([p], k, "overall")["ratio"], 3) for k in keys) + " |")
        L.append("")
    L += ["Methods: " + "; ".join(f"**{k}** {v}" for k, v in labels.items()) + ".",
          "d2 maps the wrapping difference through zigzag so small negative steps get small "
          "codes. Delta methods (d, d2, f, f2) code step t against the exact step t-1.", ""]
    text = "\n".join(L)
    path.write_text(text + _kept_sections(path))
    return text


def _kept_sections(path: Path) -> str:
    """Sections other scripts wrote into the same file (between <!-- tag --> markers),
    e.g. bench/cross_state.py's: kept when this script rewrites its own part."""
    import re
    old = path.read_text() if path.exists() else ""
    kept = [m.group(0) for m in re.finditer(r"<!-- ([\w-]+) -->\n.*?<!-- /\1 -->\n?", old, flags=re.S)]
    return "".join("\n" + k.rstrip("\n") + "\n" for k in kept)


def write_plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results["series"])
    n = len(names)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
    styles = {"a": ("#999999", "o"), "b": ("#666666", "s"), "c": ("#1f77b4", "^"),
              "d": ("#ff7f0e", "v"), "d2": ("#d62728", "D"), "e": ("#2ca02c", "P"),
              "f": ("#9467bd", "*"), "f2": ("#8c564b", "X"), "z": ("#e377c2", "h"),
              "g": ("#17becf", "<"), "h": ("#bcbd22", ">")}
    for ax, sname in zip(axes.flat, names):
        sr = results["series"][sname]
        for key, label in results["methods"]:
            xs, ys = [], []
            for p in sr["pairs"]:
                r = _agg([p], key, "overall")["ratio"]
                if r is not None:
                    xs.append(p["step"])
                    ys.append(r)
            if xs:
                c, mk = styles.get(key, (None, "o"))
                ax.plot(xs, ys, marker=mk, ms=4, lw=1.2, color=c, label=f"{key} {label}")
        ax.set_title(SERIES_TITLES.get(sname, sname), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("ratio (raw/compressed)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    h, lab = axes.flat[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="tpde codec benchmark on checkpoint series")
    ap.add_argument("--quick", action="store_true",
                    help="ratios on every pair, speed on --timed-pairs pairs per series")
    ap.add_argument("--timed-pairs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3, help="timed runs per measurement (best is kept)")
    ap.add_argument("--small", action="store_true", help="tiny series (smoke test)")
    ap.add_argument("--series", nargs="*",
                    default=["scratch", "finetune", "scratch-bf16", "finetune-bf16",
                             "scratch-8k", "finetune-8k", "scratch-8k-bf16", "finetune-8k-bf16"])
    ap.add_argument("--series-dir", default=None, help="where the series live (default bench/.cache/series)")
    ap.add_argument("--out", default=None, help="markdown output (default bench/results.md)")
    ap.add_argument("--plot", default=None, help="png output (default bench/ratio_per_step.png)")
    ap.add_argument("--json", default=None, help="raw results (default bench/.cache/results.json)")
    a = ap.parse_args(argv)
    if a.small:  # never overwrite the committed full-size results by accident
        a.out = a.out or str(HERE / ".cache" / "results-small.md")
        a.plot = a.plot or str(HERE / ".cache" / "ratio_per_step-small.png")
        a.json = a.json or str(HERE / ".cache" / "results-small.json")
    out = Path(a.out or HERE / "results.md")
    plot = Path(a.plot or HERE / "ratio_per_step.png")
    js = Path(a.json or HERE / ".cache" / "results.json")
    for p in (out, plot, js):
        p.parent.mkdir(parents=True, exist_ok=True)
    if TPDE is None:
        print(f"tpde not available ({TPDE_ERR}); tpde columns will be n/a")
    t0 = time.perf_counter()
    load0 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    res = run(a.series, small=a.small, quick=a.quick, reps=a.reps, timed_pairs=a.timed_pairs,
              out_dir=a.series_dir)
    res["bench_seconds"] = round(time.perf_counter() - t0, 1)
    res["load_start"], res["load_end"] = load0, ", ".join(f"{v:.2f}" for v in os.getloadavg())
    desc = "python bench/bench_codec.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = write_markdown(res, out, desc.strip())
    write_plot(res, plot)
    js.write_text(json.dumps(res, indent=1, default=float))
    print(text)
    print(f"\nwrote {out}, {plot} ({plot.stat().st_size // 1024} KB), {js}; "
          f"bench {res['bench_seconds']} s")
    mism = [(s, k) for s, sr in res["series"].items() for k, _ in res["methods"]
            if not _agg(sr["pairs"], k, "overall")["ok"]]
    if mism:
        print(f"ROUND TRIP MISMATCH: {mism}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
