// ChunkDecoder: the lossless decoding of one chunk's payload (positions, symbols, residuals,
// or FastPlanes) into values, against a given reference (or standalone). Every count and
// length read from the bytes is checked before use; bit and rANS readers never leave their
// sections, and each section must be consumed exactly. Used only by decode.cpp.
#pragma once
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>
#include "entropy/bitstream.hpp"
#include "entropy/elias.hpp"
#include "entropy/tables.hpp"
#include "fast/fast_decode.hpp"
#include "fast/fast_format.hpp"
#include "format/header.hpp"
#include "format/mem.hpp"
#include "format/payload.hpp"
#include "format/scratch.hpp"
#include "model/contexts16.hpp"
#include "model/quantize.hpp"
#include "model/symbols.hpp"
#include "predict/extrapolate.hpp"
#include "predict/scaled.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace decoder {

[[noreturn]] inline void corrupt(const std::string& what) {
  fail(ErrorCode::kCorrupt, "corrupted chunk payload: " + what);
}

struct Section {
  const uint8_t* data;
  size_t size;
};

inline Section take_section(const uint8_t*& p, const uint8_t* end, const char* name) {
  if (end - p < 8) corrupt(std::string("missing length of the ") + name + " section");
  const uint64_t len = load_le<uint64_t>(p);
  p += 8;
  if (len > static_cast<uint64_t>(end - p))
    corrupt(std::string("the ") + name + " section runs past the payload");
  Section s{p, static_cast<size_t>(len)};
  p += len;
  return s;
}

template <typename U>
class ChunkDecoder {
 public:
  // lossy_inner: the lossless layer of a lossy chunk, which never extrapolates.
  ChunkDecoder(const Header& h, const uint8_t* payload, U* out, const U* ref, const U* prev,
               bool lossy_inner = false)
      : h_(h),
        payload_(payload),
        out_(out),
        ref_(ref),
        prev_(prev),
        n_(h.count()),
        lossy_inner_(lossy_inner) {}

  void run() {
    const uint8_t* p = payload_;
    const uint8_t* end = payload_ + h_.payload_size;
    if (h_.payload_size < kPayloadPrefix) corrupt("payload shorter than its 16-byte prefix");
    const uint8_t value_scheme = p[0], position_scheme = p[1], context_scheme = p[2];
    if (value_scheme == fast::kValueSchemeFastPlanes) {  // format 6, docs/format.md section 14
      if (h_.version < kFastFormatVersion || lossy_inner_)
        corrupt("value scheme 3 (FastPlanes) in a lossy chunk or a chunk older than format 6");
      fast::decode_fast_payload(h_.dtype, payload_, h_.payload_size, n_, out_,
                                h_.mode == Mode::kDelta ? ref_ : nullptr);
      return;
    }
    context_param_ = load_le<uint16_t>(p + 4);
    const uint64_t coded = load_le<uint64_t>(p + 8);
    // Bytes 6-7 are reserved (ignored) before version 3; from version 3 byte 6 is the
    // reference transform (1; 2 from version 4) and byte 7 is zero.
    const uint8_t transform = h_.version >= 3 ? p[6] : kTransformNone;
    const uint8_t last_transform = h_.version >= 4 ? kTransformScaled : kTransformExtrapolate;
    if (h_.version >= 3 && (transform > last_transform || p[7] != 0))
      corrupt("unknown reference transform " + std::to_string(transform) + "/" +
              std::to_string(p[7]));
    p += kPayloadPrefix;
    if (transform != kTransformNone && value_scheme == static_cast<uint8_t>(ValueScheme::kStored))
      corrupt("reference transform on stored values");
    if (value_scheme == static_cast<uint8_t>(ValueScheme::kStored)) {
      if (coded != n_ || static_cast<uint64_t>(end - p) != n_ * sizeof(U))
        corrupt("stored section size does not match the shape");
      if (n_) std::memcpy(out_, p, n_ * sizeof(U));  // empty arrays may have null buffers
      return;
    }
    if (payload_[3] > 1) corrupt("unknown reference flag " + std::to_string(payload_[3]));
    if (payload_[3] == 1 && h_.mode != Mode::kDelta)
      corrupt("reference flag on a standalone chunk");
    // A delta chunk may code its values without the reference (payload byte 3 = 1).
    const bool is_delta = h_.mode == Mode::kDelta && payload_[3] == 0;
    use_reference_ = is_delta;
    // Transform 1 needs the prev-reference; transform 2 too before format 5.
    const bool needs_prev = transform == kTransformExtrapolate || h_.version < 5;
    if (transform != kTransformNone &&
        (!is_delta || (needs_prev && !prev_) || !extrapolation_allowed(h_.dtype) || kBits<U> > 32 ||
         lossy_inner_))
      corrupt(std::string(transform == kTransformExtrapolate ? "extrapolated" : "scaled") +
              " reference on a chunk without a reference" +
              (needs_prev ? " and prev-reference" : "") + " of a 16/32-bit float dtype");
    if constexpr (kBits<U> <= 32) {
      if (transform == kTransformExtrapolate) apply_extrapolation(p, end);
      if (transform == kTransformScaled) apply_scaling(p, end);
    }
    float_split_ = value_scheme == static_cast<uint8_t>(ValueScheme::kFloatSplit);

    if (value_scheme > 2) corrupt("unknown value scheme " + std::to_string(value_scheme));
    if (float_split_ && (is_delta || !is_float(h_.dtype)))
      corrupt("float-split scheme on a delta or integer chunk");
    if (position_scheme > 1) corrupt("unknown position scheme " + std::to_string(position_scheme));
    if (context_scheme >= kContextSchemeCount)
      corrupt("unknown context scheme " + std::to_string(context_scheme));
    scheme_ = static_cast<ContextScheme>(context_scheme);
    const bool ok_scheme =
        scheme_ == ContextScheme::kNone ||
        (scheme_ == ContextScheme::kRefExponent && is_delta && is_float(h_.dtype)) ||
        (scheme_ == ContextScheme::kPrevResidual && is_delta && prev_) ||
        (scheme_ == ContextScheme::kNeighbour && !float_split_) ||
        (scheme_ == ContextScheme::kPrevExponent && float_split_) ||
        (scheme_ == ContextScheme::kRefExponentPrevResidual && is_delta && prev_ &&
         is_float(h_.dtype));
    if (!ok_scheme)
      corrupt("context scheme " + std::to_string(context_scheme) + " does not fit this chunk");
    if (is_float(h_.dtype) && context_param_ >= (1 << exponent_bits(h_.dtype)))
      corrupt("context parameter out of range");
    elias_ = position_scheme == static_cast<uint8_t>(PositionScheme::kEliasGaps);
    if (elias_ ? coded > n_ : coded != n_) corrupt("coded value count does not match the shape");

    const Section gaps = take_section(p, end, "gaps");
    const Section tables = take_section(p, end, "tables");
    const Section rans = take_section(p, end, "rANS");
    const Section tails = take_section(p, end, "tails");
    if (p != end) corrupt("trailing bytes after the tails section");
    if (!elias_ && gaps.size) corrupt("gap section present without gap coding");

    const int contexts = context_count(scheme_);
    const int max_symbol = float_split_ ? 255 : log_bucket_max_symbol(kBits<U>);
    if (!read_tables(tables.data, tables.size, contexts, max_symbol, tables_, used_))
      corrupt("malformed frequency tables");

    if (n_ == 0) {
    } else if (is_delta && elias_) {
      std::memcpy(out_, ref_, n_ * sizeof(U));  // uncoded positions keep the reference value
    } else if (!is_delta) {
      std::memset(out_, 0, n_ * sizeof(U));
    }
    decode_values(coded, gaps, rans, tails);
    finish_transform();
  }

 private:
  enum class Values { kResidual, kFloatSplit, kNeighbourDiff };

  // Transform 1: reads the parameters after the prefix and swaps in the extrapolated
  // reference; the chunk's own reference becomes the prev-reference of the contexts.
  void apply_extrapolation(const uint8_t*& p, const uint8_t* end) {
    if (end - p < static_cast<ptrdiff_t>(kExtrapolationBytes))
      corrupt("extrapolation parameters cut short");
    Extrapolation e;
    e.slope = static_cast<int32_t>(load_le<uint32_t>(p));
    e.offset = static_cast<int32_t>(load_le<uint32_t>(p + 4));
    if (!extrapolation_valid<U>(e)) corrupt("extrapolation parameters out of range");
    p += kExtrapolationBytes;
    predicted_.resize(n_);  // every element written by extrapolate: no zero-fill
    extrapolate<U>(ref_, prev_, n_, e, predicted_.get());
    prev_ = ref_;
    ref_ = predicted_.get();
  }

  // Transform 2: reads the scale, segment length and bitmap after the prefix and swaps in
  // the prediction (scaled reference on selected segments) and its prev-reference.
  void apply_scaling(const uint8_t*& p, const uint8_t* end) {
    if (end - p < static_cast<ptrdiff_t>(kScaledFixedBytes))
      corrupt("scaled-reference parameters cut short");
    ScaledSegments s;
    s.mantissa = load_le<uint32_t>(p);
    s.shift = static_cast<int32_t>(load_le<uint32_t>(p + 4));
    s.segment = load_le<uint32_t>(p + 8);
    p += kScaledFixedBytes;
    if (!scale_valid(s.mantissa, s.shift)) corrupt("scale out of range");
    if (s.segment == 0) corrupt("scaled-reference segment length 0");
    const uint64_t segments = segment_count(n_, s.segment), bitmap_bytes = (segments + 7) / 8;
    if (static_cast<uint64_t>(end - p) < bitmap_bytes) corrupt("scaled-reference bitmap cut short");
    s.bitmap.assign(p, p + bitmap_bytes);
    p += bitmap_bytes;
    if ((segments & 7) && (s.bitmap.back() >> (segments & 7)))
      corrupt("scaled-reference bitmap padding not zero");
    predicted_.resize(n_);               // every element written by apply_scaled: no zero-fill
    if (prev_) scaled_prev_.resize(n_);  // format 5 allows no prev-reference
    apply_scaled<U>(ref_, prev_, n_, s, mant_, expb_, predicted_.get(), scaled_prev_.get());
    prev_ = scaled_prev_.get();
    ref_ = predicted_.get();
  }

  // Context of position i. The reference-exponent part goes through a per-chunk table of
  // exponent_context over every exponent value (same definition, one load instead of the
  // subtract and two clamps); the other schemes call context_of directly.
  template <ContextScheme S>
  int context_at(uint64_t i, U previous_v, const uint8_t* exp_ctx) const {
    if constexpr (S == ContextScheme::kRefExponent) {
      return exp_ctx[float_exponent(ref_[i], mant_, expb_)];
    } else if constexpr (S == ContextScheme::kRefExponentPrevResidual) {
      return exp_ctx[float_exponent(ref_[i], mant_, expb_)] * 4 +
             class_bucket(magnitude_class(zigzag<U>(static_cast<U>(ref_[i] - prev_[i]))));
    } else {
      return context_of<S, U>(ContextSources<U>{ref_, prev_, context_param_, mant_, expb_}, i,
                              previous_v);
    }
  }

#if defined(TPDE_SSE2_CONTEXTS)
  // Contexts of positions [begin, n) into out[0, n - begin), for the schemes that depend on
  // reference and prev-reference, 16-bit values: one vector pass (the same values as context_of),
  // so the decode loop loads one byte instead of computing them next to the rANS chain
  // (kRefExponent alone is one table load already: precomputing it measured slower).
  template <ContextScheme S>
  void precompute_contexts16(uint64_t begin, uint64_t n, uint8_t* out) const {
    const Contexts16 contexts(context_param_, mant_, expb_);
    uint64_t i = begin;
    for (; i + 16 <= n; i += 16) {
      const __m128i ctx[2] = {contexts.at<S>(ref_, prev_, i), contexts.at<S>(ref_, prev_, i + 8)};
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (i - begin)),
                       _mm_packus_epi16(ctx[0], ctx[1]));
    }
    for (; i < n; ++i)
      out[i - begin] = static_cast<uint8_t>(
          context_of<S, U>(ContextSources<U>{ref_, prev_, context_param_, mant_, expb_}, i, 0));
  }
#endif

  void decode_values(uint64_t coded, Section gaps, Section rans, Section tails) {
    const Values values = use_reference_ ? Values::kResidual
                          : float_split_ ? Values::kFloatSplit
                                         : Values::kNeighbourDiff;
    auto with_values = [&](auto scheme) {
      auto with_elias = [&](auto elias) {
        constexpr ContextScheme S = decltype(scheme)::value;
        constexpr bool E = decltype(elias)::value;
        // Contexts that depend on the previous value depend only on its symbol (kNeighbour:
        // its bit length; kPrevExponent: its exponent, within the symbol's 8 bits when the
        // dtype has <= 8 exponent bits), so the loop can tabulate them per symbol.
        auto with_states = [&](auto states) {
          constexpr int N = decltype(states)::value;
          switch (values) {
            case Values::kResidual:
              decode_loop<S, E, N, Values::kResidual, S == ContextScheme::kNeighbour>(coded, gaps,
                                                                                      rans, tails);
              break;
            case Values::kFloatSplit:
              if (S == ContextScheme::kPrevExponent && expb_ <= 8)
                decode_loop<S, E, N, Values::kFloatSplit, S == ContextScheme::kPrevExponent>(
                    coded, gaps, rans, tails);
              else
                decode_loop<S, E, N, Values::kFloatSplit, false>(coded, gaps, rans, tails);
              break;
            case Values::kNeighbourDiff:
              decode_loop<S, E, N, Values::kNeighbourDiff, S == ContextScheme::kNeighbour>(
                  coded, gaps, rans, tails);
              break;
          }
        };
        // Format 5 interleaves two rANS states; formats 1-4 have one.
        if (h_.version >= 5)
          with_states(std::integral_constant<int, 2>{});
        else
          with_states(std::integral_constant<int, 1>{});
      };
      if (elias_)
        with_elias(std::true_type{});
      else
        with_elias(std::false_type{});
    };
    with_context_scheme(scheme_, with_values);
  }

  // Tails of values up to 32 bits fit one 57-bit read; only 64-bit values need two.
  static uint64_t read_tail(BitReader& reader, int nbits) {
    if constexpr (kBits<U> <= 32) {
      return reader.get(nbits);
    } else {
      return reader.get_wide(nbits);
    }
  }

  struct LogBucketTable {
    uint8_t tail_bits[256];
    U value_base[256];
    LogBucketTable() {
      for (uint32_t sym = 0; sym < 256; ++sym) {
        const bool valid = sym <= static_cast<uint32_t>(log_bucket_max_symbol(kBits<U>));
        tail_bits[sym] = static_cast<uint8_t>(valid ? log_bucket_tail_bits(sym) : 0);
        value_base[sym] = static_cast<U>(valid ? log_bucket_join(sym, 0) : 0);
      }
    }
  };

  // kSymbolContext: the context of the next value is a function of this value's symbol
  // (tabulated from context_of with the tail bits zero; decode_values checks it applies).
  template <ContextScheme S, bool kElias, int kStates, Values kValues, bool kSymbolContext>
  void decode_loop(uint64_t coded, Section gaps, Section rans_section, Section tails) {
    // Per-chunk lookup tables: exponent -> context, LogBucket symbol -> tail width and the
    // value bits above the tail (log_bucket_tail_bits / log_bucket_join, tabulated).
    uint8_t exp_ctx[1 << 11];
    if constexpr (S == ContextScheme::kRefExponent ||
                  S == ContextScheme::kRefExponentPrevResidual) {
      for (int e = 0; e < (1 << expb_); ++e)
        exp_ctx[e] = static_cast<uint8_t>(exponent_context(context_param_, e));
    }
    static const LogBucketTable log_bucket;  // built once per width
    const uint8_t* tail_bits = log_bucket.tail_bits;
    const U* value_base = log_bucket.value_base;
    BitReader gap_reader(gaps.data, gaps.size);
    BitReader tail_reader(tails.data, tails.size);
    RansDecoder<kStates> rans(rans_section.data, rans_section.size);
    U previous = 0;
    if constexpr (S == ContextScheme::kPrevExponent)
      previous = rotl1<U>(static_cast<U>(static_cast<U>(context_param_) << mant_));
    uint8_t symbol_ctx[256];
    int next_context = 0;
    if constexpr (kSymbolContext) {
      for (uint32_t sym = 0; sym < 256; ++sym) {
        const U v = kValues == Values::kFloatSplit
                        ? static_cast<U>(static_cast<U>(sym) << (kBits<U> - 8))
                        : value_base[sym];
        symbol_ctx[sym] = static_cast<uint8_t>(context_at<S>(0, v, exp_ctx));
      }
      next_context = context_at<S>(0, previous, exp_ctx);
    }
    constexpr bool kPrecomputed =
        sizeof(U) == 2 && kValues == Values::kResidual &&
        (S == ContextScheme::kPrevResidual || S == ContextScheme::kRefExponentPrevResidual);
    // Positions only increase: contexts are precomputed a block at a time (stays in L1).
    constexpr uint64_t kCtxBlock = 4096;
    uint8_t ctx_block[kCtxBlock];
    uint64_t block_begin = 0, block_end = 0;
    const DecTable* tables = tables_.get();
    const uint8_t* used = used_.data();
    U* out = out_;
    const U* ref = ref_;
    uint64_t position = 0;
    for (uint64_t k = 0; k < coded; ++k) {
      uint64_t i = k;
      if constexpr (kElias) {
        const uint64_t gap = get_elias_delta(gap_reader);
        if (gap == 0 || gap > n_ - position) corrupt("position gap out of range");
        i = position + gap - 1;
        position = i + 1;
      }
      int c;
      if constexpr (kSymbolContext) {
        c = next_context;
#if defined(TPDE_SSE2_CONTEXTS)
      } else if constexpr (kPrecomputed) {
        if (__builtin_expect(i >= block_end, 0)) {
          block_begin = i & ~(kCtxBlock - 1);
          block_end = std::min<uint64_t>(n_, block_begin + kCtxBlock);
          precompute_contexts16<S>(block_begin, block_end, ctx_block);
        }
        c = ctx_block[i - block_begin];
#endif
      } else {
        c = context_at<S>(i, previous, exp_ctx);
      }
      if (!used[c]) corrupt("value coded in a context without a table");
      const uint32_t sym = rans.get(tables[c]);
      if constexpr (kSymbolContext) next_context = symbol_ctx[sym];
      U v;
      if constexpr (kValues == Values::kFloatSplit) {
        v = static_cast<U>((static_cast<U>(sym) << (kBits<U> - 8)) |
                           read_tail(tail_reader, kBits<U> - 8));
        out[i] = rotr1<U>(v);
      } else {
        v = static_cast<U>(value_base[sym] | read_tail(tail_reader, tail_bits[sym]));
        if constexpr (kValues == Values::kResidual) {
          out[i] = static_cast<U>(ref[i] + unzigzag<U>(v));
        } else {
          out[i] = v;  // neighbour differences, summed in finish_transform
        }
      }
      if constexpr (kElias) {
        if (v == 0) corrupt("zero value at a coded position");
      }
      previous = v;
    }
    if (gap_reader.overran() || (gap_reader.bit_position() + 7) / 8 != gaps.size)
      corrupt("gap section length does not match its codes");
    if (tail_reader.overran() || (tail_reader.bit_position() + 7) / 8 != tails.size)
      corrupt("tail section length does not match its bits");
    if (!rans.finished_cleanly()) corrupt("rANS stream does not end cleanly");
  }

  void finish_transform() {
    if (use_reference_ || float_split_) return;
    U previous = 0;
    for (uint64_t i = 0; i < n_; ++i) {
      previous = static_cast<U>(previous + unzigzag<U>(out_[i]));
      out_[i] = previous;
    }
  }

  const Header& h_;
  const uint8_t* payload_;
  U* out_;
  const U* ref_;
  const U* prev_;
  const uint64_t n_;
  ScratchBuffer<U> predicted_;    // the extrapolated (transform 1) or scaled (2) reference
  ScratchBuffer<U> scaled_prev_;  // the prev-reference of a scaled chunk (transform 2)
  const bool lossy_inner_;
  bool float_split_ = false;
  bool elias_ = false;
  bool use_reference_ = false;
  const int mant_ = mantissa_bits(h_.dtype);
  const int expb_ = exponent_bits(h_.dtype);
  ContextScheme scheme_ = ContextScheme::kNone;
  int context_param_ = 0;
  std::unique_ptr<DecTable[]> tables_;
  std::vector<uint8_t> used_;
};

}  // namespace decoder
}  // namespace tpde
