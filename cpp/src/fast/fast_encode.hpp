// Fast level encoder (value scheme 3, format version 6; docs/format.md section 14).
#pragma once
#include <cstdint>
#include <vector>

#include "tpde/format.hpp"

namespace tpde {
namespace fast {

// Appends the whole payload of a lossless chunk of n elements: a FastPlanes payload, or a
// Stored one when that would not be smaller. reference: the delta chunk's reference (same
// n and dtype), or null for a standalone chunk. Deterministic.
void encode_fast_payload(DType dtype, const void* data, const void* reference, uint64_t n,
                         std::vector<uint8_t>& out);

}  // namespace fast
}  // namespace tpde
