// rANS encoder of entropy/rans.hpp's format: the symbol view with a reciprocal in place of
// a division, and RansEncoder, the readable reference encoder that the unit tests check.
// The chunk encoder's hot pass (encode/sections.cpp) writes the same bytes without branches.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "entropy/rans.hpp"

namespace tpde {

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
  explicit RansEncoder(uint64_t max_symbols)
      : buf_(2 * max_symbols + 4 * kStates), pos_(buf_.size()) {}

  void put(const RansEncSymbol& s) {
    uint32_t x = renormalize(s);
    const uint32_t q =
        static_cast<uint32_t>((static_cast<uint64_t>(x) * s.rcp_freq) >> 32) >> s.rcp_shift;
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

}  // namespace tpde
