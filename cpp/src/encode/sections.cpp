// Key histogram, encoder symbols and the rANS pass of a coded payload (encode/sections.hpp).
#include "encode/sections.hpp"

#include <algorithm>
#include <cstring>

#include "encode/frequencies.hpp"
#include "encode/rans_encoder.hpp"

namespace tpde {
namespace encoder {

// 32-bit counters in blocks, two interleaved copies (repeated keys would otherwise wait on
// the previous increment's store).
void count_keys(const uint16_t* keys, uint64_t coded, size_t table_size, Histogram& hist) {
  hist.assign(table_size, 0);
  if (coded < 16 * table_size) {  // small chunks: clearing and merging the tables would dominate
    for (uint64_t k = 0; k < coded; ++k) ++hist[keys[k]];
    return;
  }
  std::unique_ptr<uint32_t[]> h(new uint32_t[2 * table_size]);
  const uint16_t* kp = keys;
  for (uint64_t begin = 0; begin < coded;) {
    const uint64_t end = std::min<uint64_t>(coded, begin + (uint64_t(1) << 30));
    std::memset(h.get(), 0, 2 * table_size * sizeof(uint32_t));
    uint32_t* h0 = h.get();
    uint32_t* h1 = h.get() + table_size;
    uint64_t k = begin;
    for (; k + 2 <= end; k += 2) {
      ++h0[kp[k]];
      ++h1[kp[k + 1]];
    }
    if (k < end) ++h0[kp[k]];
    for (size_t j = 0; j < table_size; ++j) hist[j] += uint64_t(h0[j]) + h1[j];
    begin = end;
  }
}

void build_symbols(const Histogram& hist, int contexts, std::vector<uint32_t>& freqs,
                   std::unique_ptr<EncSym[]>& enc) {
  const size_t table_size = static_cast<size_t>(contexts) * kAlphabet;
  freqs.assign(table_size, 0);
  enc.reset(new EncSym[table_size]);  // filled for used symbols only
  for (int c = 0; c < contexts; ++c) {
    const size_t base = static_cast<size_t>(c) * kAlphabet;
    bool any = false;
    for (int s = 0; s < kAlphabet; ++s) any |= hist[base + s] != 0;
    if (!any) continue;
    normalize_frequencies(&hist[base], &freqs[base]);
    uint32_t cum = 0;
    for (int s = 0; s < kAlphabet; ++s) {
      if (freqs[base + s]) {
        const RansEncSymbol r(cum, freqs[base + s]);
        enc[base + s] = EncSym{r.x_max, r.rcp_freq, r.bias, r.cmpl_freq, r.rcp_shift};
      }
      cum += freqs[base + s];
    }
  }
}

// RansEncoder<2>::put, renormalised without a branch: at most two bytes leave per symbol
// since x < 2^31 and x_max >= 2^19. Two interleaved states: x codes value k, then the states
// swap (value k - 1 uses the other one).
uint8_t* rans_encode_keys(const uint16_t* keys, uint64_t coded, const EncSym* e, uint8_t* buf,
                          size_t cap) {
  uint8_t* rp = buf + cap;
  const uint16_t* kp = keys;
  uint32_t x = kRansLow, other = kRansLow;
  for (uint64_t k = coded; k-- > 0;) {
    const EncSym& s = e[kp[k]];
    const uint32_t out_bytes =
        static_cast<uint32_t>(x >= s.x_max) +
        static_cast<uint32_t>(static_cast<uint64_t>(x) >= (static_cast<uint64_t>(s.x_max) << 8));
    const uint16_t two = __builtin_bswap16(static_cast<uint16_t>(x));
    std::memcpy(rp - 2, &two, 2);
    rp -= out_bytes;
    x >>= 8 * out_bytes;
    const uint32_t q =
        static_cast<uint32_t>((static_cast<uint64_t>(x) * s.rcp_freq) >> 32) >> s.rcp_shift;
    const uint32_t coded_state = x + s.bias + q * s.cmpl_freq;
    x = other;
    other = coded_state;
  }
  // The section starts with state 0 (now `other`: value 0 used it), then state 1 (x).
  for (const uint32_t state : {x, other}) {
    rp -= 4;
    const uint32_t be = __builtin_bswap32(state);
    std::memcpy(rp, &be, 4);
  }
  return rp;
}

}  // namespace encoder
}  // namespace tpde
