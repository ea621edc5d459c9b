// Per-chunk speed of the C++ core, without Python: reads raw little-endian arrays
// (data and reference) and reports encode/decode MB/s, best of N after a warm-up.
//   bench_core DTYPE DATA.bin [REF.bin] [REPEATS] [PREV.bin] [CHUNK_VALUES] [OUT.bin]
//   DTYPE: f32 | bf16, with suffix "-fast" for level "fast" (f32-fast, bf16-fast); "-" skips
//   REF.bin / PREV.bin. PREV.bin: prev_reference (f2 deltas).
//   CHUNK_VALUES > 0 codes the arrays as consecutive chunks of that many values (real
//   chunks are per tensor); a file name instead lists the chunks' value counts, one a line
//   (the chunks of a dumped series step). OUT.bin receives the encoded chunks, concatenated.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tpde/tpde.hpp"

// Chunk value counts: CHUNK_VALUES chunks of one size (0: one chunk), or the counts in a file.
static std::vector<size_t> chunk_counts(const char* arg, size_t total) {
  std::vector<size_t> counts;
  const std::string s = arg ? arg : "0";
  if (!s.empty() && s.find_first_not_of("0123456789") != std::string::npos) {
    std::ifstream in(s);
    for (size_t c; in >> c;) counts.push_back(c);
    return counts;
  }
  const size_t each = std::stoull(s) > 0 ? std::stoull(s) : total;
  for (size_t begin = 0; begin < total || counts.empty(); begin += each) {
    counts.push_back(std::min(each, total - begin));
    if (total == 0) break;
  }
  return counts;
}

static std::vector<uint8_t> read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: bench_core f32|bf16[-fast] DATA.bin [REF.bin] [REPEATS] [PREV.bin] "
                 "[CHUNK_VALUES|COUNTS.txt] [OUT.bin]\n");
    return 2;
  }
  const std::string dtype = argv[1];
  const bool fast = dtype.size() > 5 && dtype.compare(dtype.size() - 5, 5, "-fast") == 0;
  const bool bf16 = dtype.compare(0, 4, "bf16") == 0;
  const size_t item = bf16 ? 2 : 4;
  const std::vector<uint8_t> data = read_file(argv[2]);
  const std::vector<uint8_t> ref =
      argc > 3 && std::string(argv[3]) != "-" ? read_file(argv[3]) : std::vector<uint8_t>();
  const int repeats = argc > 4 ? std::stoi(argv[4]) : 10;
  const std::vector<uint8_t> prev =
      argc > 5 && std::string(argv[5]) != "-" ? read_file(argv[5]) : std::vector<uint8_t>();
  const size_t total = data.size() / item;
  const std::vector<size_t> counts = chunk_counts(argc > 6 ? argv[6] : nullptr, total);
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
  size_t counted = 0;
  for (size_t c : counts) counted += c;
  if (counted != total) {
    std::fprintf(stderr, "chunk counts sum to %zu values, the data has %zu\n", counted, total);
    return 2;
  }
  std::vector<tpde::EncodeInput> inputs;
  size_t begin = 0;
  for (size_t count : counts) {
    inputs.push_back({bf16 ? tpde::DType::kBFloat16 : tpde::DType::kFloat32,
                      {count},
                      data.data() + begin * item,
                      ref.empty() ? nullptr : ref.data() + begin * item,
                      nullptr});
    inputs.back().prev_reference = prev.empty() ? nullptr : prev.data() + begin * item;
    inputs.back().fast = fast;
    begin += count;
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
