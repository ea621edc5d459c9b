// Plan choice (encode/plan.hpp): candidates estimated on evenly spaced sample blocks.
#include "encode/plan.hpp"

#include <memory>
#include <utility>

#include "encode/chunk_encoder.hpp"
#include "encode/transform_search.hpp"
#include "predict/extrapolate.hpp"
#include "predict/scaled.hpp"

namespace tpde {
namespace encoder {

namespace {

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

}  // namespace

// Chooses, on a sample, between coding a delta chunk against its reference, against an
// extrapolation of it (with a prev-reference), and coding its values standalone (optimizer
// moments refresh between distant saves), and the position and context schemes; then
// codes the whole chunk with that plan.
template <typename U>
void encode_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out) {
  Sample<U> sample(in, n);
  const double scale =
      sample.count ? static_cast<double>(n) / static_cast<double>(sample.count) : 1.0;
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
    int scaled = -1;  // coded against scaled_tries[scaled] (transform 2)
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
        for (uint64_t i = 0; i < count; ++i)
          bits += bit_length(zigzag<U>(static_cast<U>(sx[i] - p[i])));
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
  // Against the reference scaled by one factor (transform 2): on the segments that only
  // decayed (find_scaled_segments), and as a whole (find_dense_scale, a dense decay).
  struct ScaledTry {
    ScaledSegments params;
    std::unique_ptr<U[]> pred, prev;
  };
  ScaledTry scaled_tries[2];
  if constexpr (sizeof(U) <= 4) {
    for (int k = 0; k < 2 && may_scale; ++k) {
      ScaledTry& t = scaled_tries[k];
      if (!(k == 0 ? find_scaled_segments<U>(in, n, t.params, t.pred, t.prev)
                   : find_dense_scale<U>(in, n, t.params, t.pred, t.prev)))
        continue;
      EncodeInput full = in;
      full.reference = t.pred.get();
      full.prev_reference = t.prev.get();
      Sample<U> scaled_sample(full, n);
      Candidate c{
          true, false,
          ChunkEncoder<U>(scaled_sample.input, scaled_sample.count, false, false).plan(scale)};
      c.plan.bits += 8.0 * static_cast<double>(kScaledFixedBytes + t.params.bitmap.size());
      c.scaled = k;
      candidates.push_back(c);
    }
  }
  if (is_float(in.dtype))
    candidates.push_back(
        {false, true, ChunkEncoder<U>(sample_standalone, sample.count, delta, true).plan(scale)});
  candidates.push_back(
      {false, false, ChunkEncoder<U>(sample_standalone, sample.count, delta, false).plan(scale)});
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
    if (best->scaled >= 0) {
      const ScaledTry& t = scaled_tries[best->scaled];
      encode_predicted(t.pred.get(), t.prev.get(), kTransformScaled, scaled_params(t.params));
      return;
    }
    if (best->extrapolated) {
      std::unique_ptr<U[]> predicted_chunk(new U[n]);  // every element written: no zero-fill
      extrapolate<U>(static_cast<const U*>(in.reference), static_cast<const U*>(in.prev_reference),
                     n, best->extrapolation, predicted_chunk.get());
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

template void encode_payload<uint8_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);
template void encode_payload<uint16_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);
template void encode_payload<uint32_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);
template void encode_payload<uint64_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);

}  // namespace encoder
}  // namespace tpde
