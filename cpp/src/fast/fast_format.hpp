// Fast level: value scheme 3 (FastPlanes) of format version 6. docs/format.md section 14 is
// normative; this header only mirrors its constants and the residual maps that the encoder
// and the decoder share.
//
// A FastPlanes chunk splits a cheap per-element residual into byte planes and codes each
// plane raw, as one constant byte, or with a static order-0 rANS coder of 32 interleaved
// states (12-bit probabilities, 31-bit states, 16-bit renormalisation words). No context
// modelling: the point is speed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

namespace tpde {
namespace fast {

// The widest x86 instruction set the fast coder's runtime dispatch may pick:
// TPDE_FAST_SIMD=scalar|ssse3|avx2|avx512 (default: avx512, i.e. whatever the CPU has) caps
// it, so that the tests run every path on one machine. Every path gives the same bytes.
inline int simd_cap() {
  static const int cap = [] {
    const char* env = std::getenv("TPDE_FAST_SIMD");
    const std::string v = env ? env : "";
    return v == "scalar" ? 0 : v == "ssse3" ? 1 : v == "avx2" ? 2 : 3;
  }();
  return cap;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TPDE_NO_SIMD)
// Whether runtime dispatch may use x86 level `level` (1 SSSE3, 2 AVX2, 3 AVX-512F): within
// simd_cap and present on this CPU, with POPCNT where `popcnt`. Callers cache the answer.
inline bool simd_allows(int level, bool popcnt) {
  if (simd_cap() < level || (popcnt && !__builtin_cpu_supports("popcnt"))) return false;
  switch (level) {
    case 1: return __builtin_cpu_supports("ssse3");
    case 2: return __builtin_cpu_supports("avx2");
    default: return __builtin_cpu_supports("avx512f");
  }
}
#endif

constexpr uint8_t kValueSchemeFastPlanes = 3;

constexpr int kLanes = 32;     // rANS states a stream; value i uses state i mod 32 ...
constexpr int kStreams = 2;    // ... of stream (i / 32) mod 2: two independent word streams
constexpr int kProbBits = 12;  // frequencies sum to 4096
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kStateLow = 1u << 15;  // L: states stay in [L, 2^31) between symbols
constexpr uint32_t kStateHigh = 1u << 31;
constexpr size_t kStatesBytes = kLanes * 4;  // the 32 final states that start a stream

enum PlaneMode : uint8_t { kPlaneRaw = 0, kPlaneConstant = 1, kPlaneRans = 2 };

inline uint32_t load_u32le(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;  // little-endian hosts only, like the rest of tpde (cpp/src/common/mem.hpp)
}
inline uint16_t load_u16le(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint64_t load_u64le(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Residual maps (section 14.1). Delta chunks: zigzag(x - ref); standalone float chunks:
// rotl1(x), so that the top byte is the exponent field; standalone integer chunks: x.
template <typename U>
inline U fast_zigzag(U d) {
  using S = std::make_signed_t<U>;
  return static_cast<U>((d << 1) ^ static_cast<U>(static_cast<S>(d) >> (sizeof(U) * 8 - 1)));
}
template <typename U>
inline U fast_unzigzag(U v) {
  return static_cast<U>((v >> 1) ^ static_cast<U>(U(0) - (v & 1)));
}
template <typename U>
inline U fast_rotl1(U b) {
  return static_cast<U>((b << 1) | (b >> (sizeof(U) * 8 - 1)));
}
template <typename U>
inline U fast_rotr1(U v) {
  return static_cast<U>((v >> 1) | (v << (sizeof(U) * 8 - 1)));
}

}  // namespace fast
}  // namespace tpde
