// Lossy encoding: the quantizer parameters of a request, the error-bounded quantization of
// a chunk (with the optional a x ref predictor), and the lossy payload (lossy block, then
// the quantized integers coded losslessly).
#pragma once
#include <cstdint>
#include <vector>

#include "model/quantize.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace encoder {

// Validates the request's lossy fields and derives the quantizer (throws TPDEError).
LossyParams lossy_params(const EncodeInput& in);

// Appends the lossy payload to out; false (out unusable) if the bound cannot be kept.
template <typename U>
bool encode_lossy_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out);

}  // namespace encoder
}  // namespace tpde
