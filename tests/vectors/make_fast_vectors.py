"""Writes the frozen vectors of the fast level, format 6 (docs/format.md section 14): run
once, never regenerate (existing cases and bad chunks are kept, new ones are added).

    python tests/vectors/make_fast_vectors.py

Cases live in ``fast/v6_<name>/`` with the files of make_vectors.py (config.json,
input.npy, reference.npy, encoded.bin); corrupt chunks go to ``bad/fast_*.bin`` with their
expected codes in ``bad/expected.json``. They stay out of ``vectors/v*`` because those are
the default level's cases (every one has a ``v5_`` twin).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for chunkfmt

import chunkfmt  # noqa: E402
import tpde  # noqa: E402

FAST = HERE / "fast"
STORAGE = {"bfloat16": np.uint16}


def bf16(f):
    return (np.asarray(f, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def cases():
    """(name, dtype name, input, reference): small, but together with rANS, raw and constant planes."""
    rng = np.random.default_rng(20261205)
    out = []
    n = 1024
    ref = (rng.standard_normal(n) * 0.02).astype(np.float32)
    x = (ref * (1 + rng.standard_normal(n).astype(np.float32) * 1e-4)).astype(np.float32)
    out.append(("f32_delta", "float32", x, ref))
    out.append(("f32_standalone", "float32", x.reshape(32, 32), None))
    b_ref = bf16(ref)
    b = np.where(rng.random(n) < 0.6, b_ref, b_ref + rng.integers(-2, 3, n).astype(np.uint16)).astype(np.uint16)
    out.append(("bf16_delta", "bfloat16", b.reshape(32, 32), b_ref.reshape(32, 32)))
    out.append(("bf16_standalone", "bfloat16", b, None))
    h = (rng.standard_normal(n) * 0.1).astype(np.float16)
    out.append(("f16_delta", "float16", np.where(rng.random(n) < 0.3, h + np.float16(0.001), h).astype(np.float16), h))
    d = (rng.standard_normal((16, 32)) * 3).astype(np.float64)
    out.append(("f64_delta", "float64", d + 1e-9 * (rng.random((16, 32)) < 0.5), d))
    steps = np.cumsum(rng.integers(0, 3, 512)).astype(np.int64)
    out.append(("i64_delta", "int64", steps + rng.integers(0, 2, 512), steps))
    out.append(("u8_standalone", "uint8", rng.integers(0, 4, 1000).astype(np.uint8), None))
    out.append(("bool_delta", "bool", rng.random(1000) < 0.1, np.zeros(1000, bool)))
    out.append(("f32_stored", "float32", rng.standard_normal(20).astype(np.float32), None))
    out.append(("f32_empty", "float32", np.zeros((0, 4), np.float32), None))
    return out


def dump_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, sort_keys=True) + "\n")


def write_case(name, dtype, x, ref) -> bool:
    d = FAST / f"v{tpde.FAST_FORMAT_VERSION}_{name}"
    if d.exists():
        return False
    chunk = tpde.encode(x, reference=ref, dtype="bfloat16" if dtype == "bfloat16" else None, level="fast")
    header = tpde.read_header(chunk)
    assert tpde.decode(chunk, reference=ref).tobytes() == x.tobytes()
    d.mkdir(parents=True)
    np.save(d / "input.npy", x)
    if ref is not None:
        np.save(d / "reference.npy", ref)
    (d / "encoded.bin").write_bytes(chunk)
    p = chunk[header["header_size"]:]
    dump_json(d / "config.json", {
        "format_version": header["version"], "tpde_version": tpde.__version__, "dtype": dtype,
        "numpy_dtype": np.dtype(STORAGE.get(dtype, x.dtype)).str, "shape": list(x.shape),
        "mode": header["mode"], "encode_kwargs": {"level": "fast"},
        "value_scheme": p[0], "plane_modes": plane_modes(p, int(np.prod(x.shape)), x.dtype.itemsize),
    })
    return True


def plane_modes(p: bytes, n: int, itemsize: int) -> list[int]:
    """The mode of each plane of a FastPlanes payload ([] for a Stored one)."""
    if p[0] != 3:
        return []
    off, modes = 16, []
    for _ in range(itemsize):
        mode = p[off]
        modes.append(mode)
        off += 1
        if mode == 0:
            off += n
        elif mode == 1:
            off += 1
        else:
            off = skip_table(p, off)
            for _ in range(2):
                off += 8 + struct.unpack_from("<Q", p, off)[0]
    return modes


def skip_table(p: bytes, off: int) -> int:
    def varint(o):
        v, k = 0, 0
        while True:
            b = p[o]
            v |= (b & 0x7F) << (7 * k)
            o, k = o + 1, k + 1
            if not b & 0x80:
                return v, o
    used, off = varint(off)
    for _ in range(2 * used):
        _, off = varint(off)
    return off


def bad_chunks():
    """(file name, chunk, expected code, decode_with) built from the frozen fast cases."""
    def case(name):
        d = FAST / f"v6_{name}"
        return (d / "encoded.bin").read_bytes(), f"fast/v6_{name}/reference.npy"

    delta, ref = case("f32_delta")
    hs = chunkfmt.header_size(delta)
    p = delta[hs:]
    modes = plane_modes(p, 1024, 4)
    first_rans = 16 + sum(1025 if m == 0 else 2 for m in modes[:modes.index(2)])  # raw and constant planes before it
    table_end = skip_table(p, first_rans + 1)
    stream_len = struct.unpack_from("<Q", p, table_end)[0]
    with_ref = {"reference": ref}
    out = [
        ("fast_version_5.bin", chunkfmt.patch(delta, 4, "<B", 5), "corrupt", with_ref),
        ("fast_prefix_byte.bin", chunkfmt.patch(delta, hs + 2, "<B", 1), "corrupt", with_ref),
        ("fast_coded_count.bin", chunkfmt.patch(delta, hs + 8, "<Q", 299), "corrupt", with_ref),
        ("fast_plane_mode_3.bin", chunkfmt.patch(delta, hs + first_rans, "<B", 3), "corrupt", with_ref),
        ("fast_table_one_symbol.bin", chunkfmt.patch(delta, hs + first_rans + 1, "<B", 1), "corrupt", with_ref),
        ("fast_stream_odd.bin", chunkfmt.patch(delta, hs + table_end, "<Q", stream_len - 1), "corrupt", with_ref),
        ("fast_state_low.bin", chunkfmt.patch(delta, hs + table_end + 8, "<I", 5), "corrupt", with_ref),
        ("fast_stream_word.bin", chunkfmt.patch(delta, hs + table_end + 8 + 128, "<H",
                                                struct.unpack_from("<H", p, table_end + 8 + 128)[0] ^ 0x0400),
         "corrupt", with_ref),
        ("fast_trailing_byte.bin", chunkfmt.reseal(delta + b"\0"), "corrupt", with_ref),
        ("fast_cut_plane.bin", chunkfmt.reseal(delta[:-3]), "corrupt", with_ref),
        ("fast_wrong_reference.bin", delta, "reference_mismatch", {"reference": "fast/v6_f32_standalone/input.npy"}),
    ]
    return out


def main() -> int:
    written = [name for name, *rest in cases() if write_case(name, *rest)]
    bad = HERE / "bad"
    expected_path = bad / "expected.json"
    expected = json.loads(expected_path.read_text())
    for fname, chunk, code, decode_with in bad_chunks():
        if fname in expected:
            continue
        (bad / fname).write_bytes(chunk)
        expected[fname] = {"code": code, "decode_with": decode_with or {}}
        written.append(f"bad/{fname}")
    dump_json(expected_path, expected)
    print(f"wrote {len(written)} new cases/files: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
