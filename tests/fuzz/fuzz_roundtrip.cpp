// libFuzzer target: encode arbitrary data (standalone, delta, delta + prev-reference) and
// require a bit-exact decode. Built by tests/fuzz/run_fuzz.sh (--roundtrip).
//
// Input: byte 0 picks the dtype (13 codes; its top bit the fast level, lossless), byte 1 the mode
// (0 standalone, 1 delta, 2 delta with prev-reference) and a 2-D shape split, byte 2 the lossy mode
// for float dtypes (lossless, absolute or log-relative bound, a power of two; lossless code 3 with
// a reference turns every other row of a 16/32-bit float chunk into its reference scaled, the rows
// that formats 4 and 5 code against a scaled reference); the rest is cut into equal parts: the
// data, then the reference, then the prev-reference (libFuzzer's CopyPart/CrossOver mutations make
// the parts resemble each other, which is what exercises the delta coder).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../../cpp/src/predict/scaled.hpp"
#include "tpde/tpde.hpp"

namespace {

[[noreturn]] void bug(const char* what, int dtype, int mode, size_t n) {
  std::fprintf(stderr, "%s (dtype %d, mode %d, n %zu)\n", what, dtype, mode, n);
  std::abort();
}

double value_of(const uint8_t* p, tpde::DType dtype) {
  switch (dtype) {
    case tpde::DType::kFloat32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case tpde::DType::kFloat64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case tpde::DType::kBFloat16: {
      const uint32_t b = uint32_t(p[0]) << 16 | uint32_t(p[1]) << 24;
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    }
    case tpde::DType::kFloat16: {
      const uint16_t h = static_cast<uint16_t>(p[0] | p[1] << 8);
      const int e = (h >> 10) & 31, m = h & 1023;
      const double v = e == 0    ? std::ldexp(m, -24)
                       : e == 31 ? (m ? NAN : INFINITY)
                                 : std::ldexp(m | 1024, e - 25);
      return (h >> 15) ? -v : v;
    }
    default: return 0;
  }
}

double smallest_normal(tpde::DType dtype) {
  switch (dtype) {
    case tpde::DType::kFloat32: return std::ldexp(1.0, -126);
    case tpde::DType::kFloat64: return std::ldexp(1.0, -1022);
    case tpde::DType::kBFloat16: return std::ldexp(1.0, -126);
    default: return std::ldexp(1.0, -14);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const auto dtype = static_cast<tpde::DType>(1 + data[0] % 13);
  const int mode = (data[1] & 3) % 3;
  const size_t item = tpde::dtype_size(dtype);
  const size_t parts = mode == 0 ? 1 : (mode == 1 ? 2 : 3);
  const size_t body = size - 3;
  const size_t n = body / (item * parts);
  const size_t nbytes = n * item;
  const uint8_t* src = data + 3;
  std::vector<uint8_t> x(src, src + nbytes), ref(nbytes), prev(nbytes);
  for (size_t i = 0; i < nbytes; ++i) {
    ref[i] = mode >= 1 ? src[nbytes + i] : 0;
    prev[i] = mode == 2 ? src[2 * nbytes + i] : 0;
  }
  // Shapes: (n), or (r, n / r) when the split byte divides n.
  std::vector<uint64_t> shape = {n};
  const size_t rows = 1 + (data[1] >> 2);
  if (n % rows == 0 && rows > 1) shape = {rows, n / rows};

  // Lossless code 3 with a reference (and a prev-reference or not: format 5 scales rows
  // without one), 16/32-bit floats: every other segment (the encoder's rows) becomes its
  // reference scaled, a few ulps off, as decayed moments are.
  const bool float1632 = dtype == tpde::DType::kFloat32 || dtype == tpde::DType::kBFloat16 ||
                         dtype == tpde::DType::kFloat16;
  if (mode >= 1 && float1632 && data[2] % 4 == 3 && n) {
    const int m = tpde::mantissa_bits(dtype), e = tpde::exponent_bits(dtype);
    const uint32_t mantissa = 0x80000000u | (uint32_t(data[2]) << 21) | 0x5A5A5u;
    const int32_t shift = (data[2] >> 2) % 9;
    const uint64_t segment = shape.size() == 2 && shape[1] >= 16 ? shape[1] : 256;
    for (size_t i = 0; i < n; ++i) {
      if ((i / segment) % 2) continue;
      const int noise = static_cast<int>(x[i * item] % 5) - 2;
      if (item == 4) {
        uint32_t r;
        std::memcpy(&r, &ref[i * 4], 4);
        const uint32_t v =
            tpde::scale_one<uint32_t>(r, mantissa, shift, m, e) + static_cast<uint32_t>(noise);
        std::memcpy(&x[i * 4], &v, 4);
      } else {
        uint16_t r;
        std::memcpy(&r, &ref[i * 2], 2);
        const uint16_t v =
            static_cast<uint16_t>(tpde::scale_one<uint16_t>(r, mantissa, shift, m, e) + noise);
        std::memcpy(&x[i * 2], &v, 2);
      }
    }
  }
  tpde::EncodeInput in{dtype, shape, x.data(), mode >= 1 ? ref.data() : nullptr,
                       mode == 2 ? prev.data() : nullptr};
  in.fast = (data[0] & 0x80) != 0;                                        // format 6, FastPlanes
  const int lossy = tpde::is_float(dtype) && !in.fast ? data[2] % 4 : 0;  // 0 and 3: lossless
  if (lossy == 1) {
    in.lossy = tpde::LossyKind::kAbsolute;
    in.error_bound = std::ldexp(1.0, 4 - (data[2] >> 2) % 48);  // 16 .. 2^-43
  } else if (lossy == 2) {
    in.lossy = tpde::LossyKind::kLogRelative;
    in.error_bound = std::ldexp(1.0, -1 - (data[2] >> 2) % 30);  // 1/2 .. 2^-30
  }
  std::vector<uint8_t> recon(nbytes + 1);
  in.reconstruction = recon.data();
  const std::vector<uint8_t> chunk = tpde::encode(in);  // any tpde::Error here is a bug too
  if (chunk.size() > tpde::encode_bound(nbytes, shape.size()))
    bug("chunk exceeds encode_bound", int(dtype), mode, n);
  std::vector<uint8_t> out(nbytes + 1);  // +1: never a null pointer for empty chunks
  tpde::decode(chunk.data(), chunk.size(), out.data(), nbytes, in.reference,
               in.reference ? nbytes : 0, in.prev_reference, in.prev_reference ? nbytes : 0);
  if (tpde::encode(in) != chunk) bug("encoding is not deterministic", int(dtype), mode, n);
  if (nbytes && std::memcmp(out.data(), recon.data(), nbytes) != 0)
    bug("decoded values differ from the encoder's reconstruction", int(dtype), mode, n);
  const tpde::Header h = tpde::read_header(chunk.data(), chunk.size());
  if (h.lossy == tpde::LossyKind::kNone) {
    if (nbytes && std::memcmp(out.data(), x.data(), nbytes) != 0)
      bug("lossless round trip mismatch", int(dtype), mode, n);
    return 0;
  }
  if (lossy == 0 || lossy == 3) bug("lossy chunk without a lossy request", int(dtype), mode, n);
  for (size_t i = 0; i < n; ++i) {
    const double a = value_of(&x[i * item], dtype), b = value_of(&out[i * item], dtype);
    if (!std::isfinite(a)) bug("lossy chunk of a non-finite value", int(dtype), mode, n);
    const long double err = std::fabs(static_cast<long double>(b) - static_cast<long double>(a));
    const long double bound = in.lossy == tpde::LossyKind::kAbsolute
                                  ? static_cast<long double>(in.error_bound)
                                  // tpde.hpp: r * max(|x|, 2 x smallest normal) (format 2 on: the
                                  // ordered-integer step is relative to the binade)
                                  : static_cast<long double>(in.error_bound) *
                                        std::fmax(std::fabs(a), 2 * smallest_normal(dtype));
    if (!(err <= bound * (1 + 1e-12L))) {
      std::fprintf(stderr, "value %zu: x=%.17g decoded=%.17g bound=%.17g\n", i, a, b,
                   in.error_bound);
      bug("lossy error bound violated", int(dtype), mode, n);
    }
  }
  // Idempotence: re-encoding the reconstruction gives the same reconstruction.
  std::vector<uint8_t> again(nbytes + 1);
  tpde::EncodeInput in2 = in;
  in2.data = recon.data();
  in2.reconstruction = again.data();
  tpde::encode(in2);
  if (nbytes && std::memcmp(again.data(), recon.data(), nbytes) != 0)
    bug("re-encoding the reconstruction changes it (quantizer not idempotent)", int(dtype), mode,
        n);
  return 0;
}
