// Error-bounded quantization of residuals (lossy mode), shared bit for bit by encoder and
// decoder. A lossy chunk codes integers q losslessly; the decoder rebuilds each value as
//   absolute:     recon = round_to_dtype(base + q * step)             |recon - x| <= step / 2
//                 (base = double(ref), or a x ref + b x prev with the format-3 predictor)
//   log-relative: recon = from_ordered(to_ordered(ref) + q * step)    |recon - x| <= r max(|x|, 2N)
// where to_ordered maps float bit patterns to integers in value order, so the log-relative
// quantizer works on exact integers and is idempotent by construction (N: the smallest
// normal value of the dtype; the log-relative reconstruction also keeps the sign bit of x).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/symbols.hpp"
#include "tpde/format.hpp"

namespace tpde {

enum class Quantizer : uint8_t { kAbsolute = 1, kLogRelative = 2 };
// Format 2: quantizer u8, reserved[7], value f64, step u64 (24 bytes).
// Format 3: byte 1 is the predictor; predictor 1 adds f64 a, f64 b (40 bytes).
// Format 1: quantizer u8, shift u8, reserved[6], value f64 (16 bytes; step = 2^shift).
constexpr size_t kLossyBlockSize = 24;
constexpr size_t kLossyPredictorBytes = 16;
constexpr double kMaxPredictorCoefficient = 16.0;
inline size_t lossy_block_size(uint8_t version) { return version == 1 ? 16 : kLossyBlockSize; }

// The absolute quantizer's step is 2 x bound x (1 - margin): the margin absorbs the rounding
// of rebuilt values to the dtype, so that values half a step from the grid stay in bound.
inline double absolute_step_margin(DType dtype) {
  switch (dtype) {
    case DType::kFloat64: return std::ldexp(1.0, -20);
    case DType::kFloat32: return std::ldexp(1.0, -10);
    default: return std::ldexp(1.0, -3);
  }
}

struct LossyParams {
  Quantizer kind = Quantizer::kAbsolute;
  uint64_t step = 0;   // log-relative: q counts units of `step` ordered steps (0 for absolute)
  double value = 0.0;  // absolute: the step (2 x bound); log-relative: the relative bound r
  // Absolute quantizer, format 3: values are quantized around a x ref + b x prev (predictor
  // 1) instead of ref (predictor 0); b is 0 without a prev-reference.
  uint8_t predictor = 0;
  double a = 1.0, b = 0.0;
};

inline size_t lossy_block_size(uint8_t version, const LossyParams& p) {
  return lossy_block_size(version) + (p.predictor ? kLossyPredictorBytes : 0);
}

// The value an absolute-quantized element is rebuilt around: binary64, each product and the
// sum rounded once (no fused multiply-add), prev = 0 without a prev-reference.
inline double predicted_base(const LossyParams& p, double ref, double prev) {
  return p.a * ref + p.b * prev;
}

inline float float_from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t bits_from_float(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

inline double half_to_double(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double v;
  if (exp == 0)
    v = std::ldexp(static_cast<double>(mant), -24);
  else if (exp == 31)
    v = mant ? NAN : INFINITY;
  else
    v = std::ldexp(static_cast<double>(mant | 1024), exp - 25);
  return sign ? -v : v;
}

// Round-to-nearest-even double -> binary16, via exact integer arithmetic on the scaled value.
inline uint16_t double_to_half(double d) {
  const uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  d = std::fabs(d);
  if (std::isnan(d)) return static_cast<uint16_t>(sign | 0x7E00);
  if (d >= 65520.0) return static_cast<uint16_t>(sign | 0x7C00);
  int e;
  std::frexp(d, &e);  // d in [2^(e-1), 2^e)
  const int exp = e - 1 < -14 ? -14 : e - 1;
  const double scaled = std::ldexp(d, 10 - exp);  // mantissa units of this binade
  double m = std::nearbyint(scaled);              // ties to even under the default mode
  uint32_t mant = static_cast<uint32_t>(m);
  int biased = exp + 15;
  if (mant >= 2048) {
    mant >>= 1;
    ++biased;
  }
  if (mant < 1024) return static_cast<uint16_t>(sign | mant);  // subnormal (biased exp 0)
  if (biased >= 31) return static_cast<uint16_t>(sign | 0x7C00);
  return static_cast<uint16_t>(sign | (biased << 10) | (mant & 1023));
}

template <typename U>
inline double to_double(U bits, DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return float_from_bits(static_cast<uint32_t>(bits));
    case DType::kBFloat16: return float_from_bits(static_cast<uint32_t>(bits) << 16);
    case DType::kFloat16: return half_to_double(static_cast<uint16_t>(bits));
    case DType::kFloat64: {
      double d;
      const uint64_t b = bits;
      std::memcpy(&d, &b, 8);
      return d;
    }
    default: return 0.0;
  }
}

template <typename U>
inline U from_double(double d, DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return static_cast<U>(bits_from_float(static_cast<float>(d)));
    case DType::kBFloat16: {
      // double -> float -> bf16 would round twice; round the double directly to 8 mantissa bits.
      const uint32_t f = bits_from_float(static_cast<float>(d));
      if (std::isnan(d)) return static_cast<U>((f >> 16) | 0x40);
      int e;
      std::frexp(std::fabs(d), &e);
      const double unit = std::ldexp(1.0, std::max(e - 8, -133));  // bf16 ulp at this magnitude
      const double r = std::nearbyint(d / unit) * unit;
      return static_cast<U>(bits_from_float(static_cast<float>(r)) >> 16);
    }
    case DType::kFloat16: return static_cast<U>(double_to_half(d));
    case DType::kFloat64: {
      uint64_t b;
      std::memcpy(&b, &d, 8);
      return static_cast<U>(b);
    }
    default: return 0;
  }
}

template <typename U>
inline U to_ordered(U bits) {
  constexpr U kSign = static_cast<U>(U(1) << (kBits<U> - 1));
  return (bits & kSign) ? static_cast<U>(~bits) : static_cast<U>(bits | kSign);
}

template <typename U>
inline U from_ordered(U ord) {
  constexpr U kSign = static_cast<U>(U(1) << (kBits<U> - 1));
  return (ord & kSign) ? static_cast<U>(ord & ~kSign) : static_cast<U>(~ord);
}

// Nearest multiple of `step` ordered steps from ref to x: floor((2d + step) / (2 step)).
template <typename U>
inline U log_quantize(U x, U ref, uint64_t step) {
  const __int128 d =
      static_cast<__int128>(to_ordered<U>(x)) - static_cast<__int128>(to_ordered<U>(ref));
  const __int128 s = static_cast<__int128>(step);
  __int128 num = 2 * d + s, den = 2 * s;
  __int128 q = num / den;
  if ((num % den != 0) && ((num < 0) != (den < 0))) --q;  // floor division
  return static_cast<U>(static_cast<uint64_t>(static_cast<int64_t>(q)));
}

// Absolute quantizer: the value q steps from `base`, rounded to the dtype.
template <typename U>
inline U dequantize_absolute(double base, U q_bits, const LossyParams& p, DType dtype) {
  using S = std::make_signed_t<U>;
  const double q = static_cast<double>(static_cast<S>(q_bits));
  return from_double<U>(base + q * p.value, dtype);
}

// q is the residual the lossless layer carried: (coded value) - ref, wrapping.
template <typename U>
inline U dequantize(U ref, U q_bits, const LossyParams& p, DType dtype) {
  if (p.kind == Quantizer::kLogRelative)
    return from_ordered<U>(
        static_cast<U>(to_ordered<U>(ref) + static_cast<U>(q_bits * static_cast<U>(p.step))));
  return dequantize_absolute<U>(to_double<U>(ref, dtype), q_bits, p, dtype);
}

// The previous step's quantized residual, as a "previous reference" for the lossless layer:
// ref - q_prev, so that its prev-residual context sees |q_prev| (not raw bit differences).
template <typename U>
inline void quantized_prev_reference(const U* ref, const U* prev, uint64_t n, const LossyParams& p,
                                     DType dtype, std::vector<U>& out) {
  using S = std::make_signed_t<U>;
  out.resize(n);
  const double limit = std::ldexp(1.0, kBits<U> - 2);
  for (uint64_t i = 0; i < n; ++i) {
    U q = 0;
    if (p.kind == Quantizer::kLogRelative) {
      q = log_quantize<U>(ref[i], prev[i], p.step);
    } else {
      const double qd =
          std::nearbyint((to_double<U>(ref[i], dtype) - to_double<U>(prev[i], dtype)) / p.value);
      if (std::fabs(qd) < limit) q = static_cast<U>(static_cast<S>(static_cast<int64_t>(qd)));
    }
    out[i] = static_cast<U>(ref[i] - q);
  }
}

}  // namespace tpde
