// Chunk header and lossy block parsing (layout in docs/format.md); the writers are in
// encode/header_writer.cpp.
#include "format/header.hpp"

#include <cmath>
#include <string>

#include "format/mem.hpp"

namespace tpde {

size_t header_size(size_t ndim) { return kFixedHeaderSize + 8 * ndim + 4; }

uint64_t Header::count() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

LossyParams read_lossy_block(const Header& h, const uint8_t* payload) {
  if (!is_float(h.dtype)) fail(ErrorCode::kCorrupt, "lossy flag on a chunk of integer dtype");
  if (h.payload_size < lossy_block_size(h.version))
    fail(ErrorCode::kCorrupt, "lossy chunk shorter than its lossy block");
  LossyParams p;
  const uint8_t kind = payload[0];
  if (kind != 1 && kind != 2)
    fail(ErrorCode::kCorrupt, "lossy block has unknown quantizer " + std::to_string(kind));
  p.kind = static_cast<Quantizer>(kind);
  std::memcpy(&p.value, payload + 8, 8);
  if (h.version == 1) {
    if (p.kind == Quantizer::kLogRelative && payload[1] >= 8 * dtype_size(h.dtype) - 2)
      fail(ErrorCode::kCorrupt, "lossy block has invalid parameters");
    p.step = p.kind == Quantizer::kLogRelative ? uint64_t(1) << payload[1] : (payload[1] ? 1 : 0);
  } else {
    std::memcpy(&p.step, payload + 16, 8);
  }
  if (h.version >= 3 && payload[1] != 0) {
    if (payload[1] != 1)
      fail(ErrorCode::kCorrupt, "lossy block has unknown predictor " + std::to_string(payload[1]));
    if (p.kind != Quantizer::kAbsolute || h.mode != Mode::kDelta)
      fail(ErrorCode::kCorrupt,
           "lossy predictor on a chunk without a reference or with a log-relative quantizer");
    p.predictor = 1;
    if (h.payload_size < lossy_block_size(h.version, p))
      fail(ErrorCode::kCorrupt, "lossy chunk shorter than its lossy block");
    std::memcpy(&p.a, payload + kLossyBlockSize, 8);
    std::memcpy(&p.b, payload + kLossyBlockSize + 8, 8);
    if (!(std::fabs(p.a) <= kMaxPredictorCoefficient && std::fabs(p.b) <= kMaxPredictorCoefficient))
      fail(ErrorCode::kCorrupt, "lossy predictor coefficients out of range");
    if (p.b != 0 && !(h.flags & kFlagPrevReference))
      fail(ErrorCode::kCorrupt, "lossy predictor uses a prev-reference the chunk does not have");
  }
  const bool ok = p.kind == Quantizer::kAbsolute
                      ? std::isfinite(p.value) && p.value > 0 && p.step == 0
                      : std::isfinite(p.value) && p.value > 0 && p.value < 1 && p.step >= 1 &&
                            p.step < (uint64_t(1) << (8 * dtype_size(h.dtype) - 2));
  if (!ok) fail(ErrorCode::kCorrupt, "lossy block has invalid parameters");
  return p;
}

Header read_header(const uint8_t* src, size_t size) {
  if (size < kFixedHeaderSize + 4)
    fail(ErrorCode::kTruncated, "chunk is " + std::to_string(size) +
                                    " bytes, shorter than the smallest tpde header (36 bytes)");
  if (std::memcmp(src, kMagic, 4) != 0)
    fail(ErrorCode::kBadMagic, "not a tpde chunk: magic bytes are not 'TPDE'");
  Header h;
  h.version = src[4];
  if (h.version < kOldestFormatVersion || h.version > kNewestFormatVersion)
    fail(ErrorCode::kUnsupportedVersion, "chunk has format version " + std::to_string(h.version) +
                                             "; this build of tpde reads versions " +
                                             std::to_string(kOldestFormatVersion) + " to " +
                                             std::to_string(kNewestFormatVersion));
  const size_t ndim = src[8];
  if (ndim > kMaxNdim)
    fail(ErrorCode::kBadShape, "chunk header says ndim=" + std::to_string(ndim) + " (max 32)");
  h.header_size = header_size(ndim);
  if (size < h.header_size)
    fail(ErrorCode::kTruncated, "chunk is " + std::to_string(size) + " bytes, its header needs " +
                                    std::to_string(h.header_size));
  const size_t crc_at = kFixedHeaderSize + 8 * ndim;
  if (crc32c(src, crc_at) != load_le<uint32_t>(src + crc_at))
    fail(ErrorCode::kChecksum, "chunk header checksum (CRC32C) mismatch: header is corrupted");
  if (!dtype_valid(src[5]))
    fail(ErrorCode::kBadDtype, "chunk header has unknown dtype code " + std::to_string(src[5]));
  h.dtype = static_cast<DType>(src[5]);
  if (src[6] > 1)
    fail(ErrorCode::kCorrupt, "chunk header has unknown mode " + std::to_string(src[6]));
  h.mode = static_cast<Mode>(src[6]);
  h.flags = src[7];
  if (h.flags & ~(kFlagPrevReference | kFlagLossy))
    fail(ErrorCode::kCorrupt, "chunk header has unknown flags " + std::to_string(h.flags));
  if (h.mode == Mode::kStandalone && (h.flags & kFlagPrevReference))
    fail(ErrorCode::kCorrupt, "standalone chunk has the prev-reference flag set");
  h.reference_fingerprint = load_le<uint32_t>(src + 12);
  h.prev_reference_fingerprint = load_le<uint32_t>(src + 16);
  h.payload_size = load_le<uint64_t>(src + 20);
  h.payload_crc = load_le<uint32_t>(src + 28);
  // The limit applies to the product of the non-zero dimensions: a zero dimension does not
  // excuse a huge other one (no array has shape (0, 2^62)).
  uint64_t nbytes = dtype_size(h.dtype);
  h.shape.resize(ndim);
  for (size_t i = 0; i < ndim; ++i) {
    const uint64_t d = load_le<uint64_t>(src + 32 + 8 * i);
    h.shape[i] = d;
    if (d == 0) continue;
    if (nbytes > kMaxChunkBytes / d)
      fail(ErrorCode::kTooLarge, "chunk shape exceeds the 64 GiB chunk limit");
    nbytes *= d;
  }
  if (nbytes > kMaxChunkBytes)
    fail(ErrorCode::kTooLarge, "chunk shape exceeds the 64 GiB chunk limit");
  const uint64_t left = size - h.header_size;
  if (h.payload_size > left)
    fail(ErrorCode::kTruncated, "chunk payload is " + std::to_string(left) +
                                    " bytes, header says " + std::to_string(h.payload_size));
  if (h.payload_size < left)
    fail(ErrorCode::kCorrupt, "chunk has " + std::to_string(left - h.payload_size) +
                                  " trailing bytes after its payload");
  if (h.flags & kFlagLossy) {
    const LossyParams p = read_lossy_block(h, src + h.header_size);
    h.lossy = p.kind == Quantizer::kAbsolute ? LossyKind::kAbsolute : LossyKind::kLogRelative;
    h.error_bound = p.kind == Quantizer::kAbsolute
                        ? p.value / (2 * (1 - absolute_step_margin(h.dtype)))
                        : p.value;
  }
  return h;
}

}  // namespace tpde
