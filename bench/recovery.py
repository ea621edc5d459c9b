"""Training-recovery benchmark: does resuming from a lossy tpde checkpoint hurt training?

Trains the bench transformer (bench/series.py model, optimizer and data pipeline, at a
reduced size, see RECOVERY below) with AdamW for T steps and keeps a checkpoint every N
steps (model weights + both AdamW moments + step counters). Those checkpoints are coded
as chains along the run, starting at the first save:

  lossless      tpde deltas (reference = previous save), bit-exact;
  tpde s x      tpde lossy with error feedback: keyframe = first save (lossy), then deltas
                against the previous *reconstruction*; bounds as bench/bench_lossy.py, times
                s: weights abs 0.1 s RMS, exp_avg abs 0.2 s RMS (RMS of each tensor at the
                keyframe), exp_avg_sq log_rel min(0.3 s, 0.9); step counters lossless;
  threshold     the published TPDE threshold recipe: keyframe stored as is, then on each save
                delta = x_t - x_(t-1) (previous *original*), |delta| < 1e-3 dropped; the
                restore is keyframe + sum of kept deltas (no error feedback).

At each resume point r (a save), model and optimizer are restored from the chain's
reconstruction of save r, and training goes on for r more steps (to 2r) with the same
data order (the same batch generator, advanced r batches) and lr schedule. Compared:
  (a) the uninterrupted run (seed S0),
  (b) the lossless resume: asserted bit-identical to (a) (losses and final weights),
  (c) 2 uninterrupted runs with other seeds (init and data order): seed-to-seed noise,
  (d) the threshold recipe resume, and the tpde lossy resumes at each scale.
Loss = mean cross-entropy on a fixed held-out set (the last 5 % of the corpus bytes,
EVAL_BATCHES fixed batches), measured every EVAL_EVERY steps; ratio = raw bytes / coded
bytes over the delta saves up to the last resume point (headers included).

    python bench/recovery.py            # full (reduced model, ~6-8 min on 2 cores)
    python bench/recovery.py --quick    # shorter run, fewer scales, 1 other seed (~1-2 min)

Writes its section of bench/lossy_results.md, bench/recovery.png and
bench/.cache/recovery[-quick].json. Deterministic: fixed seeds, torch.set_num_threads(1)
(one thread: on the 2 shared cores of the bench machine, 2 torch threads ran 4-7x slower
under load than one).
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from bench import bench_lossy as BL  # noqa: E402
from bench import series as S  # noqa: E402

# reduced bench transformer (bench/series.py FULL: 4 layers, d_model 256, ctx 128, 3.3 M params)
RECOVERY = replace(S.FULL, n_layer=2, d_model=128, n_head=4, ctx=64, batch=16, warmup=20,
                   corpus_bytes=3_000_000, threads=1)
FULL_RUN = {"total": 400, "save_every": 20, "resume": [100, 200], "scales": [0.25, 0.5, 1.0, 2.0, 4.0],
            "other_seeds": [1, 2], "eval_every": 20}
QUICK_RUN = {"total": 120, "save_every": 10, "resume": [30, 60], "scales": [1.0, 4.0],
             "other_seeds": [1], "eval_every": 10}
EVAL_BATCHES = 24
EVAL_FRACTION = 0.05
THRESHOLD = 1e-3


# --------------------------------------------------------------------------- training
def lr_at(k: int, cfg, total: int) -> float:
    if k <= cfg.warmup:
        return cfg.lr * k / cfg.warmup
    pr = (k - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * pr)))


def make_data(cfg):
    import torch
    data, desc = S.corpus("scratch", cfg.corpus_bytes)
    cut = int(len(data) * (1 - EVAL_FRACTION))
    train, held = data[:cut], data[cut:]
    arr = torch.frombuffer(bytearray(held), dtype=torch.uint8).long()
    g = torch.Generator().manual_seed(999)
    ev = []
    for _ in range(EVAL_BATCHES):
        ix = torch.randint(0, len(arr) - cfg.ctx - 1, (cfg.batch,), generator=g).tolist()
        ev.append((torch.stack([arr[i:i + cfg.ctx] for i in ix]),
                   torch.stack([arr[i + 1:i + 1 + cfg.ctx] for i in ix])))
    return train, ev, f"{desc}; train {len(train) / 1e6:.2f} MB, held out (eval) {len(held) / 1e6:.2f} MB"


def evaluate(model, ev, cfg) -> float:
    import torch
    import torch.nn.functional as F
    model.eval()
    with torch.no_grad():
        tot = sum(F.cross_entropy(model(x).reshape(-1, cfg.vocab), y.reshape(-1)).item() for x, y in ev)
    model.train()
    return tot / len(ev)


def capture(model, opt) -> dict:
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": copy.deepcopy(opt.state_dict())}


def restore_state(model, opt, template: dict, flat: dict) -> None:
    """Load flattened numpy tensors (bench.series.flatten_checkpoint names) into model and
    optimizer, using ``template`` (a captured checkpoint) for the non-tensor structure."""
    import torch
    msd = {k: torch.from_numpy(np.array(flat[f"model/{k}"], copy=True)) for k in template["model"]}
    osd = copy.deepcopy(template["optimizer"])
    for i, st in osd["state"].items():
        for key in list(st):
            name = f"optimizer/state/{i}/{key}"
            if name in flat:
                st[key] = torch.from_numpy(np.array(flat[name], copy=True))
    model.load_state_dict(msd)
    opt.load_state_dict(osd)


def train(cfg, run, train_data, ev, seed: int, *, start: int = 0, end: int | None = None,
          restore: tuple | None = None, save: bool = False, log=print) -> dict:
    """One training segment (start, end]; ``restore`` = (template, flat) at step ``start``."""
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(cfg.threads)
    total, end = run["total"], end or run["total"]
    torch.manual_seed(seed)
    model = S._build_model(cfg)
    opt = S._make_optimizer(model, cfg, cfg.lr)
    if restore is not None:
        restore_state(model, opt, *restore)
    batches = S._batches(train_data, cfg, seed)
    for _ in range(start):
        next(batches)
    losses, evals, saves = {}, {}, {}
    evals[start] = evaluate(model, ev, cfg)
    t0 = time.perf_counter()
    for k in range(start + 1, end + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(k, cfg, total)
        x, y = next(batches)
        loss = F.cross_entropy(model(x).reshape(-1, cfg.vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses[k] = loss.item()
        if save and k % run["save_every"] == 0 and k <= max(run["resume"]):
            saves[k] = capture(model, opt)
        if k % run["eval_every"] == 0 or k == end:
            evals[k] = evaluate(model, ev, cfg)
    secs = time.perf_counter() - t0
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log(f"    seed {seed} steps {start}..{end}: eval loss {evals[start]:.4f} -> {evals[end]:.4f} "
        f"({secs:.1f} s, {secs / max(1, end - start) * 1e3:.0f} ms/step)")
    return {"losses": losses, "evals": evals, "saves": saves, "final": final, "seconds": secs}


# --------------------------------------------------------------------------- checkpoint chains
def _kinds_acc():
    return {k: {"raw": 0, "bytes": 0} for k in BL.ALL_KINDS}


def tpde_chain(tpde, flats: list[tuple[int, dict]], scale: float | None, resume: list[int]) -> dict:
    """Code the saves as a tpde chain (scale None: lossless); return the reconstructions at
    the resume points, delta-step sizes per kind and the max error / bound seen."""
    rms_kf = {n: BL.rms(a) for n, a in flats[0][1].items()}
    prev, prevprev = {}, {}
    acc, recons, max_err = _kinds_acc(), {}, {k: 0.0 for k in BL.KINDS}
    for t, (step, flat) in enumerate(flats):
        cur = {}
        for name, x in flat.items():
            kind = S.classify(name)
            kw = BL.bound_for(kind, rms_kf[name], scale)[0] if scale is not None else {}
            ref, pp = (prev.get(name), prevprev.get(name)) if t else (None, None)
            chunk, rec = tpde.encode(x, reference=ref, prev_reference=pp, return_reconstruction=True, **kw)
            rec = np.asarray(tpde.decode(chunk, reference=ref, prev_reference=pp)).reshape(x.shape)
            err = BL.max_err_ratio(x, rec, kw)
            assert err <= 1.0, f"bound violated: {name} step {step} scale {scale}: {err}"
            if kind in max_err:
                max_err[kind] = max(max_err[kind], err)
            if t:
                acc[kind]["raw"] += x.nbytes
                acc[kind]["bytes"] += len(chunk)
            cur[name] = rec
        if step in resume:
            recons[step] = cur
        prevprev, prev = prev, cur
    return {"recons": recons, "acc": acc, "max_err": max_err}


def threshold_chain(flats: list[tuple[int, dict]], resume: list[int], thr: float = THRESHOLD,
                    clamp_v: bool = False) -> dict:
    import zstandard
    zc = zstandard.ZstdCompressor(level=3)
    rms_kf = {n: BL.rms(a) for n, a in flats[0][1].items()}
    recon = {n: a.astype(np.float32).copy() for n, a in flats[0][1].items()}
    prev = dict(flats[0][1])
    acc, recons = _kinds_acc(), {}
    err_ref = {k: 0.0 for k in BL.KINDS}
    for step, flat in flats[1:]:
        for name, x in flat.items():
            kind = S.classify(name)
            d = (x.astype(np.float32) - prev[name]).reshape(-1)
            keep = np.abs(d) >= thr
            blob = zc.compress(np.packbits(keep).tobytes() + d[keep].astype(np.float32).tobytes())
            r = recon[name].reshape(-1).copy()
            r[keep] += d[keep]
            recon[name] = r.reshape(x.shape)
            prev[name] = x
            acc[kind]["raw"] += x.nbytes
            acc[kind]["bytes"] += len(blob)
        if step in resume:
            recons[step] = {n: a.copy() for n, a in recon.items()}
            if clamp_v:  # variant: exp_avg_sq clamped at 0 at restore (the recipe can make it negative)
                for n in recons[step]:
                    if S.classify(n) == "exp_avg_sq":
                        recons[step][n] = np.maximum(recons[step][n], np.float32(0))
            for name, x in flat.items():  # error / reference bound at the restore
                kind = S.classify(name)
                if kind not in err_ref:
                    continue
                kw = BL.bound_for(kind, rms_kf[name], 1.0)[0]
                err_ref[kind] = max(err_ref[kind], BL.max_err_ratio(x, recon[name], kw))
    return {"recons": recons, "acc": acc, "max_err": err_ref}


def negative_v(flat: dict) -> int:
    """Entries of exp_avg_sq below 0 (sqrt -> NaN in Adam's denominator)."""
    return int(sum((a < 0).sum() for n, a in flat.items() if S.classify(n) == "exp_avg_sq"))


def ratio(acc: dict, kinds=BL.ALL_KINDS) -> float:
    b = sum(acc[k]["bytes"] for k in kinds)
    return sum(acc[k]["raw"] for k in kinds) / b if b else float("nan")


# --------------------------------------------------------------------------- report
def render(res: dict) -> str:
    m, run, cfg = res["meta"], res["run"], res["config"]
    L = ["## Training recovery from lossy checkpoints (`bench/recovery.py`)", ""]
    L.append(f"- date {m['date']}, commit {m['commit']}, {m['cpu']}, torch {m['torch']} "
             f"({cfg['threads']} threads); run `{m['args']}` in {m['seconds']} s "
             f"(load average start / end {m['load_start']} / {m['load_end']})")
    L.append(f"- model: the bench GPT reduced to {cfg['n_layer']} layers, d_model {cfg['d_model']}, "
             f"{cfg['n_head']} heads, context {cfg['ctx']}, batch {cfg['batch']}, byte vocab: "
             f"**{res['params']:,} params** ({res['ckpt_bytes'] / 1e6:.1f} MB per fp32 checkpoint with both "
             f"moments); AdamW betas (0.9, 0.95), wd {cfg['weight_decay']}, clip {cfg['grad_clip']}, lr {cfg['lr']:g} "
             f"warmup {cfg['warmup']} then cosine to {cfg['min_lr_frac']:g}x at step {run['total']}")
    L.append(f"- data: {res['data']}; eval loss = mean CE on {EVAL_BATCHES} fixed held-out batches")
    L.append(f"- checkpoints every {run['save_every']} steps from step {run['save_every']} (keyframe) to "
             f"{max(run['resume'])}; resume points {run['resume']}, each resumed run trains as many steps "
             f"again (to {', '.join(str(2 * r) for r in run['resume'])}) with the same data order; "
             f"seeds: run {res['seed0']} (uninterrupted and all resumes), others {run['other_seeds']}")
    L.append("- ratio: raw / coded bytes over the delta saves of the chain (weights / exp_avg / exp_avg_sq / "
             "overall); max err / ref bound: at the restored saves, against the reference bound (scale 1) "
             "for the threshold recipe, against the chain's own bound for tpde")
    L.append("")
    ends = [2 * r for r in run["resume"]]
    base = res["runs"]["uninterrupted"]["evals"]
    L.append("Eval loss of the uninterrupted run at " + ", ".join(f"step {e}: {base[str(e)]:.4f}" for e in ends)
             + ". Seed-to-seed: " + "; ".join(
                 f"step {e}: " + ", ".join(f"seed {s} {res['runs'][f'seed{s}']['evals'][str(e)] - base[str(e)]:+.4f}"
                                           for s in run["other_seeds"])
                 + f" (std of all seeds {res['noise'][str(e)]:.4f})" for e in ends))
    L.append("")
    hdr = " | ".join(f"resume {r} -> {2 * r}: loss jump at {r} / delta loss at {2 * r} (/ noise std)"
                     for r in run["resume"])
    L.append(f"| restore | ratio (w / m / v / overall) | max err / bound (w / m / v) | {hdr} | mean abs delta over "
             f"the resumed curves |")
    L.append("|---|---|---|" + "---|" * len(run["resume"]) + "---|")
    for label, mres in res["methods"].items():
        acc = mres["acc"]
        rr = " / ".join(f"{ratio(acc, [k]):.2f}" for k in BL.KINDS) + f" / **{ratio(acc):.2f}**"
        me = " / ".join(f"{mres['max_err'][k]:.3g}" for k in BL.KINDS)
        cells = []
        for r in run["resume"]:
            d, j, nv = mres["delta"][str(r)], mres["jump"][str(r)], mres["neg_v"][str(r)]
            if np.isfinite(d):
                c = f"{j:+.4f} / {d:+.4f} ({d / res['noise'][str(2 * r)]:+.2f})"
            else:
                c = f"{j:+.4f} / **diverged (NaN)**"
            if nv:
                c += f"; {nv} exp_avg_sq < 0 restored"
            cells.append(c)
        L.append(f"| {label} | {rr} | {me} | " + " | ".join(cells) + f" | {mres['mean_abs_delta']:.4f} |")
    L.append("")
    L.append("Loss jump: eval loss of the restored model at the resume point minus the uninterrupted run's; "
             "delta loss: at the end of the resumed segment. The lossless resume is bit-identical to the "
             "uninterrupted run (training losses, eval losses and final weights asserted equal). Plot: "
             "`bench/recovery.png` (eval loss minus the uninterrupted run's after each resume point, other "
             "seeds in grey; right: ratio vs |final loss difference|).")
    L.append("")
    return "\n".join(L)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    run = res["run"]
    base = {int(k): v for k, v in res["runs"]["uninterrupted"]["evals"].items()}
    resume = run["resume"]
    fig, axs = plt.subplots(1, len(resume) + 1, figsize=(4.2 * (len(resume) + 1), 3.8), dpi=80)
    labels = list(res["methods"])
    tp = [lb for lb in labels if lb.startswith("tpde")]
    cmap = plt.get_cmap("viridis")

    def color(label):
        if label == "lossless":
            return "k"
        if label.startswith("threshold"):
            return "tab:red" if "clamped" not in label else "tab:orange"
        return cmap(tp.index(label) / max(1, len(tp) - 1) * 0.9)

    for j, r in enumerate(resume):
        ax = axs[j]
        for s in run["other_seeds"]:
            ev = {int(k): v for k, v in res["runs"][f"seed{s}"]["evals"].items()}
            xs = [k for k in sorted(ev) if r <= k <= 2 * r]
            ax.plot(xs, [ev[k] - base[k] for k in xs], color="0.6", lw=1, ls="--",
                    label="other seeds" if s == run["other_seeds"][0] else None)
        for label in labels:
            ev = {int(k): v for k, v in res["methods"][label]["evals"][str(r)].items()}
            xs = sorted(ev)
            ys = [ev[k] - base[k] for k in xs]
            ax.plot(xs, ys, color=color(label), lw=1.2, label=label)
            if not np.isfinite(ys[-1]):
                ax.annotate(f"{label}: NaN", (xs[0], 0), xytext=(4, -12), textcoords="offset points",
                            fontsize=7, color=color(label))
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("step")
        ax.set_ylabel("eval loss - uninterrupted")
        ax.set_title(f"resumed at {r}", fontsize=10)
        if j == 0:
            ax.legend(fontsize=6.5, ncol=2)
    ax = axs[-1]
    for label in labels:
        if label == "lossless":
            continue
        mres = res["methods"][label]
        x = ratio(mres["acc"])
        for r in resume:
            y = abs(mres["delta"][str(r)])
            if np.isfinite(y):
                ax.scatter(x, y, s=18, marker="o" if r == resume[0] else "s", color=color(label))
        ys = [abs(mres["delta"][str(r)]) for r in resume]
        ys = [y for y in ys if np.isfinite(y)]
        if ys:
            ax.annotate(label.replace(", v clamped >= 0", " (v>=0)"), (x, ys[-1]), fontsize=6.5,
                        xytext=(3, 2), textcoords="offset points")
    for j, r in enumerate(resume):
        ax.axhline(res["noise"][str(2 * r)], color="0.5", ls=":" if j == 0 else "--", lw=1,
                   label=f"seed std at {2 * r}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compression ratio (delta saves)")
    ax.set_ylabel("|final eval loss - uninterrupted|")
    ax.set_title(f"o: resumed at {resume[0]}, s: at {resume[-1]}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- driver
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run, 2 scales, 1 other seed")
    ap.add_argument("--scales", default=None, help="comma-separated bound scales")
    ap.add_argument("--md", default=None)
    ap.add_argument("--png", default=None)
    a = ap.parse_args(argv)
    import torch

    import tpde

    t_start = time.perf_counter()
    load0 = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    run = dict(QUICK_RUN if a.quick else FULL_RUN)
    if a.scales:
        run["scales"] = [float(s) for s in a.scales.split(",")]
    cfg = RECOVERY
    seed0 = cfg.seed
    train_data, ev, desc = make_data(cfg)
    res = {"run": run, "config": asdict(cfg), "data": desc, "seed0": seed0, "runs": {}, "methods": {}}
    torch.manual_seed(0)
    res["params"] = sum(p.numel() for p in S._build_model(cfg).parameters())
    print(f"recovery: {res['params']:,} params; {desc}", flush=True)

    print("  uninterrupted run", flush=True)
    base = train(cfg, run, train_data, ev, seed0, save=True)
    res["runs"]["uninterrupted"] = {"evals": base["evals"], "losses": base["losses"]}
    flats = [(k, S.flatten_checkpoint(ck)) for k, ck in sorted(base["saves"].items())]
    res["ckpt_bytes"] = sum(v.nbytes for v in flats[0][1].values())
    for s in run["other_seeds"]:
        print(f"  seed {s}", flush=True)
        o = train(cfg, run, train_data, ev, s)
        res["runs"][f"seed{s}"] = {"evals": o["evals"], "losses": o["losses"]}
    ends = [2 * r for r in run["resume"]]
    res["noise"] = {str(e): float(np.std([res["runs"][k]["evals"][e] for k in res["runs"]], ddof=1)) for e in ends}

    chains = {"lossless": tpde_chain(tpde, flats, None, run["resume"]),
              f"threshold {THRESHOLD:g}": threshold_chain(flats, run["resume"]),
              f"threshold {THRESHOLD:g}, v clamped >= 0": threshold_chain(flats, run["resume"], clamp_v=True)}
    for s in run["scales"]:
        chains[f"tpde {s:g}x"] = tpde_chain(tpde, flats, s, run["resume"])
    for label, ch in chains.items():
        print(f"  {label}: ratio {ratio(ch['acc']):.2f}", flush=True)
        mres = {"acc": ch["acc"], "max_err": ch["max_err"], "evals": {}, "delta": {}, "jump": {}, "neg_v": {}}
        devs = []
        for r in run["resume"]:
            out = train(cfg, run, train_data, ev, seed0, start=r, end=2 * r,
                        restore=(base["saves"][r], ch["recons"][r]))
            if label == "lossless":
                for k, v in out["losses"].items():
                    assert v == base["losses"][k], f"lossless resume differs at step {k}: {v} vs {base['losses'][k]}"
                for k, v in out["evals"].items():
                    assert v == base["evals"][k], f"lossless resume eval differs at step {k}"
                if 2 * r == run["total"]:
                    for k, v in out["final"].items():
                        assert torch.equal(v, base["final"][k]), f"lossless resume: final {k} differs"
            mres["evals"][str(r)] = out["evals"]
            mres["delta"][str(r)] = out["evals"][2 * r] - base["evals"][2 * r]
            mres["jump"][str(r)] = out["evals"][r] - base["evals"][r]
            mres["neg_v"][str(r)] = negative_v(ch["recons"][r])
            devs += [abs(v - base["evals"][k]) for k, v in out["evals"].items() if k > r]
        mres["mean_abs_delta"] = float(np.mean(devs))  # NaN when a resumed run diverged
        res["methods"][label] = mres
        del ch["recons"]

    # json: int keys -> str
    def _js(o):
        if isinstance(o, dict):
            return {str(k): _js(v) for k, v in o.items()}
        if isinstance(o, list):
            return [_js(v) for v in o]
        return o
    res = _js(res)
    res["meta"] = {
        "date": _dt.date.today().isoformat(), "commit": BL._git_commit(), "cpu": BL._cpu_model(),
        "torch": torch.__version__,
        "args": "python bench/recovery.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "seconds": round(time.perf_counter() - t_start), "load_start": load0,
        "load_end": ", ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    cache = HERE / ".cache"
    cache.mkdir(exist_ok=True)
    suffix = "-quick" if a.quick else ""
    (cache / f"recovery{suffix}.json").write_text(json.dumps(res, indent=1))
    md = Path(a.md) if a.md else (HERE / "lossy_results.md" if not a.quick else cache / "lossy_results-quick.md")
    png = Path(a.png) if a.png else (HERE / "recovery.png" if not a.quick else cache / "recovery-quick.png")
    BL.write_section(md, "recovery", render(res))
    plot(res, png)
    print(f"wrote {md} and {png} ({png.stat().st_size / 1e3:.0f} KB) in {res['meta']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
