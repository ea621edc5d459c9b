// Elias-gamma and Elias-delta codes of positive integers over bitstream.hpp.
//   gamma(g): (L-1) zeros, then g in L bits               (L = bit length of g)
//   delta(g): gamma(L), then the low L-1 bits of g
// Readers return 0 (never a valid code) for a malformed code.
#pragma once
#include <cstdint>

#include "entropy/bitstream.hpp"
#include "format/mem.hpp"

namespace tpde {

inline void put_elias_gamma(BitWriter& w, uint64_t g) {
  const int len = bit_length(g);
  w.put(0, len - 1 > 32 ? 32 : len - 1);
  if (len - 1 > 32) w.put(0, len - 1 - 32);
  w.put_wide(g, len);
}

inline uint64_t get_elias_gamma(BitReader& r) {
  // Only the top 57 bits of a peek are guaranteed real, so count zeros 32 at a time.
  int zeros = 0;
  for (;;) {
    const uint64_t w = r.peek64();
    if ((w >> 32) != 0) {
      const int z = __builtin_clzll(w);
      zeros += z;
      r.skip(z);
      break;
    }
    zeros += 32;
    r.skip(32);
    if (zeros > 63) return 0;
  }
  if (zeros > 63) return 0;
  return r.get_wide(zeros + 1);
}

inline void put_elias_delta(BitWriter& w, uint64_t g) {
  const int len = bit_length(g);
  const int len_len = bit_length(static_cast<uint64_t>(len));
  w.put(static_cast<uint64_t>(len), 2 * len_len - 1);  // gamma(len): leading zeros implied
  if (len > 1) w.put_wide(g & ((uint64_t(1) << (len - 1)) - 1), len - 1);
}

inline uint64_t get_elias_delta(BitReader& r) {
  const uint64_t w = r.peek64();
  const int zeros = w ? __builtin_clzll(w) : 64;
  if (zeros > 6) return 0;  // bit length would exceed 64
  const int len = static_cast<int>(r.get(2 * zeros + 1));
  if (len < 1 || len > 64) return 0;
  if (len == 1) return 1;
  return (uint64_t(1) << (len - 1)) | r.get_wide(len - 1);
}

}  // namespace tpde
