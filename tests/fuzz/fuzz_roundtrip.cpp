// libFuzzer target: encode arbitrary data (standalone, delta, delta + prev-reference) and
// require a bit-exact decode. Built by tests/fuzz/run_fuzz.sh (--roundtrip).
//
// Input: byte 0 picks the dtype (13 codes), byte 1 the mode (0 standalone, 1 delta, 2 delta
// with prev-reference) and a 2-D shape split; the rest is cut into equal parts: the data,
// then the reference, then the prev-reference (libFuzzer's CopyPart/CrossOver mutations
// make the parts resemble each other, which is what exercises the delta coder).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tpde/tpde.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const auto dtype = static_cast<tpde::DType>(1 + data[0] % 13);
  const int mode = (data[1] & 3) % 3;
  const size_t item = tpde::dtype_size(dtype);
  const size_t parts = mode == 0 ? 1 : (mode == 1 ? 2 : 3);
  const size_t body = size - 2;
  const size_t n = body / (item * parts);
  const size_t nbytes = n * item;
  std::vector<uint8_t> x(data + 2, data + 2 + nbytes), ref(nbytes), prev(nbytes);
  for (size_t i = 0; i < nbytes; ++i) {
    ref[i] = mode >= 1 ? data[2 + nbytes + i] : 0;
    prev[i] = mode == 2 ? data[2 + 2 * nbytes + i] : 0;
  }
  // Shapes: (n), or (r, n / r) when the split byte divides n.
  std::vector<uint64_t> shape = {n};
  const size_t rows = 1 + (data[1] >> 2);
  if (n % rows == 0 && rows > 1) shape = {rows, n / rows};

  tpde::EncodeInput in{dtype, shape, x.data(), mode >= 1 ? ref.data() : nullptr,
                       mode == 2 ? prev.data() : nullptr};
  const std::vector<uint8_t> chunk = tpde::encode(in);  // any tpde::Error here is a bug too
  if (chunk.size() > tpde::encode_bound(nbytes, shape.size())) {
    std::fprintf(stderr, "chunk of %zu bytes exceeds encode_bound\n", chunk.size());
    std::abort();
  }
  std::vector<uint8_t> out(nbytes + 1);  // +1: never a null pointer for empty chunks
  tpde::decode(chunk.data(), chunk.size(), out.data(), nbytes, in.reference, in.reference ? nbytes : 0,
               in.prev_reference, in.prev_reference ? nbytes : 0);
  if (nbytes && std::memcmp(out.data(), x.data(), nbytes) != 0) {
    std::fprintf(stderr, "round trip mismatch (dtype %d, mode %d, n %zu)\n", int(dtype), mode, n);
    std::abort();
  }
  if (tpde::encode(in) != chunk) {
    std::fprintf(stderr, "encoding is not deterministic\n");
    std::abort();
  }
  return 0;
}
