// Chunk header write/read (layout in docs/format.md).
#pragma once
#include <cstdint>
#include <vector>

#include "tpde/tpde.hpp"

namespace tpde {

size_t header_size(size_t ndim);
void write_header(const Header& h, std::vector<uint8_t>& out);  // appends; h.header_size ignored

}  // namespace tpde
