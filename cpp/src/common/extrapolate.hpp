// Linear extrapolation of a delta chunk's reference from its prev-reference (payload
// transform 1, docs/format.md section 4.4): integer arithmetic on the bit patterns, so
// encoder and decoder compute the same prediction on every platform.
#pragma once
#include <cstdint>

#include "symbols.hpp"

namespace tpde {

constexpr uint8_t kTransformNone = 0;
constexpr uint8_t kTransformExtrapolate = 1;
constexpr size_t kExtrapolationBytes = 8;  // i32 slope (Q16), i32 offset, after the prefix
constexpr int kSlopeShift = 16;

struct Extrapolation {
  int32_t slope = 0;   // alpha * 2^16
  int32_t offset = 0;  // added to every predicted bit pattern
};

// Prediction of one value from its reference r and prev-reference q (bit patterns): the
// reference moved on by slope x (r - q) + offset where r and q share a sign, staying within
// r's sign half; r itself where the move would leave it.
template <typename U>
inline U extrapolate_one(U r, U q, const Extrapolation& e) {
  constexpr int s = kBits<U> - 1;
  const int64_t ri = static_cast<int64_t>(r);
  const int64_t d = (r >> s) == (q >> s) ? ri - static_cast<int64_t>(q) : 0;
  const int64_t t = ri + ((d * e.slope + (int64_t(1) << (kSlopeShift - 1))) >> kSlopeShift) + e.offset;
  const bool inside = t >= 0 && t < (int64_t(1) << kBits<U>) && (t >> s) == (ri >> s);
  return inside ? static_cast<U>(t) : r;
}

template <typename U>
inline void extrapolate(const U* ref, const U* prev, uint64_t n, const Extrapolation& e, U* out) {
  for (uint64_t i = 0; i < n; ++i) out[i] = extrapolate_one<U>(ref[i], prev[i], e);
}

// Widths the transform is defined for: 16- and 32-bit floats.
inline bool extrapolation_allowed(DType dtype) {
  return is_float(dtype) && dtype_size(dtype) <= 4;
}

}  // namespace tpde
