"""cProfile of one store.save (a delta, depth 3) and one whole-step load (depth 4) of a
bench series, workers=1: where the time of the store goes besides coding.

    python bench/store_profile.py [--series scratch] [--top 14]

Prints the top functions by own time of each; bench/store_results.md (`store_profile`)
groups them. cProfile sees the coding thread only (with workers=1 the chunks are coded on
the calling thread; the folders and metadata files are made by the layout thread beside it).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="scratch")
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args(argv)
    from bench import series as S
    from tpde.store import CheckpointStore

    states = [torch.load(p, weights_only=True) for p in S.make_series(args.series)[:5]]
    folder = HERE / ".cache" / f"store-profile-{os.getpid()}"
    try:
        store = CheckpointStore(folder, mode="w", keyframe_every=16, workers=1, progress=False)
        for k in range(3):
            store.save(k, states[k])
        print(f"load average {os.getloadavg()[0]:.2f}")
        for title, call in (("save of step 3 (depth 3)", lambda: store.save(3, states[3])),
                            ("load of step 4 (depth 4)", None)):
            if call is None:
                store.save(4, states[4])
                store.close()
                CheckpointStore(folder, mode="r", workers=1, progress=False).load(4)  # warm the page cache
                call = lambda: CheckpointStore(folder, mode="r", workers=1, progress=False).load(4)  # noqa: E731
            profile = cProfile.Profile()
            profile.enable()
            call()
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
            print(f"== {title}\n{out.getvalue()}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
