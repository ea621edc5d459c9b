"""Child process of tests/test_decode_fuzz.py: decodes hostile chunks under an address-space cap.

    python decode_fuzz_child.py SEED SECONDS WORKDIR [AS_LIMIT_BYTES]

Caps its own address space (RLIMIT_AS) before importing numpy or tpde, then decodes
mutated chunks until SECONDS have passed: resealed header fields (shapes that claim up to
64 GiB or more, zero dimensions beside huge ones, other ndims, dtypes, modes, flags),
payload bit flips, cuts and splices. Every decode must return an array that matches its
header or raise TPDEError; anything else (MemoryError, ValueError, ...) is a failure.
Each input is written to WORKDIR/current.bin before it is decoded, so that a crash leaves
the input that caused it; failures are written to WORKDIR/fail-N.bin. Prints one JSON
line of counts; exits 0 with no failures, 3 with some.
"""

from __future__ import annotations

import json
import os
import random
import resource
import struct
import sys
import time


def main() -> int:
    seed, seconds, workdir = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    limit = int(sys.argv[4]) if len(sys.argv) > 4 else 3 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    import numpy as np

    from tpde import _core
    from tpde.errors import TPDEError

    def crc(data: bytes | bytearray) -> int:
        return _core.fingerprint(np.frombuffer(bytes(data), np.uint8))

    def reseal(c: bytearray, fix_size: bool = True) -> bytes:
        if len(c) < 36 or 32 + 8 * c[8] + 4 > len(c):
            return bytes(c)
        hs = 32 + 8 * c[8] + 4
        if fix_size:
            struct.pack_into("<Q", c, 20, len(c) - hs)
        struct.pack_into("<I", c, 28, crc(c[hs:]))
        struct.pack_into("<I", c, hs - 4, crc(c[: hs - 4]))
        return bytes(c)

    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    seeds = []  # (chunk, decode kwargs)
    for dtype, shape in [("float32", (64,)), ("float32", (8, 8)), ("bfloat16", (40,)), ("float16", (5, 6)),
                         ("float64", (16,)), ("int32", (33,)), ("uint8", (100,)), ("bool", (17,)),
                         ("int64", (2, 3, 4)), ("float32", (0,)), ("int16", (3, 0, 5)), ("float32", ())]:
        store = np.dtype("uint16" if dtype == "bfloat16" else dtype)
        x = np_rng.integers(0, 7, size=shape).astype(store) if store.kind in "biu" else \
            np_rng.standard_normal(shape).astype(store)
        x.reshape(-1)[::3] = 0
        seeds.append((_core.encode(x, dtype=dtype), {}))
        if x.size and store.kind == "f":
            ref = x.copy()
            ref.reshape(-1)[::2] += store.type(1)
            seeds.append((_core.encode(x, reference=ref, dtype=dtype), {"reference": ref}))
            seeds.append((_core.encode(x, dtype=dtype, abs_error=0.01), {}))
    huge = [0, 1, 2, 3, 255, 1 << 16, (1 << 31) - 1, 1 << 31, 1 << 32, 1 << 33, 1 << 34, (1 << 36) // 4,
            (1 << 36) + 1, 1 << 40, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]

    def mutate(chunk: bytes) -> bytes:
        c = bytearray(chunk)
        ndim = c[8]
        op = rng.random()
        if op < 0.30 and ndim:  # shape fields, resealed
            for _ in range(rng.randint(1, ndim)):
                struct.pack_into("<Q", c, 32 + 8 * rng.randrange(ndim), rng.choice(huge))
            if rng.random() < 0.3:
                struct.pack_into("<Q", c, 32 + 8 * rng.randrange(ndim), 0)
            return reseal(c, fix_size=False)
        if op < 0.40:  # another ndim: insert or drop dimensions, resealed
            hs = 32 + 8 * ndim
            if rng.random() < 0.5 or not ndim:
                extra = b"".join(struct.pack("<Q", rng.choice(huge)) for _ in range(rng.randint(1, 3)))
                c = c[:hs] + extra + c[hs:]
                c[8] = ndim + len(extra) // 8
            else:
                del c[32:40]
                c[8] = ndim - 1
            return reseal(c, fix_size=False)
        if op < 0.50:  # dtype, mode, flags, version bytes
            c[rng.choice([4, 5, 6, 7, 8])] = rng.choice([0, 1, 2, 3, 5, 13, 14, 32, 33, 255, rng.randrange(256)])
            return reseal(c, fix_size=False)
        if op < 0.60:  # payload_size field
            struct.pack_into("<Q", c, 20, rng.choice(huge))
            return reseal(c, fix_size=False)
        if op < 0.85:  # payload bytes
            hs = 32 + 8 * ndim + 4
            for _ in range(rng.randint(1, 4)):
                if len(c) <= hs:
                    break
                j = rng.randrange(hs, len(c))
                r = rng.random()
                if r < 0.5:
                    c[j] ^= 1 << rng.randrange(8)
                elif r < 0.7:
                    c[j] = rng.choice([0, 0xFF, 0x80, 0x7F])
                elif r < 0.85:
                    struct.pack_into("<Q", c, min(j, len(c) - 8), rng.choice(huge))
                else:
                    del c[j]
            return reseal(c)
        if op < 0.95:  # cut anywhere, resealed or not
            c = c[: rng.randrange(len(c) + 1)]
            return reseal(c) if rng.random() < 0.5 else bytes(c)
        return bytes(rng.randrange(256) for _ in range(rng.randrange(80)))

    current = os.open(os.path.join(workdir, "current.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    counts = {"inputs": 0, "decoded": 0, "tpde_error": 0, "too_large": 0, "failures": 0}
    failures = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk, kw = seeds[rng.randrange(len(seeds))]
        bad = mutate(chunk)
        os.ftruncate(current, 0)
        os.pwrite(current, bad, 0)
        counts["inputs"] += 1
        try:
            out = _core.decode(bad, **kw)
            header = _core.read_header(bad)
            expected = 1
            for d in header["shape"]:
                expected *= d
            if tuple(out.shape) != tuple(header["shape"]) or out.size != expected:
                raise AssertionError(f"decoded shape {out.shape} but header says {header['shape']}")
            counts["decoded"] += 1
            del out
        except TPDEError as e:
            counts["tpde_error"] += 1
            counts["too_large"] += e.code == "too_large"
        except BaseException as e:  # noqa: BLE001 - what the test looks for
            counts["failures"] += 1
            path = os.path.join(workdir, f"fail-{len(failures)}.bin")
            with open(path, "wb") as f:
                f.write(bad)
            failures.append(f"{type(e).__name__}: {str(e)[:200]} ({path})")
            if len(failures) >= 20:
                break
    counts["failure_list"] = failures
    print(json.dumps(counts))
    return 3 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
