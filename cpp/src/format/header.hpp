// Chunk header and lossy block parsing (layout in docs/format.md); the writers are in
// encode/header_writer.hpp. read_header itself is declared in tpde/tpde.hpp.
#pragma once
#include <cstdint>

#include "model/quantize.hpp"
#include "tpde/tpde.hpp"

namespace tpde {

size_t header_size(size_t ndim);

// The lossy block that starts the payload of a chunk with kFlagLossy: 24 bytes (16 in
// format 1: lossy_block_size), then 16 bytes of predictor coefficients when its predictor
// byte is 1 (format 3 on). Little-endian f64 fields; this build, like the rest of the
// format code, assumes a little-endian host.
LossyParams read_lossy_block(const Header& h, const uint8_t* payload);

}  // namespace tpde
