// Decode-only link test: decodes frozen vectors from tests/vectors with tpde_decode alone
// (no encoder object file is linked; CMake proves the split) and checks every byte.
// usage: tpde_decode_only VECTORS_DIR   (exit 0: all decoded bit-exactly)
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tpde/tpde.hpp"

namespace {

bool read_file(const std::string& path, std::vector<uint8_t>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

// The data bytes of a .npy file (format versions 1-3: magic, version, header length, header).
bool read_npy(const std::string& path, std::vector<uint8_t>& data) {
  std::vector<uint8_t> raw;
  if (!read_file(path, raw) || raw.size() < 10 || std::memcmp(raw.data(), "\x93NUMPY", 6) != 0)
    return false;
  size_t start;
  if (raw[6] == 1) {
    start = 10 + (raw[8] | size_t(raw[9]) << 8);
  } else {
    if (raw.size() < 12) return false;
    start = 12 + (raw[8] | size_t(raw[9]) << 8 | size_t(raw[10]) << 16 | size_t(raw[11]) << 24);
  }
  if (start > raw.size()) return false;
  data.assign(raw.begin() + static_cast<std::ptrdiff_t>(start), raw.end());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  // Vectors of every mode and transform: decoded bytes must equal decoded.npy (lossy) or
  // input.npy.
  const char* names[] = {
      "v5_f32_standalone", "v5_bf16_standalone",         "v5_i16_standalone",
      "v5_u64_standalone", "v5_bool_standalone",         "v5_f32_delta",
      "v5_f32_delta_prev", "v5_bf16_delta_extrapolated", "v5_f32_delta_scaled_rows",
      "v1_f32_delta_prev", "v2_ctx_prev_exponent_bf16",  "v5_f32_lossy_abs_predicted",
      "v5_bf16_lossy_abs"};
  int failures = 0, decoded = 0;
  for (const char* name : names) {
    const std::string base = dir + "/" + name + "/";
    std::vector<uint8_t> chunk, expected, ref, prev;
    // Lossy vectors: decoded.npy holds what the decoder must rebuild.
    if (!read_file(base + "encoded.bin", chunk) ||
        !(read_npy(base + "decoded.npy", expected) || read_npy(base + "input.npy", expected))) {
      std::fprintf(stderr, "%s: missing encoded.bin or input.npy\n", name);
      ++failures;
      continue;
    }
    const bool has_ref = read_npy(base + "reference.npy", ref);
    const bool has_prev = read_npy(base + "prev_reference.npy", prev);
    try {
      const tpde::Header h = tpde::read_header(chunk.data(), chunk.size());
      std::vector<uint8_t> out(h.nbytes());
      tpde::decode(chunk.data(), chunk.size(), out.data(), out.size(),
                   has_ref ? ref.data() : nullptr, ref.size(), has_prev ? prev.data() : nullptr,
                   prev.size());
      if (out != expected) {
        std::fprintf(stderr, "%s: decoded bytes differ from input.npy\n", name);
        ++failures;
      } else {
        ++decoded;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", name, e.what());
      ++failures;
    }
  }
  std::printf("decoded %d vectors bit-exactly, %d failures\n", decoded, failures);
  return failures ? 1 : 0;
}
