// Byte-plane split (encoder) and join (decoder) of the FastPlanes residual, with SSE2
// paths (baseline x86-64) for 2- and 4-byte elements. Header-only so that the encoder and
// the decoder each compile only the half they use.
#pragma once
#include <cstdint>

#include "fast_format.hpp"

#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
#include <emmintrin.h>
#define TPDE_FAST_SSE2 1
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <tmmintrin.h>
#define TPDE_FAST_SSSE3 1
#endif
#endif

namespace tpde {
namespace fast {

enum class Residual { kDelta, kRotate, kPlain };  // zigzag(x - ref), rotl1(x), x

template <typename U>
inline U forward(Residual kind, U x, U ref) {
  return kind == Residual::kDelta    ? fast_zigzag<U>(static_cast<U>(x - ref))
         : kind == Residual::kRotate ? fast_rotl1<U>(x)
                                     : x;
}

template <typename U>
inline U inverse(Residual kind, U v, U ref) {
  return kind == Residual::kDelta    ? static_cast<U>(ref + fast_unzigzag<U>(v))
         : kind == Residual::kRotate ? fast_rotr1<U>(v)
                                     : v;
}

#ifdef TPDE_FAST_SSE2
template <int kBits>
inline __m128i forward_sse2(Residual kind, __m128i x, __m128i ref) {
  if (kind == Residual::kDelta) {
    const __m128i d = kBits == 32 ? _mm_sub_epi32(x, ref) : _mm_sub_epi16(x, ref);
    return kBits == 32 ? _mm_xor_si128(_mm_slli_epi32(d, 1), _mm_srai_epi32(d, 31))
                       : _mm_xor_si128(_mm_slli_epi16(d, 1), _mm_srai_epi16(d, 15));
  }
  if (kind == Residual::kRotate)
    return kBits == 32 ? _mm_or_si128(_mm_slli_epi32(x, 1), _mm_srli_epi32(x, 31))
                       : _mm_or_si128(_mm_slli_epi16(x, 1), _mm_srli_epi16(x, 15));
  return x;
}

template <int kBits>
inline __m128i inverse_sse2(Residual kind, __m128i v, __m128i ref) {
  if (kind == Residual::kDelta) {
    const __m128i one = kBits == 32 ? _mm_set1_epi32(1) : _mm_set1_epi16(1);
    const __m128i sign = kBits == 32 ? _mm_sub_epi32(_mm_setzero_si128(), _mm_and_si128(v, one))
                                     : _mm_sub_epi16(_mm_setzero_si128(), _mm_and_si128(v, one));
    const __m128i d =
        _mm_xor_si128(kBits == 32 ? _mm_srli_epi32(v, 1) : _mm_srli_epi16(v, 1), sign);
    return kBits == 32 ? _mm_add_epi32(ref, d) : _mm_add_epi16(ref, d);
  }
  if (kind == Residual::kRotate)
    return kBits == 32 ? _mm_or_si128(_mm_srli_epi32(v, 1), _mm_slli_epi32(v, 31))
                       : _mm_or_si128(_mm_srli_epi16(v, 1), _mm_slli_epi16(v, 15));
  return v;
}

inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline void store128(void* p, __m128i v) { _mm_storeu_si128(static_cast<__m128i*>(p), v); }
#endif

#ifdef TPDE_FAST_SSSE3
// 4-byte elements, 16 at a time: one pshufb groups each vector's bytes by plane, a 4 x 4
// transpose of 32-bit groups gathers each plane's 16 bytes. Returns the values done.
__attribute__((target("ssse3"))) inline uint64_t split32_ssse3(Residual kind, const uint32_t* x,
                                                               const uint32_t* ref, uint64_t n,
                                                               uint8_t* planes) {
  const __m128i by_plane = _mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m128i zero = _mm_setzero_si128();
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m128i v[4];
    for (int q = 0; q < 4; ++q)
      v[q] = _mm_shuffle_epi8(
          forward_sse2<32>(kind, load128(x + i + 4 * q), ref ? load128(ref + i + 4 * q) : zero),
          by_plane);
    const __m128i t0 = _mm_unpacklo_epi32(v[0], v[1]), t1 = _mm_unpacklo_epi32(v[2], v[3]);
    const __m128i t2 = _mm_unpackhi_epi32(v[0], v[1]), t3 = _mm_unpackhi_epi32(v[2], v[3]);
    store128(planes + i, _mm_unpacklo_epi64(t0, t1));
    store128(planes + n + i, _mm_unpackhi_epi64(t0, t1));
    store128(planes + 2 * n + i, _mm_unpacklo_epi64(t2, t3));
    store128(planes + 3 * n + i, _mm_unpackhi_epi64(t2, t3));
  }
  return i;
}

inline bool has_ssse3() {
  static const bool yes = simd_allows(1, false);
  return yes;
}
#endif

// planes: W planes of n bytes each, plane k at planes + k n, holding byte k of each residual.
template <typename U>
inline void split_planes(Residual kind, const U* x, const U* ref, uint64_t n, uint8_t* planes) {
  constexpr int W = sizeof(U);
  uint64_t i = 0;
#ifdef TPDE_FAST_SSSE3
  if constexpr (W == 4) {
    if (has_ssse3()) i = split32_ssse3(kind, x, ref, n, planes);
  }
#endif
#ifdef TPDE_FAST_SSE2
  const __m128i zero = _mm_setzero_si128();
  if constexpr (W == 2) {
    const __m128i low = _mm_set1_epi16(0xFF);
    for (; i + 16 <= n; i += 16) {
      const __m128i a = forward_sse2<16>(kind, load128(x + i), ref ? load128(ref + i) : zero);
      const __m128i b =
          forward_sse2<16>(kind, load128(x + i + 8), ref ? load128(ref + i + 8) : zero);
      store128(planes + i, _mm_packus_epi16(_mm_and_si128(a, low), _mm_and_si128(b, low)));
      store128(planes + n + i, _mm_packus_epi16(_mm_srli_epi16(a, 8), _mm_srli_epi16(b, 8)));
    }
  } else if constexpr (W == 4) {
    const __m128i low = _mm_set1_epi32(0xFF);
    for (i = i - i % 16; i + 16 <= n; i += 16) {
      __m128i v[4];
      for (int q = 0; q < 4; ++q)
        v[q] =
            forward_sse2<32>(kind, load128(x + i + 4 * q), ref ? load128(ref + i + 4 * q) : zero);
      for (int k = 0; k < 4; ++k) {
        __m128i b[4];
        for (int q = 0; q < 4; ++q) b[q] = _mm_and_si128(_mm_srli_epi32(v[q], 8 * k), low);
        store128(planes + k * n + i,
                 _mm_packus_epi16(_mm_packs_epi32(b[0], b[1]), _mm_packs_epi32(b[2], b[3])));
      }
    }
  }
#endif
  for (; i < n; ++i) {
    const U v = forward<U>(kind, x[i], ref ? ref[i] : U(0));
    for (int k = 0; k < W; ++k) planes[k * n + i] = static_cast<uint8_t>(v >> (8 * k));
  }
}

// The inverse: planes[k] points at plane k (n bytes).
template <typename U>
inline void join_planes(Residual kind, const uint8_t* const* planes, const U* ref, uint64_t n,
                        U* out) {
  constexpr int W = sizeof(U);
  uint64_t i = 0;
#ifdef TPDE_FAST_SSE2
  const __m128i zero = _mm_setzero_si128();
  if constexpr (W == 2) {
    for (; i + 16 <= n; i += 16) {
      const __m128i p0 = load128(planes[0] + i), p1 = load128(planes[1] + i);
      store128(out + i,
               inverse_sse2<16>(kind, _mm_unpacklo_epi8(p0, p1), ref ? load128(ref + i) : zero));
      store128(out + i + 8, inverse_sse2<16>(kind, _mm_unpackhi_epi8(p0, p1),
                                             ref ? load128(ref + i + 8) : zero));
    }
  } else if constexpr (W == 4) {
    for (; i + 16 <= n; i += 16) {
      const __m128i p0 = load128(planes[0] + i), p1 = load128(planes[1] + i);
      const __m128i p2 = load128(planes[2] + i), p3 = load128(planes[3] + i);
      const __m128i a[2] = {_mm_unpacklo_epi8(p0, p1), _mm_unpackhi_epi8(p0, p1)};
      const __m128i b[2] = {_mm_unpacklo_epi8(p2, p3), _mm_unpackhi_epi8(p2, p3)};
      for (int h = 0; h < 2; ++h) {
        const uint64_t at = i + 8 * h;
        store128(out + at, inverse_sse2<32>(kind, _mm_unpacklo_epi16(a[h], b[h]),
                                            ref ? load128(ref + at) : zero));
        store128(out + at + 4, inverse_sse2<32>(kind, _mm_unpackhi_epi16(a[h], b[h]),
                                                ref ? load128(ref + at + 4) : zero));
      }
    }
  }
#endif
  for (; i < n; ++i) {
    U v = 0;
    for (int k = 0; k < W; ++k) v = static_cast<U>(v | (U(planes[k][i]) << (8 * k)));
    out[i] = inverse<U>(kind, v, ref ? ref[i] : U(0));
  }
}

}  // namespace fast
}  // namespace tpde
