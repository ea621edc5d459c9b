// Chunk encoder: residuals, zero masking with Elias-delta gaps, context-modelled rANS.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
#include <emmintrin.h>
#endif

#include "../common/bitstream.hpp"
#include "../common/contexts16.hpp"
#include "../common/elias.hpp"
#include "../common/extrapolate.hpp"
#include "../common/scaled.hpp"
#include "../common/header.hpp"
#include "../common/mem.hpp"
#include "../common/models.hpp"
#include "../common/payload.hpp"
#include "../common/quantize.hpp"
#include "../common/symbols.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace {

// MSB-first bit packing (the same bits as BitWriter) with its state in locals, for the hot
// loops: the pending bits (< 8 after each put) go out as one big-endian 8-byte store and the
// pointer advances by the whole bytes; the caller sizes the buffer (8 bytes of slack).
struct BitSink {
  uint8_t* p;
  uint64_t acc = 0;
  int filled = 0;

  __attribute__((always_inline)) void put(uint64_t value, int nbits) {  // nbits <= 56
    acc = (acc << nbits) | value;
    filled += nbits;
    const uint64_t word = __builtin_bswap64((acc << 1) << (63 - filled));
    std::memcpy(p, &word, 8);
    p += filled >> 3;
    filled &= 7;
  }
  // Pads the last byte with zero bits; returns the end of the written bytes.
  uint8_t* finish() {
    if (filled > 0) *p++ = static_cast<uint8_t>(acc << (8 - filled));
    filled = 0;
    return p;
  }
};

// Encoder view of a symbol: the fields RansEncoder::put uses, 16 bytes.
struct EncSym {
  uint32_t x_max, rcp_freq, bias;
  uint16_t cmpl_freq, rcp_shift;
};

// put_elias_delta over a BitSink (the same bits).
inline void put_elias_delta_local(BitSink& w, uint64_t g) {
  const int len = bit_length(g);
  const int len_len = bit_length(static_cast<uint64_t>(len));
  w.put(static_cast<uint64_t>(len), 2 * len_len - 1);
  if (len > 1) {
    const uint64_t low = g & ((uint64_t(1) << (len - 1)) - 1);
    if (len - 1 > 32) {
      w.put(low >> 32, len - 1 - 32);
      w.put(low & 0xFFFFFFFFu, 32);
    } else {
      w.put(low, len - 1);
    }
  }
}

struct Plan {
  PositionScheme positions = PositionScheme::kInline;
  ContextScheme contexts = ContextScheme::kNone;
  double bits = std::numeric_limits<double>::infinity();
};

template <typename U>
class ChunkEncoder {
 public:
  // without_reference: a delta chunk whose values are coded as if standalone (payload byte 3).
  // float_split: standalone float values coded by exponent + raw tail; otherwise standalone
  // values are neighbour differences (constant or smooth float arrays).
  ChunkEncoder(const EncodeInput& in, uint64_t n, bool without_reference, bool float_split)
      : without_reference_(without_reference),
        n_(n),
        x_(static_cast<const U*>(in.data)),
        ref_(static_cast<const U*>(in.reference)),
        prev_(static_cast<const U*>(in.prev_reference)),
        dtype_(in.dtype),
        context_mask_(in.context_mask | 1u),
        float_split_(float_split && !in.reference && is_float(in.dtype)) {}

  // The cheapest plan for these values, with its estimated payload bits; scale: how many
  // times more values the chunk has than these (a sample of it).
  Plan plan(double scale = 1.0) {
    scale_ = scale;
    transform();
    return choose_plan();
  }

  // The reference this encoder was given is a prediction made from the chunk's own
  // references (payload transform 1 or 2): its parameters are written after the prefix.
  void set_transform(uint8_t transform, std::vector<uint8_t> params) {
    transform_ = transform;
    transform_params_ = std::move(params);
  }

  // Codes all values with a plan chosen on a sample; stores them raw if that is smaller.
  void encode_payload(const Plan& plan, std::vector<uint8_t>& out) {
    transform();
    const size_t start = out.size();
    write_coded(plan, out);
    if (out.size() - start >= kPayloadPrefix + n_ * sizeof(U)) {
      out.resize(start);
      write_stored(out);
    }
  }

 private:
  void transform() {
    v_.resize(n_);
    symbols_.resize(n_);
#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
    if constexpr (sizeof(U) == 2) {
      if (ref_) {
        transform_delta16();
        return;
      }
    }
#endif
    U* v = v_.data();
    uint8_t* sym = symbols_.data();
    const U* x = x_;
    const uint64_t n_ = this->n_;  // a local bound: stores through uint8_t* may alias members
    uint64_t zeros = 0;
    if (ref_) {
      const U* ref = ref_;
      for (uint64_t i = 0; i < n_; ++i) {
        const U d = zigzag<U>(static_cast<U>(x[i] - ref[i]));
        v[i] = d;
        zeros += d == 0;
        sym[i] = static_cast<uint8_t>(log_bucket_symbol(d));
      }
    } else if (float_split_) {
      for (uint64_t i = 0; i < n_; ++i) {
        const U d = rotl1<U>(x[i]);
        v[i] = d;
        zeros += d == 0;
        sym[i] = static_cast<uint8_t>(d >> (kBits<U> - 8));
      }
    } else {
      U previous = 0;
      for (uint64_t i = 0; i < n_; ++i) {
        const U d = zigzag<U>(static_cast<U>(x[i] - previous));
        previous = x[i];
        v[i] = d;
        zeros += d == 0;
        sym[i] = static_cast<uint8_t>(log_bucket_symbol(d));
      }
    }
    zeros_ = zeros;
    if (is_float(dtype_)) {
      const int all_ones = (1 << expb_) - 1;
      const U* base = ref_ ? ref_ : x_;
      int top = 0;
      for (uint64_t i = 0; i < n_; ++i) {
        const int e = float_exponent(base[i], mant_, expb_);
        if (e != all_ones && e > top) top = e;
      }
      context_param_ = top;
    }
  }

#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
  // LogBucket symbols of four 32-bit lanes holding 16-bit values: v < 8 -> v; else the
  // float's exponent and top two mantissa bits, (bits >> 21) - 512 = 4 (b - 2) + top2.
  static __m128i log_bucket32(__m128i v) {
    const __m128i f = _mm_sub_epi32(_mm_srli_epi32(_mm_castps_si128(_mm_cvtepi32_ps(v)), 21), _mm_set1_epi32(512));
    const __m128i small = _mm_cmplt_epi32(v, _mm_set1_epi32(8));
    return _mm_or_si128(_mm_and_si128(small, v), _mm_andnot_si128(small, f));
  }

  // Delta residuals of 16-bit values: v, symbols, zero count and (floats) the top exponent
  // of the reference in one vector pass; the same results as the scalar loops.
  void transform_delta16() {
    U* v = v_.data();
    uint8_t* sym = symbols_.data();
    const U* x = x_;
    const U* ref = ref_;
    const uint64_t n = n_;
    const bool fl = is_float(dtype_);
    const int all_ones = fl ? (1 << expb_) - 1 : 0;
    const __m128i zero = _mm_setzero_si128();
    const __m128i emask = _mm_set1_epi16(static_cast<short>(all_ones));
    const __m128i mshift = _mm_cvtsi32_si128(mant_);
    __m128i top = zero;
    uint64_t zeros = 0;
    uint64_t i = 0;
    while (i + 16 <= n) {
      // 16-bit lane counters of zeros: flushed every 4096 iterations (< 2^15 per lane).
      __m128i zc = zero;
      const uint64_t stop = std::min<uint64_t>(n - n % 16, i + 16 * 4096);
      for (; i < stop; i += 16) {
        __m128i z[2];
        for (int h = 0; h < 2; ++h) {
          const __m128i xv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8 * h));
          const __m128i rv = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ref + i + 8 * h));
          const __m128i d = _mm_sub_epi16(xv, rv);
          z[h] = _mm_xor_si128(_mm_slli_epi16(d, 1), _mm_srai_epi16(d, 15));
          _mm_storeu_si128(reinterpret_cast<__m128i*>(v + i + 8 * h), z[h]);
          zc = _mm_sub_epi16(zc, _mm_cmpeq_epi16(z[h], zero));
          if (fl) {
            __m128i e = _mm_and_si128(_mm_srl_epi16(rv, mshift), emask);
            e = _mm_andnot_si128(_mm_cmpeq_epi16(e, emask), e);
            top = _mm_max_epi16(top, e);
          }
        }
        const __m128i s0 = _mm_packs_epi32(log_bucket32(_mm_unpacklo_epi16(z[0], zero)),
                                           log_bucket32(_mm_unpackhi_epi16(z[0], zero)));
        const __m128i s1 = _mm_packs_epi32(log_bucket32(_mm_unpacklo_epi16(z[1], zero)),
                                           log_bucket32(_mm_unpackhi_epi16(z[1], zero)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(sym + i), _mm_packus_epi16(s0, s1));
      }
      alignas(16) uint16_t lanes[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(lanes), zc);
      for (int l = 0; l < 8; ++l) zeros += lanes[l];
      if (i + 16 > n) break;
    }
    alignas(16) int16_t tops[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(tops), top);
    int top_e = 0;
    for (int l = 0; l < 8; ++l) top_e = std::max<int>(top_e, tops[l]);
    for (; i < n; ++i) {
      const U d = zigzag<U>(static_cast<U>(x[i] - ref[i]));
      v[i] = d;
      zeros += d == 0;
      sym[i] = static_cast<uint8_t>(log_bucket_symbol(d));
      if (fl) {
        const int e = float_exponent(ref[i], mant_, expb_);
        if (e != all_ones && e > top_e) top_e = e;
      }
    }
    zeros_ = zeros;
    if (fl) context_param_ = top_e;
  }
#endif

  std::vector<ContextScheme> candidate_contexts() const {
    std::vector<ContextScheme> c = {ContextScheme::kNone};
    if (float_split_) {
      c.push_back(ContextScheme::kPrevExponent);
      return c;
    }
    if (ref_ && is_float(dtype_)) c.push_back(ContextScheme::kRefExponent);
    if (ref_ && prev_) c.push_back(ContextScheme::kPrevResidual);
    if (ref_ && prev_ && is_float(dtype_)) c.push_back(ContextScheme::kRefExponentPrevResidual);
    c.push_back(ContextScheme::kNeighbour);
    return c;
  }

  // Context of position i given the previously coded value (compile-time scheme).
  template <ContextScheme S>
  int context_at(uint64_t i, U previous_v) const {
    return context_of<S, U>(ContextSources<U>{ref_, prev_, context_param_, mant_, expb_}, i, previous_v);
  }

  U initial_previous(ContextScheme scheme) const {
    // Standalone floats: a previous value with the top exponent maps to context 0.
    if (scheme == ContextScheme::kPrevExponent)
      return rotl1<U>(static_cast<U>(static_cast<U>(context_param_) << mant_));
    return 0;
  }

  int tail_bits_of(uint8_t symbol) const {
    return float_split_ ? kBits<U> - 8 : log_bucket_tail_bits(symbol);
  }

  // Histograms of both position schemes (all values / non-zero values), from the coding
  // keys. LogBucket gives symbol 0 to zero values only, so when the context does not depend
  // on the previous coded value, the non-zero histogram is the full one without symbol 0.
  template <ContextScheme S>
  void histogram_pass(uint64_t* all, uint64_t* nonzero, uint8_t* used_all, uint8_t* used_nonzero) const {
    // Only the rows of contexts that occur are cleared and counted (small chunks: the
    // tables of 33 or 64 contexts would cost more than the values).
    auto count_keys = [](const uint16_t* keys, uint64_t count, uint64_t* h, uint8_t* used, bool skip_zero_symbol) {
      std::memset(used, 0, kMaxContexts);
      for (uint64_t k = 0; k < count; ++k) used[keys[k] >> 8] = 1;
      for (int c = 0; c < kMaxContexts; ++c)
        if (used[c]) std::memset(h + size_t(c) * kAlphabet, 0, kAlphabet * sizeof(uint64_t));
      if (skip_zero_symbol) {
        for (uint64_t k = 0; k < count; ++k) h[keys[k]] += (keys[k] & 0xFF) != 0;
      } else {
        for (uint64_t k = 0; k < count; ++k) ++h[keys[k]];
      }
    };
    std::unique_ptr<uint16_t[]> keys(new uint16_t[n_ + 8]);
    const uint64_t count = compute_keys<S, false>(keys.get());
    count_keys(keys.get(), count, all, used_all, false);
    if (zeros_ == 0) return;  // no Elias-gap candidate
    constexpr bool kPrevious = S == ContextScheme::kNeighbour || S == ContextScheme::kPrevExponent;
    if (!kPrevious && !float_split_) {
      count_keys(keys.get(), count, nonzero, used_nonzero, true);
      return;
    }
    const uint64_t coded = compute_keys<S, true>(keys.get());
    count_keys(keys.get(), coded, nonzero, used_nonzero, false);
  }

  Plan choose_plan() {
    Plan best;
    uint64_t tail_counts[2] = {0, 0};
    uint64_t sym_counts[kAlphabet] = {0};
    for (uint64_t i = 0; i < n_; ++i) ++sym_counts[symbols_[i]];
    for (int s = 0; s < kAlphabet; ++s) tail_counts[0] += sym_counts[s] * tail_bits_of(static_cast<uint8_t>(s));
    // Zero values have no tail in LogBucket; in FloatSplit a zero (+0.0) has a full tail.
    tail_counts[1] = float_split_ ? tail_counts[0] - zeros_ * (kBits<U> - 8) : tail_counts[0];
    double gap_bits = 0;
    if (zeros_ > 0) {
      uint64_t last = 0;
      for (uint64_t i = 0; i < n_; ++i)
        if (v_[i]) {
          const int len = bit_length(i + 1 - last);
          gap_bits += len + 2 * bit_length(static_cast<uint64_t>(len)) - 2;
          last = i + 1;
        }
    }
    // Rows are cleared per used context by histogram_pass; an unused context costs 8 bits
    // (estimate_context_bits of an empty row), added in the same order.
    std::unique_ptr<uint64_t[]> all(new uint64_t[size_t(kMaxContexts) * kAlphabet]);
    std::unique_ptr<uint64_t[]> nonzero(new uint64_t[size_t(kMaxContexts) * kAlphabet]);
    uint8_t used[2][kMaxContexts];
    for (ContextScheme scheme : candidate_contexts()) {
      if (!(context_mask_ & (1u << static_cast<int>(scheme)))) continue;
      const int contexts = context_count(scheme);
      with_context_scheme(scheme, [&](auto s) {
        histogram_pass<decltype(s)::value>(all.get(), nonzero.get(), used[0], used[1]);
      });
      for (int elias = 0; elias < (zeros_ > 0 ? 2 : 1); ++elias) {
        const uint64_t* h = elias ? nonzero.get() : all.get();
        double bits = 8.0 * (kPayloadPrefix + 32) +
                      scale_ * (static_cast<double>(tail_counts[elias]) + (elias ? gap_bits : 0));
        for (int c = 0; c < contexts; ++c)
          bits += used[elias][c] ? estimate_context_bits(&h[size_t(c) * kAlphabet], scale_) : 8.0;
        if (bits < best.bits)
          best = {elias ? PositionScheme::kEliasGaps : PositionScheme::kInline, scheme, bits};
      }
    }
    return best;
  }

  void write_stored(std::vector<uint8_t>& out) {
    const size_t start = out.size();
    out.resize(start + kPayloadPrefix, 0);
    out[start] = static_cast<uint8_t>(ValueScheme::kStored);
    store_le<uint64_t>(out.data() + start + 8, n_);
    const auto* bytes = reinterpret_cast<const uint8_t*>(x_);
    out.insert(out.end(), bytes, bytes + n_ * sizeof(U));
  }

  // Context of the value after a coded value with symbol sym, for the schemes where it
  // depends only on that symbol (kNeighbour: bit length; kPrevExponent: the exponent, within
  // the symbol's 8 bits when mantissa + 1 >= W - 8). False if the scheme has no such table.
  template <ContextScheme S>
  bool symbol_context_table(uint8_t* table) const {
    if constexpr (S == ContextScheme::kNeighbour) {
      if (float_split_) return false;
      for (int sym = 0; sym < kAlphabet; ++sym) {
        const bool valid = sym <= log_bucket_max_symbol(kBits<U>);
        table[sym] = static_cast<uint8_t>(valid ? context_at<S>(0, static_cast<U>(log_bucket_join(sym, 0))) : 0);
      }
      return true;
    } else if constexpr (S == ContextScheme::kPrevExponent) {
      if (!float_split_ || mant_ + 1 < kBits<U> - 8) return false;
      for (int sym = 0; sym < kAlphabet; ++sym)
        table[sym] = static_cast<uint8_t>(context_at<S>(0, static_cast<U>(static_cast<U>(sym) << (kBits<U> - 8))));
      return true;
    } else {
      (void)table;
      return false;
    }
  }

  // keys[k] = context << 8 | symbol of the k-th coded value; returns the number written.
  template <ContextScheme S, bool kElias>
  uint64_t compute_keys(uint16_t* keys) const {
    const U* values = v_.data();
    const uint8_t* symbols = symbols_.data();
    const uint64_t n = n_;
    uint64_t k = 0;
#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
    if constexpr (sizeof(U) == 2 && S != ContextScheme::kNeighbour && S != ContextScheme::kPrevExponent) {
      if (!float_split_) {
        const __m128i zero = _mm_setzero_si128();
        const Contexts16 contexts(context_param_, mant_, expb_);
        uint64_t i = 0;
        for (; i + 8 <= n; i += 8) {
          const __m128i ctx = contexts.at<S>(ref_, prev_, i);
          const __m128i sym = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(symbols + i)), zero);
          const __m128i key = _mm_or_si128(_mm_slli_epi16(ctx, 8), sym);
          if constexpr (kElias) {
            alignas(16) uint16_t lanes[8];
            _mm_store_si128(reinterpret_cast<__m128i*>(lanes), key);
            for (int l = 0; l < 8; ++l) {
              keys[k] = lanes[l];
              k += values[i + l] != 0;
            }
          } else {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(keys + i), key);
          }
        }
        if constexpr (!kElias) k = i;
        for (; i < n; ++i) {
          keys[k] = static_cast<uint16_t>(context_at<S>(i, 0) << 8 | symbols[i]);
          k += !kElias || values[i] != 0;
        }
        return k;
      }
    }
#endif
    uint8_t table[kAlphabet];
    if (symbol_context_table<S>(table)) {
      int c = context_at<S>(0, initial_previous(S));
      for (uint64_t i = 0; i < n; ++i) {
        const uint8_t sym = symbols[i];
        keys[k] = static_cast<uint16_t>(c << 8 | sym);
        if constexpr (kElias) {
          const bool nz = values[i] != 0;
          k += nz;
          c = nz ? table[sym] : c;
        } else {
          ++k;
          c = table[sym];
        }
      }
      return k;
    }
    U previous = initial_previous(S);
    for (uint64_t i = 0; i < n; ++i) {
      const U v = values[i];
      if constexpr (kElias) {
        if (v == 0) continue;
      }
      keys[k++] = static_cast<uint16_t>(context_at<S>(i, previous) << 8 | symbols[i]);
      previous = v;
    }
    return k;
  }

  void write_coded(const Plan& plan, std::vector<uint8_t>& out) {
    const bool elias = plan.positions == PositionScheme::kEliasGaps;
    const int contexts = context_count(plan.contexts);
    const uint64_t coded = elias ? n_ - zeros_ : n_;
    const U* values = v_.data();
    const uint8_t* symbols = symbols_.data();
    const uint64_t n = n_;

    // Keys (context << 8 | symbol) in coding order: the histogram and the rANS pass read them.
    std::unique_ptr<uint16_t[]> keys(new uint16_t[n + 8]);
    uint64_t written = 0;
    with_context_scheme(plan.contexts, [&](auto scheme) {
      constexpr ContextScheme S = decltype(scheme)::value;
      written = elias ? compute_keys<S, true>(keys.get()) : compute_keys<S, false>(keys.get());
    });
    (void)written;  // == coded

    // Gaps: an Elias-delta code of g takes at most 4 g bits, and the gaps sum to <= n.
    std::unique_ptr<uint8_t[]> gaps(new uint8_t[elias ? n / 2 + 16 : 1]);
    size_t gaps_size = 0;
    if (elias) {
      BitSink w{gaps.get()};
      uint64_t last = 0;
      for (uint64_t i = 0; i < n; ++i) {
        if (values[i] == 0) continue;
        put_elias_delta_local(w, i + 1 - last);
        last = i + 1;
      }
      gaps_size = static_cast<size_t>(w.finish() - gaps.get());
    }

    // Tails: at most W - 3 bits a value.
    std::unique_ptr<uint8_t[]> tails(new uint8_t[n * sizeof(U) + 16]);
    size_t tails_size;
    {
      BitSink w{tails.get()};
      if (float_split_) {
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
        for (int sym = 0; sym < kAlphabet; ++sym) tail_bits[sym] = static_cast<uint8_t>(log_bucket_tail_bits(sym));
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
      tails_size = static_cast<size_t>(w.finish() - tails.get());
    }

    // Histogram of the keys: 32-bit counters in blocks, two interleaved copies (repeated
    // keys would otherwise wait on the previous increment's store).
    const size_t table_size = static_cast<size_t>(contexts) * kAlphabet;
    Histogram hist(table_size, 0);
    if (coded < 16 * table_size) {  // small chunks: clearing and merging the tables would dominate
      for (uint64_t k = 0; k < coded; ++k) ++hist[keys[k]];
    } else {
      std::unique_ptr<uint32_t[]> h(new uint32_t[2 * table_size]);
      const uint16_t* kp = keys.get();
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

    std::vector<uint32_t> freqs(table_size, 0);
    std::unique_ptr<EncSym[]> enc(new EncSym[table_size]);  // filled for used symbols only
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
    std::vector<uint8_t> tables;
    write_tables(freqs, contexts, tables);

    // rANS over the keys in reverse (RansEncoder<2>::put, renormalised without a branch: at
    // most two bytes leave per symbol since x < 2^31 and x_max >= 2^19). Two interleaved
    // states: x codes value k, then the states swap (value k - 1 uses the other one).
    const size_t rans_cap = 2 * coded + 16;
    std::unique_ptr<uint8_t[]> rans_buf(new uint8_t[rans_cap]);
    uint8_t* rp = rans_buf.get() + rans_cap;
    {
      const uint16_t* kp = keys.get();
      const EncSym* e = enc.get();
      uint32_t x = kRansLow, other = kRansLow;
      for (uint64_t k = coded; k-- > 0;) {
        const EncSym& s = e[kp[k]];
        const uint32_t out_bytes = static_cast<uint32_t>(x >= s.x_max) +
                                   static_cast<uint32_t>(static_cast<uint64_t>(x) >= (static_cast<uint64_t>(s.x_max) << 8));
        const uint16_t two = __builtin_bswap16(static_cast<uint16_t>(x));
        std::memcpy(rp - 2, &two, 2);
        rp -= out_bytes;
        x >>= 8 * out_bytes;
        const uint32_t q = static_cast<uint32_t>((static_cast<uint64_t>(x) * s.rcp_freq) >> 32) >> s.rcp_shift;
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
    }
    const size_t rans_size = static_cast<size_t>(rans_buf.get() + rans_cap - rp);

    const size_t start = out.size();
    const size_t transform_bytes = transform_params_.size();
    out.resize(start + kPayloadPrefix + transform_bytes + 32 + gaps_size + tables.size() + rans_size + tails_size);
    uint8_t* p = out.data() + start;
    std::memset(p, 0, kPayloadPrefix);
    p[0] = static_cast<uint8_t>(float_split_ ? ValueScheme::kFloatSplit : ValueScheme::kLogBucket);
    p[1] = static_cast<uint8_t>(plan.positions);
    p[2] = static_cast<uint8_t>(plan.contexts);
    p[3] = without_reference_ ? 1 : 0;
    store_le<uint16_t>(p + 4, static_cast<uint16_t>(context_param_));
    p[6] = transform_;
    store_le<uint64_t>(p + 8, coded);
    p += kPayloadPrefix;
    if (transform_bytes) {
      std::memcpy(p, transform_params_.data(), transform_bytes);
      p += transform_bytes;
    }
    const std::pair<const uint8_t*, size_t> sections[] = {
        {gaps.get(), gaps_size}, {tables.data(), tables.size()}, {rp, rans_size}, {tails.get(), tails_size}};
    for (const auto& section : sections) {
      store_le<uint64_t>(p, section.second);
      p += 8;
      if (section.second) std::memcpy(p, section.first, section.second);
      p += section.second;
    }
  }

  const bool without_reference_;
  const uint64_t n_;
  const U* x_;
  const U* ref_;
  const U* prev_;
  const DType dtype_;
  const uint32_t context_mask_;
  const bool float_split_;
  const int mant_ = mantissa_bits(dtype_);
  const int expb_ = exponent_bits(dtype_);
  std::vector<U> v_;
  std::vector<uint8_t> symbols_;
  uint64_t zeros_ = 0;
  double scale_ = 1.0;
  int context_param_ = 0;
  uint8_t transform_ = kTransformNone;
  std::vector<uint8_t> transform_params_;
};

std::vector<uint8_t> extrapolation_params(const Extrapolation& e) {
  std::vector<uint8_t> p(kExtrapolationBytes);
  store_le<uint32_t>(p.data(), static_cast<uint32_t>(e.slope));
  store_le<uint32_t>(p.data() + 4, static_cast<uint32_t>(e.offset));
  return p;
}

std::vector<uint8_t> scaled_params(const ScaledSegments& s) {
  std::vector<uint8_t> p(kScaledFixedBytes + s.bitmap.size());
  store_le<uint32_t>(p.data(), s.mantissa);
  store_le<uint32_t>(p.data() + 4, static_cast<uint32_t>(s.shift));
  store_le<uint32_t>(p.data() + 8, s.segment);
  if (!s.bitmap.empty()) std::memcpy(p.data() + kScaledFixedBytes, s.bitmap.data(), s.bitmap.size());
  return p;
}

constexpr uint64_t kSampleBlock = 1024;
constexpr uint64_t kSampleBlocks = 8;

// Evenly spaced blocks of a chunk, on which the coding plan is chosen. Chunks no larger
// than the sample are used whole, so small chunks get exact estimates.
template <typename U>
struct Sample {
  std::vector<U> x, ref, prev;
  EncodeInput input;
  uint64_t count;

  Sample(const EncodeInput& in, uint64_t n) : input(in), count(n) {
    if (n <= kSampleBlock * kSampleBlocks) return;
    const uint64_t stride = (n - kSampleBlock) / (kSampleBlocks - 1);
    const auto* src = static_cast<const U*>(in.data);
    const auto* src_ref = static_cast<const U*>(in.reference);
    const auto* src_prev = static_cast<const U*>(in.prev_reference);
    for (uint64_t b = 0; b < kSampleBlocks; ++b) {
      const uint64_t begin = b * stride, end = begin + kSampleBlock;
      x.insert(x.end(), src + begin, src + end);
      if (src_ref) ref.insert(ref.end(), src_ref + begin, src_ref + end);
      if (src_prev) prev.insert(prev.end(), src_prev + begin, src_prev + end);
    }
    input.data = x.data();
    input.reference = src_ref ? ref.data() : nullptr;
    input.prev_reference = src_prev ? prev.data() : nullptr;
    count = x.size();
  }
};

// Extrapolations to try, fitted on positions where value, reference and prev-reference are
// finite and share a sign: (a) slope by least squares on the values (an absolute-error fit,
// as parameters move by similar amounts whatever their size), offset the median of what
// is left in bit units; (b) slope and offset by least squares on the bit patterns (a fit in
// the log domain, which suits the second moment).
template <typename U>
std::vector<Extrapolation> fit_extrapolations(const U* x, const U* ref, const U* prev, uint64_t n, DType dtype) {
  constexpr int s = kBits<U> - 1;
  const int mant = mantissa_bits(dtype), expb = exponent_bits(dtype);
  const int all_ones = (1 << expb) - 1;
  std::vector<int64_t> d(n), y(n);  // bit-pattern moves: reference - prev-reference, value - reference
  std::vector<double> vd(n), vy(n);  // the same moves in value units
  auto collect = [&](auto as_double) {
    size_t k = 0;
    for (uint64_t i = 0; i < n; ++i) {
      const U r = ref[i], q = prev[i], v = x[i];
      if ((r >> s) != (q >> s) || (v >> s) != (r >> s)) continue;
      if (float_exponent(r, mant, expb) == all_ones || float_exponent(q, mant, expb) == all_ones ||
          float_exponent(v, mant, expb) == all_ones)
        continue;
      d[k] = static_cast<int64_t>(r) - static_cast<int64_t>(q);
      y[k] = static_cast<int64_t>(v) - static_cast<int64_t>(r);
      const double rv = as_double(r);
      vd[k] = rv - as_double(q);
      vy[k] = as_double(v) - rv;
      ++k;
    }
    d.resize(k);
    y.resize(k);
  };
  if (dtype == DType::kFloat32) {
    collect([](U b) { return static_cast<double>(float_from_bits(static_cast<uint32_t>(b))); });
  } else if (dtype == DType::kBFloat16) {
    collect([](U b) { return static_cast<double>(float_from_bits(static_cast<uint32_t>(b) << 16)); });
  } else {
    collect([dtype](U b) { return to_double<U>(b, dtype); });
  }
  std::vector<Extrapolation> fits;
  if (d.size() < 16) return fits;
  // Outliers (a few huge or tiny values moving by many binades) would set the fit alone:
  // positions moving by more than 16x the median move, now or before, are left out.
  // Medians are taken on at most kMedianPoints evenly spaced positions (nth_element over the
  // whole sample cost more than the rest of the fit).
  constexpr size_t kMedianPoints = 1024;
  auto median_abs = [](const std::vector<int64_t>& a) {
    const size_t stride = (a.size() + kMedianPoints - 1) / kMedianPoints;
    std::vector<uint64_t> m;
    for (size_t k = 0; k < a.size(); k += stride)
      m.push_back(a[k] < 0 ? 0 - static_cast<uint64_t>(a[k]) : static_cast<uint64_t>(a[k]));
    std::nth_element(m.begin(), m.begin() + m.size() / 2, m.end());
    return m[m.size() / 2];
  };
  const uint64_t d_limit = 16 * std::max<uint64_t>(median_abs(d), 1), y_limit = 16 * std::max<uint64_t>(median_abs(y), 1);
  double vdd = 0, vdy = 0;  // value-domain least squares over the positions kept
  {
    size_t kept = 0;
    for (size_t k = 0; k < d.size(); ++k) {
      const uint64_t ad = d[k] < 0 ? 0 - static_cast<uint64_t>(d[k]) : static_cast<uint64_t>(d[k]);
      const uint64_t ay = y[k] < 0 ? 0 - static_cast<uint64_t>(y[k]) : static_cast<uint64_t>(y[k]);
      if (ad > d_limit || ay > y_limit) continue;
      d[kept] = d[k];
      y[kept] = y[k];
      vd[kept] = vd[k];
      vy[kept] = vy[k];
      vdd += vd[k] * vd[k];
      vdy += vd[k] * vy[k];
      ++kept;
    }
    d.resize(kept);
    y.resize(kept);
  }
  const size_t m = d.size();
  if (m < 16) return fits;
  const double offset_limit = std::ldexp(1.0, s);
  auto add = [&](double slope, double offset) {
    if (!std::isfinite(slope) || !std::isfinite(offset) || std::fabs(slope) > 4.0) return;
    Extrapolation e;
    e.slope = static_cast<int32_t>(std::lround(slope * (1 << kSlopeShift)));
    e.offset = static_cast<int32_t>(std::lround(std::clamp(offset, -offset_limit, offset_limit)));
    if ((e.slope == 0 && e.offset == 0) || !extrapolation_valid<U>(e)) return;
    for (const Extrapolation& f : fits)
      if (f.slope == e.slope && f.offset == e.offset) return;
    fits.push_back(e);
  };
  if (vdd > 0) {
    const double slope = vdy / vdd;
    std::vector<double> rest;
    for (size_t k = 0; k < m; k += (m + kMedianPoints - 1) / kMedianPoints)
      rest.push_back(static_cast<double>(y[k]) - slope * static_cast<double>(d[k]));
    std::nth_element(rest.begin(), rest.begin() + rest.size() / 2, rest.end());
    add(slope, rest[rest.size() / 2]);
  }
  double sdd = 0, sd = 0, sdy = 0, sy = 0;
  for (size_t k = 0; k < m; ++k) {
    const double dk = static_cast<double>(d[k]), yk = static_cast<double>(y[k]);
    sdd += dk * dk;
    sd += dk;
    sdy += dk * yk;
    sy += yk;
  }
  const double det = sdd * static_cast<double>(m) - sd * sd;
  if (det > 0) add((sdy * static_cast<double>(m) - sd * sy) / det, (sdd * sy - sd * sdy) / det);
  return fits;
}

// Scaled segments (transform 2): rows whose moments only decayed since the last save (no
// gradient reached them) are their reference times one factor, beta^k. Probes three values
// of every segment (a row of the chunk's last dimension, else 256 values) for a common
// ratio to the reference; the median ratio of the segments that show one is the scale,
// and a segment is selected where the scaled reference leaves residuals of fewer bits.
// When one is, pred and pred_prev (null without a prev-reference) hold what apply_scaled
// makes of the selection (the prediction and its prev-reference), computed while selecting.
template <typename U>
bool find_scaled_segments(const EncodeInput& in, uint64_t n, ScaledSegments& out, std::unique_ptr<U[]>& pred,
                          std::unique_ptr<U[]>& pred_prev) {
  const U* x = static_cast<const U*>(in.data);
  const U* ref = static_cast<const U*>(in.reference);
  const U* prev = static_cast<const U*>(in.prev_reference);
  const int mant = mantissa_bits(in.dtype), expb = exponent_bits(in.dtype);
  const uint64_t last = in.shape.empty() ? n : in.shape.back();
  const uint64_t segment = in.shape.size() >= 2 && last >= 16 && last <= 0xFFFFFFFFu ? last : 256;
  const uint64_t segments = segment_count(n, static_cast<uint32_t>(segment));
  if (segments == 0) return false;
  auto normal = [&](U b) {
    const int e = float_exponent(b, mant, expb);
    return e != 0 && e != (1 << expb) - 1;
  };
  auto ratio = [&](uint64_t i) { return to_double<U>(x[i], in.dtype) / to_double<U>(ref[i], in.dtype); };
  // Probes agree within the tolerance (loose enough for rows that had a little gradient);
  // a common ratio within 8 ulps of 1 is no decay to code: unchanged or noisy rows, which
  // 16-bit floats show often.
  const double tolerance = std::ldexp(1.0, std::max(-10, 1 - mant));
  const double near_one = std::ldexp(1.0, 3 - mant);
  std::vector<double> ratios;
  std::vector<uint64_t> candidates;
  for (uint64_t j = 0; j < segments; ++j) {
    const uint64_t begin = j * segment, end = std::min(n, begin + segment);
    const uint64_t probes[3] = {begin, begin + (end - begin) / 2, end - 1};
    double first = 0;
    int seen = 0;
    bool agree = true;
    for (uint64_t i : probes) {
      if (!normal(x[i]) || !normal(ref[i])) continue;
      const double r = ratio(i);
      if (seen == 0) first = r;
      else if (std::fabs(r / first - 1) > tolerance) agree = false;
      ++seen;
    }
    if (seen >= 2 && agree && first > 0 && std::fabs(first - 1) > near_one && first < 0x1p16) {
      ratios.push_back(first);
      candidates.push_back(j);
    }
  }
  if (ratios.empty()) return false;
  std::vector<double> sorted = ratios;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const double scale = sorted[sorted.size() / 2];
  int e2 = 0;
  const double f = std::frexp(scale, &e2);  // scale = f 2^e2, f in [0.5, 1)
  uint64_t mantissa = static_cast<uint64_t>(std::llround(std::ldexp(f, 32)));
  if (mantissa >> 32) {
    mantissa >>= 1;
    ++e2;
  }
  out.mantissa = static_cast<uint32_t>(mantissa);
  out.shift = -e2;
  out.segment = static_cast<uint32_t>(segment);
  if (!scale_valid(out.mantissa, out.shift)) return false;
  out.bitmap.assign((segments + 7) / 8, 0);
  pred.reset(new U[n]);
  pred_prev.reset(prev ? new U[n] : nullptr);  // none without a prev-reference
  std::memcpy(pred.get(), ref, n * sizeof(U));  // segments not selected keep ref and prev
  if (prev) std::memcpy(pred_prev.get(), prev, n * sizeof(U));
  bool any = false;
  for (size_t c = 0; c < candidates.size(); ++c) {
    if (std::fabs(ratios[c] / scale - 1) > tolerance) continue;
    const uint64_t j = candidates[c], begin = j * segment, end = std::min(n, begin + segment);
    uint64_t scaled_bits = 0, plain_bits = 0;
    for (uint64_t i = begin; i < end; ++i) {
      pred[i] = scale_one<U>(ref[i], out.mantissa, out.shift, mant, expb);
      scaled_bits += bit_length(zigzag<U>(static_cast<U>(x[i] - pred[i])));
      plain_bits += bit_length(zigzag<U>(static_cast<U>(x[i] - ref[i])));
    }
    const size_t bytes = (end - begin) * sizeof(U);
    if (scaled_bits < plain_bits) {
      out.bitmap[j >> 3] |= static_cast<uint8_t>(1u << (j & 7));
      if (prev) std::memcpy(pred_prev.get() + begin, pred.get() + begin, bytes);
      any = true;
    } else {
      std::memcpy(pred.get() + begin, ref + begin, bytes);
    }
  }
  return any;
}

// Chooses, on a sample, between coding a delta chunk against its reference, against an
// extrapolation of it (with a prev-reference), and coding its values standalone (optimizer
// moments refresh between distant saves), and the position and context schemes; then
// codes the whole chunk with that plan.
template <typename U>
void encode_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out) {
  Sample<U> sample(in, n);
  const double scale = sample.count ? static_cast<double>(n) / static_cast<double>(sample.count) : 1.0;
  const bool delta = in.reference != nullptr;
  EncodeInput standalone = in, sample_standalone = sample.input;
  standalone.reference = standalone.prev_reference = nullptr;
  sample_standalone.reference = sample_standalone.prev_reference = nullptr;
  // Candidates: (uses reference, float split, extrapolation); the cheapest on the sample
  // codes the chunk.
  struct Candidate {
    Candidate(bool reference_, bool float_split_, Plan plan_)
        : reference(reference_), float_split(float_split_), plan(plan_) {}
    bool reference, float_split;
    Plan plan;
    bool extrapolated = false;
    Extrapolation extrapolation;
    bool scaled = false;
  };
  std::vector<Candidate> candidates;
  // Against the reference, or against an extrapolation of it when that leaves residuals of
  // fewer bits in all (a first cut on the sample; the plan is then made for the winner only).
  Candidate against_reference{true, false, Plan{}};
  std::vector<U> predicted;
  // Extrapolation needs the prev-reference; scaled segments do not (format 5).
  const bool may_scale = delta && in.extrapolate && extrapolation_allowed(in.dtype);
  const bool may_predict = may_scale && in.prev_reference;
  if constexpr (sizeof(U) <= 4) {
    if (may_predict) {
      const auto* sx = static_cast<const U*>(sample.input.data);
      const auto* sref = static_cast<const U*>(sample.input.reference);
      const auto* sprev = static_cast<const U*>(sample.input.prev_reference);
      const uint64_t count = sample.count;
      auto residual_bits = [&](const U* p) {
        uint64_t bits = 0;
        for (uint64_t i = 0; i < count; ++i) bits += bit_length(zigzag<U>(static_cast<U>(sx[i] - p[i])));
        return static_cast<double>(bits);
      };
      double best_bits = residual_bits(sref) - 8.0 * kExtrapolationBytes / scale;
      std::vector<U> trial(count);
      for (const Extrapolation& e : fit_extrapolations<U>(sx, sref, sprev, count, in.dtype)) {
        extrapolate<U>(sref, sprev, count, e, trial.data());
        const double bits = residual_bits(trial.data());
        if (bits < best_bits) {
          best_bits = bits;
          against_reference.extrapolated = true;
          against_reference.extrapolation = e;
          predicted.swap(trial);
          trial.resize(count);
        }
      }
    }
  }
  if (against_reference.extrapolated) {
    EncodeInput si = sample.input;
    si.reference = predicted.data();
    si.prev_reference = sample.input.reference;
    against_reference.plan = ChunkEncoder<U>(si, sample.count, false, false).plan(scale);
    against_reference.plan.bits += 8.0 * kExtrapolationBytes;
    candidates.push_back(against_reference);
  } else if (delta) {
    against_reference.plan = ChunkEncoder<U>(sample.input, sample.count, false, false).plan(scale);
    candidates.push_back(against_reference);
  }
  // Against the reference scaled on the segments that only decayed (transform 2).
  ScaledSegments scaled;
  std::unique_ptr<U[]> scaled_pred, scaled_prev;
  if constexpr (sizeof(U) <= 4) {
    if (may_scale && find_scaled_segments<U>(in, n, scaled, scaled_pred, scaled_prev)) {
      EncodeInput full = in;
      full.reference = scaled_pred.get();
      full.prev_reference = scaled_prev.get();
      Sample<U> scaled_sample(full, n);
      Candidate c{true, false, ChunkEncoder<U>(scaled_sample.input, scaled_sample.count, false, false).plan(scale)};
      c.plan.bits += 8.0 * static_cast<double>(kScaledFixedBytes + scaled.bitmap.size());
      c.scaled = true;
      candidates.push_back(c);
    }
  }
  if (is_float(in.dtype))
    candidates.push_back({false, true, ChunkEncoder<U>(sample_standalone, sample.count, delta, true).plan(scale)});
  candidates.push_back({false, false, ChunkEncoder<U>(sample_standalone, sample.count, delta, false).plan(scale)});
  const Candidate* best = &candidates[0];
  for (const Candidate& c : candidates)
    if (c.plan.bits < best->plan.bits) best = &c;
  // Codes the chunk against a prediction, whose parameters follow the prefix.
  auto encode_predicted = [&](const U* prediction, const void* prediction_prev, uint8_t transform,
                              std::vector<uint8_t> params) {
    EncodeInput full = in;
    full.reference = prediction;
    full.prev_reference = prediction_prev;
    ChunkEncoder<U> encoder(full, n, false, false);
    encoder.set_transform(transform, std::move(params));
    encoder.encode_payload(best->plan, out);
  };
  if constexpr (sizeof(U) <= 4) {
    if (best->scaled) {
      encode_predicted(scaled_pred.get(), scaled_prev.get(), kTransformScaled, scaled_params(scaled));
      return;
    }
    if (best->extrapolated) {
      std::unique_ptr<U[]> predicted_chunk(new U[n]);  // every element written: no zero-fill
      extrapolate<U>(static_cast<const U*>(in.reference), static_cast<const U*>(in.prev_reference), n,
                     best->extrapolation, predicted_chunk.get());
      encode_predicted(predicted_chunk.get(), in.reference, kTransformExtrapolate,
                       extrapolation_params(best->extrapolation));
      return;
    }
  }
  if (best->reference) {
    ChunkEncoder<U>(in, n, false, false).encode_payload(best->plan, out);
  } else {
    ChunkEncoder<U>(standalone, n, delta, best->float_split).encode_payload(best->plan, out);
  }
}

int min_subnormal_exponent(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return -149;
    case DType::kBFloat16: return -133;
    case DType::kFloat16: return -24;
    default: return -1074;
  }
}

// Quantizes x against ref within the bound; coded = ref + q (what the lossless layer carries),
// recon = what the decoder will rebuild. False if some value cannot keep the bound.
template <typename U>
bool quantize_chunk(const U* x, const U* ref, uint64_t n, DType dtype, const LossyParams& p,
                    std::vector<U>& coded, U* recon, const double* base = nullptr) {
  using S = std::make_signed_t<U>;
  const double limit = std::ldexp(1.0, kBits<U> - 2);
  const double smallest_normal = std::ldexp(1.0, min_subnormal_exponent(dtype) + mantissa_bits(dtype));
  const double floor_value = 2 * smallest_normal;  // below it the log-relative bound is absolute
  const bool absolute = p.kind == Quantizer::kAbsolute;
  const double bound = absolute ? p.value / (2 * (1 - absolute_step_margin(dtype))) : p.value;
  coded.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    const double xd = to_double<U>(x[i], dtype), rd = base ? base[i] : to_double<U>(ref[i], dtype);
    if (!std::isfinite(xd) || !std::isfinite(rd)) return false;
    // Rounding the rebuilt value to the dtype can push a value that sits half a step from
    // the grid just past the bound: then a neighbouring grid point is tried.
    bool kept = false;
    U q = 0, r = 0;
    for (int attempt = 0; attempt < (absolute ? 3 : 1) && !kept; ++attempt) {
      if (absolute) {
        const double qd = std::nearbyint((xd - rd) / p.value) + (attempt == 0 ? 0.0 : attempt == 1 ? -1.0 : 1.0);
        if (!(std::fabs(qd) < limit)) return false;
        q = static_cast<U>(static_cast<S>(static_cast<int64_t>(qd)));
      } else {
        q = log_quantize<U>(x[i], ref[i], p.step);
        // The grid may put the nearest point across zero: take the next one on x's side, so
        // that non-negative tensors (second moments) stay non-negative.
        constexpr U kSign = static_cast<U>(U(1) << (kBits<U> - 1));
        const U first = dequantize<U>(ref[i], q, p, dtype);
        if ((first ^ x[i]) & kSign) q = static_cast<U>(q + ((x[i] & kSign) ? U(-1) : U(1)));
      }
      r = absolute ? dequantize_absolute<U>(rd, q, p, dtype) : dequantize<U>(ref[i], q, p, dtype);
      const double rec = to_double<U>(r, dtype);
      if (!std::isfinite(rec)) continue;
      if (!absolute && std::signbit(rec) != std::signbit(xd)) continue;
      const double allowed = absolute ? bound : bound * std::max(std::fabs(xd), floor_value);
      if (!(std::fabs(rec - xd) <= allowed)) continue;
      // Idempotent: quantizing the rebuilt value again must give the same q.
      if (absolute && std::nearbyint((rec - rd) / p.value) != static_cast<double>(static_cast<S>(q))) continue;
      kept = true;
    }
    if (!kept) return false;
    coded[i] = static_cast<U>(ref[i] + q);
    if (recon) recon[i] = r;
  }
  return true;
}

LossyParams lossy_params(const EncodeInput& in) {
  if (!is_float(in.dtype))
    fail(ErrorCode::kInvalidArgument, std::string("lossy mode needs a float dtype, not ") + dtype_name(in.dtype));
  if (!(std::isfinite(in.error_bound) && in.error_bound > 0))
    fail(ErrorCode::kInvalidArgument, "lossy error bound must be a positive finite number");
  LossyParams p;
  if (in.lossy == LossyKind::kAbsolute) {
    p.kind = Quantizer::kAbsolute;
    p.value = 2 * in.error_bound * (1 - absolute_step_margin(in.dtype));
  } else {
    if (in.error_bound >= 1)
      fail(ErrorCode::kInvalidArgument, "relative (log-domain) error bound must be below 1");
    p.kind = Quantizer::kLogRelative;
    p.value = in.error_bound;
    // Half a step of S = b' 2^(M+1) ordered units is at most b' 2^e in a binade [2^e, 2^(e+1)),
    // and b' 2^(e+1) when it reaches into the binade above, where |x| >= 2^(e+1) (1 - b'/2):
    // b' = 2b / (2 + b) keeps that within b |x| (x 0.999 for rounding). Near zero a step is
    // S subnormal ulps, at most 2 b' N (N: smallest normal): hence the absolute floor 2N.
    const double shrunk = 0.999 * 2 * in.error_bound / (2 + in.error_bound);
    const double units = std::floor(shrunk * std::ldexp(1.0, mantissa_bits(in.dtype) + 1));
    p.step = units < 1 ? 1 : static_cast<uint64_t>(units);
  }
  return p;
}

// Absolute quantizer on a delta chunk with a prev-reference: values are quantized around
// a x ref, a = <ref, prev> / <prev, prev>, the scale that carried prev to ref (optimizer
// moments decay by beta^steps between saves). It is used where that scale explained the
// last move (|ref - a prev|^2 <= 0.95 |ref - prev|^2) and shifts values by at least half a
// step on average (RMS). Both depend on the references only, so re-encoding a
// reconstruction makes the same choice: the quantizer stays idempotent.
template <typename U>
void choose_lossy_predictor(const U* ref, const U* prev, uint64_t n, DType dtype, LossyParams& p) {
  if (!prev || n == 0) return;
  double srp = 0, spp = 0, srr = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double rd = to_double<U>(ref[i], dtype), qd = to_double<U>(prev[i], dtype);
    srp += rd * qd;
    spp += qd * qd;
    srr += rd * rd;
  }
  if (!(spp > 0) || !std::isfinite(srp) || !std::isfinite(spp) || !std::isfinite(srr)) return;
  const double a = srp / spp;
  if (!(std::fabs(a) <= kMaxPredictorCoefficient)) return;
  const double last_move = srr - 2 * srp + spp, left_by_scale = srr - a * srp;
  if (!(left_by_scale <= 0.95 * last_move)) return;
  const double shift_rms = std::fabs(1.0 - a) * std::sqrt(srr / static_cast<double>(n));
  if (!(shift_rms >= p.value / 2)) return;
  p.predictor = 1;
  p.a = a;
  p.b = 0.0;
}

// Lossy chunks: quantize, then code the integers losslessly against the reference (zeros
// for a standalone chunk). Returns false (nothing written) if the bound cannot be kept.
template <typename U>
bool encode_lossy_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out) {
  LossyParams p = lossy_params(in);
  std::vector<U> zeros;
  const U* ref = static_cast<const U*>(in.reference);
  if (!ref) {
    zeros.assign(n, 0);
    ref = zeros.data();
  }
  const U* x = static_cast<const U*>(in.data);
  const U* prev = static_cast<const U*>(in.prev_reference);
  std::vector<double> base;
  if (p.kind == Quantizer::kAbsolute && in.reference && in.extrapolate) {
    choose_lossy_predictor<U>(ref, prev, n, in.dtype, p);
    if (p.predictor) {
      base.resize(n);
      for (uint64_t i = 0; i < n; ++i)
        base[i] = predicted_base(p, to_double<U>(ref[i], in.dtype), prev ? to_double<U>(prev[i], in.dtype) : 0.0);
    }
  }
  std::vector<U> coded;
  U* recon = static_cast<U*>(in.reconstruction);
  if (!quantize_chunk<U>(x, ref, n, in.dtype, p, coded, recon, base.empty() ? nullptr : base.data())) {
    if (!p.predictor) return false;
    p = lossy_params(in);  // a prediction out of the dtype's range: quantize around ref itself
    if (!quantize_chunk<U>(x, ref, n, in.dtype, p, coded, recon)) return false;
  }
  write_lossy_block(p, out);
  EncodeInput inner = in;
  inner.data = coded.data();
  inner.reference = ref;
  inner.extrapolate = false;  // lossy chunks code q against the reference itself
  std::vector<U> prev_q;
  if (in.prev_reference) {
    quantized_prev_reference<U>(ref, static_cast<const U*>(in.prev_reference), n, p, in.dtype, prev_q);
    inner.prev_reference = prev_q.data();
  }
  encode_payload<U>(inner, n, out);
  return true;
}

// A lossy chunk that would not be smaller than the values stored raw (tiny chunks, where
// the lossy block dominates) is coded losslessly instead: it is never larger than that.
template <typename U>
bool encode_any_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out) {
  if (in.lossy != LossyKind::kNone && encode_lossy_payload<U>(in, n, out)) {
    if (out.size() < kPayloadPrefix + n * sizeof(U)) return true;
    out.clear();
  }
  encode_payload<U>(in, n, out);
  if (in.reconstruction && n) std::memcpy(in.reconstruction, in.data, n * sizeof(U));
  return false;
}

}  // namespace

size_t encode_bound(size_t nbytes, size_t ndim) {
  return header_size(ndim) + kPayloadPrefix + nbytes;
}

std::vector<uint8_t> encode(const EncodeInput& in) {
  if (in.shape.size() > kMaxNdim)
    fail(ErrorCode::kInvalidArgument, "array has " + std::to_string(in.shape.size()) + " dimensions; tpde chunks hold at most 32");
  if (in.prev_reference && !in.reference)
    fail(ErrorCode::kInvalidArgument, "prev_reference given without reference");
  Header h;
  h.dtype = in.dtype;
  h.shape = in.shape;
  uint64_t nbytes = dtype_size(in.dtype);
  for (uint64_t d : in.shape) {
    if (d != 0 && nbytes > kMaxChunkBytes / d) fail(ErrorCode::kTooLarge, "chunk larger than the 64 GiB limit");
    nbytes *= d;
  }
  const uint64_t n = h.count();
  if (in.reference) {
    h.mode = Mode::kDelta;
    h.reference_fingerprint = crc32c(in.reference, nbytes);
    if (in.prev_reference) {
      h.flags |= kFlagPrevReference;
      h.prev_reference_fingerprint = crc32c(in.prev_reference, nbytes);
    }
  }
  if (in.lossy != LossyKind::kNone) lossy_params(in);  // validate before any work
  std::vector<uint8_t> payload;
  payload.reserve(nbytes / 2 + 1024);
  bool lossy = false;
  switch (dtype_size(in.dtype)) {
    case 1: lossy = encode_any_payload<uint8_t>(in, n, payload); break;
    case 2: lossy = encode_any_payload<uint16_t>(in, n, payload); break;
    case 4: lossy = encode_any_payload<uint32_t>(in, n, payload); break;
    case 8: lossy = encode_any_payload<uint64_t>(in, n, payload); break;
    default: fail(ErrorCode::kBadDtype, "unknown dtype");
  }
  if (lossy) h.flags |= kFlagLossy;
  h.payload_size = payload.size();
  h.payload_crc = crc32c(payload.data(), payload.size());
  std::vector<uint8_t> out;
  out.reserve(header_size(h.shape.size()) + payload.size());
  write_header(h, out);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

}  // namespace tpde
