// Chunk header and lossy block writers (layout in docs/format.md; parsed by format/header.cpp).
#include "encode/header_writer.hpp"

#include <cstring>

#include "format/header.hpp"
#include "format/mem.hpp"

namespace tpde {

void write_header(const Header& h, std::vector<uint8_t>& out) {
  const size_t start = out.size();
  out.resize(start + header_size(h.shape.size()));
  uint8_t* p = out.data() + start;
  std::memcpy(p, kMagic, 4);
  p[4] = h.version;
  p[5] = static_cast<uint8_t>(h.dtype);
  p[6] = static_cast<uint8_t>(h.mode);
  p[7] = h.flags;
  p[8] = static_cast<uint8_t>(h.shape.size());
  p[9] = p[10] = p[11] = 0;
  store_le<uint32_t>(p + 12, h.reference_fingerprint);
  store_le<uint32_t>(p + 16, h.prev_reference_fingerprint);
  store_le<uint64_t>(p + 20, h.payload_size);
  store_le<uint32_t>(p + 28, h.payload_crc);
  for (size_t i = 0; i < h.shape.size(); ++i) store_le<uint64_t>(p + 32 + 8 * i, h.shape[i]);
  const size_t crc_at = kFixedHeaderSize + 8 * h.shape.size();
  store_le<uint32_t>(p + crc_at, crc32c(p, crc_at));
}

void write_lossy_block(const LossyParams& p, std::vector<uint8_t>& out) {
  uint8_t block[kLossyBlockSize] = {0};
  block[0] = static_cast<uint8_t>(p.kind);
  block[1] = p.predictor;
  std::memcpy(block + 8, &p.value, 8);
  std::memcpy(block + 16, &p.step, 8);
  out.insert(out.end(), block, block + kLossyBlockSize);
  if (p.predictor) {
    uint8_t coefs[kLossyPredictorBytes];
    std::memcpy(coefs, &p.a, 8);
    std::memcpy(coefs + 8, &p.b, 8);
    out.insert(out.end(), coefs, coefs + kLossyPredictorBytes);
  }
}

}  // namespace tpde
