// Scaled segments of a delta chunk's reference (payload transform 2, docs/format.md
// section 4.5): where a value had no gradient since the last save, Adam's moments only
// decayed, so the value is its reference times beta^k. Selected segments are predicted
// as that product, rounded once, in integer arithmetic on the bit patterns, so encoder
// and decoder compute the same prediction on every platform.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "symbols.hpp"

namespace tpde {

constexpr uint8_t kTransformScaled = 2;
constexpr size_t kScaledFixedBytes = 12;  // u32 scale mantissa, i32 scale shift, u32 segment length
constexpr int32_t kMinScaleShift = -16;
constexpr int32_t kMaxScaleShift = 96;

// scale = mantissa / 2^(32 + shift), mantissa in [2^31, 2^32).
struct ScaledSegments {
  uint32_t mantissa = 0;
  int32_t shift = 0;
  uint32_t segment = 0;          // values per segment (the last one may be shorter)
  std::vector<uint8_t> bitmap;   // bit j (byte j / 8, bit j % 8): segment j is scaled
};

inline bool scale_valid(uint32_t mantissa, int32_t shift) {
  return (mantissa >> 31) == 1 && shift >= kMinScaleShift && shift <= kMaxScaleShift;
}

inline uint64_t segment_count(uint64_t n, uint32_t segment) { return segment ? (n + segment - 1) / segment : 0; }

inline bool segment_selected(const std::vector<uint8_t>& bitmap, uint64_t j) {
  return (bitmap[j >> 3] >> (j & 7)) & 1;
}

// The normal float r (mantissa bits m, exponent bits e) times the scale, rounded to nearest
// (ties to even) once; r itself where r is zero, subnormal, infinite or NaN, or where the
// product would not be a normal number.
template <typename U>
inline U scale_one(U r, uint32_t mantissa, int32_t shift, int m, int e) {
  const U all_ones = static_cast<U>((U(1) << e) - 1);
  const U expo = static_cast<U>((r >> m) & all_ones);
  if (expo == 0 || expo == all_ones) return r;
  const uint64_t significand = (uint64_t(1) << m) | (static_cast<uint64_t>(r) & ((uint64_t(1) << m) - 1));
  const uint64_t product = significand * mantissa;  // < 2^(m + 33) <= 2^56
  int drop = 63 - __builtin_clzll(product) - m;     // 31 or 32
  uint64_t q = product >> drop;
  const uint64_t rest = product & ((uint64_t(1) << drop) - 1), half = uint64_t(1) << (drop - 1);
  q += (rest > half || (rest == half && (q & 1))) ? 1 : 0;
  if (q >> (m + 1)) {
    q >>= 1;
    ++drop;
  }
  const int64_t new_expo = static_cast<int64_t>(expo) + drop - 32 - shift;
  if (new_expo < 1 || new_expo >= static_cast<int64_t>(all_ones)) return r;
  const U sign = static_cast<U>(r & (U(1) << (kBits<U> - 1)));
  return static_cast<U>(sign | (static_cast<U>(new_expo) << m) | static_cast<U>(q & ((uint64_t(1) << m) - 1)));
}

// The prediction and the prev-reference a transform-2 chunk is coded against: selected
// segments get the scaled reference, and that prediction again as prev-reference (so the
// prev-residual contexts see a zero move there); the others keep ref and prev.
template <typename U>
void apply_scaled(const U* ref, const U* prev, uint64_t n, const ScaledSegments& s, int m, int e, U* pred,
                  U* prev_out) {
  const uint64_t segments = segment_count(n, s.segment);
  for (uint64_t j = 0; j < segments; ++j) {
    const uint64_t begin = j * s.segment, end = begin + s.segment < n ? begin + s.segment : n;
    if (segment_selected(s.bitmap, j)) {
      for (uint64_t i = begin; i < end; ++i) pred[i] = prev_out[i] = scale_one<U>(ref[i], s.mantissa, s.shift, m, e);
    } else {
      std::memcpy(pred + begin, ref + begin, (end - begin) * sizeof(U));
      std::memcpy(prev_out + begin, prev + begin, (end - begin) * sizeof(U));
    }
  }
}

}  // namespace tpde
