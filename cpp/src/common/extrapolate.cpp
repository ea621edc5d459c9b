// AVX2 path of the 16-bit extrapolation (runtime-dispatched; the same results as
// extrapolate_one, as the SSE2 path in extrapolate.hpp, sixteen values at a time).
#include "extrapolate.hpp"

#if defined(TPDE_AVX2_EXTRAPOLATE)
#include <immintrin.h>

namespace tpde {
namespace {

template <bool kHi>
__attribute__((target("avx2"))) uint64_t run_avx2(const uint16_t* ref, const uint16_t* prev, uint64_t n,
                                                 const Extrapolation& e, uint16_t* out) {
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
    const __m256i phi = _mm256_add_epi16(_mm256_mulhi_epi16(d, lo), _mm256_and_si256(d, lo_negative));
    const __m256i qlo = kHi ? _mm256_mullo_epi16(d, hi) : zero;
    const __m256i qhi = kHi ? _mm256_mulhi_epi16(d, hi) : zero;
    __m256i half[2];
    for (int h = 0; h < 2; ++h) {  // unpack and pack both work within 128-bit lanes: order kept
      const __m256i dlo = h ? _mm256_unpackhi_epi16(plo, phi) : _mm256_unpacklo_epi16(plo, phi);
      const __m256i rr = h ? _mm256_unpackhi_epi16(r, zero) : _mm256_unpacklo_epi16(r, zero);
      const __m256i moved = _mm256_srai_epi32(_mm256_add_epi32(dlo, rounding), 16);
      __m256i t = _mm256_add_epi32(rr, _mm256_add_epi32(moved, offset));
      if constexpr (kHi) t = _mm256_add_epi32(t, h ? _mm256_unpackhi_epi16(qlo, qhi) : _mm256_unpacklo_epi16(qlo, qhi));
      const __m256i inside = _mm256_cmpeq_epi32(_mm256_srai_epi32(t, 15), _mm256_srli_epi32(rr, 15));
      half[h] = _mm256_blendv_epi8(rr, t, inside);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_packus_epi32(half[0], half[1]));
  }
  return i;
}

}  // namespace

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}

uint64_t extrapolate16_avx2(const uint16_t* ref, const uint16_t* prev, uint64_t n, const Extrapolation& e,
                            uint16_t* out) {
  return (e.slope >> 16) != 0 ? run_avx2<true>(ref, prev, n, e, out) : run_avx2<false>(ref, prev, n, e, out);
}

}  // namespace tpde
#endif
