"""Independent, pure-Python reading of the tpde chunk layout (docs/format.md) for tests.

Nothing here calls tpde: the tests use it to take chunks apart, patch fields and re-seal
the CRC32Cs, so that each decoder check can be reached on its own.
"""

from __future__ import annotations

import struct

# --- CRC32C (Castagnoli), reflected polynomial 0x82F63B78, init/xorout 0xFFFFFFFF ---------

_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (_POLY if _c & 1 else 0)
    _TABLE.append(_c)
del _i, _c


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``; ``crc32c(b"123456789") == 0xE3069283``."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for b in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


# --- layout --------------------------------------------------------------------------------

FIXED_HEADER = 32  # bytes before the shape
PAYLOAD_PREFIX = 16
# by format version; starts the payload when flag bit 1 (lossy) is set
LOSSY_BLOCK = {1: 16, 2: 24, 3: 24, 4: 24, 5: 24}
SECTION_NAMES = ("gaps", "tables", "rans", "tails")

DTYPE_CODES = {
    "float32": 1, "float64": 2, "float16": 3, "bfloat16": 4,
    "int8": 5, "uint8": 6, "int16": 7, "uint16": 8,
    "int32": 9, "uint32": 10, "int64": 11, "uint64": 12, "bool": 13,
}
VALUE_SCHEMES = {0: "stored", 1: "log_bucket", 2: "float_split"}
POSITION_SCHEMES = {0: "inline", 1: "elias_gaps"}
CONTEXT_SCHEMES = {0: "none", 1: "ref_exponent", 2: "prev_residual", 3: "neighbour", 4: "prev_exponent",
                   5: "ref_exponent_prev_residual"}


def header_size(chunk: bytes | bytearray) -> int:
    return FIXED_HEADER + 8 * chunk[8] + 4


def parse(chunk: bytes | bytearray) -> dict:
    """Split a well-formed chunk into its fields. Offsets are absolute within the chunk."""
    chunk = bytes(chunk)
    ndim = chunk[8]
    hs = header_size(chunk)
    info = {
        "magic": chunk[0:4],
        "version": chunk[4],
        "dtype_code": chunk[5],
        "mode": chunk[6],
        "flags": chunk[7],
        "ndim": ndim,
        "reference_fingerprint": struct.unpack_from("<I", chunk, 12)[0],
        "prev_reference_fingerprint": struct.unpack_from("<I", chunk, 16)[0],
        "payload_size": struct.unpack_from("<Q", chunk, 20)[0],
        "payload_crc": struct.unpack_from("<I", chunk, 28)[0],
        "shape": struct.unpack_from(f"<{ndim}Q", chunk, 32),
        "header_crc": struct.unpack_from("<I", chunk, hs - 4)[0],
        "header_size": hs,
    }
    p = hs
    info["lossy"] = None
    if info["flags"] & 2:  # lossy block, format 2: quantizer u8, reserved[7], value f64, step u64
        version = chunk[4]  # format 1: quantizer u8, shift u8, reserved[6], value f64 (step 2^shift)
        predictor = chunk[p + 1] if version >= 3 else 0  # format 3: 1 = a x ref + b x prev, f64 a, b follow
        info["lossy"] = {
            "quantizer": chunk[p],
            "value": struct.unpack_from("<d", chunk, p + 8)[0],
            "step": (1 << chunk[p + 1]) if version == 1 else struct.unpack_from("<Q", chunk, p + 16)[0],
            "predictor": predictor,
            "coefficients": struct.unpack_from("<dd", chunk, p + 24) if predictor == 1 else None,
        }
        p += LOSSY_BLOCK[version] + (16 if predictor == 1 else 0)
    info["prefix_offset"] = p
    info["value_scheme"] = chunk[p]
    info["without_reference"] = chunk[p + 3]
    info["position_scheme"] = chunk[p + 1]
    info["context_scheme"] = chunk[p + 2]
    info["context_param"] = struct.unpack_from("<H", chunk, p + 4)[0]
    info["coded"] = struct.unpack_from("<Q", chunk, p + 8)[0]
    info["transform"] = chunk[p + 6] if chunk[4] >= 3 else 0  # 1: extrapolation, i32 slope + i32 offset follow
    info["extrapolation"] = struct.unpack_from("<ii", chunk, p + PAYLOAD_PREFIX) if info["transform"] == 1 else None
    transform_bytes = 8 if info["transform"] == 1 else 0
    info["scaled"] = None
    if info["transform"] == 2:  # format 4: u32 scale mantissa, i32 shift, u32 segment, bitmap
        mantissa, shift, segment = struct.unpack_from("<IiI", chunk, p + PAYLOAD_PREFIX)
        n = 1
        for d in info["shape"]:
            n *= d
        nbytes = (-(-n // segment) + 7) // 8 if segment else 0
        start = p + PAYLOAD_PREFIX + 12
        info["scaled"] = {"mantissa": mantissa, "shift": shift, "segment": segment,
                          "scale": mantissa / 2.0 ** (32 + shift), "bitmap": chunk[start:start + nbytes]}
        transform_bytes = 12 + nbytes
    sections = {}
    if info["value_scheme"] != 0:
        off = p + PAYLOAD_PREFIX + transform_bytes
        for name in SECTION_NAMES:
            (length,) = struct.unpack_from("<Q", chunk, off)
            sections[name] = (off, off + 8, length)  # (length field, data start, data length)
            off += 8 + length
        info["end"] = off
    info["sections"] = sections
    return info


def scheme_names(chunk: bytes | bytearray) -> tuple[str, str, str]:
    info = parse(chunk)
    return (
        VALUE_SCHEMES.get(info["value_scheme"], "?"),
        POSITION_SCHEMES.get(info["position_scheme"], "?"),
        CONTEXT_SCHEMES.get(info["context_scheme"], "?"),
    )


def reseal(chunk: bytes | bytearray, *, fix_payload_size: bool = True) -> bytes:
    """Recompute payload_size (optionally), the payload CRC32C and the header CRC32C."""
    c = bytearray(chunk)
    hs = header_size(c)
    if fix_payload_size:
        struct.pack_into("<Q", c, 20, len(c) - hs)
    struct.pack_into("<I", c, 28, crc32c(c[hs:]))
    struct.pack_into("<I", c, hs - 4, crc32c(c[: hs - 4]))
    return bytes(c)


def patch(chunk: bytes | bytearray, offset: int, fmt: str, value) -> bytes:
    """Write ``value`` with struct format ``fmt`` at ``offset`` and reseal the CRCs."""
    c = bytearray(chunk)
    struct.pack_into(fmt, c, offset, value)
    return reseal(c, fix_payload_size=False)


def replace_section(chunk: bytes | bytearray, name: str, data: bytes) -> bytes:
    """Replace one payload section's bytes (fixing its length field) and reseal."""
    info = parse(chunk)
    len_at, start, length = info["sections"][name]
    c = bytearray(chunk)
    c[start : start + length] = data
    struct.pack_into("<Q", c, len_at, len(data))
    return reseal(c)
