// libFuzzer target: decode arbitrary bytes as a chunk, with a reference and prev-reference.
// Must never crash, hang or read out of bounds; tpde::Error is the only allowed failure.
//
// Each input is decoded twice:
//  1. as given, which exercises the header parser and the checksum checks;
//  2. "resealed": payload_size, both fingerprints and both CRC32Cs rewritten to match, so
//     that mutations reach the payload decoder instead of stopping at a checksum.
// The reference and prev-reference buffers are fixed pseudo-random patterns (fuzz_ref_byte,
// fuzz_prev_byte); tests/fuzz/make_seeds.py codes its delta seeds against the same bytes.
#include <cstdint>
#include <cstring>
#include <vector>

#include "tpde/tpde.hpp"

namespace {

constexpr uint64_t kMaxFuzzBytes = uint64_t(1) << 20;  // keep allocations small and runs fast

inline uint8_t fuzz_ref_byte(uint64_t i) { return static_cast<uint8_t>(i * 167 + 60); }
inline uint8_t fuzz_prev_byte(uint64_t i) {
  return static_cast<uint8_t>(fuzz_ref_byte(i) ^ (i % 3 == 0 ? (i & 0x0F) : 0));
}

void put_le(uint8_t* p, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// The fixed reference patterns, kMaxFuzzBytes long, built once.
const std::vector<uint8_t>& pattern(bool prev) {
  static const std::vector<uint8_t> ref = [] {
    std::vector<uint8_t> v(kMaxFuzzBytes);
    for (uint64_t i = 0; i < kMaxFuzzBytes; ++i) v[i] = fuzz_ref_byte(i);
    return v;
  }();
  static const std::vector<uint8_t> prv = [] {
    std::vector<uint8_t> v(kMaxFuzzBytes);
    for (uint64_t i = 0; i < kMaxFuzzBytes; ++i) v[i] = fuzz_prev_byte(i);
    return v;
  }();
  return prev ? prv : ref;
}

void decode_one(const uint8_t* data, size_t size) {
  try {
    const tpde::Header h = tpde::read_header(data, size);
    const uint64_t nbytes = h.nbytes();
    if (nbytes > kMaxFuzzBytes) return;
    // Exact-size copies, so that ASan sees any read past the end of a reference.
    std::vector<uint8_t> out(nbytes);
    const std::vector<uint8_t> ref(pattern(false).begin(), pattern(false).begin() + nbytes);
    const std::vector<uint8_t> prev(pattern(true).begin(), pattern(true).begin() + nbytes);
    tpde::decode(data, size, out.data(), out.size(), ref.data(), ref.size(), prev.data(),
                 prev.size());
  } catch (const tpde::Error&) {
  }
}

// Rewrites the CRC-covered fields so that the chunk passes every integrity check. Returns
// false when the bytes are too short or malformed for that to make sense.
bool reseal(std::vector<uint8_t>& c) {
  if (c.size() < tpde::kFixedHeaderSize + 4 || std::memcmp(c.data(), tpde::kMagic, 4) != 0)
    return false;
  const size_t ndim = c[8];
  if (ndim > tpde::kMaxNdim) return false;
  const size_t header_size = tpde::kFixedHeaderSize + 8 * ndim + 4;
  if (c.size() < header_size) return false;
  if (tpde::dtype_valid(c[5]) && c[6] == static_cast<uint8_t>(tpde::Mode::kDelta)) {
    uint64_t nbytes = tpde::dtype_size(static_cast<tpde::DType>(c[5]));
    for (size_t i = 0; i < ndim && nbytes <= kMaxFuzzBytes; ++i) {
      uint64_t d = 0;
      for (int b = 7; b >= 0; --b) d = (d << 8) | c[32 + 8 * i + b];
      if (d != 0 && nbytes > kMaxFuzzBytes / d)
        nbytes = kMaxFuzzBytes + 1;
      else
        nbytes *= d;
    }
    if (nbytes <= kMaxFuzzBytes) {
      put_le(&c[12], tpde::crc32c(pattern(false).data(), nbytes), 4);
      if (c[7] & tpde::kFlagPrevReference)
        put_le(&c[16], tpde::crc32c(pattern(true).data(), nbytes), 4);
    }
  }
  put_le(&c[20], c.size() - header_size, 8);
  put_le(&c[28], tpde::crc32c(c.data() + header_size, c.size() - header_size), 4);
  put_le(&c[header_size - 4], tpde::crc32c(c.data(), header_size - 4), 4);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  decode_one(data, size);
  std::vector<uint8_t> sealed(data, data + size);
  if (reseal(sealed)) decode_one(sealed.data(), sealed.size());
  return 0;
}
