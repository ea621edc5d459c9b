// Public encoder API (tpde/tpde.hpp): validates the request, writes the header and a
// lossless or lossy payload. The coding itself is in plan.cpp, chunk_encoder.hpp and lossy.cpp.
#include <cstring>
#include <string>

#include "encode/header_writer.hpp"
#include "encode/lossy.hpp"
#include "encode/plan.hpp"
#include "fast/fast_encode.hpp"
#include "format/header.hpp"
#include "format/payload.hpp"
#include "tpde/tpde.hpp"

namespace tpde {
namespace encoder {
namespace {

// A lossy chunk that would not be smaller than the values stored raw (tiny chunks, where
// the lossy block dominates) is coded losslessly instead: it is never larger than that.
template <typename U>
bool encode_any_payload(const EncodeInput& in, uint64_t n, std::vector<uint8_t>& out) {
  if (in.lossy != LossyKind::kNone && encode_lossy_payload<U>(in, n, out)) {
    if (out.size() < kPayloadPrefix + n * sizeof(U)) return true;
    out.clear();
  }
  encode_payload<U>(in, n, out);
  if (in.reconstruction && n) std::memcpy(in.reconstruction, in.data, n * sizeof(U));
  return false;
}

}  // namespace
}  // namespace encoder

size_t encode_bound(size_t nbytes, size_t ndim) {
  return header_size(ndim) + kPayloadPrefix + nbytes;
}

std::vector<uint8_t> encode(const EncodeInput& in) {
  using encoder::encode_any_payload;
  using encoder::lossy_params;
  if (in.shape.size() > kMaxNdim)
    fail(ErrorCode::kInvalidArgument, "array has " + std::to_string(in.shape.size()) +
                                          " dimensions; tpde chunks hold at most 32");
  if (in.prev_reference && !in.reference)
    fail(ErrorCode::kInvalidArgument, "prev_reference given without reference");
  if (in.fast && in.lossy != LossyKind::kNone)
    fail(ErrorCode::kInvalidArgument,
         "the fast level is lossless: no error bound with level=\"fast\"");
  Header h;
  h.dtype = in.dtype;
  h.shape = in.shape;
  uint64_t nbytes = dtype_size(in.dtype);
  uint64_t limited =
      nbytes;  // product of the non-zero dimensions, as decoders check it (format.md 10)
  for (uint64_t d : in.shape) {
    if (d != 0 && limited > kMaxChunkBytes / d)
      fail(ErrorCode::kTooLarge, "chunk larger than the 64 GiB limit");
    if (d != 0) limited *= d;
    nbytes *= d;
  }
  const uint64_t n = h.count();
  if (in.reference) {
    h.mode = Mode::kDelta;
    h.reference_fingerprint =
        in.reference_fingerprint ? *in.reference_fingerprint : crc32c(in.reference, nbytes);
    if (in.prev_reference && !in.fast) {  // the fast level uses no prev-reference
      h.flags |= kFlagPrevReference;
      h.prev_reference_fingerprint = in.prev_reference_fingerprint
                                         ? *in.prev_reference_fingerprint
                                         : crc32c(in.prev_reference, nbytes);
    }
  }
  if (in.lossy != LossyKind::kNone) lossy_params(in);  // validate before any work
  std::vector<uint8_t> payload;
  bool lossy = false;
  if (!in.fast) payload.reserve(nbytes / 2 + 1024 + header_size(h.shape.size()));
  if (in.fast) {
    // The payload goes straight after room for the header, written once its size and CRC
    // are known: no second copy of the chunk. Room for a Stored payload: a chunk that
    // compresses less than 2:1 is not moved while it grows (pages never written stay
    // unmapped).
    h.version = kFastFormatVersion;
    if (!dtype_valid(static_cast<uint8_t>(in.dtype))) fail(ErrorCode::kBadDtype, "unknown dtype");
    const size_t hs = header_size(h.shape.size());
    std::vector<uint8_t> out(hs);
    out.reserve(hs + kPayloadPrefix + nbytes + 1024);
    fast::encode_fast_payload(in.dtype, in.data, in.reference, n, out);
    if (in.reconstruction && n) std::memcpy(in.reconstruction, in.data, nbytes);
    h.payload_size = out.size() - hs;
    h.payload_crc = crc32c(out.data() + hs, out.size() - hs);
    std::vector<uint8_t> head;
    write_header(h, head);
    std::memcpy(out.data(), head.data(), hs);
    return out;
  } else {
    switch (dtype_size(in.dtype)) {
      case 1: lossy = encode_any_payload<uint8_t>(in, n, payload); break;
      case 2: lossy = encode_any_payload<uint16_t>(in, n, payload); break;
      case 4: lossy = encode_any_payload<uint32_t>(in, n, payload); break;
      case 8: lossy = encode_any_payload<uint64_t>(in, n, payload); break;
      default: fail(ErrorCode::kBadDtype, "unknown dtype");
    }
  }
  if (lossy) h.flags |= kFlagLossy;
  h.payload_size = payload.size();
  h.payload_crc = crc32c(payload.data(), payload.size());
  // the header goes in front of the payload in place (a move within its memory, which
  // has room for it or grows once), not into a second chunk-sized buffer
  std::vector<uint8_t> head;
  write_header(h, head);
  payload.insert(payload.begin(), head.begin(), head.end());
  return payload;
}

}  // namespace tpde
