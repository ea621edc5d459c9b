// Cross-state prediction: a reference for a tensor computed from other tensors of the
// checkpoint (AdamW moves a weight by about -lr * exp_avg / (sqrt(exp_avg_sq) + eps)).
//
//   pred = dtype(r + (c[k] * r + c[0] * f_0 + ... + c[k-1] * f_(k-1)))
//
// in float64, r = the reference value, f_j = the terms below, evaluated and summed in
// this order without fused multiply-adds, then rounded to the tensor's dtype (round to
// nearest even), so every build gives the same bits. The prediction is handed to encode()
// and decode() as the reference: the coded chunk stays bit-exact whatever its quality.
#pragma once
#include <cstddef>
#include <vector>

#include "tpde/format.hpp"

namespace tpde {

enum class TermKind : uint8_t {
  kAdamDirection = 0,  // a / (sqrt(b) + eps): a = exp_avg, b = exp_avg_sq
  kScaledDelta = 1,  // (a - b) * (sqrt(c) + eps): a = weights, b = their reference, c = exp_avg_sq
};

struct Term {
  TermKind kind;
  const void* a = nullptr;
  const void* b = nullptr;
  const void* c = nullptr;
};

struct PredictionFit {
  std::vector<double> coefs;  // empty: no usable fit
  double explained = 0.0;     // 1 - |(x - r) - fit|^2 / |x - r|^2 over the finite elements
};

// Least-squares coefficients (terms.size() + 1 of them, the last one for r) of
// (x - r) ~ sum_j c_j f_j + c_k r over the elements where every value is finite.
// No coefficients when the fit is not usable (no finite element, singular, or
// non-finite coefficients). All arrays hold n values of `dtype` (a float dtype).
PredictionFit fit_prediction(DType dtype, size_t n, const void* x, const void* reference,
                             const std::vector<Term>& terms, double eps);

// The prediction (n values of `dtype`) into out.
void predict(DType dtype, size_t n, const void* reference, const std::vector<Term>& terms,
             const std::vector<double>& coefs, double eps, void* out);

}  // namespace tpde
