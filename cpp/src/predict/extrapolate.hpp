// Linear extrapolation of a delta chunk's reference from its prev-reference (payload
// transform 1, docs/format.md section 4.4): integer arithmetic on the bit patterns, so
// encoder and decoder compute the same prediction on every platform.
#pragma once
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
#include <emmintrin.h>
#endif

#include "model/symbols.hpp"

namespace tpde {

constexpr uint8_t kTransformNone = 0;
constexpr uint8_t kTransformExtrapolate = 1;
constexpr size_t kExtrapolationBytes = 8;  // i32 slope (Q16), i32 offset, after the prefix
constexpr int kSlopeShift = 16;
constexpr int32_t kMaxSlope = int32_t(1) << 18;  // |slope| <= 4 x 2^16

struct Extrapolation {
  int32_t slope = 0;   // alpha * 2^16
  int32_t offset = 0;  // added to every predicted bit pattern
};

// Parameter limits of the format: |slope| <= 2^18, |offset| <= 2^(W-1). They keep every
// intermediate of the 16-bit vector path within 32 bits.
template <typename U>
inline bool extrapolation_valid(const Extrapolation& e) {
  const int64_t half = int64_t(1) << (kBits<U> - 1);
  return e.slope >= -kMaxSlope && e.slope <= kMaxSlope && e.offset >= -half && e.offset <= half;
}

// Prediction of one value from its reference r and prev-reference q (bit patterns): the
// reference moved on by slope x (r - q) / 2^16 + offset where r and q share a sign,
// staying within r's sign half; r itself where the move would leave it.
template <typename U>
inline U extrapolate_one(U r, U q, const Extrapolation& e) {
  static_assert(sizeof(U) <= 4, "extrapolation is defined for 16- and 32-bit values");
  constexpr int s = kBits<U> - 1;
  const int64_t ri = static_cast<int64_t>(r);
  const int64_t d = (r >> s) == (q >> s) ? ri - static_cast<int64_t>(q) : 0;
  const int64_t t =
      ri + ((d * e.slope + (int64_t(1) << (kSlopeShift - 1))) >> kSlopeShift) + e.offset;
  const bool inside = t >= 0 && t < (int64_t(1) << kBits<U>) && (t >> s) == (ri >> s);
  return inside ? static_cast<U>(t) : r;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TPDE_NO_SIMD)
#define TPDE_AVX2_EXTRAPOLATE 1
bool cpu_has_avx2();
// Sixteen values at a time where the CPU has AVX2 (extrapolate.cpp); returns how many it did.
uint64_t extrapolate16_avx2(const uint16_t* ref, const uint16_t* prev, uint64_t n,
                            const Extrapolation& e, uint16_t* out);
uint64_t extrapolate32_avx2(const uint32_t* ref, const uint32_t* prev, uint64_t n,
                            const Extrapolation& e, uint32_t* out);
#endif

#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
// Eight 16-bit values at once, the same results as extrapolate_one (parameters within
// extrapolation_valid). With slope = 2^16 hi + lo (0 <= lo < 2^16):
// floor((d slope + 2^15) / 2^16) = d hi + floor((d lo + 2^15) / 2^16), all within 32 bits.
class Extrapolate16 {
 public:
  explicit Extrapolate16(const Extrapolation& e)
      : hi_(_mm_set1_epi16(static_cast<short>(e.slope >> 16))),
        lo_(_mm_set1_epi16(static_cast<short>(static_cast<uint16_t>(e.slope & 0xFFFF)))),
        lo_negative_(_mm_set1_epi16(static_cast<short>((e.slope & 0x8000) ? -1 : 0))),
        offset_(_mm_set1_epi32(e.offset)),
        needs_hi_((e.slope >> 16) != 0) {}

  // The d x hi term vanishes for 0 <= alpha < 1 (hi = 0), the usual case.
  bool needs_hi() const { return needs_hi_; }

  template <bool kHi>
  __m128i step(__m128i r, __m128i q) const {
    const __m128i zero = _mm_setzero_si128();
    // d = r - q where the sign bits agree (|d| < 2^15), else 0
    const __m128i same = _mm_cmpgt_epi16(_mm_xor_si128(r, q), _mm_set1_epi16(-1));
    const __m128i d = _mm_and_si128(_mm_sub_epi16(r, q), same);
    // d x lo as 32-bit lanes: mulhi_epi16 reads lo as signed, so add d back where lo >= 2^15
    const __m128i plo = _mm_mullo_epi16(d, lo_);
    const __m128i phi = _mm_add_epi16(_mm_mulhi_epi16(d, lo_), _mm_and_si128(d, lo_negative_));
    // d x hi (|hi| <= 4) as 32-bit lanes
    const __m128i qlo = kHi ? _mm_mullo_epi16(d, hi_) : zero;
    const __m128i qhi = kHi ? _mm_mulhi_epi16(d, hi_) : zero;
    __m128i out[2];
    for (int h = 0; h < 2; ++h) {
      const __m128i dlo = h ? _mm_unpackhi_epi16(plo, phi) : _mm_unpacklo_epi16(plo, phi);
      const __m128i rr = h ? _mm_unpackhi_epi16(r, zero) : _mm_unpacklo_epi16(r, zero);
      // t = r + d hi + floor((d lo + 2^15) / 2^16) + offset
      const __m128i moved = _mm_srai_epi32(_mm_add_epi32(dlo, rounding_), 16);
      __m128i t = _mm_add_epi32(rr, _mm_add_epi32(moved, offset_));
      if constexpr (kHi)
        t = _mm_add_epi32(t, h ? _mm_unpackhi_epi16(qlo, qhi) : _mm_unpacklo_epi16(qlo, qhi));
      // inside: t >> 15 (arithmetic) equals r >> 15, which also excludes t < 0 and t >= 2^16
      const __m128i inside = _mm_cmpeq_epi32(_mm_srai_epi32(t, 15), _mm_srli_epi32(rr, 15));
      const __m128i v = _mm_or_si128(_mm_and_si128(inside, t), _mm_andnot_si128(inside, rr));
      // to signed 16-bit range for the saturating pack
      out[h] = _mm_sub_epi32(v, rounding_);
    }
    return _mm_xor_si128(_mm_packs_epi32(out[0], out[1]),
                         _mm_set1_epi16(static_cast<short>(0x8000)));
  }

 private:
  __m128i hi_, lo_, lo_negative_, offset_;
  bool needs_hi_;
  const __m128i rounding_ = _mm_set1_epi32(1 << 15);  // also the shift into the signed 16-bit range
};
#endif

// allow_avx2 = false keeps to the SSE2 / scalar paths (the unit tests compare every path).
template <typename U>
inline void extrapolate(const U* ref, const U* prev, uint64_t n, const Extrapolation& e, U* out,
                        bool allow_avx2 = true) {
  uint64_t i = 0;
  (void)allow_avx2;
#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
#if defined(TPDE_AVX2_EXTRAPOLATE)
  if constexpr (sizeof(U) == 4) {
    if (allow_avx2 && cpu_has_avx2()) i = extrapolate32_avx2(ref, prev, n, e, out);
  }
#endif
  if constexpr (sizeof(U) == 2) {
#if defined(TPDE_AVX2_EXTRAPOLATE)
    if (allow_avx2 && cpu_has_avx2()) i = extrapolate16_avx2(ref, prev, n, e, out);
#endif
    const Extrapolate16 x(e);
    auto run = [&](auto with_hi) {
      for (; i + 8 <= n; i += 8) {
        const __m128i r = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ref + i));
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + i));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                         x.step<decltype(with_hi)::value>(r, q));
      }
    };
    if (x.needs_hi())
      run(std::true_type{});
    else
      run(std::false_type{});
  }
#endif
  for (; i < n; ++i) out[i] = extrapolate_one<U>(ref[i], prev[i], e);
}

// Widths the transform is defined for: 16- and 32-bit floats.
inline bool extrapolation_allowed(DType dtype) { return is_float(dtype) && dtype_size(dtype) <= 4; }

}  // namespace tpde
