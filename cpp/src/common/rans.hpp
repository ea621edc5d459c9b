// Byte-oriented rANS (a range coder of the asymmetric-numeral-system family) with
// static per-context frequency tables.
//
// READ ME FIRST
// - Probabilities have kProbBits = 12 bits: every table's frequencies sum to 4096 exactly.
// - The encoder runs over the symbols in REVERSE order and writes its bytes backwards;
//   the decoder then reads forwards and yields symbols in forward order.
// - State x stays in [kRansLow, kRansLow << 8) between symbols; 4 bytes flush the final state.
// - The decoder never reads past its buffer: missing bytes read as 0 and overran() reports it.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace tpde {

constexpr int kProbBits = 12;
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kRansLow = 1u << 23;

struct EncSymbol {
  uint32_t freq = 0;
  uint32_t start = 0;
};

class RansEncoder {
 public:
  // Bytes are produced back to front into a growing buffer; bytes() returns them in order.
  void put(const EncSymbol& s) {
    uint32_t x = state_;
    const uint32_t x_max = ((kRansLow >> kProbBits) << 8) * s.freq;
    while (x >= x_max) {
      rev_.push_back(static_cast<uint8_t>(x & 0xFF));
      x >>= 8;
    }
    state_ = ((x / s.freq) << kProbBits) + (x % s.freq) + s.start;
  }

  std::vector<uint8_t> finish() {
    for (int i = 0; i < 4; ++i) {
      rev_.push_back(static_cast<uint8_t>(state_ & 0xFF));
      state_ >>= 8;
    }
    return std::vector<uint8_t>(rev_.rbegin(), rev_.rend());
  }

 private:
  uint32_t state_ = kRansLow;
  std::vector<uint8_t> rev_;
};

// One decode slot: symbol (8 bits), freq-1 (12 bits), slot-start offset (12 bits).
struct DecTable {
  uint32_t slot[kProbScale];
};

class RansDecoder {
 public:
  RansDecoder(const uint8_t* data, size_t size) : p_(data), end_(data + size) {
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) x = (x << 8) | next_byte();
    state_ = x;
  }

  uint32_t get(const DecTable& t) {
    const uint32_t e = t.slot[state_ & (kProbScale - 1)];
    const uint32_t freq = ((e >> 8) & 0xFFF) + 1;
    const uint32_t offset = e >> 20;
    uint32_t x = freq * (state_ >> kProbBits) + offset;
    while (x < kRansLow) x = (x << 8) | next_byte();
    state_ = x;
    return e & 0xFF;
  }

  bool overran() const { return overran_; }
  // A well-formed stream ends exactly at its last byte with the initial state restored.
  bool finished_cleanly() const { return !overran_ && p_ == end_ && state_ == kRansLow; }

 private:
  uint32_t next_byte() {
    if (p_ < end_) return *p_++;
    overran_ = true;
    return 0;
  }
  uint32_t state_ = 0;
  const uint8_t* p_;
  const uint8_t* end_;
  bool overran_ = false;
};

}  // namespace tpde
