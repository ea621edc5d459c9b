// Cross-state prediction (tpde/predict.hpp). Built with -ffp-contract=off: the decoder must
// recompute the encoder's prediction bit for bit.
#include "tpde/predict.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "model/quantize.hpp"
#include "tpde/error.hpp"

namespace tpde {
namespace {

constexpr size_t kMaxTerms = 4;

void check(DType dtype, const std::vector<Term>& terms) {
  if (!is_float(dtype))
    fail(ErrorCode::kBadDtype,
         std::string("prediction needs a float dtype, not ") + dtype_name(dtype));
  if (terms.empty() || terms.size() > kMaxTerms)
    fail(ErrorCode::kInvalidArgument,
         "prediction takes 1 to " + std::to_string(kMaxTerms) + " terms");
  for (const Term& t : terms) {
    if (t.kind != TermKind::kAdamDirection && t.kind != TermKind::kScaledDelta)
      fail(ErrorCode::kInvalidArgument, "unknown prediction term");
    if (!t.a || !t.b || (t.kind == TermKind::kScaledDelta && !t.c))
      fail(ErrorCode::kInvalidArgument, "prediction term without its arrays");
  }
}

template <typename U>
class Terms {
 public:
  Terms(DType dtype, const std::vector<Term>& terms, double eps)
      : dtype_(dtype), terms_(terms), eps_(eps) {}

  double value(size_t j, size_t i) const {
    const Term& t = terms_[j];
    const double a = at(t.a, i), b = at(t.b, i);
    if (t.kind == TermKind::kAdamDirection) return a / (std::sqrt(b) + eps_);
    return (a - b) * (std::sqrt(at(t.c, i)) + eps_);
  }
  double at(const void* p, size_t i) const {
    return to_double<U>(static_cast<const U*>(p)[i], dtype_);
  }
  size_t size() const { return terms_.size(); }

 private:
  DType dtype_;
  const std::vector<Term>& terms_;
  double eps_;
};

// Solve A c = b (m x m, row-major) by Gaussian elimination with partial pivoting; columns
// whose diagonal is 0 (a term that is 0 everywhere) get coefficient 0. False if singular.
bool solve(std::vector<double>& A, std::vector<double>& b, size_t m) {
  for (size_t j = 0; j < m; ++j)
    if (A[j * m + j] == 0.0) {
      for (size_t k = 0; k < m; ++k) A[j * m + k] = A[k * m + j] = 0.0;
      A[j * m + j] = 1.0;
      b[j] = 0.0;
    }
  for (size_t col = 0; col < m; ++col) {
    size_t piv = col;
    for (size_t r = col + 1; r < m; ++r)
      if (std::fabs(A[r * m + col]) > std::fabs(A[piv * m + col])) piv = r;
    const double scale = std::fabs(A[col * m + col]) + std::fabs(A[piv * m + col]);
    if (!(std::fabs(A[piv * m + col]) > 1e-12 * scale) || !std::isfinite(A[piv * m + col]))
      return false;
    if (piv != col) {
      for (size_t k = 0; k < m; ++k) std::swap(A[col * m + k], A[piv * m + k]);
      std::swap(b[col], b[piv]);
    }
    for (size_t r = col + 1; r < m; ++r) {
      const double f = A[r * m + col] / A[col * m + col];
      for (size_t k = col; k < m; ++k) A[r * m + k] -= f * A[col * m + k];
      b[r] -= f * b[col];
    }
  }
  for (size_t col = m; col-- > 0;) {
    double s = b[col];
    for (size_t k = col + 1; k < m; ++k) s -= A[col * m + k] * b[k];
    b[col] = s / A[col * m + col];
  }
  return true;
}

template <typename U>
PredictionFit fit_typed(DType dtype, size_t n, const void* x, const void* reference,
                        const std::vector<Term>& terms, double eps) {
  const Terms<U> t(dtype, terms, eps);
  const size_t k = t.size(), m = k + 1;
  std::vector<double> A(m * m, 0.0), b(m, 0.0);
  double row[kMaxTerms + 1];
  size_t used = 0;
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) {
    const double r = t.at(reference, i), target = t.at(x, i) - r;
    bool finite = std::isfinite(target) && std::isfinite(r);
    for (size_t j = 0; j < k && finite; ++j) finite = std::isfinite(row[j] = t.value(j, i));
    if (!finite) continue;
    row[k] = r;
    for (size_t p = 0; p < m; ++p) {
      for (size_t q = p; q < m; ++q) A[p * m + q] += row[p] * row[q];
      b[p] += row[p] * target;
    }
    total += target * target;
    ++used;
  }
  if (used == 0) return {};
  for (size_t p = 0; p < m; ++p)
    for (size_t q = 0; q < p; ++q) A[p * m + q] = A[q * m + p];
  const std::vector<double> A0 = A, b0 = b;
  if (!solve(A, b, m)) return {};
  for (double c : b)
    if (!std::isfinite(c)) return {};
  // |target - X c|^2 = |target|^2 - 2 c.(X^T target) + c.(X^T X) c
  double residual = total;
  for (size_t p = 0; p < m; ++p) {
    residual -= 2.0 * b[p] * b0[p];
    for (size_t q = 0; q < m; ++q) residual += b[p] * A0[p * m + q] * b[q];
  }
  PredictionFit fit;
  fit.coefs = b;
  fit.explained = total > 0.0 ? 1.0 - std::max(residual, 0.0) / total : 0.0;
  return fit;
}

template <typename U>
void predict_typed(DType dtype, size_t n, const void* reference, const std::vector<Term>& terms,
                   const std::vector<double>& coefs, double eps, void* out) {
  const Terms<U> t(dtype, terms, eps);
  const size_t k = t.size();
  U* dst = static_cast<U*>(out);
  for (size_t i = 0; i < n; ++i) {
    const double r = t.at(reference, i);
    double acc = coefs[k] * r;
    for (size_t j = 0; j < k; ++j) acc += coefs[j] * t.value(j, i);
    dst[i] = from_double<U>(r + acc, dtype);
  }
}

}  // namespace

PredictionFit fit_prediction(DType dtype, size_t n, const void* x, const void* reference,
                             const std::vector<Term>& terms, double eps) {
  check(dtype, terms);
  switch (dtype_size(dtype)) {
    case 2: return fit_typed<uint16_t>(dtype, n, x, reference, terms, eps);
    case 4: return fit_typed<uint32_t>(dtype, n, x, reference, terms, eps);
    default: return fit_typed<uint64_t>(dtype, n, x, reference, terms, eps);
  }
}

void predict(DType dtype, size_t n, const void* reference, const std::vector<Term>& terms,
             const std::vector<double>& coefs, double eps, void* out) {
  check(dtype, terms);
  if (coefs.size() != terms.size() + 1)
    fail(ErrorCode::kInvalidArgument, "prediction needs " + std::to_string(terms.size() + 1) +
                                          " coefficients, got " + std::to_string(coefs.size()));
  switch (dtype_size(dtype)) {
    case 2: return predict_typed<uint16_t>(dtype, n, reference, terms, coefs, eps, out);
    case 4: return predict_typed<uint32_t>(dtype, n, reference, terms, coefs, eps, out);
    default: return predict_typed<uint64_t>(dtype, n, reference, terms, coefs, eps, out);
  }
}

}  // namespace tpde
