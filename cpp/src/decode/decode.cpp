// Chunk decoder: the public decode (header, checksums, references), and lossy chunks over
// the lossless ChunkDecoder (chunk_decoder.hpp).
#include <cstdint>
#include <string>
#include <vector>

#include "decode/chunk_decoder.hpp"
#include "format/header.hpp"
#include "model/quantize.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace {

using decoder::ChunkDecoder;

// Lossy chunk: the payload after the lossy block decodes (losslessly) to ref + q; each value
// is then rebuilt from q. Standalone lossy chunks are coded against zeros.
template <typename U>
void decode_lossy(const Header& h, const uint8_t* payload, void* out_bytes, const void* reference,
                  const void* prev_reference) {
  const LossyParams p = read_lossy_block(h, payload);
  const uint64_t n = h.count();
  std::vector<U> zeros;
  const U* ref = static_cast<const U*>(reference);
  if (!ref) {
    zeros.assign(n, 0);
    ref = zeros.data();
  }
  Header inner = h;
  inner.mode = Mode::kDelta;
  const size_t block = lossy_block_size(h.version, p);
  inner.payload_size = h.payload_size - block;
  U* out = static_cast<U*>(out_bytes);
  const U* prev = static_cast<const U*>(prev_reference);
  std::vector<U> prev_q;
  if (prev) quantized_prev_reference<U>(ref, prev, n, p, h.dtype, prev_q);
  ChunkDecoder<U>(inner, payload + block, out, ref, prev ? prev_q.data() : nullptr, true).run();
  if (p.predictor) {
    for (uint64_t i = 0; i < n; ++i) {
      const double base = predicted_base(p, to_double<U>(ref[i], h.dtype),
                                         prev ? to_double<U>(prev[i], h.dtype) : 0.0);
      out[i] = dequantize_absolute<U>(base, static_cast<U>(out[i] - ref[i]), p, h.dtype);
    }
    return;
  }
  for (uint64_t i = 0; i < n; ++i)
    out[i] = dequantize<U>(ref[i], static_cast<U>(out[i] - ref[i]), p, h.dtype);
}

}  // namespace

void decode(const uint8_t* src, size_t size, void* out, size_t out_size, const void* reference,
            size_t reference_size, const void* prev_reference, size_t prev_reference_size) {
  const Header h = read_header(src, size);
  const uint8_t* payload = src + h.header_size;
  const uint64_t nbytes = h.nbytes();
  if (out_size != nbytes)
    fail(ErrorCode::kSizeMismatch, "output buffer is " + std::to_string(out_size) +
                                       " bytes, chunk decodes to " + std::to_string(nbytes));
  if (crc32c(payload, h.payload_size) != h.payload_crc)
    fail(ErrorCode::kChecksum, "chunk payload checksum (CRC32C) mismatch: chunk is corrupted");
  if (h.mode == Mode::kDelta) {
    if (!reference)
      fail(ErrorCode::kMissingReference,
           "delta chunk needs its reference (the predecessor's reconstruction); decode it through "
           "tpde.CheckpointStore or pass reference=");
    if (reference_size != nbytes)
      fail(ErrorCode::kSizeMismatch, "reference is " + std::to_string(reference_size) +
                                         " bytes, chunk has " + std::to_string(nbytes));
    if (crc32c(reference, nbytes) != h.reference_fingerprint)
      fail(ErrorCode::kReferenceMismatch,
           "reference does not match the one this delta chunk was coded against (fingerprint "
           "mismatch)");
    if (h.flags & kFlagPrevReference) {
      if (!prev_reference)
        fail(ErrorCode::kMissingReference,
             "delta chunk was coded with a prev_reference context; pass prev_reference=");
      if (prev_reference_size != nbytes)
        fail(ErrorCode::kSizeMismatch, "prev_reference is " + std::to_string(prev_reference_size) +
                                           " bytes, chunk has " + std::to_string(nbytes));
      if (crc32c(prev_reference, nbytes) != h.prev_reference_fingerprint)
        fail(ErrorCode::kReferenceMismatch,
             "prev_reference does not match this delta chunk (fingerprint mismatch)");
    } else {
      prev_reference = nullptr;
    }
  } else {
    reference = prev_reference = nullptr;
  }
  if (h.flags & kFlagLossy) {
    switch (dtype_size(h.dtype)) {
      case 2: decode_lossy<uint16_t>(h, payload, out, reference, prev_reference); return;
      case 4: decode_lossy<uint32_t>(h, payload, out, reference, prev_reference); return;
      case 8: decode_lossy<uint64_t>(h, payload, out, reference, prev_reference); return;
      default: fail(ErrorCode::kCorrupt, "lossy flag on a 1-byte dtype");
    }
  }
  switch (dtype_size(h.dtype)) {
    case 1:
      ChunkDecoder<uint8_t>(h, payload, static_cast<uint8_t*>(out),
                            static_cast<const uint8_t*>(reference),
                            static_cast<const uint8_t*>(prev_reference))
          .run();
      break;
    case 2:
      ChunkDecoder<uint16_t>(h, payload, static_cast<uint16_t*>(out),
                             static_cast<const uint16_t*>(reference),
                             static_cast<const uint16_t*>(prev_reference))
          .run();
      break;
    case 4:
      ChunkDecoder<uint32_t>(h, payload, static_cast<uint32_t*>(out),
                             static_cast<const uint32_t*>(reference),
                             static_cast<const uint32_t*>(prev_reference))
          .run();
      break;
    case 8:
      ChunkDecoder<uint64_t>(h, payload, static_cast<uint64_t*>(out),
                             static_cast<const uint64_t*>(reference),
                             static_cast<const uint64_t*>(prev_reference))
          .run();
      break;
  }
}

}  // namespace tpde
