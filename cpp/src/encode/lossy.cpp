// Lossy encoding (encode/lossy.hpp).
#include "encode/lossy.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "encode/header_writer.hpp"
#include "encode/plan.hpp"
#include "format/header.hpp"

namespace tpde {
namespace encoder {

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
  const double smallest_normal =
      std::ldexp(1.0, min_subnormal_exponent(dtype) + mantissa_bits(dtype));
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
        const double qd = std::nearbyint((xd - rd) / p.value) + (attempt == 0   ? 0.0
                                                                 : attempt == 1 ? -1.0
                                                                                : 1.0);
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
      if (absolute &&
          std::nearbyint((rec - rd) / p.value) != static_cast<double>(static_cast<S>(q)))
        continue;
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
    fail(ErrorCode::kInvalidArgument,
         std::string("lossy mode needs a float dtype, not ") + dtype_name(in.dtype));
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
        base[i] = predicted_base(p, to_double<U>(ref[i], in.dtype),
                                 prev ? to_double<U>(prev[i], in.dtype) : 0.0);
    }
  }
  std::vector<U> coded;
  U* recon = static_cast<U*>(in.reconstruction);
  if (!quantize_chunk<U>(x, ref, n, in.dtype, p, coded, recon,
                         base.empty() ? nullptr : base.data())) {
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
    quantized_prev_reference<U>(ref, static_cast<const U*>(in.prev_reference), n, p, in.dtype,
                                prev_q);
    inner.prev_reference = prev_q.data();
  }
  encode_payload<U>(inner, n, out);
  return true;
}

template bool encode_lossy_payload<uint8_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);
template bool encode_lossy_payload<uint16_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);
template bool encode_lossy_payload<uint32_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);
template bool encode_lossy_payload<uint64_t>(const EncodeInput&, uint64_t, std::vector<uint8_t>&);

}  // namespace encoder
}  // namespace tpde
