// Plan choice: which coding of a chunk (against the reference, an extrapolation of it,
// scaled segments, or standalone; position and context schemes) is cheapest on a sample,
// then the whole chunk coded with it.
#pragma once
#include <cstdint>
#include <vector>

#include "tpde/tpde.hpp"

namespace tpde {
namespace encoder {

// Appends the lossless payload of in's n values to out.
template <typename U>
void encode_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out);

}  // namespace encoder
}  // namespace tpde
