// Little-endian loads/stores and bit scans: the only endian-aware code in tpde.
#pragma once
#include <cstdint>
#include <cstring>

namespace tpde {

template <typename T>
inline T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = byteswap(v);
#endif
  return v;
}

template <typename T>
inline void store_le(uint8_t* p, T v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = byteswap(v);
#endif
  std::memcpy(p, &v, sizeof(T));
}

// Number of significant bits: 0 for 0, 64 for values with the top bit set.
inline int bit_length(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

}  // namespace tpde
