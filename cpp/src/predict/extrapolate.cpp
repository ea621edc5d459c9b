// AVX2 paths of the extrapolation (runtime-dispatched; the same results as extrapolate_one):
// sixteen 16-bit values or eight 32-bit values at a time.
#include "predict/extrapolate.hpp"

#if defined(TPDE_AVX2_EXTRAPOLATE)
#include <immintrin.h>

namespace tpde {
namespace {

template <bool kHi>
__attribute__((target("avx2"))) uint64_t run_avx2(const uint16_t* ref, const uint16_t* prev,
                                                  uint64_t n, const Extrapolation& e,
                                                  uint16_t* out) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i hi = _mm256_set1_epi16(static_cast<short>(e.slope >> 16));
  const __m256i lo = _mm256_set1_epi16(static_cast<short>(static_cast<uint16_t>(e.slope & 0xFFFF)));
  const __m256i lo_negative = _mm256_set1_epi16(static_cast<short>((e.slope & 0x8000) ? -1 : 0));
  const __m256i offset = _mm256_set1_epi32(e.offset);
  const __m256i rounding = _mm256_set1_epi32(1 << 15);
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ref + i));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prev + i));
    const __m256i same = _mm256_cmpgt_epi16(_mm256_xor_si256(r, q), _mm256_set1_epi16(-1));
    const __m256i d = _mm256_and_si256(_mm256_sub_epi16(r, q), same);
    const __m256i plo = _mm256_mullo_epi16(d, lo);
    const __m256i phi =
        _mm256_add_epi16(_mm256_mulhi_epi16(d, lo), _mm256_and_si256(d, lo_negative));
    const __m256i qlo = kHi ? _mm256_mullo_epi16(d, hi) : zero;
    const __m256i qhi = kHi ? _mm256_mulhi_epi16(d, hi) : zero;
    __m256i half[2];
    for (int h = 0; h < 2; ++h) {  // unpack and pack both work within 128-bit lanes: order kept
      const __m256i dlo = h ? _mm256_unpackhi_epi16(plo, phi) : _mm256_unpacklo_epi16(plo, phi);
      const __m256i rr = h ? _mm256_unpackhi_epi16(r, zero) : _mm256_unpacklo_epi16(r, zero);
      const __m256i moved = _mm256_srai_epi32(_mm256_add_epi32(dlo, rounding), 16);
      __m256i t = _mm256_add_epi32(rr, _mm256_add_epi32(moved, offset));
      if constexpr (kHi)
        t = _mm256_add_epi32(t,
                             h ? _mm256_unpackhi_epi16(qlo, qhi) : _mm256_unpacklo_epi16(qlo, qhi));
      const __m256i inside =
          _mm256_cmpeq_epi32(_mm256_srai_epi32(t, 15), _mm256_srli_epi32(rr, 15));
      half[h] = _mm256_blendv_epi8(rr, t, inside);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_packus_epi32(half[0], half[1]));
  }
  return i;
}

// 32-bit values in 64-bit lanes (even and odd positions apart). AVX2 has no 64-bit arithmetic
// shift, so signed quantities are shifted after adding 2^62 (they stay below 2^50 in size).
__attribute__((target("avx2"))) uint64_t run_avx2_32(const uint32_t* ref, const uint32_t* prev,
                                                     uint64_t n, const Extrapolation& e,
                                                     uint32_t* out) {
  const __m256i slope = _mm256_set1_epi64x(e.slope);
  const __m256i offset = _mm256_set1_epi64x(e.offset);
  const __m256i bias = _mm256_set1_epi64x(int64_t(1) << 62),
                rounding = _mm256_set1_epi64x(int64_t(1) << 15);
  const __m256i unbias16 = _mm256_set1_epi64x(int64_t(1) << 46);  // 2^62 >> 16
  const __m256i low32 = _mm256_set1_epi64x(0xFFFFFFFFll);
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ref + i));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prev + i));
    const __m256i same = _mm256_cmpgt_epi32(_mm256_xor_si256(r, q), _mm256_set1_epi32(-1));
    const __m256i d = _mm256_and_si256(_mm256_sub_epi32(r, q), same);  // |d| < 2^31
    __m256i half[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i dh = h ? _mm256_srli_epi64(d, 32) : d;  // low 32 bits: d (signed)
      const __m256i rh = h ? _mm256_srli_epi64(r, 32) : _mm256_and_si256(r, low32);
      const __m256i prod = _mm256_mul_epi32(dh, slope);  // |d slope| < 2^49
      const __m256i moved = _mm256_sub_epi64(
          _mm256_srli_epi64(_mm256_add_epi64(_mm256_add_epi64(prod, rounding), bias), 16),
          unbias16);
      const __m256i t = _mm256_add_epi64(_mm256_add_epi64(rh, moved), offset);
      // inside: t >> 31 == r >> 31 (t biased to stay non-negative for the logical shift)
      const __m256i inside = _mm256_cmpeq_epi64(_mm256_srli_epi64(_mm256_add_epi64(t, bias), 31),
                                                _mm256_srli_epi64(_mm256_add_epi64(rh, bias), 31));
      half[h] = _mm256_blendv_epi8(rh, t, inside);
    }
    // even positions in the low halves of the lanes, odd ones moved into the high halves
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_blend_epi32(half[0], _mm256_slli_epi64(half[1], 32), 0xAA));
  }
  return i;
}

}  // namespace

uint64_t extrapolate32_avx2(const uint32_t* ref, const uint32_t* prev, uint64_t n,
                            const Extrapolation& e, uint32_t* out) {
  return run_avx2_32(ref, prev, n, e, out);
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

uint64_t extrapolate16_avx2(const uint16_t* ref, const uint16_t* prev, uint64_t n,
                            const Extrapolation& e, uint16_t* out) {
  return (e.slope >> 16) != 0 ? run_avx2<true>(ref, prev, n, e, out)
                              : run_avx2<false>(ref, prev, n, e, out);
}

}  // namespace tpde
#endif
