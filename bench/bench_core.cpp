// Per-chunk speed of the C++ core, without Python: reads raw little-endian arrays
// (data and reference) and reports encode/decode MB/s, best of N after a warm-up.
//   bench_core DTYPE DATA.bin [REF.bin] [REPEATS]      DTYPE: f32 | bf16
#include <algorithm>
#include <ctime>
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
  // Thread CPU time, so that other processes on a shared machine do not inflate the figures.
  auto now = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  };
  double best_enc = 1e9, best_dec = 1e9;
  std::vector<uint8_t> chunk, out(data.size());
  for (int r = 0; r <= repeats; ++r) {
    const double t0 = now();
    chunk = tpde::encode(in);
    const double t1 = now();
    tpde::decode(chunk.data(), chunk.size(), out.data(), out.size(), in.reference, ref.size(), nullptr, 0);
    const double t2 = now();
    if (r == 0) continue;  // warm-up
    best_enc = std::min(best_enc, t1 - t0);
    best_dec = std::min(best_dec, t2 - t1);
  }
  if (std::memcmp(out.data(), data.data(), data.size()) != 0) {
    std::printf("ROUND TRIP MISMATCH\n");
    return 1;
  }
  std::printf("%zu bytes  ratio %.3f  encode %.0f MB/s  decode %.0f MB/s  (round trip ok)\n", data.size(),
              double(data.size()) / chunk.size(), data.size() / best_enc / 1e6, data.size() / best_dec / 1e6);
  return 0;
}
