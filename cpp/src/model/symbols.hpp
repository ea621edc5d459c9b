// Mapping of values to (symbol, tail bits) and the context functions: shared, bit for bit,
// by encoder and decoder.
//
// Residual (delta mode):  v = zigzag(x - reference) over the W-bit patterns (wrapping).
// Standalone integers:    v = zigzag(x[i] - x[i-1]), x[-1] = 0.
// Standalone floats:      v = rotl(bits, 1) (sign to the lowest bit).
// LogBucket symbol of v:  v < 8 -> symbol v, no tail; else with b = bit_length(v):
//                         symbol 8 + 4(b-4) + the 2 bits below the top bit, tail = low b-3 bits.
// FloatSplit symbol of v: the top 8 bits of v (the exponent for fp32/bf16), tail = low W-8 bits.
#pragma once
#include <cstdint>
#include <type_traits>

#include "format/mem.hpp"
#include "tpde/format.hpp"

namespace tpde {

template <typename U>
constexpr int kBits = static_cast<int>(sizeof(U) * 8);

template <typename U>
inline U zigzag(U d) {
  using S = std::make_signed_t<U>;
  const S s = static_cast<S>(d);
  return static_cast<U>(static_cast<U>(static_cast<U>(s) << 1) ^
                        static_cast<U>(s >> (kBits<U> - 1)));
}

template <typename U>
inline U unzigzag(U v) {
  return static_cast<U>(static_cast<U>(v >> 1) ^ static_cast<U>(0 - static_cast<U>(v & 1)));
}

template <typename U>
inline U rotl1(U x) {
  return static_cast<U>(static_cast<U>(x << 1) | static_cast<U>(x >> (kBits<U> - 1)));
}

template <typename U>
inline U rotr1(U x) {
  return static_cast<U>(static_cast<U>(x >> 1) | static_cast<U>(x << (kBits<U> - 1)));
}

struct Split {
  uint32_t symbol;
  int tail_bits;
  uint64_t tail;
};

// Branch-free symbol of v (the hot path of the encoder's first pass).
inline uint32_t log_bucket_symbol(uint64_t v) {
  const int b = bit_length(v | 1);
  const int shift = b > 3 ? b - 3 : 0;
  const uint32_t big = static_cast<uint32_t>(4 * b - 8) + static_cast<uint32_t>((v >> shift) & 3);
  return v < 8 ? static_cast<uint32_t>(v) : big;
}

inline Split log_bucket_split(uint64_t v) {
  if (v < 8) return {static_cast<uint32_t>(v), 0, 0};
  const int b = bit_length(v);
  const int tail_bits = b - 3;
  return {static_cast<uint32_t>(8 + 4 * (b - 4) + ((v >> tail_bits) & 3)), tail_bits,
          v & ((uint64_t(1) << tail_bits) - 1)};
}

// Tail width of a LogBucket symbol (symbol already validated <= log_bucket_max_symbol).
inline int log_bucket_tail_bits(uint32_t symbol) {
  return symbol < 8 ? 0 : static_cast<int>((symbol - 8) >> 2) + 1;
}

inline uint64_t log_bucket_join(uint32_t symbol, uint64_t tail) {
  if (symbol < 8) return symbol;
  const int tail_bits = log_bucket_tail_bits(symbol);
  return ((uint64_t(4) | (symbol & 3)) << tail_bits) | tail;
}

inline int log_bucket_max_symbol(int width_bits) { return 8 + 4 * (width_bits - 4) + 3; }

// Magnitude class used by contexts: bit length of v, capped to fit the context count.
constexpr int kClassContexts = 33;
inline int magnitude_class(uint64_t v) {
  const int b = bit_length(v);
  return b < kClassContexts ? b : kClassContexts - 1;
}

constexpr int kExponentContexts = 16;
// Exponent field of a float bit pattern.
inline int float_exponent(uint64_t bits, int mantissa, int exponent) {
  return static_cast<int>((bits >> mantissa) & ((uint64_t(1) << exponent) - 1));
}
inline int exponent_context(int top, int e) {
  const int d = top - e;
  return d < 0 ? 0 : (d >= kExponentContexts ? kExponentContexts - 1 : d);
}

// Four buckets of a magnitude class: 0, 1-4, 5-8, 9 and above.
inline int class_bucket(int magnitude) {
  return magnitude == 0 ? 0 : magnitude <= 4 ? 1 : magnitude <= 8 ? 2 : 3;
}

inline int context_count(ContextScheme scheme) {
  switch (scheme) {
    case ContextScheme::kNone: return 1;
    case ContextScheme::kRefExponent: return kExponentContexts;
    case ContextScheme::kPrevResidual: return kClassContexts;
    case ContextScheme::kNeighbour: return kClassContexts;
    case ContextScheme::kPrevExponent: return kExponentContexts;
    case ContextScheme::kRefExponentPrevResidual: return kExponentContexts * 4;
  }
  return 0;
}

// Calls f(std::integral_constant<ContextScheme, scheme>{}): turns the runtime scheme into
// the compile-time one that context_of and the coding loops are specialised on.
template <typename F>
inline void with_context_scheme(ContextScheme scheme, F&& f) {
  using CS = ContextScheme;
  switch (scheme) {
    case CS::kNone: f(std::integral_constant<CS, CS::kNone>{}); break;
    case CS::kRefExponent: f(std::integral_constant<CS, CS::kRefExponent>{}); break;
    case CS::kPrevResidual: f(std::integral_constant<CS, CS::kPrevResidual>{}); break;
    case CS::kNeighbour: f(std::integral_constant<CS, CS::kNeighbour>{}); break;
    case CS::kPrevExponent: f(std::integral_constant<CS, CS::kPrevExponent>{}); break;
    case CS::kRefExponentPrevResidual:
      f(std::integral_constant<CS, CS::kRefExponentPrevResidual>{});
      break;
  }
}

// What contexts are computed from: reference, prev-reference, the chunk's context parameter
// (top exponent) and the dtype's mantissa/exponent widths.
template <typename U>
struct ContextSources {
  const U* ref;
  const U* prev;
  int param;
  int mant;
  int expb;
};

// Context of position i given the previously coded value: the one definition encoder and
// decoder share (docs/format.md, section 7).
template <ContextScheme S, typename U>
inline int context_of(const ContextSources<U>& src, uint64_t i, U previous_v) {
  if constexpr (S == ContextScheme::kNone) {
    return 0;
  } else if constexpr (S == ContextScheme::kRefExponent) {
    return exponent_context(src.param, float_exponent(src.ref[i], src.mant, src.expb));
  } else if constexpr (S == ContextScheme::kPrevResidual) {
    return magnitude_class(zigzag<U>(static_cast<U>(src.ref[i] - src.prev[i])));
  } else if constexpr (S == ContextScheme::kNeighbour) {
    return magnitude_class(previous_v);
  } else if constexpr (S == ContextScheme::kRefExponentPrevResidual) {
    return exponent_context(src.param, float_exponent(src.ref[i], src.mant, src.expb)) * 4 +
           class_bucket(magnitude_class(zigzag<U>(static_cast<U>(src.ref[i] - src.prev[i]))));
  } else {
    return exponent_context(src.param, float_exponent(rotr1<U>(previous_v), src.mant, src.expb));
  }
}

}  // namespace tpde
