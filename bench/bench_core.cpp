// Per-chunk speed of the C++ core, without Python: reads raw little-endian arrays
// (data and reference) and reports encode/decode MB/s, best of N after a warm-up.
//   bench_core DTYPE DATA.bin [REF.bin] [REPEATS]      DTYPE: f32 | bf16
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tpde/tpde.hpp"

static std::vector<uint8_t> read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_core f32|bf16 DATA.bin [REF.bin] [REPEATS]\n");
    return 2;
  }
  const bool bf16 = std::string(argv[1]) == "bf16";
  const size_t item = bf16 ? 2 : 4;
  const std::vector<uint8_t> data = read_file(argv[2]);
  const std::vector<uint8_t> ref = argc > 3 && std::string(argv[3]) != "-" ? read_file(argv[3]) : std::vector<uint8_t>();
  const int repeats = argc > 4 ? std::stoi(argv[4]) : 10;
  tpde::EncodeInput in{bf16 ? tpde::DType::kBFloat16 : tpde::DType::kFloat32, {data.size() / item}, data.data(),
                       ref.empty() ? nullptr : ref.data(), nullptr};
  using clock = std::chrono::steady_clock;
  double best_enc = 1e9, best_dec = 1e9;
  std::vector<uint8_t> chunk, out(data.size());
  for (int r = 0; r <= repeats; ++r) {
    auto t0 = clock::now();
    chunk = tpde::encode(in);
    auto t1 = clock::now();
    tpde::decode(chunk.data(), chunk.size(), out.data(), out.size(), in.reference, ref.size(), nullptr, 0);
    auto t2 = clock::now();
    if (r == 0) continue;  // warm-up
    best_enc = std::min(best_enc, std::chrono::duration<double>(t1 - t0).count());
    best_dec = std::min(best_dec, std::chrono::duration<double>(t2 - t1).count());
  }
  if (std::memcmp(out.data(), data.data(), data.size()) != 0) {
    std::printf("ROUND TRIP MISMATCH\n");
    return 1;
  }
  std::printf("%zu bytes  ratio %.3f  encode %.0f MB/s  decode %.0f MB/s  (round trip ok)\n", data.size(),
              double(data.size()) / chunk.size(), data.size() / best_enc / 1e6, data.size() / best_dec / 1e6);
  return 0;
}
