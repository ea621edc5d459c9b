// Chunk header and lossy block writers (layout in docs/format.md; format/header.hpp parses
// them).
#pragma once
#include <cstdint>
#include <vector>

#include "model/quantize.hpp"
#include "tpde/tpde.hpp"

namespace tpde {

void write_header(const Header& h, std::vector<uint8_t>& out);  // appends; h.header_size ignored

// Appends the lossy block (format/header.hpp) of the current format version.
void write_lossy_block(const LossyParams& p, std::vector<uint8_t>& out);

}  // namespace tpde
