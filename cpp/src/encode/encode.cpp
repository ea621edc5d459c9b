// Chunk encoder: residuals, zero masking with Elias-delta gaps, context-modelled rANS.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../common/bitstream.hpp"
#include "../common/elias.hpp"
#include "../common/header.hpp"
#include "../common/mem.hpp"
#include "../common/models.hpp"
#include "../common/payload.hpp"
#include "../common/quantize.hpp"
#include "../common/symbols.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace {

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

  // One pass gives the histograms of both position schemes (all values / non-zero values).
  template <ContextScheme S>
  void histogram_pass(Histogram& all, Histogram& nonzero) const {
    U prev_all = initial_previous(S), prev_nonzero = prev_all;
    const uint8_t* sym = symbols_.data();
    const U* v = v_.data();
    for (uint64_t i = 0; i < n_; ++i) {
      const size_t c = static_cast<size_t>(context_at<S>(i, prev_all));
      ++all[c * kAlphabet + sym[i]];
      prev_all = v[i];
      if (v[i]) {
        const size_t cz = (S == ContextScheme::kNeighbour || S == ContextScheme::kPrevExponent)
                              ? static_cast<size_t>(context_at<S>(i, prev_nonzero))
                              : c;
        ++nonzero[cz * kAlphabet + sym[i]];
        prev_nonzero = v[i];
      }
    }
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
    Histogram all, nonzero;
    for (ContextScheme scheme : candidate_contexts()) {
      if (!(context_mask_ & (1u << static_cast<int>(scheme)))) continue;
      const int contexts = context_count(scheme);
      all.assign(static_cast<size_t>(contexts) * kAlphabet, 0);
      nonzero.assign(static_cast<size_t>(contexts) * kAlphabet, 0);
      with_context_scheme(scheme, [&](auto s) { histogram_pass<decltype(s)::value>(all, nonzero); });
      for (int elias = 0; elias < (zeros_ > 0 ? 2 : 1); ++elias) {
        const Histogram& h = elias ? nonzero : all;
        double bits = 8.0 * (kPayloadPrefix + 32) +
                      scale_ * (static_cast<double>(tail_counts[elias]) + (elias ? gap_bits : 0));
        for (int c = 0; c < contexts; ++c) bits += estimate_context_bits(&h[size_t(c) * kAlphabet], scale_);
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

  void write_coded(const Plan& plan, std::vector<uint8_t>& out) {
    const bool elias = plan.positions == PositionScheme::kEliasGaps;
    const int contexts = context_count(plan.contexts);
    const uint64_t coded = elias ? n_ - zeros_ : n_;

    std::vector<uint8_t> ctx(coded);
    Histogram hist(static_cast<size_t>(contexts) * kAlphabet, 0);
    std::vector<uint8_t> gaps, tails;
    BitWriter gap_writer(gaps, elias ? coded / 2 : 0), tail_writer(tails, n_ * sizeof(U));
    auto code_values = [&](auto scheme, auto elias_const, auto split_const) {
      constexpr ContextScheme S = decltype(scheme)::value;
      constexpr bool kElias = decltype(elias_const)::value;
      constexpr bool kSplit = decltype(split_const)::value;
      const U* values = v_.data();
      const uint8_t* symbols = symbols_.data();
      uint8_t* contexts_out = ctx.data();
      uint64_t* h = hist.data();
      U previous = initial_previous(S);
      uint64_t k = 0, last = 0;
      const uint64_t n = n_;
      for (uint64_t i = 0; i < n; ++i) {
        const U v = values[i];
        if constexpr (kElias) {
          if (v == 0) continue;
          put_elias_delta(gap_writer, i + 1 - last);
          last = i + 1;
        }
        const int c = context_at<S>(i, previous);
        contexts_out[k++] = static_cast<uint8_t>(c);
        ++h[static_cast<size_t>(c) * kAlphabet + symbols[i]];
        if constexpr (kSplit) {
          tail_writer.put_wide(v & ((U(1) << (kBits<U> - 8)) - 1), kBits<U> - 8);
        } else if (v >= 8) {
          const int tb = log_bucket_tail_bits(symbols[i]);
          tail_writer.put_wide(v & ((uint64_t(1) << tb) - 1), tb);
        }
        previous = v;
      }
    };
    with_context_scheme(plan.contexts, [&](auto scheme) {
      auto with_split = [&](auto elias_const) {
        if (float_split_) code_values(scheme, elias_const, std::true_type{});
        else code_values(scheme, elias_const, std::false_type{});
      };
      if (elias) with_split(std::true_type{});
      else with_split(std::false_type{});
    });
    gap_writer.finish();
    tail_writer.finish();

    std::vector<uint32_t> freqs(static_cast<size_t>(contexts) * kAlphabet, 0);
    std::vector<RansEncSymbol> enc(static_cast<size_t>(contexts) * kAlphabet);
    for (int c = 0; c < contexts; ++c) {
      const size_t base = static_cast<size_t>(c) * kAlphabet;
      bool any = false;
      for (int s = 0; s < kAlphabet; ++s) any |= hist[base + s] != 0;
      if (!any) continue;
      normalize_frequencies(&hist[base], &freqs[base]);
      uint32_t cum = 0;
      for (int s = 0; s < kAlphabet; ++s) {
        if (freqs[base + s]) enc[base + s] = RansEncSymbol(cum, freqs[base + s]);
        cum += freqs[base + s];
      }
    }
    std::vector<uint8_t> tables;
    write_tables(freqs, contexts, tables);

    RansEncoder rans(coded);
    {
      uint64_t k = coded;
      for (uint64_t i = n_; i-- > 0;) {
        if (elias && v_[i] == 0) continue;
        --k;
        rans.put(enc[static_cast<size_t>(ctx[k]) * kAlphabet + symbols_[i]]);
      }
    }
    const std::vector<uint8_t> rans_bytes = rans.finish();

    const size_t start = out.size();
    out.resize(start + kPayloadPrefix, 0);
    uint8_t* p = out.data() + start;
    p[0] = static_cast<uint8_t>(float_split_ ? ValueScheme::kFloatSplit : ValueScheme::kLogBucket);
    p[1] = static_cast<uint8_t>(plan.positions);
    p[2] = static_cast<uint8_t>(plan.contexts);
    p[3] = without_reference_ ? 1 : 0;
    store_le<uint16_t>(p + 4, static_cast<uint16_t>(context_param_));
    store_le<uint64_t>(p + 8, coded);
    const std::vector<uint8_t>* sections[] = {&gaps, &tables, &rans_bytes, &tails};
    for (const std::vector<uint8_t>* section : sections) {
      uint8_t len[8];
      store_le<uint64_t>(len, section->size());
      out.insert(out.end(), len, len + 8);
      out.insert(out.end(), section->begin(), section->end());
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
};

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

// Chooses, on a sample, between coding a delta chunk against its reference and coding its
// values standalone (optimizer moments refresh between distant saves), and the position
// and context schemes; then codes the whole chunk with that plan.
template <typename U>
void encode_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out) {
  Sample<U> sample(in, n);
  const double scale = sample.count ? static_cast<double>(n) / static_cast<double>(sample.count) : 1.0;
  const bool delta = in.reference != nullptr;
  EncodeInput standalone = in, sample_standalone = sample.input;
  standalone.reference = standalone.prev_reference = nullptr;
  sample_standalone.reference = sample_standalone.prev_reference = nullptr;
  // Candidates: (uses reference, float split); the cheapest on the sample codes the chunk.
  struct Candidate {
    bool reference, float_split;
    Plan plan;
  };
  std::vector<Candidate> candidates;
  if (delta) candidates.push_back({true, false, ChunkEncoder<U>(sample.input, sample.count, false, false).plan(scale)});
  if (is_float(in.dtype))
    candidates.push_back({false, true, ChunkEncoder<U>(sample_standalone, sample.count, delta, true).plan(scale)});
  candidates.push_back({false, false, ChunkEncoder<U>(sample_standalone, sample.count, delta, false).plan(scale)});
  const Candidate* best = &candidates[0];
  for (const Candidate& c : candidates)
    if (c.plan.bits < best->plan.bits) best = &c;
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
                    std::vector<U>& coded, U* recon) {
  using S = std::make_signed_t<U>;
  const double limit = std::ldexp(1.0, kBits<U> - 2);
  const double smallest_normal = std::ldexp(1.0, min_subnormal_exponent(dtype) + mantissa_bits(dtype));
  const double floor_value = 2 * smallest_normal;  // below it the log-relative bound is absolute
  const bool absolute = p.kind == Quantizer::kAbsolute;
  const double bound = absolute ? p.value / (2 * (1 - absolute_step_margin(dtype))) : p.value;
  coded.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    const double xd = to_double<U>(x[i], dtype), rd = to_double<U>(ref[i], dtype);
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
      r = dequantize<U>(ref[i], q, p, dtype);
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

// Lossy chunks: quantize, then code the integers losslessly against the reference (zeros
// for a standalone chunk). Returns false (nothing written) if the bound cannot be kept.
template <typename U>
bool encode_lossy_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out) {
  const LossyParams p = lossy_params(in);
  std::vector<U> zeros;
  const U* ref = static_cast<const U*>(in.reference);
  if (!ref) {
    zeros.assign(n, 0);
    ref = zeros.data();
  }
  std::vector<U> coded;
  if (!quantize_chunk<U>(static_cast<const U*>(in.data), ref, n, in.dtype, p, coded,
                         static_cast<U*>(in.reconstruction)))
    return false;
  write_lossy_block(p, out);
  EncodeInput inner = in;
  inner.data = coded.data();
  inner.reference = ref;
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
