"""A second, pure-Python decoder of the tpde chunk format, written from docs/format.md alone
(it shares no code with the C++ core). tests/test_vectors.py runs it over the frozen
vectors: if it agrees with them, the spec is complete enough to implement from.

Slow (a Python loop per value); meant for small chunks. decode() returns the element bytes,
or raises RefError(code, message) with the error names of docs/format.md section 11.
"""

from __future__ import annotations

import math
import struct

from chunkfmt import crc32c

# dtype code -> (name, itemsize, exponent bits E, mantissa bits M); E = M = 0 for integers
DTYPES = {
    1: ("float32", 4, 8, 23), 2: ("float64", 8, 11, 52), 3: ("float16", 2, 5, 10), 4: ("bfloat16", 2, 8, 7),
    5: ("int8", 1, 0, 0), 6: ("uint8", 1, 0, 0), 7: ("int16", 2, 0, 0), 8: ("uint16", 2, 0, 0),
    9: ("int32", 4, 0, 0), 10: ("uint32", 4, 0, 0), 11: ("int64", 8, 0, 0), 12: ("uint64", 8, 0, 0),
    13: ("bool", 1, 0, 0),
}
L = 1 << 23
M = 4096
CONTEXT_COUNT = {0: 1, 1: 16, 2: 33, 3: 33, 4: 16, 5: 64}


class RefError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


def fail(code, message="") -> None:
    raise RefError(code, message)


def u(fmt, buf, off):
    return struct.unpack_from("<" + fmt, buf, off)[0]


def bit_length(v):
    return v.bit_length()


# --- section 4.2 / 4.3 helpers ---------------------------------------------------------------

def zigzag(d, w):
    mask = (1 << w) - 1
    d &= mask
    sign = mask if d >> (w - 1) else 0
    return ((d << 1) & mask) ^ sign


def unzigzag(v, w):
    mask = (1 << w) - 1
    return ((v >> 1) ^ ((0 - (v & 1)) & mask)) & mask


def rotl1(b, w):
    return ((b << 1) | (b >> (w - 1))) & ((1 << w) - 1)


def rotr1(v, w):
    return ((v >> 1) | (v << (w - 1))) & ((1 << w) - 1)


# --- section 5.1: MSB-first bit reader -------------------------------------------------------

class Bits:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0  # bit position

    def bit(self):
        byte = self.pos >> 3
        self.pos += 1
        if byte >= len(self.data):
            return 0
        return (self.data[byte] >> (7 - ((self.pos - 1) & 7))) & 1

    def read(self, k):
        v = 0
        for _ in range(k):
            v = (v << 1) | self.bit()
        return v

    def overran(self):
        return self.pos > 8 * len(self.data)

    def exact(self):
        return not self.overran() and (self.pos + 7) // 8 == len(self.data)


def elias_delta(bits: Bits):
    z = 0
    while z <= 6 and bits.pos < 8 * len(bits.data) + 64:
        if bits.bit():
            break
        z += 1
    else:
        return 0
    if z > 6:
        return 0
    length = (1 << z) | bits.read(z)  # the leading 1 was consumed: 2z+1 bits in all
    if not 1 <= length <= 64:
        return 0
    return (1 << (length - 1)) | bits.read(length - 1)


# --- section 6.2 tables ----------------------------------------------------------------------

def varint(buf, p, end):
    v = 0
    for i in range(10):
        if p >= end:
            fail("corrupt", "varint runs past the tables")
        b = buf[p]
        p += 1
        v |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return v & ((1 << 64) - 1), p
    fail("corrupt", "varint longer than 10 bytes")


def read_tables(data: bytes, contexts: int, max_symbol: int):
    p, end = 0, len(data)
    tables = []
    for _ in range(contexts):
        used, p = varint(data, p, end)
        if used > max_symbol + 1:
            fail("corrupt", "too many symbols")
        if used == 0:
            tables.append(None)
            continue
        entries, last, cum = [], -1, 0
        for _ in range(used):
            gap, p = varint(data, p, end)
            fm1, p = varint(data, p, end)
            sym = last + 1 + gap
            if gap > 255 or sym > max_symbol or fm1 >= M:
                fail("corrupt", "bad table entry")
            freq = fm1 + 1
            if cum + freq > M:
                fail("corrupt", "frequencies above 4096")
            entries.append((sym, cum, freq))
            cum += freq
            last = sym
        if cum != M:
            fail("corrupt", "frequencies do not sum to 4096")
        slots = [None] * M
        for sym, start, freq in entries:
            for s in range(start, start + freq):
                slots[s] = (sym, start, freq)
        tables.append(slots)
    if p != end:
        fail("corrupt", "bytes after the tables")
    return tables


# --- section 6.3 rANS ------------------------------------------------------------------------

class Rans:
    """One state (formats 1-4) or two interleaved ones (format 5: value k uses state k mod 2)."""

    def __init__(self, data: bytes, states: int = 1):
        self.data, self.p, self.overran = data, 0, False
        self.x = [self.state() for _ in range(states)]
        self.k = 0

    def state(self):
        x = 0
        for _ in range(4):
            x = (x << 8) | self.byte()
        if x < L:
            self.overran = True  # corrupt; continue from L (reference decoder behaviour)
            x = L
        return x

    def byte(self):
        if self.p < len(self.data):
            self.p += 1
            return self.data[self.p - 1]
        self.overran = True
        return 0

    def get(self, slots):
        j = self.k % len(self.x)
        self.k += 1
        slot = self.x[j] & (M - 1)
        sym, start, freq = slots[slot]
        x = freq * (self.x[j] >> 12) + slot - start
        while x < L:
            x = (x << 8) | self.byte()
        self.x[j] = x
        return sym

    def clean(self):
        return not self.overran and self.p == len(self.data) and all(x == L for x in self.x)


# --- section 9: lossy ------------------------------------------------------------------------

def ordered(b, w):
    sign = 1 << (w - 1)
    return (~b) & ((1 << w) - 1) if b & sign else b | sign


def from_ordered(o, w):
    sign = 1 << (w - 1)
    return o & ~sign if o & sign else (~o) & ((1 << w) - 1)


def to_float(bits, code):
    if code == 1:
        return struct.unpack("<f", struct.pack("<I", bits))[0]
    if code == 2:
        return struct.unpack("<d", struct.pack("<Q", bits))[0]
    if code == 4:
        return struct.unpack("<f", struct.pack("<I", bits << 16))[0]
    return struct.unpack("<e", struct.pack("<H", bits))[0]


def f32_bits(d):
    try:
        return struct.unpack("<I", struct.pack("<f", d))[0]
    except OverflowError:  # Python refuses; IEEE rounding overflows to infinity
        return 0xFF800000 if d < 0 else 0x7F800000


def roundeven(d):
    return float(round(d)) if math.isfinite(d) else d  # Python's round() is ties-to-even


def from_float(d, code):
    if code == 2:
        return struct.unpack("<Q", struct.pack("<d", d))[0]
    if code == 1:
        return f32_bits(d)
    if code == 3:
        sign = 0x8000 if math.copysign(1.0, d) < 0 else 0
        if math.isnan(d):
            return sign | 0x7E00
        if abs(d) >= 65520.0:
            return sign | 0x7C00
        return struct.unpack("<H", struct.pack("<e", d))[0]  # RNE, subnormals included
    # bfloat16
    if math.isnan(d):
        return (f32_bits(d) >> 16) | 0x40
    if math.isinf(d):
        return f32_bits(d) >> 16
    e = math.frexp(abs(d))[1] if d != 0 else 0
    unit = math.ldexp(1.0, max(e - 8, -133))
    q = roundeven(d / unit)
    r = math.copysign(q * unit, d) if q == 0 else q * unit
    return f32_bits(r) >> 16


def signed(q, w):
    return q - (1 << w) if q >> (w - 1) else q


# --- sections 2-10 ---------------------------------------------------------------------------

def read_header(c: bytes):
    if len(c) < 36:
        fail("truncated", "shorter than 36 bytes")
    if c[:4] != b"TPDE":
        fail("bad_magic")
    if c[4] not in (1, 2, 3, 4, 5, 6):
        fail("unsupported_version", f"version {c[4]}")
    ndim = c[8]
    if ndim > 32:
        fail("bad_shape")
    hs = 36 + 8 * ndim
    if len(c) < hs:
        fail("truncated")
    if crc32c(c[: hs - 4]) != u("I", c, hs - 4):
        fail("checksum", "header")
    code, mode, flags = c[5], c[6], c[7]
    if code not in DTYPES:
        fail("bad_dtype")
    if mode > 1 or flags & ~3 or (mode == 0 and flags & 1):
        fail("corrupt", "mode/flags")
    shape = [u("Q", c, 32 + 8 * k) for k in range(ndim)]
    t = DTYPES[code][1]
    for d in shape:  # zero dimensions are skipped: they do not excuse a huge other one
        if d == 0:
            continue
        if t > (1 << 36) // d:
            fail("too_large")
        t *= d
    if 0 in shape:
        t = 0
    if t > 1 << 36:
        fail("too_large")
    payload_size = u("Q", c, 20)
    if payload_size > len(c) - hs:
        fail("truncated")
    if payload_size < len(c) - hs:
        fail("corrupt", "trailing bytes")
    lossy = None
    if flags & 2:
        w = 8 * DTYPES[code][1]
        if DTYPES[code][2] == 0:
            fail("corrupt", "lossy integer chunk")
        block = 16 if c[4] == 1 else 24  # format 1: shift u8 at +1 (step 2^shift); 2: step u64 at +16
        if payload_size < block:
            fail("corrupt", "lossy block")
        quant, value = c[hs], u("d", c, hs + 8)
        if c[4] == 1:
            shift = c[hs + 1]
            if quant == 2 and shift >= w - 2:
                fail("corrupt", "lossy parameters")
            step = (1 << shift) if quant == 2 else (1 if shift else 0)
        else:
            step = u("Q", c, hs + 16)
        ok = (quant == 1 and math.isfinite(value) and value > 0 and step == 0) or (
            quant == 2 and math.isfinite(value) and 0 < value < 1 and 1 <= step < 2 ** (w - 2))
        if not ok:
            fail("corrupt", "lossy parameters")
        coefs = None
        if c[4] >= 3 and c[hs + 1] != 0:  # section 9: the predictor of format 3
            if c[hs + 1] != 1:
                fail("corrupt", "lossy predictor")
            if quant != 1 or mode != 1:
                fail("corrupt", "lossy predictor does not fit")
            if payload_size < block + 16:
                fail("corrupt", "lossy block")
            coefs = (u("d", c, hs + 24), u("d", c, hs + 32))
            if not all(abs(k) <= 16.0 for k in coefs):  # NaN fails too
                fail("corrupt", "lossy predictor coefficients")
            if coefs[1] != 0 and not flags & 1:
                fail("corrupt", "lossy predictor without prev-reference")
            block += 16
        lossy = (quant, step, value, block, coefs)
    n = math.prod(shape)
    return {"code": code, "mode": mode, "flags": flags, "shape": shape, "n": n, "hs": hs, "version": c[4],
            "payload_size": payload_size, "lossy": lossy, "nbytes": t}


def elements(raw: bytes, itemsize: int):
    return [int.from_bytes(raw[k : k + itemsize], "little") for k in range(0, len(raw), itemsize)]


def decode(c: bytes, reference: bytes | None = None, prev_reference: bytes | None = None) -> bytes:
    c = bytes(c)
    h = read_header(c)
    code, n, hs = h["code"], h["n"], h["hs"]
    _, size, E, Mb = DTYPES[code]
    w = 8 * size
    payload = c[hs : hs + h["payload_size"]]
    if crc32c(payload) != u("I", c, 28):
        fail("checksum", "payload")
    prev_used = False
    if h["mode"] == 1:
        if reference is None:
            fail("missing_reference")
        if len(reference) != h["nbytes"]:
            fail("size_mismatch")
        if crc32c(reference) != u("I", c, 12):
            fail("reference_mismatch")
        if h["flags"] & 1:
            if prev_reference is None:
                fail("missing_reference", "prev_reference")
            if len(prev_reference) != h["nbytes"]:
                fail("size_mismatch")
            if crc32c(prev_reference) != u("I", c, 16):
                fail("reference_mismatch", "prev_reference")
            prev_used = True
    ref = elements(reference, size) if h["mode"] == 1 else None
    prev = elements(prev_reference, size) if prev_used else None
    if h["lossy"] is None:
        out = decode_payload(payload, n, w, code, E, Mb, h["mode"] == 1, ref, prev, h["version"])
    else:
        quant, step, value, block, coefs = h["lossy"]
        R = ref if ref is not None else [0] * n
        Q = None
        if prev is not None:
            Q = []
            for r_i, p_i in zip(R, prev):
                if quant == 2:  # nearest multiple of step: floor((2d + step) / (2 step))
                    d = ordered(r_i, w) - ordered(p_i, w)
                    qp = ((2 * d + step) // (2 * step)) % (1 << w)
                else:
                    t = roundeven((to_float(r_i, code) - to_float(p_i, code)) / value)
                    qp = int(t) % (1 << w) if (math.isfinite(t) and abs(t) < 2.0 ** (w - 2)) else 0
                Q.append((r_i - qp) % (1 << w))
        z = decode_payload(payload[block:], n, w, code, E, Mb, True, R, Q, h["version"], lossy=True)
        out = []
        P = prev if prev is not None else [None] * n
        for r_i, z_i, p_i in zip(R, z, P):
            q = (z_i - r_i) % (1 << w)
            if quant == 2:
                out.append(from_ordered((ordered(r_i, w) + q * step) % (1 << w), w))
            else:
                base = to_float(r_i, code)
                if coefs is not None:  # a x ref + b x prev, each product and the sum rounded
                    base = coefs[0] * base + coefs[1] * (to_float(p_i, code) if p_i is not None else 0.0)
                out.append(from_float(base + float(signed(q, w)) * value, code))
    return b"".join(v.to_bytes(size, "little") for v in out)


def extrapolate(r, q, w, slope, offset):
    """Section 4.4: r moved on by slope x (r - q) + offset within r's sign half."""
    s = w - 1
    d = r - q if (r >> s) == (q >> s) else 0
    t = r + ((d * slope + (1 << 15)) >> 16) + offset
    return t if 0 <= t < (1 << w) and (t >> s) == (r >> s) else r


def scale_value(r, w, E, Mb, mantissa, shift):
    """Section 4.5: the normal float r times mantissa / 2^(32 + shift), rounded once to
    nearest (ties to even); r where r or the result is not a normal number."""
    from fractions import Fraction
    top = (1 << E) - 1
    e = (r >> Mb) & top
    if e == 0 or e == top:
        return r
    magnitude = Fraction((1 << Mb) | (r & ((1 << Mb) - 1)), 1 << Mb) * Fraction(2) ** e  # value x 2^bias
    v = magnitude * Fraction(mantissa, 1 << 32) / Fraction(2) ** shift
    e2 = v.numerator.bit_length() - v.denominator.bit_length()  # 2^e2 <= v < 2^(e2 + 1), adjusted below
    if Fraction(2) ** e2 > v:
        e2 -= 1
    sig = v / Fraction(2) ** e2 * (1 << Mb)  # in [2^Mb, 2^(Mb + 1))
    q, rest = divmod(sig.numerator, sig.denominator)
    if 2 * rest > sig.denominator or (2 * rest == sig.denominator and q & 1):
        q += 1
    if q >> (Mb + 1):
        q >>= 1
        e2 += 1
    if not 1 <= e2 < top:
        return r
    return (r & (1 << (w - 1))) | (e2 << Mb) | (q & ((1 << Mb) - 1))


def decode_payload(p: bytes, n, w, code, E, Mb, delta, ref, prev, version, lossy=False):
    mask = (1 << w) - 1
    if len(p) < 16:
        fail("corrupt", "prefix")
    if p[0] == 3:  # section 14: FastPlanes, version 6
        if version < 6 or lossy:
            fail("corrupt", "FastPlanes in a lossy chunk or before version 6")
        return decode_fast(p, n, w, E, delta, ref)
    vs, ps, cs, wo = p[0], p[1], p[2], p[3]
    P = u("H", p, 4)
    coded = u("Q", p, 8)
    transform = p[6] if version >= 3 else 0
    if version >= 3 and (transform > (2 if version >= 4 else 1) or p[7] != 0):
        fail("corrupt", "reference transform")
    off = 16
    if transform == 1:
        if vs == 0 or not delta or wo != 0 or prev is None or E == 0 or w > 32 or lossy:
            fail("corrupt", "extrapolation does not fit")
        if len(p) < 24:
            fail("corrupt", "extrapolation parameters")
        slope, offset = struct.unpack_from("<ii", p, 16)
        if abs(slope) > 1 << 18 or abs(offset) > 1 << (w - 1):
            fail("corrupt", "extrapolation parameters out of range")
        ref, prev = [extrapolate(r, q, w, slope, offset) for r, q in zip(ref, prev)], ref
        off = 24
    if transform == 2:  # a prev-reference is required before version 5
        if vs == 0 or not delta or wo != 0 or (prev is None and version < 5) or E == 0 or w > 32 or lossy:
            fail("corrupt", "scaled reference does not fit")
        if len(p) < 28:
            fail("corrupt", "scaled-reference parameters")
        mantissa, shift, segment = struct.unpack_from("<IiI", p, 16)
        if mantissa >> 31 != 1 or not -16 <= shift <= 96:
            fail("corrupt", "scale out of range")
        if segment == 0:
            fail("corrupt", "segment length 0")
        segments = -(-n // segment)
        nbytes = (segments + 7) // 8
        if len(p) < 28 + nbytes:
            fail("corrupt", "bitmap cut short")
        bitmap = p[28:28 + nbytes]
        if segments % 8 and bitmap[-1] >> (segments % 8):
            fail("corrupt", "bitmap padding")
        new_ref = list(ref)
        new_prev = None if prev is None else list(prev)
        for i in range(n):
            j = i // segment
            if (bitmap[j >> 3] >> (j & 7)) & 1:
                new_ref[i] = scale_value(ref[i], w, E, Mb, mantissa, shift)
                if new_prev is not None:
                    new_prev[i] = new_ref[i]
        ref, prev = new_ref, new_prev
        off = 28 + nbytes
    if vs == 0:
        if coded != n or len(p) - 16 != n * (w // 8):
            fail("corrupt", "stored size")
        return elements(p[16:], w // 8)
    if wo > 1 or (wo == 1 and not delta):
        fail("corrupt", "without_reference")
    residual = delta and wo == 0
    if vs > 2:
        fail("corrupt", "value scheme")
    split = vs == 2
    if split and (residual or E == 0):
        fail("corrupt", "float split")
    if ps > 1:
        fail("corrupt", "position scheme")
    if cs > 5:
        fail("corrupt", "context scheme")
    valid = {0: True, 1: residual and E > 0, 2: residual and prev is not None, 3: not split, 4: split,
             5: residual and prev is not None and E > 0}[cs]
    if not valid:
        fail("corrupt", "context scheme does not fit")
    if E and P >= 1 << E:
        fail("corrupt", "context parameter")
    elias = ps == 1
    if (coded > n) if elias else (coded != n):
        fail("corrupt", "coded count")
    sections = []
    for _ in range(4):
        if len(p) - off < 8:
            fail("corrupt", "missing section length")
        length = u("Q", p, off)
        off += 8
        if length > len(p) - off:
            fail("corrupt", "section past the payload")
        sections.append(p[off : off + length])
        off += length
    if off != len(p):
        fail("corrupt", "bytes after tails")
    gaps, tables_b, rans_b, tails_b = sections
    if not elias and gaps:
        fail("corrupt", "gaps with inline positions")
    max_symbol = 255 if split else 4 * w - 5
    tables = read_tables(tables_b, CONTEXT_COUNT[cs], max_symbol)

    def expo(b):
        return (b >> Mb) & ((1 << E) - 1)

    def expctx(e):
        return min(max(P - e, 0), 15)

    def mclass(v):
        return min(bit_length(v), 32)

    def bucket(m):
        return 0 if m == 0 else 1 if m <= 4 else 2 if m <= 8 else 3

    gap_bits, tail_bits, rans = Bits(gaps), Bits(tails_b), Rans(rans_b, 2 if version >= 5 else 1)
    v_all = [0] * n
    previous = rotl1((P << Mb) & mask, w) if cs == 4 else 0
    position = -1
    for k in range(coded):
        if elias:
            g = elias_delta(gap_bits)
            if g == 0 or position + g > n - 1:
                fail("corrupt", "gap")
            i = position + g
            position = i
        else:
            i = k
        if cs == 0:
            ctx = 0
        elif cs == 1:
            ctx = expctx(expo(ref[i]))
        elif cs == 2:
            ctx = mclass(zigzag(ref[i] - prev[i], w))
        elif cs == 3:
            ctx = mclass(previous)
        elif cs == 4:
            ctx = expctx(expo(rotr1(previous, w)))
        else:
            ctx = 4 * expctx(expo(ref[i])) + bucket(mclass(zigzag(ref[i] - prev[i], w)))
        if tables[ctx] is None:
            fail("corrupt", "unused context")
        s = rans.get(tables[ctx])
        if split:
            v = (s << (w - 8)) | tail_bits.read(w - 8)
        elif s < 8:
            v = s
        else:
            t = ((s - 8) >> 2) + 1
            v = ((4 | (s & 3)) << t) | tail_bits.read(t)
        if elias and v == 0:
            fail("corrupt", "zero value")
        v_all[i] = v
        previous = v
    if not gap_bits.exact():
        fail("corrupt", "gaps length")
    if not tail_bits.exact():
        fail("corrupt", "tails length")
    if not rans.clean():
        fail("corrupt", "rANS end")
    if residual:
        return [(ref[i] + unzigzag(v_all[i], w)) & mask for i in range(n)]
    if split:
        return [rotr1(v, w) for v in v_all]
    out, x = [], 0
    for v in v_all:
        x = (x + unzigzag(v, w)) & mask
        out.append(x)
    return out


# --- section 14: FastPlanes ------------------------------------------------------------------

FAST_L = 1 << 15


def fast_table(p, off, end):
    """Section 14.3: a section-6.2 table with at least two symbols; returns (slots, offset)."""
    used, off = varint(p, off, end)
    if not 2 <= used <= 256:
        fail("corrupt", "FastPlanes table needs 2 to 256 symbols")
    slots, last, cum = [None] * M, -1, 0
    for _ in range(used):
        gap, off = varint(p, off, end)
        fm1, off = varint(p, off, end)
        sym = last + 1 + gap
        if gap > 255 or sym > 255 or fm1 >= M:
            fail("corrupt", "bad table entry")
        freq = fm1 + 1
        if cum + freq > M:
            fail("corrupt", "frequencies above 4096")
        for s in range(cum, cum + freq):
            slots[s] = (sym, cum, freq)
        cum += freq
        last = sym
    if cum != M:
        fail("corrupt", "frequencies do not sum to 4096")
    return slots, off


def fast_rans_plane(p, off, n, slots):
    """Section 14.4: two streams of 32 lanes; value i in stream (i // 32) % 2, lane i % 32."""
    streams = []
    for _ in range(2):
        if len(p) - off < 8:
            fail("corrupt", "missing stream length")
        size = u("Q", p, off)
        off += 8
        if size > len(p) - off:
            fail("corrupt", "stream past the payload")
        if size < 128 or size % 2:
            fail("corrupt", "stream shorter than its states or of odd length")
        states = [u("I", p, off + 4 * j) for j in range(32)]
        if not all(FAST_L <= x < 1 << 31 for x in states):
            fail("corrupt", "initial state out of range")
        streams.append({"x": states, "pos": off + 128, "end": off + size})
        off += size
    out = bytearray(n)
    for i in range(n):
        st = streams[(i // 32) % 2]
        j = i % 32
        x = st["x"][j]
        slot = x & (M - 1)
        sym, start, freq = slots[slot]
        out[i] = sym
        x = freq * (x >> 12) + slot - start
        if x < FAST_L:
            if st["end"] - st["pos"] < 2:
                fail("corrupt", "stream cut short")
            x = (x << 16) | u("H", p, st["pos"])
            st["pos"] += 2
        st["x"][j] = x
    for st in streams:
        if st["pos"] != st["end"] or any(x != FAST_L for x in st["x"]):
            fail("corrupt", "stream not ending cleanly")
    return out, off


def decode_fast(p: bytes, n, w, E, delta, ref):
    if any(p[1:8]):
        fail("corrupt", "FastPlanes prefix bytes 1-7")
    if u("Q", p, 8) != n:
        fail("corrupt", "coded count")
    off, planes = 16, []
    for _ in range(w // 8):
        if off >= len(p):
            fail("corrupt", "missing plane mode")
        mode = p[off]
        off += 1
        if mode == 0:
            if len(p) - off < n:
                fail("corrupt", "raw plane cut short")
            planes.append(p[off:off + n])
            off += n
        elif mode == 1:
            if off >= len(p):
                fail("corrupt", "constant plane cut short")
            planes.append(bytes([p[off]]) * n)
            off += 1
        elif mode == 2:
            slots, off = fast_table(p, off, len(p))
            plane, off = fast_rans_plane(p, off, n, slots)
            planes.append(plane)
        else:
            fail("corrupt", "plane mode")
    if off != len(p):
        fail("corrupt", "bytes after the planes")
    mask = (1 << w) - 1
    out = []
    for i in range(n):
        v = sum(planes[k][i] << (8 * k) for k in range(w // 8))
        if delta:
            out.append((ref[i] + unzigzag(v, w)) & mask)
        elif E:
            out.append(rotr1(v, w))
        else:
            out.append(v)
    return out
