"""Cross-state predictor experiment: does the optimizer state of the same checkpoint help
code the weights?

AdamW moves each weight by about -lr * m / (sqrt(v) + eps) per step, so the change of a
weight between two saves should correlate with u = m / (sqrt(v) + eps) of the moments
saved with it. A decoder that restores the moments first knows u, so the weights can be
coded against a *predicted* weight instead of the previous one:

    pred = fp32(w_ref + a * u_cur + b * u_ref + c * w_ref)      (float64 arithmetic)

with u_cur from the moments of the step being coded, u_ref from those of the reference
step, and a, b, c fitted per tensor by least squares on (w - w_ref) (the encoder knows w;
the three float64 coefficients, 24 bytes per tensor, are counted as stored with the chunk).
The weight chunk is then ``tpde.encode(w, reference=pred)``: the core codes the integer
difference of the bit patterns of w and pred, so the round trip stays bit-exact as long
as the decoder recomputes pred bit for bit (IEEE float64 +, *, /, sqrt are correctly
rounded, so numpy gives the same bits on any machine; a C++ implementation would have to
keep the same operation order and no FMA contraction).

Variants measured on every consecutive pair of each fp32 series (bench/series.py):
  lossless
    plain          tpde.encode(w, reference=w_ref)                  (the codec bench's f)
    pred cur       predictor with u_cur only (a, c)
    pred ref       predictor with u_ref only (b, c)
    pred both      predictor with a, b, c
    ctx both       predictor used as a *context* instead: the core's prev_residual context
                   is fed the predicted change by passing prev_reference with bit pattern
                   2 * bits(w_ref) - bits(pred), so "residual of the reference against its
                   predecessor" equals the predicted change in units of the last place
  lossy (bounds of bench/bench_lossy.py at scale 1: weights 0.1 x RMS at the keyframe,
         exp_avg 0.2 x RMS, exp_avg_sq log-relative 0.3; error feedback: every reference
         is a reconstruction)
    plain          weights against the previous reconstruction
    pred both      weights against the prediction made from reconstructions only
                   (previous reconstructed weights, reconstructed moments of both steps)

The moments are coded as in the codec bench (lossless) or bench_lossy (lossy); their bytes
do not change here. Also reported: R^2 of the least-squares fit (variance of the weight
change explained, weighted by tensor size), and an order-0 estimate of what exp_avg_sq's
exponent would buy as a context for exp_avg (the reverse direction of cross-state help;
sign + exponent + 3 mantissa bits of exp_avg, conditional empirical entropy).

    python bench/cross_state.py            # both fp32 series (~6 min on 2 cores)
    python bench/cross_state.py --small    # tiny series, smoke test

Writes the "Cross-state predictor" section of bench/results.md and
bench/.cache/cross_state[-small].json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import series as S  # noqa: E402
from bench.bench_codec import _cpu_model, _git_commit  # noqa: E402
from bench.bench_lossy import bound_for, rms, write_section  # noqa: E402

EPS = 1e-8
COEF_BYTES = 24
LOSSLESS_VARIANTS = ("plain", "pred cur", "pred ref", "pred both", "ctx both")
LOSSY_VARIANTS = ("plain", "w <- m,v", "m <- dw", "w <- ref m,v; m <- dw")


def param_to_state(td) -> dict[str, int]:
    """model/<param> -> optimizer state index, as bench/series.py builds its AdamW groups
    (matrices first, then vectors, each in state-dict order); shapes are checked."""
    names = [k for k in td if k.startswith("model/")]
    order = [k for k in names if td[k].ndim >= 2] + [k for k in names if td[k].ndim < 2]
    out = {}
    for i, k in enumerate(order):
        m = td.get(f"optimizer/state/{i}/exp_avg")
        assert m is not None and m.shape == td[k].shape, f"no optimizer state for {k}"
        out[k] = i
    return out


def direction(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """u = m / (sqrt(v) + eps) in float64."""
    return m.astype(np.float64) / (np.sqrt(v.astype(np.float64)) + EPS)


def fit_prediction(w: np.ndarray, w_ref: np.ndarray, feats: list[np.ndarray]):
    """Least-squares (w - w_ref) ~ sum coef_i feat_i + c w_ref; -> (fp32 prediction, R^2)."""
    ref64 = w_ref.astype(np.float64).ravel()
    X = np.stack([f.ravel() for f in feats] + [ref64], 1)
    d = w.astype(np.float64).ravel() - ref64
    coef, *_ = np.linalg.lstsq(X, d, rcond=None)
    fit = X @ coef
    var = float(np.var(d))
    r2 = 1.0 - float(np.var(d - fit)) / var if var > 0 else 0.0
    pred = (ref64 + fit).astype(np.float32).reshape(w.shape)
    return pred, r2


def context_prev_reference(w_ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """fp32 array whose bits are 2 bits(w_ref) - bits(pred) (wrapping), so that the core's
    prev_residual context sees bits(pred) - bits(w_ref)."""
    r = w_ref.view(np.uint32).astype(np.int64)
    p = pred.view(np.uint32).astype(np.int64)
    return ((2 * r - p) & 0xFFFFFFFF).astype(np.uint32).view(np.float32).reshape(w_ref.shape)


def cond_entropy_bits(sym: np.ndarray, ctx: np.ndarray | None = None) -> float:
    """Total empirical bits of sym, order 0 or conditioned on ctx."""
    if ctx is None:
        _, c = np.unique(sym, return_counts=True)
        return float(sym.size * np.log2(sym.size) - (c * np.log2(c)).sum()) if sym.size else 0.0
    key = ctx.astype(np.int64) * (1 << 20) + sym.astype(np.int64)
    _, c = np.unique(key, return_counts=True)
    _, cc = np.unique(ctx, return_counts=True)
    return float((cc * np.log2(cc)).sum() - (c * np.log2(c)).sum())


def exponent_bucket(bits: np.ndarray) -> np.ndarray:
    e = ((bits >> 23) & 0xFF).astype(np.int64)
    med = int(np.median(e)) if e.size else 0
    return np.clip(e - med + 32, 0, 63)


def moment_context_estimate(series) -> dict:
    """Order-0 bits of exp_avg's top 12 bits: alone, given the reference step's exp_avg
    exponent (what the core uses now), given the same step's exp_avg_sq exponent."""
    tot = {"n": 0, "order0": 0.0, "ref_exponent": 0.0, "v_exponent": 0.0}
    for (_, a), (_, b) in zip(series, series[1:]):
        for k in b:
            if not k.endswith("/exp_avg"):
                continue
            m1 = b[k].reshape(-1).view(np.uint32)
            sym = m1 >> 20
            tot["n"] += m1.size
            tot["order0"] += cond_entropy_bits(sym)
            tot["ref_exponent"] += cond_entropy_bits(sym, exponent_bucket(a[k].reshape(-1).view(np.uint32)))
            tot["v_exponent"] += cond_entropy_bits(sym, exponent_bucket(b[k + "_sq"].reshape(-1).view(np.uint32)))
    n = max(tot.pop("n"), 1)
    return {k: v / n for k, v in tot.items()}


def _check(tpde, chunk, ref, x, prev=None):
    dec = np.asarray(tpde.decode(chunk, reference=ref, prev_reference=prev)).reshape(x.shape)
    assert dec.tobytes() == np.ascontiguousarray(x).tobytes(), "round trip not bit-exact"


def lossless(tpde, series) -> dict:
    acc = {v: 0 for v in LOSSLESS_VARIANTS}
    acc.update({"m raw": 0, "m plain": 0, "m <- dw": 0})
    acc.update(raw=0, r2_cur=0.0, r2_ref=0.0, r2_both=0.0, n=0, predict_s=0.0)
    for (_, a), (_, b) in zip(series, series[1:]):
        for name, i in param_to_state(b).items():
            w, w_ref = b[name], a[name]
            st = f"optimizer/state/{i}/"
            t0 = time.thread_time()
            u_cur = direction(b[st + "exp_avg"], b[st + "exp_avg_sq"])
            u_ref = direction(a[st + "exp_avg"], a[st + "exp_avg_sq"])
            p_both, r2b = fit_prediction(w, w_ref, [u_cur, u_ref])
            acc["predict_s"] += time.thread_time() - t0
            p_cur, r2c = fit_prediction(w, w_ref, [u_cur])
            p_ref, r2r = fit_prediction(w, w_ref, [u_ref])
            acc["raw"] += w.nbytes
            acc["n"] += w.size
            acc["r2_cur"] += r2c * w.size
            acc["r2_ref"] += r2r * w.size
            acc["r2_both"] += r2b * w.size
            c = tpde.encode(w, reference=w_ref)
            _check(tpde, c, w_ref, w)
            acc["plain"] += len(c)
            for label, p in (("pred cur", p_cur), ("pred ref", p_ref), ("pred both", p_both)):
                c = tpde.encode(w, reference=p)
                _check(tpde, c, p, w)
                acc[label] += len(c) + COEF_BYTES
            m, m_ref = b[st + "exp_avg"], a[st + "exp_avg"]
            f = (w.astype(np.float64) - w_ref) * (np.sqrt(b[st + "exp_avg_sq"].astype(np.float64)) + EPS)
            p_m, _ = fit_prediction(m, m_ref, [f])
            c = tpde.encode(m, reference=m_ref)
            acc["m raw"] += m.nbytes
            acc["m plain"] += len(c)
            c = tpde.encode(m, reference=p_m)
            _check(tpde, c, p_m, m)
            acc["m <- dw"] += len(c) + 16
            pp = context_prev_reference(w_ref, p_both)
            c = tpde.encode(w, reference=w_ref, prev_reference=pp)
            _check(tpde, c, w_ref, w, pp)
            acc["ctx both"] += len(c) + COEF_BYTES
    n = max(acc["n"], 1)
    for k in ("r2_cur", "r2_ref", "r2_both"):
        acc[k] /= n
    return acc


def lossy(tpde, series) -> dict:
    """Error-feedback chains at the reference bounds, one per variant of LOSSY_VARIANTS.

    exp_avg_sq is coded the same way in every variant (delta against its reconstruction);
    weights and exp_avg follow the variant, each with its own reconstruction chain. Every
    prediction uses reconstructions only (what a decoder has)."""
    first = series[0][1]
    rms_kf = {k: rms(v) for k, v in first.items()}
    acc = {v: {"weights": 0, "exp_avg": 0} for v in LOSSY_VARIANTS}
    raw = {"weights": 0, "exp_avg": 0, "exp_avg_sq": 0, "other": 0}
    coded = {"exp_avg_sq": 0, "other": 0}
    max_err = {v: 0.0 for v in LOSSY_VARIANTS}
    rec = {v: {} for v in LOSSY_VARIANTS}  # variant -> name -> reconstruction (weights, exp_avg)
    rec_v: dict[str, np.ndarray] = {}

    def code(x, ref, kw):
        chunk, r = tpde.encode(x, reference=ref, return_reconstruction=True, **kw)
        return len(chunk), np.asarray(r).reshape(x.shape)

    for t, (_, td) in enumerate(series):
        cur_v = {}
        for name, x in td.items():
            kind = S.classify(name)
            if kind == "exp_avg_sq":
                kw, _ = bound_for(kind, rms_kf[name], 1.0)
                n, cur_v[name] = code(x, rec_v.get(name), kw)
            elif kind == "other":
                n = len(tpde.encode(x))
            else:
                continue
            if t > 0:
                raw[kind] += x.nbytes
                coded[kind] += n
        for variant in LOSSY_VARIANTS:
            R = rec[variant]
            new = {}
            for name, i in param_to_state(td).items():
                st = f"optimizer/state/{i}/"
                mname, vname = st + "exp_avg", st + "exp_avg_sq"
                w, m = td[name], td[mname]
                kw_w, _ = bound_for("weights", rms_kf[name], 1.0)
                kw_m, _ = bound_for("exp_avg", rms_kf[mname], 1.0)
                w_ref, m_ref = R.get(name), R.get(mname)
                extra_w = extra_m = 0
                if t == 0:
                    nw, new[name] = code(w, None, kw_w)
                    nm, new[mname] = code(m, None, kw_m)
                else:
                    def weights_first(feats):
                        p, _ = fit_prediction(w, w_ref, feats)
                        return code(w, p, kw_w)

                    def moment_from_dw(w_rec):
                        f = (w_rec.astype(np.float64) - w_ref) * (np.sqrt(cur_v[vname].astype(np.float64)) + EPS)
                        p, _ = fit_prediction(m, m_ref, [f])
                        return code(m, p, kw_m)

                    u_ref = direction(R[mname], rec_v[vname])
                    if variant == "plain":
                        nw, new[name] = code(w, w_ref, kw_w)
                        nm, new[mname] = code(m, m_ref, kw_m)
                    elif variant == "w <- m,v":
                        nm, new[mname] = code(m, m_ref, kw_m)
                        u_cur = direction(new[mname], cur_v[vname])
                        nw, new[name] = weights_first([u_cur, u_ref])
                        extra_w = COEF_BYTES
                    elif variant == "m <- dw":
                        nw, new[name] = code(w, w_ref, kw_w)
                        nm, new[mname] = moment_from_dw(new[name])
                        extra_m = 16
                    else:  # "w <- ref m,v; m <- dw"
                        nw, new[name] = weights_first([u_ref])
                        nm, new[mname] = moment_from_dw(new[name])
                        extra_w, extra_m = 16, 16
                    acc[variant]["weights"] += nw + extra_w
                    acc[variant]["exp_avg"] += nm + extra_m
                    if variant == "plain":
                        raw["weights"] += w.nbytes
                        raw["exp_avg"] += m.nbytes
                for x, r, kw in ((w, new[name], kw_w), (m, new[mname], kw_m)):
                    if kw:
                        err = float(np.max(np.abs(r.astype(np.float64) - x))) / kw["abs_error"]
                        max_err[variant] = max(max_err[variant], err)
            rec[variant] = new
        rec_v = cur_v
    return {"raw": raw, "coded": coded, "variants": acc, "max_err": max_err}


def render(res: dict, meta: dict) -> str:
    lines = [
        "## Cross-state predictor (`bench/cross_state.py`)",
        "",
        f"- date: {meta['date']}; commit: {meta['commit']}; CPU: {meta['cpu']}; "
        f"run: `{meta['cmd']}` ({meta['secs']:.0f} s)",
        "- method: bench/cross_state.py docstring; ratios summed over all consecutive pairs (lossy: the delta "
        "steps of the error-feedback chains); predicted tensors pay 16-24 bytes of coefficients each.",
        "",
        "Lossless (weights: predicted from the moments; exp_avg: predicted from the weight change):",
        "",
        "| series | R^2 cur / ref / both | weights plain | pred cur | pred ref | pred both | ctx both "
        "| gain of pred both | exp_avg plain | exp_avg <- dw | gain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res.items():
        L = r["lossless"]
        ratio = {v: L["raw"] / L[v] for v in LOSSLESS_VARIANTS}
        mp, md = L["m raw"] / L["m plain"], L["m raw"] / L["m <- dw"]
        lines.append(
            f"| {name} | {L['r2_cur']:.3f} / {L['r2_ref']:.3f} / {L['r2_both']:.3f} | "
            + " | ".join(f"{ratio[v]:.4f}" for v in LOSSLESS_VARIANTS)
            + f" | {100 * (ratio['pred both'] / ratio['plain'] - 1):+.2f} % | {mp:.4f} | {md:.4f} "
            + f"| {100 * (md / mp - 1):+.2f} % |")
    lines += ["", "Lossy, reference bounds, error feedback (weights / exp_avg / overall incl. exp_avg_sq and step "
              "counters; exp_avg_sq is coded the same way in every variant):", "",
              "| series | " + " | ".join(LOSSY_VARIANTS) + " | max err / bound |",
              "|---|" + "---|" * (len(LOSSY_VARIANTS) + 1)]
    for name, r in res.items():
        Y = r["lossy"]
        raw, cod = Y["raw"], Y["coded"]
        total_raw = sum(raw.values())
        cells = []
        for v in LOSSY_VARIANTS:
            a = Y["variants"][v]
            overall = total_raw / (a["weights"] + a["exp_avg"] + cod["exp_avg_sq"] + cod["other"])
            cells.append(f"{raw['weights'] / a['weights']:.2f} / {raw['exp_avg'] / a['exp_avg']:.2f} "
                         f"/ **{overall:.2f}**")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {max(Y['max_err'].values()):.3f} |")
    lines += ["", "exp_avg_sq's exponent as a context for exp_avg (order-0 estimate, bits per value on sign + "
              "exponent + 3 mantissa bits; the core codes the other 20 bits raw):", "",
              "| series | order 0 | given ref exp_avg exponent (in use) | given same-step exp_avg_sq exponent "
              "| saving per exp_avg value |",
              "|---|---|---|---|---|"]
    for name, r in res.items():
        m = r["moment_context"]
        lines.append(f"| {name} | {m['order0']:.3f} | {m['ref_exponent']:.3f} | {m['v_exponent']:.3f} | "
                     f"{m['ref_exponent'] - m['v_exponent']:.3f} bits |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="tiny series (smoke test)")
    args = ap.parse_args(argv)
    import tpde
    t0 = time.time()
    res = {}
    for name in S.SERIES:
        series = S.load_series(name, small=args.small)
        res[name] = {"lossless": lossless(tpde, series), "lossy": lossy(tpde, series),
                     "moment_context": moment_context_estimate(series)}
        print(name, json.dumps({k: v for k, v in res[name]["lossless"].items()}), flush=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": _git_commit(), "cpu": _cpu_model(),
            "cmd": "python bench/cross_state.py" + (" --small" if args.small else ""), "secs": time.time() - t0}
    cache = HERE / ".cache" / ("cross_state-small.json" if args.small else "cross_state.json")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"meta": meta, "results": res}, indent=1))
    body = render(res, meta)
    print(body)
    if not args.small:
        write_section(HERE / "results.md", "cross-state", body, title="# tpde codec benchmark")
    return 0


if __name__ == "__main__":
    sys.exit(main())
