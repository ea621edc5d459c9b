// Byte-oriented rANS (a range coder of the asymmetric-numeral-system family) with
// static per-context frequency tables.
//
// READ ME FIRST
// - Probabilities have kProbBits = 12 bits: every table's frequencies sum to 4096 exactly.
// - The encoder runs over the symbols in REVERSE order and writes its bytes backwards;
//   the decoder then reads forwards and yields symbols in forward order.
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

// Encoder view of one symbol. put() uses ryg_rans' reciprocal trick instead of a division;
// put_exact() divides. Both produce the same bytes (tests assert it).
struct RansEncSymbol {
  uint32_t x_max = 0;
  uint32_t rcp_freq = 0;
  uint32_t bias = 0;
  uint16_t cmpl_freq = 0;
  uint16_t rcp_shift = 0;
  uint32_t freq = 0;
  uint32_t start = 0;

  RansEncSymbol() = default;
  RansEncSymbol(uint32_t start_, uint32_t freq_) : freq(freq_), start(start_) {
    x_max = ((kRansLow >> kProbBits) << 8) * freq;
    cmpl_freq = static_cast<uint16_t>(kProbScale - freq);
    if (freq < 2) {
      rcp_freq = ~0u;
      rcp_shift = 0;
      bias = start + kProbScale - 1;
    } else {
      uint32_t shift = 0;
      while (freq > (1u << shift)) ++shift;
      rcp_freq = static_cast<uint32_t>(((uint64_t(1) << (shift + 31)) + freq - 1) / freq);
      rcp_shift = static_cast<uint16_t>(shift - 1);
      bias = start;
    }
  }
};

// kStates = 2 interleaves two states (format 5): value k goes to state k mod 2. Symbols are
// put in reverse order, as for one state.
template <int kStates = 1>
class RansEncoder {
  static_assert(kStates == 1 || kStates == 2, "one or two interleaved states");

 public:
  // At most 2 bytes leave per symbol (x < 2^31, x_max >= 2^19), plus 4 bytes per final state.
  explicit RansEncoder(uint64_t max_symbols) : buf_(2 * max_symbols + 4 * kStates), pos_(buf_.size()) {}

  void put(const RansEncSymbol& s) {
    uint32_t x = renormalize(s);
    const uint32_t q = static_cast<uint32_t>((static_cast<uint64_t>(x) * s.rcp_freq) >> 32) >> s.rcp_shift;
    advance(x + s.bias + q * s.cmpl_freq);
  }

  void put_exact(const RansEncSymbol& s) {
    const uint32_t x = renormalize(s);
    advance(((x / s.freq) << kProbBits) + (x % s.freq) + s.start);
  }

  // Flushes the states so that the section starts with state 0, then state 1, each most
  // significant byte first (bytes are written backwards: state 1 goes first). After the
  // last put (value 0, state 0) the states swapped, so state_ holds state 1.
  std::vector<uint8_t> finish() {
    flush(state_);
    if constexpr (kStates == 2) flush(other_);
    return std::vector<uint8_t>(buf_.begin() + static_cast<std::ptrdiff_t>(pos_), buf_.end());
  }

 private:
  uint32_t renormalize(const RansEncSymbol& s) {
    uint32_t x = state_;
    while (x >= s.x_max) {
      buf_[--pos_] = static_cast<uint8_t>(x & 0xFF);
      x >>= 8;
    }
    return x;
  }

  // The state just coded becomes the other one: value k - 1 uses the other state.
  void advance(uint32_t x) {
    if constexpr (kStates == 2) {
      state_ = other_;
      other_ = x;
    } else {
      state_ = x;
    }
  }

  void flush(uint32_t x) {
    for (int i = 0; i < 4; ++i) {
      buf_[--pos_] = static_cast<uint8_t>(x & 0xFF);
      x >>= 8;
    }
  }

  uint32_t state_ = kRansLow;
  uint32_t other_ = kRansLow;
  std::vector<uint8_t> buf_;
  size_t pos_;
};

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
  __attribute__((always_inline)) RansDecoder(const uint8_t* data, size_t size) : p_(data), end_(data + size) {
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
