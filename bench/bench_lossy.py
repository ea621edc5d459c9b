"""Error-bounded lossy mode on the fp32 checkpoint series: ratio, order-0 bound, contexts,
errors, speed; and the TPDE threshold recipe as a baseline.

For each fp32 series (scratch, finetune; see bench/series.py) the whole series is coded
with error feedback: the first save as a lossy keyframe (no reference), every later save
as a lossy delta against the previous step's *reconstruction* (and, from the third save
on, prev_reference = the reconstruction before that):

    chunk, recon = tpde.encode(x, reference=prev_recon, prev_reference=prev_prev_recon,
                               abs_error=B | log_rel_error=R, return_reconstruction=True)

Bounds, per tensor, from its RMS at the keyframe, times a scale s (reference: s = 1):
    weights     abs_error     0.1 x s x RMS
    exp_avg     abs_error     0.2 x s x RMS
    exp_avg_sq  log_rel_error min(0.3 x s, 0.9)   (R < 1 is required; the core's log
                quantizer works in integer steps of ordered bit patterns, about
                2R / (2 + R) x 2^24 units for fp32)
    other       lossless (the 0-d optimizer ``step`` counters)

Reported per kind and overall, on the delta steps only (keyframe given apart):
  - ratio = raw bytes / tpde chunk bytes (whole chunks, headers included);
  - order-0 bound: the empirical order-0 entropy of the quantized integers q of each
    chunk, summed over chunks (no table cost). q is recomputed from recon and reference:
      absolute:     q = rint((recon - ref) / step), step = 2 B (1 - 2^-10) (fp32), in
                    float64: exact, the core's quantizer is idempotent on that grid;
      log-relative: q = (ordered(recon) - ordered(ref)) / step, exact integers, where
                    ordered() maps fp32 bit patterns to integers in value order and
                    step is read from the chunk's lossy block (the remainder is
                    asserted to be 0).
    Chunks that fell back to lossless (header lossy = None) and the 'other' kind count
    with their actual tpde bytes on both sides.
  - tpde ratio / order-0 ratio (> 1: tpde beats a static per-chunk order-0 code);
  - context gains: bytes with contexts=[] / bytes with one scheme allowed, minus 1
    (the quantization, hence recon, does not depend on contexts: asserted);
  - max |recon - x| / bound over every chunk and step, keyframe included: asserted <= 1
    (log-relative: bound = R |x|; where x == 0, recon must be 0);
  - encode / decode MB/s, one thread, in thread CPU time (time.thread_time: the 2 cores
    are shared), one call per chunk, summed over delta steps; the decode is checked
    bit-exactly against the encoder's reconstruction.

Threshold recipe baseline (published TPDE thresholding, no error feedback): on step t,
delta = x_t - x_{t-1} (the previous *original* checkpoint), |delta| < 1e-3 set to 0;
stored: a bitmask of the kept positions (np.packbits) followed by the fp32 kept delta
values, compressed as one zstd-3 frame. Restore = keyframe + sum of the stored deltas,
so errors accumulate (unbounded); max error reported per kind.

    python bench/bench_lossy.py            # both series, scales 0.5/1/2/4 (~several min)
    python bench/bench_lossy.py --quick    # reference bound only, first 4 saves per series
    python bench/bench_lossy.py --small    # tiny series (bench/.cache/series-small), smoke test

Writes its section of bench/lossy_results.md (bench/recovery.py writes another section of
the same file) and bench/.cache/lossy_results[-quick|-small].json.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import series as S  # noqa: E402
from bench.bench_codec import _cpu_model, _git_commit, chunk_array  # noqa: E402  (same chunking and run labels as the codec bench)

KINDS = ("weights", "exp_avg", "exp_avg_sq")
ALL_KINDS = KINDS + ("other",)
REF_BOUNDS = {"weights": 0.1, "exp_avg": 0.2, "exp_avg_sq": 0.3}
LOG_REL_CAP = 0.9
ABS_MARGIN_FP32 = 2.0 ** -10
CONTEXT_RUNS = {  # label -> contexts argument
    "none": [],
    "ref_exponent": ["ref_exponent"],
    "prev_residual": ["prev_residual"],
    "neighbour": ["neighbour"],
    "ref_exp+prev_res": ["ref_exponent_prev_residual"],
    "all": None,
}
SCHEME_NAMES = {0: "none", 1: "ref_exponent", 2: "prev_residual", 3: "neighbour",
                4: "prev_exponent", 5: "ref_exp+prev_res"}
THRESHOLD = 1e-3
BIG_CHUNK = 1 << 16  # order-0 comparison also given on chunks of >= 64 Ki values (fixed costs amortized)


# --------------------------------------------------------------------------- helpers
def chunks_of(td) -> list[tuple[str, str, np.ndarray]]:
    """[(key, kind, chunk)] in a fixed order."""
    out = []
    for name in sorted(td):
        for k, c in enumerate(chunk_array(td[name])):
            out.append((f"{name}#{k}", S.classify(name), c))
    return out


def rms(a: np.ndarray) -> float:
    a = a.astype(np.float64)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


def bound_for(kind: str, rms_kf: float, scale: float):
    """-> (kwargs for tpde.encode, bound description) or ({}, None) for lossless."""
    if kind == "exp_avg_sq":
        return {"log_rel_error": min(REF_BOUNDS[kind] * scale, LOG_REL_CAP)}, "log_rel"
    if kind in ("weights", "exp_avg") and rms_kf > 0 and np.isfinite(rms_kf):
        return {"abs_error": REF_BOUNDS[kind] * scale * rms_kf}, "abs"
    return {}, None


def ordered_u32(a: np.ndarray) -> np.ndarray:
    """fp32 bit patterns -> int64 in value order (the core's to_ordered)."""
    u = np.ascontiguousarray(a).reshape(-1).view(np.uint32).astype(np.int64)
    neg = (u & 0x80000000) != 0
    return np.where(neg, (~u) & 0xFFFFFFFF, u | 0x80000000)


def h0_bits(q: np.ndarray) -> float:
    """Empirical order-0 entropy of an integer array, in bits (total)."""
    if q.size == 0:
        return 0.0
    lo, hi = int(q.min()), int(q.max())
    if hi - lo < (1 << 24):
        counts = np.bincount((q - lo).astype(np.intp))
        counts = counts[counts > 0]
    else:
        _, counts = np.unique(q, return_counts=True)
    c = counts.astype(np.float64)
    return float(-(c * np.log2(c / q.size)).sum())


def quantized_ints(chunk: bytes, hdr: dict, x_rec: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    """The integers q the lossy chunk coded (see the module docstring)."""
    if hdr["lossy"] == "absolute":
        step = 2 * hdr["error_bound"] * (1 - ABS_MARGIN_FP32)
        r = ref.reshape(-1).astype(np.float64) if ref is not None else 0.0
        return np.rint((x_rec.reshape(-1).astype(np.float64) - r) / step).astype(np.int64)
    hs = hdr["header_size"]
    assert chunk[hs] == 2, "lossy block: expected the log-relative quantizer"
    step = int.from_bytes(chunk[hs + 16: hs + 24], "little")
    o_ref = ordered_u32(ref) if ref is not None else np.int64(0x80000000)
    d = ordered_u32(x_rec) - o_ref
    assert not np.any(d % step), "log-relative residual not a multiple of the step"
    return d // step


def max_err_ratio(x: np.ndarray, rec: np.ndarray, kw: dict) -> float:
    xd = x.reshape(-1).astype(np.float64)
    e = np.abs(rec.reshape(-1).astype(np.float64) - xd)
    if not e.size:
        return 0.0
    if "abs_error" in kw:
        return float(e.max() / kw["abs_error"])
    if "log_rel_error" in kw:
        b = kw["log_rel_error"] * np.abs(xd)
        zero = b == 0
        if np.any(e[zero] != 0):
            return float("inf")
        return float((e[~zero] / b[~zero]).max()) if np.any(~zero) else 0.0
    return 0.0 if e.max() == 0 else float("inf")  # lossless: must be exact


def chosen_context(chunk: bytes, hdr: dict) -> str:
    off = hdr["header_size"] + (16 if hdr.get("lossy") else 0)
    if len(chunk) < off + 4:
        return "?"
    name = SCHEME_NAMES.get(chunk[off + 2], str(chunk[off + 2]))
    return name + ("/standalone" if chunk[off + 3] else "")


def _new_acc():
    return {"raw": 0, "bytes": 0, "h0_bytes": 0.0, "n": 0, "fallback": 0, "chunks": 0,
            "big_n": 0, "big_bytes": 0, "big_h0_bytes": 0.0,
            "enc_s": 0.0, "dec_s": 0.0, "ctx_bytes": {k: 0 for k in CONTEXT_RUNS},
            "ctx_chosen": {}, "max_err": 0.0}


# --------------------------------------------------------------------------- tpde lossy chain
def lossy_chain(tpde, series, scale: float, *, contexts: bool, log=print) -> dict:
    """Code a whole series with error feedback at one bound scale; return statistics."""
    kf_chunks = chunks_of(series[0][1])
    rms_kf = {key: rms(c) for key, kind, c in kf_chunks}
    delta = {k: _new_acc() for k in ALL_KINDS}
    key_acc = {k: _new_acc() for k in ALL_KINDS}
    per_step = []
    prev, prevprev = {}, {}
    idem = None
    for t, (step, td) in enumerate(series):
        cur = {}
        acc = key_acc if t == 0 else delta
        st_raw = st_bytes = 0
        for key, kind, x in chunks_of(td):
            kw, _ = bound_for(kind, rms_kf[key], scale)
            ref, pp = prev.get(key), prevprev.get(key)
            if t == 0:
                ref = pp = None
            t0 = time.thread_time()
            chunk, rec = tpde.encode(x, reference=ref, prev_reference=pp, return_reconstruction=True, **kw)
            t1 = time.thread_time()
            dec = tpde.decode(chunk, reference=ref, prev_reference=pp)
            t2 = time.thread_time()
            rec = np.asarray(rec).reshape(x.shape)
            assert np.array_equal(np.asarray(dec).reshape(-1).view(np.uint32), rec.reshape(-1).view(np.uint32)), \
                f"decode != encoder reconstruction: {key} step {step}"
            hdr = tpde.read_header(chunk)
            err = max_err_ratio(x, rec, kw)
            assert err <= 1.0, f"bound violated: {key} step {step} scale {scale}: max err / bound = {err}"
            a = acc[kind]
            a["raw"] += x.nbytes
            a["bytes"] += len(chunk)
            a["n"] += x.size
            a["chunks"] += 1
            a["enc_s"] += t1 - t0
            a["dec_s"] += t2 - t1
            a["max_err"] = max(a["max_err"], err)
            if kw and hdr.get("lossy"):
                h0 = h0_bits(quantized_ints(chunk, hdr, rec, ref)) / 8
                a["h0_bytes"] += h0
                if x.size >= BIG_CHUNK:
                    a["big_n"] += x.size
                    a["big_bytes"] += len(chunk)
                    a["big_h0_bytes"] += h0
            else:
                a["h0_bytes"] += len(chunk)
                if kw:
                    a["fallback"] += 1
            cc = chosen_context(chunk, hdr)
            a["ctx_chosen"][cc] = a["ctx_chosen"].get(cc, 0) + 1
            if t > 0 and contexts and kind in KINDS:
                for label, ctx in CONTEXT_RUNS.items():
                    if ctx is None:
                        a["ctx_bytes"][label] += len(chunk)
                        continue
                    c2, r2 = tpde.encode(x, reference=ref, prev_reference=pp, return_reconstruction=True,
                                         contexts=ctx, **kw)
                    assert np.array_equal(np.asarray(r2).reshape(-1).view(np.uint32),
                                          rec.reshape(-1).view(np.uint32)), "recon depends on contexts"
                    a["ctx_bytes"][label] += len(c2)
            if t == len(series) - 1 and idem is None and kind == "weights" and kw:
                # idempotence: re-encoding the reconstruction gives the same bytes
                c3 = tpde.encode(rec, reference=ref, prev_reference=pp, **kw)
                idem = bool(c3 == chunk)
            st_raw += x.nbytes
            st_bytes += len(chunk)
            cur[key] = rec
        per_step.append({"step": step, "raw": st_raw, "bytes": st_bytes})
        prevprev, prev = prev, cur
    return {"scale": scale, "delta": delta, "keyframe": key_acc, "per_step": per_step,
            "idempotent": idem}


# --------------------------------------------------------------------------- threshold recipe
def threshold_recipe(series, thr=THRESHOLD) -> dict:
    """The recipe on a whole series. ``thr``: one threshold for every value (the published
    recipe), or a function (kind, key, previous original chunk) -> threshold, a scalar or
    an array of the chunk's shape (bench/recipe_sweep.py)."""
    import zstandard
    zc = zstandard.ZstdCompressor(level=3)
    zd = zstandard.ZstdDecompressor()
    kf = chunks_of(series[0][1])
    rms_kf = {key: rms(c) for key, kind, c in kf}
    recon = {key: c.astype(np.float32).copy() for key, kind, c in kf}
    prev = {key: c for key, kind, c in kf}
    acc = {k: {"raw": 0, "bytes": 0, "n": 0, "kept": 0, "max_abs_err": 0.0, "max_err_over_ref": 0.0,
               "max_rel_err": 0.0, "enc_s": 0.0} for k in ALL_KINDS}
    per_step = []
    for step, td in series[1:]:
        st_raw = st_bytes = 0
        for key, kind, x in chunks_of(td):
            t0 = time.perf_counter()
            d = (x.astype(np.float32) - prev[key]).reshape(-1)
            t_k = thr(kind, key, prev[key]) if callable(thr) else thr
            keep = np.abs(d) >= np.reshape(t_k, -1)
            vals = d[keep].astype(np.float32)
            blob = zc.compress(np.packbits(keep).tobytes() + vals.tobytes())
            t1 = time.perf_counter()
            # restore: decompress and add to the running reconstruction
            raw = zd.decompress(blob)
            nm = (d.size + 7) // 8
            k2 = np.unpackbits(np.frombuffer(raw[:nm], np.uint8), count=d.size).astype(bool)
            v2 = np.frombuffer(raw[nm:], np.float32)
            r = recon[key].reshape(-1).copy()
            r[k2] += v2
            recon[key] = r.reshape(x.shape)
            prev[key] = x
            a = acc[kind]
            a["raw"] += x.nbytes
            a["bytes"] += len(blob)
            a["n"] += x.size
            a["kept"] += int(keep.sum())
            a["enc_s"] += t1 - t0
            xd = x.reshape(-1).astype(np.float64)
            e = np.abs(r.astype(np.float64) - xd)
            if e.size:
                a["max_abs_err"] = max(a["max_abs_err"], float(e.max()))
                if kind in ("weights", "exp_avg") and rms_kf[key] > 0:
                    a["max_err_over_ref"] = max(a["max_err_over_ref"],
                                                float(e.max() / (REF_BOUNDS[kind] * rms_kf[key])))
                nz = xd != 0
                if kind == "exp_avg_sq" and np.any(nz):
                    rel = float((e[nz] / np.abs(xd[nz])).max())
                    a["max_rel_err"] = max(a["max_rel_err"], rel)
                    a["max_err_over_ref"] = max(a["max_err_over_ref"], rel / REF_BOUNDS[kind])
            st_raw += x.nbytes
            st_bytes += len(blob)
        per_step.append({"step": step, "raw": st_raw, "bytes": st_bytes})
    return {"threshold": thr if not callable(thr) else "per tensor", "kinds": acc, "per_step": per_step}


# --------------------------------------------------------------------------- report
def _sum(accs: dict, kinds, field):
    return sum(accs[k][field] for k in kinds)


def _ratio(accs, kinds, field="bytes"):
    b = _sum(accs, kinds, field)
    return _sum(accs, kinds, "raw") / b if b else float("nan")


def render(res: dict) -> str:
    L = []
    m = res["meta"]
    L.append("## Lossy mode: ratio, order-0 bound, contexts, errors, speed (`bench/bench_lossy.py`)")
    L.append("")
    L.append(f"- date {m['date']}, commit {m['commit']}, {m['cpu']}, python {m['python']}, numpy {m['numpy']}, "
             f"tpde {m['tpde']}; run `{m['args']}` in {m['seconds']} s; load average start / end: "
             f"{m['load_start']} / {m['load_end']} "
             "(MB/s in thread CPU time, since the 2 cores are shared; ratios are exact)")
    ser = ", ".join(f"{n} ({len(r['steps'])} saves, steps {r['steps'][0]}..{r['steps'][-1]})"
                    for n, r in res["series"].items())
    L.append(f"- series: {ser}; "
             "keyframe = first save (lossy, no reference), then lossy deltas against the previous "
             "reconstruction (error feedback), prev_reference = the reconstruction before that; "
             "one chunk per tensor (<= 1 Mi elements)")
    L.append("- bounds per tensor, scale s: weights abs 0.1 s RMS, exp_avg abs 0.2 s RMS (RMS at the keyframe), "
             "exp_avg_sq log_rel min(0.3 s, 0.9); step counters lossless. Ratios are on delta steps: "
             "raw bytes / tpde chunk bytes (headers included)")
    L.append("")
    scales = res["scales"]
    names = list(res["series"])
    # 1. ratios per kind at every scale
    L.append("### Ratio on delta steps (weights / exp_avg / exp_avg_sq / overall), max error / bound")
    L.append("")
    L.append("| scale | " + " | ".join(f"{n}: ratio | {n}: max err/bound" for n in names) + " |")
    L.append("|---|" + "---|---|" * len(names))
    for s in scales:
        row = [f"{s:g}"]
        for n in names:
            r = res["series"][n]["lossy"][str(s)]
            d = r["delta"]
            row.append(" / ".join(f"{_ratio(d, [k]):.2f}" for k in KINDS) + f" / **{_ratio(d, ALL_KINDS):.2f}**")
            errs = [max(r["delta"][k]["max_err"], r["keyframe"][k]["max_err"]) for k in KINDS]
            row.append(" / ".join(f"{e:.3f}" for e in errs))
        L.append("| " + " | ".join(row) + " |")
    L.append("")
    L.append("Keyframe (first save, lossy standalone) ratio at each scale: " + "; ".join(
        f"{n}: " + ", ".join(f"{s:g}x {_ratio(res['series'][n]['lossy'][str(s)]['keyframe'], ALL_KINDS):.2f}"
                             for s in scales) for n in names))
    fb = sum(res["series"][n]["lossy"][str(s)]["delta"][k]["fallback"]
             + res["series"][n]["lossy"][str(s)]["keyframe"][k]["fallback"]
             for n in names for s in scales for k in KINDS)
    L.append(f"Chunks that fell back to lossless: {fb}. Idempotence (re-encoding a reconstruction gives the "
             f"same bytes, one weight chunk per run): " + ", ".join(
                 f"{n} {s:g}x {res['series'][n]['lossy'][str(s)]['idempotent']}" for n in names for s in scales[:1]))
    L.append("")
    # 2. order-0
    L.append("### Order-0 entropy of the quantized integers q vs tpde (delta steps)")
    L.append("")
    L.append("bits per value: tpde / order-0 H0 of q (per chunk, summed); tpde ratio / order-0 ratio in brackets "
             "(> 1: tpde codes below a static order-0 code of q taken around the reference, thanks to its "
             "context models and, for exp_avg, to quantizing around a x reference, the format-3 predictor)")
    L.append("")
    L.append("| series | scale | weights | exp_avg | exp_avg_sq | overall ratio: tpde / order-0 | "
             "chunks >= 64 Ki values only: tpde / order-0 bits per value (w; m; v) |")
    L.append("|---|---|---|---|---|---|---|")
    for n in names:
        for s in scales:
            d = res["series"][n]["lossy"][str(s)]["delta"]
            cells = []
            for k in KINDS:
                a = d[k]
                bt, bh = 8 * a["bytes"] / a["n"], 8 * a["h0_bytes"] / a["n"]
                cells.append(f"{bt:.2f} / {bh:.2f} ({bh / bt:.3f})")
            ro, rh = _ratio(d, ALL_KINDS), _ratio(d, ALL_KINDS, "h0_bytes")
            big = "; ".join(f"{8 * d[k]['big_bytes'] / d[k]['big_n']:.3f} / "
                            f"{8 * d[k]['big_h0_bytes'] / d[k]['big_n']:.3f}"
                            if d[k]["big_n"] else "-" for k in KINDS)
            L.append(f"| {n} | {s:g} | " + " | ".join(cells) + f" | {ro:.2f} / {rh:.2f} ({ro / rh:.3f}) | {big} |")
    L.append("")
    # 3. contexts
    if res["contexts"]:
        L.append("### Context schemes: gain over contexts=[] (delta steps, bytes([]) / bytes(scheme) - 1)")
        L.append("")
        labels = [c for c in CONTEXT_RUNS if c != "none"]
        L.append("| series | scale | kind | " + " | ".join(labels) + " | chosen by the encoder (all allowed) |")
        L.append("|---|---|---|" + "---|" * len(labels) + "---|")
        for n in names:
            for s in scales:
                d = res["series"][n]["lossy"][str(s)]["delta"]
                for k in KINDS:
                    cb = d[k]["ctx_bytes"]
                    cells = [f"{100 * (cb['none'] / cb[c] - 1):+.1f} %" for c in labels]
                    ch = ", ".join(f"{c} {v}" for c, v in sorted(d[k]["ctx_chosen"].items(), key=lambda kv: -kv[1]))
                    L.append(f"| {n} | {s:g} | {k} | " + " | ".join(cells) + f" | {ch} |")
        L.append("")
    # 4. speed
    L.append("### Speed, one thread (delta steps; MB of raw fp32 per thread-CPU second; encode includes "
             "quantization and returning the reconstruction)")
    L.append("")
    L.append("| series | scale | encode MB/s | decode MB/s |")
    L.append("|---|---|---|---|")
    for n in names:
        for s in scales:
            d = res["series"][n]["lossy"][str(s)]["delta"]
            raw = _sum(d, ALL_KINDS, "raw")
            L.append(f"| {n} | {s:g} | {raw / 1e6 / _sum(d, ALL_KINDS, 'enc_s'):.0f} | "
                     f"{raw / 1e6 / _sum(d, ALL_KINDS, 'dec_s'):.0f} |")
    L.append("")
    # 5. threshold recipe
    L.append(f"### Baseline: TPDE threshold recipe (|x_t - x_(t-1)| < {THRESHOLD:g} dropped, no error feedback; "
             "bitmask + fp32 kept deltas, zstd-3)")
    L.append("")
    L.append("| series | kind | ratio | kept fraction | max abs error | max error / reference bound |")
    L.append("|---|---|---|---|---|---|")
    for n in names:
        th = res["series"][n]["threshold"]["kinds"]
        for k in ALL_KINDS:
            a = th[k]
            over = f"{a['max_err_over_ref']:.3g}" if k in KINDS else "-"
            if k == "exp_avg_sq":
                over += f" (max rel err {a['max_rel_err']:.3g})"
            L.append(f"| {n} | {k} | {_ratio(th, [k]):.2f} | {a['kept'] / a['n']:.3f} | "
                     f"{a['max_abs_err']:.3g} | {over} |")
        L.append(f"| {n} | **overall** | **{_ratio(th, ALL_KINDS):.2f}** | "
                 f"{_sum(th, ALL_KINDS, 'kept') / _sum(th, ALL_KINDS, 'n'):.3f} | | |")
    L.append("")
    return "\n".join(L)


def write_section(md_path: Path, tag: str, body: str, title: str = "# tpde lossy mode results") -> None:
    """Replace (or append) the section between <!-- tag --> markers, keeping the others."""
    start, end = f"<!-- {tag} -->", f"<!-- /{tag} -->"
    text = md_path.read_text() if md_path.exists() else title + "\n\n"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    if start in text and end in text:
        i, j = text.index(start), text.index(end) + len(end)
        text = text[:i] + block.rstrip("\n") + text[j:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    md_path.write_text(text if text.endswith("\n") else text + "\n")


# --------------------------------------------------------------------------- driver
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="reference bound only, first 4 saves per series")
    ap.add_argument("--small", action="store_true", help="tiny series (smoke test)")
    ap.add_argument("--scales", default=None, help="comma-separated bound scales (default 0.5,1,2,4)")
    ap.add_argument("--no-contexts", action="store_true", help="skip the per-context runs")
    ap.add_argument("--series", default="scratch,finetune")
    ap.add_argument("--md", default=None, help="markdown output (default bench/lossy_results.md; "
                                                "--quick/--small: bench/.cache/lossy_results-<mode>.md)")
    a = ap.parse_args(argv)
    import tpde

    scales = [float(s) for s in a.scales.split(",")] if a.scales else ([1.0] if a.quick else [0.5, 1.0, 2.0, 4.0])
    max_saves = 4 if a.quick else None
    mode = "small" if a.small else ("quick" if a.quick else "")
    t_start = time.perf_counter()
    load0 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    res = {"scales": scales, "contexts": not a.no_contexts, "series": {}}
    for name in a.series.split(","):
        series = S.load_series(name, small=a.small)
        if max_saves:
            series = series[:max_saves]
        print(f"{name}: {len(series)} saves, steps {[s for s, _ in series]}", flush=True)
        r = {"steps": [s for s, _ in series], "lossy": {}}
        for s in scales:
            t0 = time.perf_counter()
            r["lossy"][str(s)] = st = lossy_chain(tpde, series, s, contexts=not a.no_contexts)
            d = st["delta"]
            print(f"  scale {s:g}: delta ratio " + " / ".join(f"{_ratio(d, [k]):.2f}" for k in KINDS)
                  + f" / overall {_ratio(d, ALL_KINDS):.2f}; order-0 {_ratio(d, ALL_KINDS, 'h0_bytes'):.2f}; "
                  f"max err/bound {max(d[k]['max_err'] for k in KINDS):.3f}  ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        r["threshold"] = th = threshold_recipe(series)
        print(f"  threshold {THRESHOLD:g}: ratio " + " / ".join(f"{_ratio(th['kinds'], [k]):.2f}" for k in KINDS)
              + f" / overall {_ratio(th['kinds'], ALL_KINDS):.2f}", flush=True)
        res["series"][name] = r
        del series
    res["meta"] = {
        "date": _dt.date.today().isoformat(), "commit": _git_commit(), "cpu": _cpu_model(),
        "python": platform.python_version(), "numpy": np.__version__,
        "tpde": getattr(tpde, "__version__", "?"),
        "args": "python bench/bench_lossy.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "seconds": round(time.perf_counter() - t_start), "load_start": load0,
        "load_end": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    cache = HERE / ".cache"
    cache.mkdir(exist_ok=True)
    (cache / f"lossy_results{'-' + mode if mode else ''}.json").write_text(json.dumps(res, indent=1))
    md = Path(a.md) if a.md else (HERE / "lossy_results.md" if not mode else cache / f"lossy_results-{mode}.md")
    write_section(md, "bench_lossy", render(res))
    print(f"wrote {md} ({res['meta']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
