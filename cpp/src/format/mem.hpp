// Little-endian loads/stores and bit scans. The chunk format is little-endian, and tpde
// builds for little-endian hosts only: beside these helpers, the lossy block's f64 fields,
// the SIMD paths and the raw array copies assume it, so a big-endian build stops here.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "tpde supports little-endian hosts only"
#endif

namespace tpde {

template <typename T>
inline T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <typename T>
inline void store_le(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// Number of significant bits: 0 for 0, 64 for values with the top bit set.
inline int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

}  // namespace tpde
