"""Writes the frozen test vectors of the tpde chunk format (run once; never regenerate).

    python tests/vectors/make_vectors.py

Each case is a directory ``v<format version>_<name>/`` with
    config.json          dtype, shape, mode, encode arguments, header fields, schemes
    input.npy            the array given to tpde.encode
    reference.npy        (delta cases) the reference
    prev_reference.npy   (delta cases with a prev-reference context)
    decoded.npy          (lossy cases) what decoding must return
    encoded.bin          the chunk
and ``bad/`` holds corrupt chunks with ``bad/expected.json`` naming the TPDEError code each
must raise. Existing files are never overwritten: a new case gets a new name (and a format
change gets new ``v<N>_`` cases, the old ones stay decodable).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for chunkfmt

import chunkfmt  # noqa: E402
import tpde  # noqa: E402

STORAGE = {"bfloat16": np.uint16}


def bf16(f):
    return (np.asarray(f, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def cases():
    """(name, dtype name, input, reference, prev_reference, extra encode kwargs)."""
    rng = np.random.default_rng(20261125)
    out = []
    w = (rng.standard_normal(96) * 0.02).astype(np.float32)
    out.append(("f32_standalone", "float32", w, None, None, {}))
    sparse = np.where(rng.random(256) < 0.93, 0, rng.standard_normal(256)).astype(np.float32)
    out.append(("f32_sparse", "float32", sparse, None, None, {}))
    out.append(("f32_constant", "float32", np.full((8, 16), 1.0, np.float32), None, None, {}))
    ref = (rng.standard_normal(160) * 0.02).astype(np.float32)
    step = (ref + rng.standard_normal(160).astype(np.float32) * 1e-4 * (rng.random(160) < 0.4)).astype(np.float32)
    out.append(("f32_delta", "float32", step, ref, None, {}))
    prev = (ref - rng.standard_normal(160).astype(np.float32) * 1e-4).astype(np.float32)
    out.append(("f32_delta_prev", "float32", step, ref, prev, {}))
    mostly_same = np.where(np.arange(160) % 50 == 7, np.float32(0.5), ref).astype(np.float32)
    out.append(("f32_delta_sparse", "float32", mostly_same, ref, None, {}))
    specials = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7FC00001,
                         0x7F800001, 0xFFFFFFFF, 0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x3F800000],
                        np.uint32).view(np.float32)
    out.append(("f32_specials", "float32", specials, None, None, {}))
    out.append(("f32_specials_delta", "float32", specials, specials[::-1].copy(), None, {}))
    out.append(("f32_specials_repeated", "float32", np.repeat(specials, 8), None, None, {}))
    x64 = (rng.standard_normal((4, 12)) * 3).astype(np.float64)
    out.append(("f64_standalone", "float64", x64, None, None, {}))
    out.append(("f64_delta", "float64", x64 + 1e-9 * (rng.random((4, 12)) < 0.5), x64, None, {}))
    h = (rng.standard_normal(128) * 0.1).astype(np.float16)
    out.append(("f16_standalone", "float16", h, None, None, {}))
    out.append(("f16_delta_prev", "float16", (h + np.float16(0.001)).astype(np.float16), h,
                (h - np.float16(0.002)).astype(np.float16), {}))
    b = bf16(rng.standard_normal(192) * 0.02)
    out.append(("bf16_standalone", "bfloat16", b, None, None, {}))
    b2 = np.where(rng.random(192) < 0.8, b, b + 1).astype(np.uint16)
    out.append(("bf16_delta", "bfloat16", b2, b, None, {}))
    for name, dt in [("i8", np.int8), ("u8", np.uint8), ("i16", np.int16), ("u16", np.uint16),
                     ("i32", np.int32), ("u32", np.uint32), ("i64", np.int64), ("u64", np.uint64)]:
        v = np.cumsum(rng.integers(-2, 3, 48)).astype(dt)
        out.append((f"{name}_standalone", np.dtype(dt).name, v, None, None, {}))
    iref = rng.integers(-10**6, 10**6, 100).astype(np.int32)
    out.append(("i32_delta_prev", "int32", iref + rng.integers(-3, 4, 100).astype(np.int32), iref,
                iref - rng.integers(-3, 4, 100).astype(np.int32), {}))
    out.append(("u64_extremes", "uint64", np.array([0, 1, 2**64 - 1, 2**63, 2**63 - 1] * 4, np.uint64),
                None, None, {}))
    out.append(("bool_standalone", "bool", rng.random((6, 20)) < 0.1, None, None, {}))
    out.append(("u8_noise_stored", "uint8", rng.integers(0, 256, 48, dtype=np.uint8), None, None, {}))
    out.append(("empty", "float32", np.zeros((0,), np.float32), None, None, {}))
    out.append(("empty_3d", "int16", np.zeros((2, 0, 3), np.int16), None, None, {}))
    out.append(("scalar", "float64", np.array(2.5), None, None, {}))
    out.append(("shape_4d", "int32", np.arange(120, dtype=np.int32).reshape(2, 3, 4, 5), None, None, {}))
    # one case per context scheme (the smallest inputs found where the encoder picks it)
    r = np.random.default_rng(5)
    d = np.where(np.repeat(r.integers(0, 2, 32), 32) == 1, r.integers(200, 400, 1024), r.integers(1, 3, 1024))
    out.append(("ctx_neighbour_i16", "int16", np.cumsum(d).astype(np.int16), None, None, {}))
    f = np.exp2(np.repeat(r.integers(-15, 1, 8), 32).astype(np.float64)) * r.uniform(1, 2, 256)
    out.append(("ctx_prev_exponent_bf16", "bfloat16", bf16(f), None, None, {}))
    hr = np.exp2(r.integers(-15, 1, 256).astype(np.float64)) * r.uniform(1, 2, 256)
    hn = hr + 2.0**-12 * r.choice([-1, 1], 256)
    out.append(("ctx_ref_exponent_f16", "float16", hn.astype(np.float16), hr.astype(np.float16), None, {}))
    ir = r.integers(-100, 100, 512).astype(np.int16)
    same = r.random(512) < 0.5
    ip = (ir + np.where(same, 0, r.integers(1, 3, 512) * 64)).astype(np.int16)
    inew = (ir + np.where(same, 0, r.integers(1, 3, 512) * 64)).astype(np.int16)
    out.append(("ctx_prev_residual_i16", "int16", inew, ir, ip, {}))
    r0 = np.random.default_rng(0)
    fr = r0.uniform(1, 2, 512)
    rel = np.where(r0.random(512) < 0.5, 0, 1e-2)
    fp = fr * (1 + rel * r0.standard_normal(512))
    fn = fr * (1 + rel * r0.standard_normal(512))
    out.append(("ctx_ref_exponent_prev_residual_f32", "float32", fn.astype(np.float32), fr.astype(np.float32),
                fp.astype(np.float32), {}))
    out.append(("f32_delta_without_reference", "float32", np.full(128, 0.5, np.float32),
                rng.standard_normal(128).astype(np.float32), None, {}))
    # lossy
    lw = (rng.standard_normal(200) * 0.05).astype(np.float32)
    out.append(("f32_lossy_abs", "float32", lw, None, None, {"abs_error": 1e-3}))
    out.append(("f32_lossy_abs_delta", "float32", (lw + 2e-3).astype(np.float32), lw, None, {"abs_error": 1e-3}))
    v = np.abs(lw) ** 2 + np.float32(1e-8)
    out.append(("f32_lossy_logrel", "float32", v, None, None, {"log_rel_error": 0.05}))
    out.append(("f32_lossy_logrel_delta_prev", "float32", (v * 1.01).astype(np.float32), v,
                (v * 0.99).astype(np.float32), {"log_rel_error": 0.05}))
    out.append(("bf16_lossy_abs", "bfloat16", bf16(lw), None, None, {"abs_error": 1e-2}))
    # Absolute dequantization is a binary64 multiply then add, each rounded: a decoder built
    # with fused multiply-add (e.g. gcc's default -ffp-contract=fast on aarch64, or -mfma)
    # decodes about 1 in 7 of these values 1 ulp off.
    r0 = np.random.default_rng(0)
    x64 = r0.standard_normal(256) * 0.05
    out.append(("f64_lossy_abs_delta_no_fma", "float64", x64, x64 + r0.standard_normal(256) * 0.01, None,
                {"abs_error": 1e-7}))
    # format 3: values coded against a linear extrapolation of the reference from the prev-reference
    r3 = np.random.default_rng(3)
    older = (r3.standard_normal(384) * 0.02).astype(np.float32)
    moved = (older + r3.standard_normal(384).astype(np.float32) * 1e-3).astype(np.float32)
    ahead = (moved + 0.8 * (moved - older) + r3.standard_normal(384) * 1e-5).astype(np.float32)
    out.append(("f32_delta_extrapolated", "float32", ahead, moved, older, {}))
    out.append(("bf16_delta_extrapolated", "bfloat16", bf16(ahead), bf16(moved), bf16(older), {}))
    out.append(("f16_delta_extrapolated", "float16", (ahead * 16).astype(np.float16), (moved * 16).astype(np.float16),
                (older * 16).astype(np.float16), {}))
    # format 4: rows that only decayed (no gradient: Adam's moment times beta^k) coded against
    # the scaled reference, the other rows against the reference
    r4 = np.random.default_rng(4)
    q4 = (r4.standard_normal((20, 32)) * 0.02).astype(np.float32)
    ref4 = (q4 * 0.97 + r4.standard_normal((20, 32)).astype(np.float32) * 1e-3).astype(np.float32)
    x4 = (ref4 + r4.standard_normal((20, 32)).astype(np.float32) * 1e-3).astype(np.float32)
    decayed = r4.random(20) < 0.6
    x4[decayed] = (ref4[decayed].astype(np.float64) * 0.1285).astype(np.float32)
    noise = r4.integers(-2, 3, x4[decayed].shape)
    x4[decayed] = (x4[decayed].view(np.uint32).astype(np.int64) + noise).astype(np.uint32).view(np.float32)
    out.append(("f32_delta_scaled_rows", "float32", x4, ref4, q4, {}))
    out.append(("bf16_delta_scaled_rows", "bfloat16", bf16(x4), bf16(ref4), bf16(q4), {}))
    out.append(("f16_delta_scaled_rows", "float16", (x4 * 64).astype(np.float16), (ref4 * 64).astype(np.float16),
                (q4 * 64).astype(np.float16), {}))
    # format 5: the same without a prev-reference (scaled rows no longer need one)
    out.append(("f32_delta_scaled_rows_no_prev", "float32", x4, ref4, None, {}))
    out.append(("bf16_delta_scaled_rows_no_prev", "bfloat16", bf16(x4), bf16(ref4), None, {}))
    # format 3: an absolute lossy delta quantized around a x reference (a decaying moment)
    r4 = np.random.default_rng(4)
    m_prev = (r4.standard_normal(300) * 1e-3).astype(np.float32)
    m_ref = (0.3 * m_prev + r4.standard_normal(300) * 1e-3).astype(np.float32)
    m_new = (0.3 * m_ref + r4.standard_normal(300) * 1e-3).astype(np.float32)
    out.append(("f32_lossy_abs_predicted", "float32", m_new, m_ref, m_prev, {"abs_error": 2e-4}))
    return out


def dump_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, sort_keys=True) + "\n")


# Format versions that froze every case again (format 5: two interleaved rANS states change
# the bytes of every coded chunk).
FULL_FREEZES = (2, 5)


def write_case(name, dtype, x, ref, prev, kwargs) -> bool:
    d = HERE / f"v{tpde.FORMAT_VERSION}_{name}"
    # A case frozen since the last full freeze is not copied: its chunk differs only in the
    # version byte (test_vectors re-encodes it and compares with the byte patched).
    last_full = max(v for v in FULL_FREEZES if v <= tpde.FORMAT_VERSION)
    if d.exists() or any(int(c.name[1:].split("_", 1)[0]) >= last_full for c in HERE.glob(f"v[0-9]*_{name}")):
        return False
    dt_arg = "bfloat16" if dtype == "bfloat16" else None
    chunk, recon = tpde.encode(x, reference=ref, prev_reference=prev, dtype=dt_arg,
                               return_reconstruction=True, **kwargs)
    header = tpde.read_header(chunk)
    info = chunkfmt.parse(chunk)
    lossless = header.get("lossy") is None
    if lossless:
        assert recon.tobytes() == x.tobytes()
    d.mkdir()
    np.save(d / "input.npy", x)
    if ref is not None:
        np.save(d / "reference.npy", ref)
    if prev is not None:
        np.save(d / "prev_reference.npy", prev)
    if not lossless:
        np.save(d / "decoded.npy", recon)
    (d / "encoded.bin").write_bytes(chunk)
    dump_json(d / "config.json", {
        "format_version": tpde.FORMAT_VERSION,
        "tpde_version": tpde.__version__,
        "dtype": dtype,
        "numpy_dtype": np.dtype(STORAGE.get(dtype, x.dtype)).str,
        "shape": list(x.shape),
        "mode": header["mode"],
        "uses_prev_reference": header["uses_prev_reference"],
        "encode_kwargs": kwargs,
        "lossless": lossless,
        "header_size": header["header_size"],
        "payload_size": header["payload_size"],
        "reference_fingerprint": header["reference_fingerprint"],
        "prev_reference_fingerprint": header["prev_reference_fingerprint"],
        "schemes": {
            "value": chunkfmt.VALUE_SCHEMES.get(info["value_scheme"]),
            "position": chunkfmt.POSITION_SCHEMES.get(info["position_scheme"]),
            "context": chunkfmt.CONTEXT_SCHEMES.get(info["context_scheme"]),
            "without_reference": info["without_reference"],
        },
    })
    return True


def bad_chunks():
    """(file name, chunk bytes, expected code, arrays to decode with: {argument: .npy path})."""
    def load(case):
        return (HERE / f"v1_{case}" / "encoded.bin").read_bytes()

    std = load("f32_standalone")
    sparse = load("f32_sparse")
    delta = load("f32_delta")
    i16 = load("i16_standalone")
    hs = chunkfmt.header_size(std)
    out = [
        ("truncated_header.bin", std[:20], "truncated", None),
        ("truncated_payload.bin", std[:-1], "truncated", None),
        ("bad_magic.bin", b"TPDF" + std[4:], "bad_magic", None),
        # version_2.bin (format 1 era) became valid with format 2; replaced by version_3.bin.
        # version_3.bin (format 2 era) became valid with format 3; replaced by version_4.bin.
        # version_4.bin (format 3 era) became valid with format 4; replaced by version_5.bin.
        # version_5.bin (format 4 era) became valid with format 5; replaced by version_6.bin.
        # version_6.bin (format 5 era) became valid with format 6 (the fast level); replaced by version_7.bin.
        ("version_7.bin", chunkfmt.patch(std, 4, "<B", 7), "unsupported_version", None),
        ("header_crc.bin", std[:12] + bytes([std[12] ^ 1]) + std[13:], "checksum", None),
        ("payload_crc.bin", std[:-1] + bytes([std[-1] ^ 0x80]), "checksum", None),
        ("dtype_code_14.bin", chunkfmt.patch(std, 5, "<B", 14), "bad_dtype", None),
        ("mode_2.bin", chunkfmt.patch(std, 6, "<B", 2), "corrupt", None),
        ("unknown_flag.bin", chunkfmt.patch(std, 7, "<B", 0x80), "corrupt", None),
        ("ndim_33.bin", std[:8] + bytes([33]) + std[9:], "bad_shape", None),
        ("too_large.bin", chunkfmt.patch(std, 32, "<Q", 1 << 40), "too_large", None),
        ("trailing_byte.bin", std + b"\0", "corrupt", None),
        ("value_scheme_9.bin", chunkfmt.patch(std, hs, "<B", 9), "corrupt", None),
        ("context_scheme_99.bin", chunkfmt.patch(i16, chunkfmt.header_size(i16) + 2, "<B", 99), "corrupt", None),
        ("coded_count.bin", chunkfmt.patch(i16, chunkfmt.header_size(i16) + 8, "<Q", 10**6), "corrupt", None),
        ("tables_malformed.bin", chunkfmt.replace_section(i16, "tables", b"\x05"), "corrupt", None),
        ("rans_zero_state.bin", chunkfmt.replace_section(i16, "rans", bytes(4)), "corrupt", None),
        ("gaps_zero.bin", chunkfmt.replace_section(
            sparse, "gaps", bytes(chunkfmt.parse(sparse)["sections"]["gaps"][2])), "corrupt", None),
        ("section_past_end.bin", chunkfmt.patch(
            i16, chunkfmt.parse(i16)["sections"]["rans"][0], "<Q", 1 << 32), "corrupt", None),
        ("delta_missing_reference.bin", delta, "missing_reference", None),
        ("delta_wrong_reference.bin", delta, "reference_mismatch", {"reference": "v1_f32_delta/input.npy"}),
        ("delta_short_reference.bin", delta, "size_mismatch", {"reference": "v1_f32_standalone/input.npy"}),
        ("delta_missing_prev_reference.bin", load("f32_delta_prev"), "missing_reference",
         {"reference": "v1_f32_delta_prev/reference.npy"}),
        ("lossy_bad_quantizer.bin", chunkfmt.patch(load("f32_lossy_abs"), hs, "<B", 7), "corrupt", None),
    ]
    extrapolated = (HERE / "v3_f32_delta_extrapolated" / "encoded.bin").read_bytes()
    refs = {"reference": "v3_f32_delta_extrapolated/reference.npy",
            "prev_reference": "v3_f32_delta_extrapolated/prev_reference.npy"}
    xp = chunkfmt.parse(extrapolated)["prefix_offset"]
    std3 = chunkfmt.patch(std, 4, "<B", 3)
    predicted = (HERE / "v3_f32_lossy_abs_predicted" / "encoded.bin").read_bytes()
    predicted_refs = {"reference": "v3_f32_lossy_abs_predicted/reference.npy",
                      "prev_reference": "v3_f32_lossy_abs_predicted/prev_reference.npy"}
    out += [
        ("transform_2.bin", chunkfmt.patch(extrapolated, xp + 6, "<B", 2), "corrupt", refs),
        ("transform_reserved_byte.bin", chunkfmt.patch(extrapolated, xp + 7, "<B", 1), "corrupt", refs),
        ("transform_on_standalone.bin", chunkfmt.patch(std3, hs + 6, "<B", 1), "corrupt", None),
        ("transform_cut_short.bin", chunkfmt.reseal(extrapolated[: xp + 20]), "corrupt", refs),
        ("lossy_predictor_2.bin", chunkfmt.patch(predicted, hs + 1, "<B", 2), "corrupt", predicted_refs),
        ("lossy_predictor_nan.bin", chunkfmt.patch(predicted, hs + 24, "<d", float("nan")), "corrupt", predicted_refs),
        ("lossy_predictor_b_without_prev.bin",
         chunkfmt.patch(chunkfmt.patch(predicted, 7, "<B", 2), hs + 32, "<d", 0.5),
         "corrupt", {"reference": predicted_refs["reference"]}),
        ("transform_slope_too_steep.bin", chunkfmt.patch(extrapolated, xp + 16, "<i", (1 << 18) + 1), "corrupt", refs),
    ]
    scaled = (HERE / "v4_f32_delta_scaled_rows" / "encoded.bin").read_bytes()
    srefs = {"reference": "v4_f32_delta_scaled_rows/reference.npy",
             "prev_reference": "v4_f32_delta_scaled_rows/prev_reference.npy"}
    sp = chunkfmt.parse(scaled)["prefix_offset"] + 16  # the transform parameters
    assert chunkfmt.parse(scaled)["transform"] == 2
    out += [
        ("transform_3.bin", chunkfmt.patch(scaled, sp - 10, "<B", 3), "corrupt", srefs),
        ("scaled_mantissa_top_bit_clear.bin", chunkfmt.patch(scaled, sp, "<I", 0x7FFFFFFF), "corrupt", srefs),
        ("scaled_shift_97.bin", chunkfmt.patch(scaled, sp + 4, "<i", 97), "corrupt", srefs),
        ("scaled_segment_0.bin", chunkfmt.patch(scaled, sp + 8, "<I", 0), "corrupt", srefs),
        ("scaled_bitmap_cut_short.bin", chunkfmt.reseal(scaled[: sp + 13]), "corrupt", srefs),
        ("scaled_bitmap_padding.bin", chunkfmt.patch(scaled, sp + 14, "<B", scaled[sp + 14] | 0x80), "corrupt", srefs),
        ("scaled_without_prev.bin", chunkfmt.patch(scaled, 7, "<B", 0), "corrupt", {"reference": srefs["reference"]}),
    ]
    i16v5 = (HERE / "v5_i16_standalone" / "encoded.bin").read_bytes()
    info = chunkfmt.parse(i16v5)
    _, start, length = info["sections"]["rans"]
    rans = i16v5[start:start + length]
    out += [
        ("rans_second_state_zero.bin", chunkfmt.replace_section(i16v5, "rans", rans[:4] + bytes(4) + rans[8:]),
         "corrupt", None),
        ("rans_one_state.bin", chunkfmt.replace_section(i16v5, "rans", rans[:4] + rans[8:]), "corrupt", None),
    ]
    return out


def main() -> int:
    written = [name for name, *rest in cases() if write_case(name, *rest)]
    bad = HERE / "bad"
    bad.mkdir(exist_ok=True)
    expected_path = bad / "expected.json"
    expected = json.loads(expected_path.read_text()) if expected_path.exists() else {}
    for valid in ("version_3.bin", "version_4.bin", "version_5.bin", "version_6.bin"):  # valid since formats 3-6
        if expected.pop(valid, None) is not None:
            (bad / valid).unlink(missing_ok=True)
    for fname, chunk, code, decode_with in bad_chunks():
        if fname in expected:
            continue
        (bad / fname).write_bytes(chunk)
        expected[fname] = {"code": code, "decode_with": decode_with or {}}
        written.append(f"bad/{fname}")
    dump_json(expected_path, expected)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file() and p.suffix != ".py")
    print(f"wrote {len(written)} new files/cases; vectors total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
