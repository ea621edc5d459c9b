// ChunkEncoder: the lossless coding of one chunk's values against a given reference (or
// standalone): residuals and their symbols, the plan estimate (position scheme, context
// scheme) on a sample, the coding keys, and the payload written with a chosen plan.
#pragma once
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#if defined(__SSE2__) && !defined(TPDE_NO_SIMD)
#include <emmintrin.h>
#endif

#include "encode/frequencies.hpp"
#include "encode/sections.hpp"
#include "entropy/tables.hpp"
#include "format/mem.hpp"
#include "format/payload.hpp"
#include "format/scratch.hpp"
#include "model/contexts16.hpp"
#include "model/symbols.hpp"
#include "predict/extrapolate.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace encoder {

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
    const __m128i f = _mm_sub_epi32(_mm_srli_epi32(_mm_castps_si128(_mm_cvtepi32_ps(v)), 21),
                                    _mm_set1_epi32(512));
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
    return context_of<S, U>(ContextSources<U>{ref_, prev_, context_param_, mant_, expb_}, i,
                            previous_v);
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
  void histogram_pass(uint64_t* all, uint64_t* nonzero, uint8_t* used_all,
                      uint8_t* used_nonzero) const {
    // Only the rows of contexts that occur are cleared and counted (small chunks: the
    // tables of 33 or 64 contexts would cost more than the values).
    auto count_keys = [](const uint16_t* keys, uint64_t count, uint64_t* h, uint8_t* used,
                         bool skip_zero_symbol) {
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
    ScratchBuffer<uint16_t> keys(n_ + 8);
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
    for (int s = 0; s < kAlphabet; ++s)
      tail_counts[0] += sym_counts[s] * tail_bits_of(static_cast<uint8_t>(s));
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
        table[sym] = static_cast<uint8_t>(
            valid ? context_at<S>(0, static_cast<U>(log_bucket_join(sym, 0))) : 0);
      }
      return true;
    } else if constexpr (S == ContextScheme::kPrevExponent) {
      if (!float_split_ || mant_ + 1 < kBits<U> - 8) return false;
      for (int sym = 0; sym < kAlphabet; ++sym)
        table[sym] = static_cast<uint8_t>(
            context_at<S>(0, static_cast<U>(static_cast<U>(sym) << (kBits<U> - 8))));
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
    if constexpr (sizeof(U) == 2 && S != ContextScheme::kNeighbour &&
                  S != ContextScheme::kPrevExponent) {
      if (!float_split_) {
        const __m128i zero = _mm_setzero_si128();
        const Contexts16 contexts(context_param_, mant_, expb_);
        uint64_t i = 0;
        for (; i + 8 <= n; i += 8) {
          const __m128i ctx = contexts.at<S>(ref_, prev_, i);
          const __m128i sym = _mm_unpacklo_epi8(
              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(symbols + i)), zero);
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
    ScratchBuffer<uint16_t> keys(n + 8);
    uint64_t written = 0;
    with_context_scheme(plan.contexts, [&](auto scheme) {
      constexpr ContextScheme S = decltype(scheme)::value;
      written = elias ? compute_keys<S, true>(keys.get()) : compute_keys<S, false>(keys.get());
    });
    (void)written;  // == coded

    ScratchBuffer<uint8_t> gaps(elias ? n / 2 + 16 : 1);
    const size_t gaps_size = elias ? write_gaps<U>(values, n, gaps.get()) : 0;
    ScratchBuffer<uint8_t> tails(n * sizeof(U) + 16);
    const size_t tails_size = write_tails<U>(values, symbols, n, elias, float_split_, tails.get());

    Histogram hist;
    count_keys(keys.get(), coded, static_cast<size_t>(contexts) * kAlphabet, hist);
    std::vector<uint32_t> freqs;
    std::unique_ptr<EncSym[]> enc;
    build_symbols(hist, contexts, freqs, enc);
    std::vector<uint8_t> tables;
    write_tables(freqs, contexts, tables);

    const size_t rans_cap = 2 * coded + 16;
    ScratchBuffer<uint8_t> rans_buf(rans_cap);
    const uint8_t* rp = rans_encode_keys(keys.get(), coded, enc.get(), rans_buf.get(), rans_cap);
    const size_t rans_size = static_cast<size_t>(rans_buf.get() + rans_cap - rp);

    const size_t start = out.size();
    const size_t transform_bytes = transform_params_.size();
    out.resize(start + kPayloadPrefix + transform_bytes + 32 + gaps_size + tables.size() +
               rans_size + tails_size);
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
    const std::pair<const uint8_t*, size_t> sections[] = {{gaps.get(), gaps_size},
                                                          {tables.data(), tables.size()},
                                                          {rp, rans_size},
                                                          {tails.get(), tails_size}};
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
  ScratchBuffer<U> v_;  // every element written by transform()
  ScratchBuffer<uint8_t> symbols_;
  uint64_t zeros_ = 0;
  double scale_ = 1.0;
  int context_param_ = 0;
  uint8_t transform_ = kTransformNone;
  std::vector<uint8_t> transform_params_;
};

}  // namespace encoder
}  // namespace tpde
