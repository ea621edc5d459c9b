// Chunk header write/read (layout in docs/format.md).
#pragma once
#include <cstdint>
#include <vector>

#include "quantize.hpp"
#include "tpde/tpde.hpp"

namespace tpde {

size_t header_size(size_t ndim);
void write_header(const Header& h, std::vector<uint8_t>& out);  // appends; h.header_size ignored

// The 16-byte lossy block that starts the payload of a chunk with kFlagLossy
// (little-endian f64; this build, like the rest of the format code, assumes a little-endian host).
LossyParams read_lossy_block(const Header& h, const uint8_t* payload);
void write_lossy_block(const LossyParams& p, std::vector<uint8_t>& out);

}  // namespace tpde
