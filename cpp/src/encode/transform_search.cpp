// Transform search (encode/transform_search.hpp): fits of the extrapolation and selection of
// scaled segments. Instantiated for the dtypes of up to 32 bits (the transforms' domain).
#include "encode/transform_search.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "format/mem.hpp"
#include "model/quantize.hpp"
#include "model/symbols.hpp"

namespace tpde {
namespace encoder {

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
  if (!s.bitmap.empty())
    std::memcpy(p.data() + kScaledFixedBytes, s.bitmap.data(), s.bitmap.size());
  return p;
}

// Extrapolations to try, fitted on positions where value, reference and prev-reference are
// finite and share a sign: (a) slope by least squares on the values (an absolute-error fit,
// as parameters move by similar amounts whatever their size), offset the median of what
// is left in bit units; (b) slope and offset by least squares on the bit patterns (a fit in
// the log domain, which suits the second moment).
template <typename U>
std::vector<Extrapolation> fit_extrapolations(const U* x, const U* ref, const U* prev, uint64_t n,
                                              DType dtype) {
  constexpr int s = kBits<U> - 1;
  const int mant = mantissa_bits(dtype), expb = exponent_bits(dtype);
  const int all_ones = (1 << expb) - 1;
  std::vector<int64_t> d(n),
      y(n);  // bit-pattern moves: reference - prev-reference, value - reference
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
    collect(
        [](U b) { return static_cast<double>(float_from_bits(static_cast<uint32_t>(b) << 16)); });
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
  const uint64_t d_limit = 16 * std::max<uint64_t>(median_abs(d), 1),
                 y_limit = 16 * std::max<uint64_t>(median_abs(y), 1);
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

namespace {

constexpr uint64_t kDenseProbes = 4096;  // positions find_dense_scale probes

// The segment length of transform 2: a row of the chunk's last dimension, else 256 values.
uint64_t segment_length(const EncodeInput& in, uint64_t n) {
  const uint64_t last = in.shape.empty() ? n : in.shape.back();
  return in.shape.size() >= 2 && last >= 16 && last <= 0xFFFFFFFFu ? last : 256;
}

// Whether bits b of a float with mant mantissa and expb exponent bits are a normal number.
template <typename U>
bool is_normal(U b, int mant, int expb) {
  const int e = float_exponent(b, mant, expb);
  return e != 0 && e != (1 << expb) - 1;
}

// Whether `scale` is a decay worth coding: further than 8 ulps from 1 (closer is unchanged or
// noisy values, which 16-bit floats show often) and below 2^16.
bool worth_scaling(double scale, int mant) {
  return std::fabs(scale - 1) > std::ldexp(1.0, 3 - mant) && scale < 0x1p16;
}

// `scale` as the format's mantissa and shift (section 4.5); false when it has none.
bool set_scale(double scale, ScaledSegments& out) {
  int e2 = 0;
  const double f = std::frexp(scale, &e2);  // scale = f 2^e2, f in [0.5, 1)
  uint64_t mantissa = static_cast<uint64_t>(std::llround(std::ldexp(f, 32)));
  if (mantissa >> 32) {
    mantissa >>= 1;
    ++e2;
  }
  out.mantissa = static_cast<uint32_t>(mantissa);
  out.shift = -e2;
  return scale_valid(out.mantissa, out.shift);
}

// Selects, among the `candidates` segments, those where the reference scaled by out's
// scale leaves residuals of fewer bits; pred and pred_prev as find_scaled_segments says.
// False when none is selected.
template <typename U>
bool select_scaled(const EncodeInput& in, uint64_t n, uint64_t segment,
                   const std::vector<uint64_t>& candidates, ScaledSegments& out,
                   std::unique_ptr<U[]>& pred, std::unique_ptr<U[]>& pred_prev) {
  const U* x = static_cast<const U*>(in.data);
  const U* ref = static_cast<const U*>(in.reference);
  const U* prev = static_cast<const U*>(in.prev_reference);
  const int mant = mantissa_bits(in.dtype), expb = exponent_bits(in.dtype);
  out.segment = static_cast<uint32_t>(segment);
  out.bitmap.assign((segment_count(n, out.segment) + 7) / 8, 0);
  pred.reset(new U[n]);
  pred_prev.reset(prev ? new U[n] : nullptr);   // none without a prev-reference
  std::memcpy(pred.get(), ref, n * sizeof(U));  // segments not selected keep ref and prev
  if (prev) std::memcpy(pred_prev.get(), prev, n * sizeof(U));
  bool any = false;
  for (const uint64_t j : candidates) {
    const uint64_t begin = j * segment, end = std::min(n, begin + segment);
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

}  // namespace

// Scaled segments (transform 2): rows whose moments only decayed since the last save (no
// gradient reached them) are their reference times one factor, beta^k. Probes three values
// of every segment (segment_length) for a common ratio to the reference; the median ratio
// of the segments that show one is the scale, and a segment is selected where the scaled
// reference leaves residuals of fewer bits. When one is, pred and pred_prev (null without
// a prev-reference) hold what apply_scaled makes of the selection (the prediction and its
// prev-reference), computed while selecting.
template <typename U>
bool find_scaled_segments(const EncodeInput& in, uint64_t n, ScaledSegments& out,
                          std::unique_ptr<U[]>& pred, std::unique_ptr<U[]>& pred_prev) {
  const U* x = static_cast<const U*>(in.data);
  const U* ref = static_cast<const U*>(in.reference);
  const int mant = mantissa_bits(in.dtype), expb = exponent_bits(in.dtype);
  const uint64_t segment = segment_length(in, n);
  const uint64_t segments = segment_count(n, static_cast<uint32_t>(segment));
  if (segments == 0) return false;
  // Probes agree within the tolerance (loose enough for rows that had a little gradient).
  const double tolerance = std::ldexp(1.0, std::max(-10, 1 - mant));
  std::vector<double> ratios;
  std::vector<uint64_t> candidates;
  for (uint64_t j = 0; j < segments; ++j) {
    const uint64_t begin = j * segment, end = std::min(n, begin + segment);
    const uint64_t probes[3] = {begin, begin + (end - begin) / 2, end - 1};
    double first = 0;
    int seen = 0;
    bool agree = true;
    for (uint64_t i : probes) {
      if (!is_normal(x[i], mant, expb) || !is_normal(ref[i], mant, expb)) continue;
      const double r = to_double<U>(x[i], in.dtype) / to_double<U>(ref[i], in.dtype);
      if (seen == 0)
        first = r;
      else if (std::fabs(r / first - 1) > tolerance)
        agree = false;
      ++seen;
    }
    if (seen >= 2 && agree && first > 0 && worth_scaling(first, mant)) {
      ratios.push_back(first);
      candidates.push_back(j);
    }
  }
  if (ratios.empty()) return false;
  std::vector<double> sorted = ratios;
  std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
  const double scale = sorted[sorted.size() / 2];
  if (!set_scale(scale, out)) return false;
  std::vector<uint64_t> near_scale;  // the candidates whose ratio is the scale's
  for (size_t c = 0; c < candidates.size(); ++c)
    if (std::fabs(ratios[c] / scale - 1) <= tolerance) near_scale.push_back(candidates[c]);
  return select_scaled<U>(in, n, segment, near_scale, out, pred, pred_prev);
}

// A whole chunk that moved by about one factor (a dense second moment: every value decays
// by beta^k and takes some gradient, so no segment shows one common ratio): the median of
// x / ref over up to kDenseProbes spread positions is the scale, tried only if it leaves
// residuals of at least 5 % fewer bits on those positions; every segment is a candidate.
template <typename U>
bool find_dense_scale(const EncodeInput& in, uint64_t n, ScaledSegments& out,
                      std::unique_ptr<U[]>& pred, std::unique_ptr<U[]>& pred_prev) {
  const U* x = static_cast<const U*>(in.data);
  const U* ref = static_cast<const U*>(in.reference);
  const int mant = mantissa_bits(in.dtype), expb = exponent_bits(in.dtype);
  const uint64_t segment = segment_length(in, n);
  const uint64_t segments = segment_count(n, static_cast<uint32_t>(segment));
  if (segments == 0) return false;
  const uint64_t step = std::max<uint64_t>(1, n / kDenseProbes);
  std::vector<uint64_t> probes;
  std::vector<double> seen;
  for (uint64_t i = 0; i < n; i += step) {
    if (!is_normal(x[i], mant, expb) || !is_normal(ref[i], mant, expb)) continue;
    const double r = to_double<U>(x[i], in.dtype) / to_double<U>(ref[i], in.dtype);
    if (r <= 0) continue;
    probes.push_back(i);
    seen.push_back(r);
  }
  if (seen.size() < 64) return false;
  std::nth_element(seen.begin(), seen.begin() + seen.size() / 2, seen.end());
  const double scale = seen[seen.size() / 2];
  if (!worth_scaling(scale, mant) || !set_scale(scale, out)) return false;
  uint64_t scaled_bits = 0, plain_bits = 0;
  for (uint64_t i : probes) {
    const U p = scale_one<U>(ref[i], out.mantissa, out.shift, mant, expb);
    scaled_bits += bit_length(zigzag<U>(static_cast<U>(x[i] - p)));
    plain_bits += bit_length(zigzag<U>(static_cast<U>(x[i] - ref[i])));
  }
  if (20 * scaled_bits > 19 * plain_bits) return false;
  std::vector<uint64_t> every(segments);
  for (uint64_t j = 0; j < segments; ++j) every[j] = j;
  return select_scaled<U>(in, n, segment, every, out, pred, pred_prev);
}

template std::vector<Extrapolation> fit_extrapolations<uint8_t>(const uint8_t*, const uint8_t*,
                                                                const uint8_t*, uint64_t, DType);
template bool find_dense_scale<uint8_t>(const EncodeInput&, uint64_t, ScaledSegments&,
                                        std::unique_ptr<uint8_t[]>&, std::unique_ptr<uint8_t[]>&);
template bool find_scaled_segments<uint8_t>(const EncodeInput&, uint64_t, ScaledSegments&,
                                            std::unique_ptr<uint8_t[]>&,
                                            std::unique_ptr<uint8_t[]>&);
template std::vector<Extrapolation> fit_extrapolations<uint16_t>(const uint16_t*, const uint16_t*,
                                                                 const uint16_t*, uint64_t, DType);
template bool find_dense_scale<uint16_t>(const EncodeInput&, uint64_t, ScaledSegments&,
                                         std::unique_ptr<uint16_t[]>&,
                                         std::unique_ptr<uint16_t[]>&);
template bool find_scaled_segments<uint16_t>(const EncodeInput&, uint64_t, ScaledSegments&,
                                             std::unique_ptr<uint16_t[]>&,
                                             std::unique_ptr<uint16_t[]>&);
template std::vector<Extrapolation> fit_extrapolations<uint32_t>(const uint32_t*, const uint32_t*,
                                                                 const uint32_t*, uint64_t, DType);
template bool find_dense_scale<uint32_t>(const EncodeInput&, uint64_t, ScaledSegments&,
                                         std::unique_ptr<uint32_t[]>&,
                                         std::unique_ptr<uint32_t[]>&);
template bool find_scaled_segments<uint32_t>(const EncodeInput&, uint64_t, ScaledSegments&,
                                             std::unique_ptr<uint32_t[]>&,
                                             std::unique_ptr<uint32_t[]>&);

}  // namespace encoder
}  // namespace tpde
