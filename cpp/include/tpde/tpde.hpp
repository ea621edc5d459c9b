// tpde public C++ API: encode and decode one chunk.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "tpde/error.hpp"
#include "tpde/format.hpp"

namespace tpde {

// Lossy mode: every decoded value stays within the bound of the input value.
//   kAbsolute:    |decoded - x| <= bound
//   kLogRelative: |decoded - x| <= bound * max(|x|, 2 x smallest normal value of the dtype),
//                 bound < 1, and decoded keeps the sign bit of x (non-negative tensors stay so)
// Chunks where the bound cannot be kept (non-finite values, bounds below the dtype's
// resolution) are coded losslessly instead.
enum class LossyKind : uint8_t { kNone = 0, kAbsolute = 1, kLogRelative = 2 };

struct Header {
  uint8_t version = kFormatVersion;
  DType dtype = DType::kFloat32;
  Mode mode = Mode::kStandalone;
  uint8_t flags = 0;
  std::vector<uint64_t> shape;
  uint32_t reference_fingerprint = 0;
  uint32_t prev_reference_fingerprint = 0;
  uint64_t payload_size = 0;
  uint32_t payload_crc = 0;
  size_t header_size = 0;
  LossyKind lossy = LossyKind::kNone;  // from the payload's lossy block (header flag kFlagLossy)
  double error_bound = 0.0;

  uint64_t count() const;  // elements; shape validated so no overflow
  uint64_t nbytes() const { return count() * dtype_size(dtype); }
};

struct EncodeInput {
  DType dtype;
  std::vector<uint64_t> shape;
  const void* data;                      // count * dtype_size bytes
  const void* reference = nullptr;       // same size, or null for standalone
  const void* prev_reference = nullptr;  // same size, optional context (needs reference)
  LossyKind lossy = LossyKind::kNone;    // float dtypes only
  double error_bound = 0.0;
  // Optional out: what decode() will return (count * size bytes).
  void* reconstruction = nullptr;
  // Bit s allows ContextScheme s (benchmarks measure each one).
  uint32_t context_mask = ~0u;
  // May predict from the references: lossless, code against an extrapolation from
  // prev_reference or, row by row, a scaled reference (with or without prev_reference);
  // lossy (absolute), quantize around a fitted a x reference + b x prev_reference.
  bool extrapolate = true;
  // Level "fast": a FastPlanes chunk (format 6, docs/format.md section 14): byte planes and
  // static rANS, lossless only (lossy is an invalid_argument), prev_reference ignored.
  bool fast = false;
  // CRC32C of reference / prev_reference when the caller already has them (a store keeps
  // each chunk's in its manifest): the header takes them instead of a pass over each.
  std::optional<uint32_t> reference_fingerprint;
  std::optional<uint32_t> prev_reference_fingerprint;
};

// Largest chunk encode() can produce for nbytes of input and ndim dimensions.
size_t encode_bound(size_t nbytes, size_t ndim);

std::vector<uint8_t> encode(const EncodeInput& input);

// Parse and validate the header (and its CRC) and, for a lossy chunk, the lossy block at the
// start of the payload (it fills lossy and error_bound); the rest of the payload is neither
// read nor checked (decode() checks its CRC).
Header read_header(const uint8_t* src, size_t size);

// Decode into out (header.nbytes() bytes). Checks payload CRC, reference fingerprints.
void decode(const uint8_t* src, size_t size, void* out, size_t out_size, const void* reference,
            size_t reference_size, const void* prev_reference, size_t prev_reference_size);

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace tpde
