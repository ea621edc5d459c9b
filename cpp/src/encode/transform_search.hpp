// Transform search: the predictions of a delta chunk's reference that the encoder tries
// (payload transform 1, extrapolation from the prev-reference; transform 2, scaled
// segments) and the parameter bytes each writes after the payload prefix.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "predict/extrapolate.hpp"
#include "predict/scaled.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace encoder {

std::vector<uint8_t> extrapolation_params(const Extrapolation& e);
std::vector<uint8_t> scaled_params(const ScaledSegments& s);

// Extrapolations worth trying for values x against ref and prev (n positions; may be none).
template <typename U>
std::vector<Extrapolation> fit_extrapolations(const U* x, const U* ref, const U* prev, uint64_t n,
                                              DType dtype);

// Selects the segments of in that are their reference scaled by one factor; see the .cpp.
template <typename U>
bool find_scaled_segments(const EncodeInput& in, uint64_t n, ScaledSegments& out,
                          std::unique_ptr<U[]>& pred, std::unique_ptr<U[]>& pred_prev);

// The same for a chunk that moved by about one factor as a whole; see the .cpp.
template <typename U>
bool find_dense_scale(const EncodeInput& in, uint64_t n, ScaledSegments& out,
                      std::unique_ptr<U[]>& pred, std::unique_ptr<U[]>& pred_prev);

}  // namespace encoder
}  // namespace tpde
