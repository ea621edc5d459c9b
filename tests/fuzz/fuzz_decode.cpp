// libFuzzer target: decode arbitrary bytes as a chunk, with and without a reference.
// Must never crash, hang or read out of bounds; tpde::Error is the only allowed failure.
#include <cstdint>
#include <cstring>
#include <vector>

#include "tpde/tpde.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tpde::Header h = tpde::read_header(data, size);
    const uint64_t nbytes = h.nbytes();
    if (nbytes > (uint64_t(1) << 24)) return 0;  // keep allocations small
    std::vector<uint8_t> out(nbytes), ref(nbytes, 0x3C), prev(nbytes, 0x3B);
    tpde::decode(data, size, out.data(), out.size(), ref.data(), ref.size(), prev.data(), prev.size());
  } catch (const tpde::Error&) {
  }
  return 0;
}
