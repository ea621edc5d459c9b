// Per-chunk speed of the C++ core, without Python: reads raw little-endian arrays
// (data and reference) and reports encode/decode MB/s, best of N after a warm-up.
//   bench_core DTYPE DATA.bin [REF.bin] [REPEATS] [PREV.bin] [CHUNK_VALUES] [OUT.bin]
//   DTYPE: f32 | bf16; "-" skips REF.bin / PREV.bin. PREV.bin: prev_reference (f2 deltas).
//   CHUNK_VALUES > 0 codes the arrays as consecutive chunks of that many values (real
//   chunks are per tensor); OUT.bin receives the encoded chunks, concatenated.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tpde/tpde.hpp"

static std::vector<uint8_t> read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_core f32|bf16 DATA.bin [REF.bin] [REPEATS]\n");
    return 2;
  }
  const bool bf16 = std::string(argv[1]) == "bf16";
  const size_t item = bf16 ? 2 : 4;
  const std::vector<uint8_t> data = read_file(argv[2]);
  const std::vector<uint8_t> ref =
      argc > 3 && std::string(argv[3]) != "-" ? read_file(argv[3]) : std::vector<uint8_t>();
  const int repeats = argc > 4 ? std::stoi(argv[4]) : 10;
  const std::vector<uint8_t> prev =
      argc > 5 && std::string(argv[5]) != "-" ? read_file(argv[5]) : std::vector<uint8_t>();
  const size_t total = data.size() / item;
  const size_t chunk_values = argc > 6 && std::stoull(argv[6]) > 0 ? std::stoull(argv[6]) : total;
  if ((!ref.empty() && ref.size() != data.size()) ||
      (!prev.empty() && (ref.empty() || prev.size() != data.size()))) {
    std::fprintf(stderr, "size mismatch\n");
    return 2;
  }
  // Thread CPU time, so that other processes on a shared machine do not inflate the figures.
  auto now = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  };
  std::vector<tpde::EncodeInput> inputs;
  for (size_t begin = 0; begin < total || (total == 0 && inputs.empty()); begin += chunk_values) {
    const size_t count = std::min(chunk_values, total - begin);
    inputs.push_back({bf16 ? tpde::DType::kBFloat16 : tpde::DType::kFloat32,
                      {count},
                      data.data() + begin * item,
                      ref.empty() ? nullptr : ref.data() + begin * item,
                      nullptr});
    inputs.back().prev_reference = prev.empty() ? nullptr : prev.data() + begin * item;
    if (total == 0) break;
  }
  double best_enc = 1e9, best_dec = 1e9;
  std::vector<std::vector<uint8_t>> chunks(inputs.size());
  std::vector<uint8_t> out(data.size());
  size_t coded_bytes = 0;
  for (int r = 0; r <= repeats; ++r) {
    const double t0 = now();
    for (size_t k = 0; k < inputs.size(); ++k) chunks[k] = tpde::encode(inputs[k]);
    const double t1 = now();
    coded_bytes = 0;
    for (size_t k = 0; k < inputs.size(); ++k) {
      const tpde::EncodeInput& in = inputs[k];
      const size_t off = static_cast<const uint8_t*>(in.data) - data.data(),
                   bytes = in.shape[0] * item;
      tpde::decode(chunks[k].data(), chunks[k].size(), out.data() + off, bytes, in.reference,
                   in.reference ? bytes : 0, in.prev_reference, in.prev_reference ? bytes : 0);
      coded_bytes += chunks[k].size();
    }
    const double t2 = now();
    if (r == 0) continue;  // warm-up
    best_enc = std::min(best_enc, t1 - t0);
    best_dec = std::min(best_dec, t2 - t1);
  }
  if (argc > 7) {
    std::ofstream o(argv[7], std::ios::binary);
    for (const auto& c : chunks)
      o.write(reinterpret_cast<const char*>(c.data()), static_cast<std::streamsize>(c.size()));
  }
  if (std::memcmp(out.data(), data.data(), data.size()) != 0) {
    std::printf("ROUND TRIP MISMATCH\n");
    return 1;
  }
  std::printf("%zu bytes  ratio %.3f  encode %.0f MB/s  decode %.0f MB/s  (round trip ok)\n",
              data.size(), double(data.size()) / coded_bytes, data.size() / best_enc / 1e6,
              data.size() / best_dec / 1e6);
  return 0;
}
