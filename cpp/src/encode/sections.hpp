// The coded payload's sections, written from the values, symbols and keys that the chunk
// encoder computed (docs/format.md, "Payload"): Elias-delta gaps, tail bits, the key
// histogram that sets the frequency tables, and the rANS pass over the keys.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "entropy/bitstream.hpp"
#include "entropy/elias.hpp"
#include "entropy/tables.hpp"
#include "model/symbols.hpp"

namespace tpde {
namespace encoder {

// Gaps: an Elias-delta code of g takes at most 4 g bits, and the gaps sum to <= n, so the
// buffer needs n / 2 + 16 bytes. Returns the bytes written.
template <typename U>
size_t write_gaps(const U* values, uint64_t n, uint8_t* out) {
  BitWriter w(out);
  uint64_t last = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (values[i] == 0) continue;
    put_elias_delta(w, i + 1 - last);
    last = i + 1;
  }
  return static_cast<size_t>(w.finish() - out);
}

// Tails: at most W - 3 bits a value (n * sizeof(U) + 16 bytes of buffer). With elias, zero
// values are not coded. Returns the bytes written.
template <typename U>
size_t write_tails(const U* values, const uint8_t* symbols, uint64_t n, bool elias,
                   bool float_split, uint8_t* out) {
  BitWriter w(out);
  if (float_split) {
    constexpr int tb = kBits<U> - 8;
    constexpr U mask = static_cast<U>((U(1) << tb) - 1);
    for (uint64_t i = 0; i < n; ++i) {
      const U v = values[i];
      if (elias && v == 0) continue;
      if constexpr (tb > 32) {
        w.put(static_cast<uint64_t>(v & mask) >> 32, tb - 32);
        w.put(static_cast<uint64_t>(v) & 0xFFFFFFFFu, 32);
      } else {
        w.put(v & mask, tb);
      }
    }
  } else {
    // Zeros (and all v < 8) have no tail bits, so elias needs no skip.
    uint8_t tail_bits[kAlphabet];
    for (int sym = 0; sym < kAlphabet; ++sym)
      tail_bits[sym] = static_cast<uint8_t>(log_bucket_tail_bits(sym));
    for (uint64_t i = 0; i < n; ++i) {
      const int tb = tail_bits[symbols[i]];
      const uint64_t v = values[i];
      if constexpr (kBits<U> > 32) {
        if (tb > 32) {
          w.put((v >> 32) & ((uint64_t(1) << (tb - 32)) - 1), tb - 32);
          w.put(v & 0xFFFFFFFFu, 32);
          continue;
        }
      }
      w.put(v & ((uint64_t(1) << tb) - 1), tb);
    }
  }
  return static_cast<size_t>(w.finish() - out);
}

// Histogram of keys (context << 8 | symbol) into hist (table_size entries, zeroed here).
void count_keys(const uint16_t* keys, uint64_t coded, size_t table_size, Histogram& hist);

// Encoder view of a symbol: the fields RansEncoder::put uses, 16 bytes.
struct EncSym {
  uint32_t x_max, rcp_freq, bias;
  uint16_t cmpl_freq, rcp_shift;
};

// Frequencies (kAlphabet per context, normalised for the contexts that occur) and the
// encoder symbols of the used ones, from the histogram.
void build_symbols(const Histogram& hist, int contexts, std::vector<uint32_t>& freqs,
                   std::unique_ptr<EncSym[]>& enc);

// rANS over keys[0..coded) with two interleaved states, written backwards so that it ends at
// buf + cap (cap >= 2 coded + 16); returns where the section starts.
uint8_t* rans_encode_keys(const uint16_t* keys, uint64_t coded, const EncSym* e, uint8_t* buf,
                          size_t cap);

}  // namespace encoder
}  // namespace tpde
