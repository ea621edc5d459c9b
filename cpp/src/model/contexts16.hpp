// SSE2 evaluation of the reference / prev-reference contexts (kRefExponent, kPrevResidual,
// kRefExponentPrevResidual) for eight 16-bit values at once: the same values as
// context_of in symbols.hpp. Encoder and decoder both use it, so their contexts cannot
// drift apart; builds without SSE2 (or with TPDE_NO_SIMD) use context_of alone.
#pragma once
#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
#define TPDE_SSE2_CONTEXTS 1
#include <emmintrin.h>

#include <cstdint>

#include "model/symbols.hpp"

namespace tpde {

// bit_length of eight 16-bit lanes (as 16-bit lanes): the exponent of the exact float.
inline __m128i bit_length16(__m128i z) {
  const __m128i zero = _mm_setzero_si128(), bias = _mm_set1_epi32(126);
  const __m128i lo =
      _mm_srli_epi32(_mm_castps_si128(_mm_cvtepi32_ps(_mm_unpacklo_epi16(z, zero))), 23);
  const __m128i hi =
      _mm_srli_epi32(_mm_castps_si128(_mm_cvtepi32_ps(_mm_unpackhi_epi16(z, zero))), 23);
  // 0 converts to 0.0: exponent field 0, and 0 - 126 saturates to 0 below.
  return _mm_max_epi16(_mm_packs_epi32(_mm_sub_epi32(lo, bias), _mm_sub_epi32(hi, bias)), zero);
}

class Contexts16 {
 public:
  Contexts16(int context_param, int mant, int expb)
      : top_(_mm_set1_epi16(static_cast<short>(context_param))),
        emask_(_mm_set1_epi16(static_cast<short>((1 << expb) - 1))),
        mshift_(_mm_cvtsi32_si128(mant)) {}

  // Contexts of positions i .. i + 7 as 16-bit lanes.
  template <ContextScheme S>
  __m128i at(const uint16_t* ref, const uint16_t* prev, uint64_t i) const {
    const __m128i zero = _mm_setzero_si128();
    __m128i c = zero;  // kNone: context 0 (and ref may be null)
    if constexpr (S == ContextScheme::kRefExponent ||
                  S == ContextScheme::kRefExponentPrevResidual) {
      const __m128i rv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ref + i));
      const __m128i e = _mm_and_si128(_mm_srl_epi16(rv, mshift_), emask_);
      c = _mm_min_epi16(_mm_max_epi16(_mm_sub_epi16(top_, e), zero),
                        _mm_set1_epi16(kExponentContexts - 1));
    }
    if constexpr (S == ContextScheme::kPrevResidual ||
                  S == ContextScheme::kRefExponentPrevResidual) {
      const __m128i rv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ref + i));
      const __m128i d =
          _mm_sub_epi16(rv, _mm_loadu_si128(reinterpret_cast<const __m128i*>(prev + i)));
      const __m128i b = bit_length16(_mm_xor_si128(_mm_slli_epi16(d, 1), _mm_srai_epi16(d, 15)));
      if constexpr (S == ContextScheme::kPrevResidual) {
        c = b;
      } else {  // class_bucket: 0, 1 (1..4), 2 (5..8), 3 (> 8)
        const __m128i bucket =
            _mm_sub_epi16(_mm_sub_epi16(_mm_sub_epi16(zero, _mm_cmpgt_epi16(b, zero)),
                                        _mm_cmpgt_epi16(b, _mm_set1_epi16(4))),
                          _mm_cmpgt_epi16(b, _mm_set1_epi16(8)));
        c = _mm_or_si128(_mm_slli_epi16(c, 2), bucket);
      }
    }
    return c;
  }

 private:
  __m128i top_, emask_, mshift_;
};

}  // namespace tpde
#endif
