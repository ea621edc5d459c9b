// Scaled segments of a delta chunk's reference (payload transform 2, docs/format.md
// section 4.5): where a value had no gradient since the last save, Adam's moments only
// decayed, so the value is its reference times beta^k. Selected segments are predicted
// as that product, rounded once, in integer arithmetic on the bit patterns, so encoder
// and decoder compute the same prediction on every platform.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/symbols.hpp"

namespace tpde {

constexpr uint8_t kTransformScaled = 2;
constexpr size_t kScaledFixedBytes = 12;  // u32 scale mantissa, i32 scale shift, u32 segment length
constexpr int32_t kMinScaleShift = -16;
constexpr int32_t kMaxScaleShift = 96;

// scale = mantissa / 2^(32 + shift), mantissa in [2^31, 2^32).
struct ScaledSegments {
  uint32_t mantissa = 0;
  int32_t shift = 0;
  uint32_t segment = 0;         // values per segment (the last one may be shorter)
  std::vector<uint8_t> bitmap;  // bit j (byte j / 8, bit j % 8): segment j is scaled
};

inline bool scale_valid(uint32_t mantissa, int32_t shift) {
  return (mantissa >> 31) == 1 && shift >= kMinScaleShift && shift <= kMaxScaleShift;
}

inline uint64_t segment_count(uint64_t n, uint32_t segment) {
  return segment ? (n + segment - 1) / segment : 0;
}

inline bool segment_selected(const std::vector<uint8_t>& bitmap, uint64_t j) {
  return (bitmap[j >> 3] >> (j & 7)) & 1;
}

// The significand 2^m + mantissa_field times the scale, rounded to nearest (ties to even)
// to m + 1 bits: the new mantissa field, and what the exponent field moves by.
struct ScaledSignificand {
  uint64_t field;
  int64_t exponent_move;
};

inline ScaledSignificand scale_significand(uint64_t mantissa_field, uint32_t mantissa,
                                           int32_t shift, int m) {
  const uint64_t product =
      ((uint64_t(1) << m) | mantissa_field) * mantissa;  // in [2^(m + 31), 2^(m + 33))
  const int drop = 31 + static_cast<int>(product >> (m + 32));
  // Round to nearest, ties to even: add half - 1, plus 1 when the kept part is odd.
  const uint64_t lsb = (product >> drop) & 1;
  uint64_t q = (product + (uint64_t(1) << (drop - 1)) - 1 + lsb) >> drop;
  const uint64_t carry = q >> (m + 1);  // rounding reached 2^(m + 1)
  q >>= carry;
  return {q & ((uint64_t(1) << m) - 1), drop + static_cast<int64_t>(carry) - 32 - shift};
}

// r (mantissa bits m, exponent bits e) given its field's scaled significand: the scaled
// value, or r itself where r is zero, subnormal, infinite or NaN, or the product would not
// be a normal number.
template <typename U>
inline U scale_with(U r, ScaledSignificand sc, int m, int e) {
  const uint64_t all_ones = (uint64_t(1) << e) - 1;
  const uint64_t expo = (static_cast<uint64_t>(r) >> m) & all_ones;
  const int64_t new_expo = static_cast<int64_t>(expo) + sc.exponent_move;
  const bool keep =
      expo == 0 || expo == all_ones || new_expo < 1 || new_expo >= static_cast<int64_t>(all_ones);
  const U sign = static_cast<U>(r & (U(1) << (kBits<U> - 1)));
  const U scaled =
      static_cast<U>(sign | (static_cast<U>(new_expo) << m) | static_cast<U>(sc.field));
  return keep ? r : scaled;
}

// The normal float r times the scale, rounded once to nearest (ties to even); r itself
// where r or the product is not a normal number.
template <typename U>
inline U scale_one(U r, uint32_t mantissa, int32_t shift, int m, int e) {
  return scale_with<U>(
      r, scale_significand(static_cast<uint64_t>(r) & ((uint64_t(1) << m) - 1), mantissa, shift, m),
      m, e);
}

// The prediction and the prev-reference a transform-2 chunk is coded against: selected
// segments get the scaled reference, and that prediction again as prev-reference (so the
// prev-residual contexts see a zero move there); the others keep ref and prev. Without a
// prev-reference (format 5) prev and prev_out are null and only pred is written. 16-bit
// floats (at most 2^10 mantissa fields) look their scaled significand up in a table.
template <typename U>
void apply_scaled(const U* ref, const U* prev, uint64_t n, const ScaledSegments& s, int m, int e,
                  U* pred, U* prev_out) {
  std::vector<ScaledSignificand> table;
  if (sizeof(U) == 2) {
    table.resize(size_t(1) << m);
    for (uint64_t f = 0; f < table.size(); ++f)
      table[f] = scale_significand(f, s.mantissa, s.shift, m);
  }
  const uint64_t field_mask = (uint64_t(1) << m) - 1;
  const uint64_t segments = segment_count(n, s.segment);
  for (uint64_t j = 0; j < segments; ++j) {
    const uint64_t begin = j * s.segment, end = begin + s.segment < n ? begin + s.segment : n;
    const size_t bytes = (end - begin) * sizeof(U);
    if (!segment_selected(s.bitmap, j)) {
      std::memcpy(pred + begin, ref + begin, bytes);
      if (prev_out) std::memcpy(prev_out + begin, prev + begin, bytes);
      continue;
    }
    if (sizeof(U) == 2) {
      for (uint64_t i = begin; i < end; ++i)
        pred[i] = scale_with<U>(ref[i], table[ref[i] & field_mask], m, e);
    } else {
      for (uint64_t i = begin; i < end; ++i)
        pred[i] = scale_one<U>(ref[i], s.mantissa, s.shift, m, e);
    }
    if (prev_out) std::memcpy(prev_out + begin, pred + begin, bytes);
  }
}

}  // namespace tpde
