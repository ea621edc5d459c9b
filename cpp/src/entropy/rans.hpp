// Byte-oriented rANS (a range coder of the asymmetric-numeral-system family) with
// static per-context frequency tables.
//
// READ ME FIRST
// - Probabilities have kProbBits = 12 bits: every table's frequencies sum to 4096 exactly.
// - The encoder (encode/rans_encoder.hpp) runs over the symbols in REVERSE order and writes
//   its bytes backwards; the decoder then reads forwards and yields symbols in forward order.
// - State x stays in [kRansLow, kRansLow << 8) between symbols; 4 bytes flush the final state.
// - Format 5 interleaves two states over one byte stream: value k uses state k mod 2, so two
//   independent dependency chains overlap in the CPU (formats 1-4 have one state).
// - The decoder never reads past its buffer: missing bytes read as 0 and overran() reports it.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace tpde {

constexpr int kProbBits = 12;
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kRansLow = 1u << 23;

// Decode table of one context: slot -> symbol, and each used symbol's frequency and start.
// 5 KiB, so the tables of many contexts stay in cache. Filled only for used contexts.
struct DecTable {
  uint8_t symbol[kProbScale];
  uint16_t freq[256];
  uint16_t start[256];
};

// kStates = 2 (format 5): the section starts with state 0 then state 1, and value k is
// decoded with state k mod 2 (the states swap after every value, so each one's chain is
// independent of the other's).
template <int kStates = 1>
class RansDecoder {
  static_assert(kStates == 1 || kStates == 2, "one or two interleaved states");

 public:
  // Inlined, like get(): a decoder whose address escapes into a call keeps its states in
  // memory, on the dependency chain (measured: bf16 decode 234 -> 174 MB/s with two states).
  __attribute__((always_inline)) RansDecoder(const uint8_t* data, size_t size)
      : p_(data), end_(data + size) {
    state_ = read_state();
    if constexpr (kStates == 2) other_ = read_state();
  }

  __attribute__((always_inline)) uint32_t get(const DecTable& t) {
    const uint32_t slot = state_ & (kProbScale - 1);
    const uint32_t sym = t.symbol[slot];
    const uint32_t x = renormalize(t.freq[sym] * (state_ >> kProbBits) + slot - t.start[sym]);
    if constexpr (kStates == 2) {
      state_ = other_;
      other_ = x;
    } else {
      state_ = x;
    }
    return sym;
  }

  bool overran() const { return overran_; }
  // A well-formed stream ends exactly at its last byte with the initial states restored.
  bool finished_cleanly() const {
    return !overran_ && p_ == end_ && state_ == kRansLow && (kStates == 1 || other_ == kRansLow);
  }

 private:
  __attribute__((always_inline)) uint32_t read_state() {
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) x = (x << 8) | next_byte();
    // Every encoder flushes states >= kRansLow. A smaller one can only come from corrupt
    // bytes, and could reach 0, where renormalisation would never end: decode harmlessly
    // from a valid state instead and report the stream as broken.
    if (x < kRansLow) {
      overran_ = true;
      x = kRansLow;
    }
    return x;
  }

  // Shifts in as many bytes as bring x back to >= kRansLow, without a data-dependent branch
  // while 4 bytes remain (the byte count is unpredictable; a loop mispredicts often). x is
  // never 0: a decode step leaves x >= freq * (kRansLow >> kProbBits) >= 2^11.
  __attribute__((always_inline)) uint32_t renormalize(uint32_t x) {
    if (__builtin_expect(end_ - p_ >= 4, 1)) {
      uint32_t w;
      std::memcpy(&w, p_, 4);
      w = __builtin_bswap32(w);
      // After a decode step x >= freq * (state >> kProbBits) >= 2^11 (the state is >= kRansLow
      // before every step), so 0, 1 (x >= 2^15) or 2 bytes are needed: both refills are built
      // and selected without a branch.
      const bool need = x < kRansLow, need_two = x < (kRansLow >> 8);
      p_ += static_cast<int>(need) + static_cast<int>(need_two);
      uint32_t r = (x << 8) | (w >> 24);
      const uint32_t two = (x << 16) | (w >> 16);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TPDE_NO_SIMD)
      // Conditional moves (compilers turn the ?: below into branches, mispredicted here).
      __asm__("cmpl %[l2], %[x]\n\tcmovbl %[two], %[r]\n\tcmpl %[l1], %[x]\n\tcmovael %[x], %[r]"
              : [r] "+&r"(r)
              : [x] "r"(x), [two] "r"(two), [l1] "i"(kRansLow), [l2] "i"(kRansLow >> 8)
              : "cc");
      return r;
#else
      return need ? (need_two ? two : r) : x;
#endif
    }
    while (x < kRansLow) x = (x << 8) | next_byte();
    return x;
  }

  __attribute__((always_inline)) uint32_t next_byte() {
    if (p_ < end_) return *p_++;
    overran_ = true;
    return 0;
  }
  uint32_t state_ = 0;
  uint32_t other_ = kRansLow;
  const uint8_t* p_;
  const uint8_t* end_;
  bool overran_ = false;
};

}  // namespace tpde
