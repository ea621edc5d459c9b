// Encoder side of the frequency tables: normalisation of counts, cost estimates and the
// serialisation that entropy/tables.cpp parses.
#include "encode/frequencies.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace tpde {

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

void normalize_frequencies(const uint64_t* counts, uint32_t* freqs) {
  uint64_t total = 0;
  int used = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    total += counts[s];
    used += counts[s] != 0;
  }
  uint32_t sum = 0;
  int largest = -1;
  for (int s = 0; s < kAlphabet; ++s) {
    if (!counts[s]) {
      freqs[s] = 0;
      continue;
    }
    uint64_t f = (counts[s] * kProbScale + total / 2) / total;
    if (f == 0) f = 1;
    freqs[s] = static_cast<uint32_t>(f);
    sum += freqs[s];
    if (largest < 0 || freqs[s] > freqs[largest]) largest = s;
  }
  (void)used;
  // Move the rounding error onto the symbols that can absorb it with the least cost.
  while (sum != kProbScale) {
    if (sum > kProbScale) {
      const uint32_t excess = sum - kProbScale;
      if (freqs[largest] > excess) {
        freqs[largest] -= excess;
        sum = kProbScale;
      } else {
        // Many tiny symbols: take one from every symbol that has more than 1.
        for (int s = 0; s < kAlphabet && sum > kProbScale; ++s)
          if (freqs[s] > 1) {
            --freqs[s];
            --sum;
          }
      }
    } else {
      freqs[largest] += kProbScale - sum;
      sum = kProbScale;
    }
  }
}

double estimate_context_bits(const uint64_t* counts, double scale) {
  uint64_t total = 0;
  int used = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    total += counts[s];
    used += counts[s] != 0;
  }
  if (total == 0) return 8.0;  // the single 0 byte of an unused context
  double bits = 0;
  const double log_total = std::log2(static_cast<double>(total));
  for (int s = 0; s < kAlphabet; ++s)
    if (counts[s]) bits += counts[s] * (log_total - std::log2(static_cast<double>(counts[s])));
  // Symbols scale with the chunk the sample stands for; the table (about 3 bytes per used
  // symbol, which also covers the precision loss of 12-bit frequencies) does not.
  return bits * scale + used * 24.0 + 8.0;
}

void write_tables(const std::vector<uint32_t>& freqs, int contexts, std::vector<uint8_t>& out) {
  for (int c = 0; c < contexts; ++c) {
    const uint32_t* f = &freqs[static_cast<size_t>(c) * kAlphabet];
    uint64_t used = 0;
    for (int s = 0; s < kAlphabet; ++s) used += f[s] != 0;
    put_varint(out, used);
    int last = -1;
    for (int s = 0; s < kAlphabet; ++s) {
      if (!f[s]) continue;
      put_varint(out, static_cast<uint64_t>(s - last - 1));
      put_varint(out, f[s] - 1);
      last = s;
    }
  }
}

}  // namespace tpde
