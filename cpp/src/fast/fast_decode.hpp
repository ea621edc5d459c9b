// Fast level decoder (value scheme 3, format version 6; docs/format.md section 14).
// Needs nothing from the encoder.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tpde/format.hpp"

namespace tpde {
namespace fast {

// Decodes the inner payload (prefix included) of a chunk whose value scheme is 3 into out
// (n elements). reference: the checked reference of a delta chunk, else null. Throws
// tpde::Error(kCorrupt) on any inconsistency; never reads outside [payload, payload + size)
// or the reference.
void decode_fast_payload(DType dtype, const uint8_t* payload, size_t size, uint64_t n, void* out,
                         const void* reference);

}  // namespace fast
}  // namespace tpde
