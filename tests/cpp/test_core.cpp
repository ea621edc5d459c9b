// C++ unit tests for the tpde core (run by ctest). No framework: CHECK aborts with a message.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "encode/frequencies.hpp"
#include "encode/rans_encoder.hpp"
#include "entropy/bitstream.hpp"
#include "entropy/elias.hpp"
#include "entropy/rans.hpp"
#include "entropy/tables.hpp"
#include "model/quantize.hpp"
#include "model/symbols.hpp"
#include "predict/extrapolate.hpp"
#include "predict/scaled.hpp"
#include "tpde/tpde.hpp"

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

using namespace tpde;

static int tests_run = 0;

static void test_bitstream_roundtrip() {
  std::mt19937_64 rng(1);
  std::vector<std::pair<uint64_t, int>> items;
  std::vector<uint8_t> buf(10000 * 8 + 8);
  BitWriter w(buf.data());
  for (int i = 0; i < 10000; ++i) {
    const int n = static_cast<int>(rng() % 65);
    const uint64_t v = n == 64 ? rng() : (rng() & ((uint64_t(1) << n) - 1));
    items.push_back({v, n});
    w.put_wide(v, n);
  }
  buf.resize(static_cast<size_t>(w.finish() - buf.data()));
  BitReader r(buf.data(), buf.size());
  for (const auto& [v, n] : items) CHECK(r.get_wide(n) == v);
  CHECK(!r.overran());
  r.get(8);
  r.get(8);
  CHECK(r.overran() || r.bit_position() <= buf.size() * 8);
  ++tests_run;
}

static void test_elias_roundtrip() {
  std::vector<uint64_t> values = {1,   2,   3,     4,          5,     7,           8,
                                  255, 256, 65535, 1ull << 40, ~0ull, (1ull << 63)};
  std::mt19937_64 rng(2);
  for (int i = 0; i < 5000; ++i) values.push_back((rng() >> (rng() % 64)) | 1);
  for (int kind = 0; kind < 2; ++kind) {
    std::vector<uint8_t> buf(values.size() * 16 + 8);  // a code takes at most 127 bits
    BitWriter w(buf.data());
    for (uint64_t v : values) kind ? put_elias_delta(w, v) : put_elias_gamma(w, v);
    buf.resize(static_cast<size_t>(w.finish() - buf.data()));
    BitReader r(buf.data(), buf.size());
    for (uint64_t v : values) CHECK((kind ? get_elias_delta(r) : get_elias_gamma(r)) == v);
    CHECK(!r.overran());
  }
  // Known code lengths: delta(1) = 1 bit, delta(2) = 4 bits, delta(17) = 9 bits.
  std::vector<uint8_t> buf(16);
  BitWriter w(buf.data());
  put_elias_delta(w, 1);
  put_elias_delta(w, 2);
  put_elias_delta(w, 17);
  buf.resize(static_cast<size_t>(w.finish() - buf.data()));
  CHECK(buf.size() == 2);  // 14 bits
  ++tests_run;
}

// One or two interleaved states (formats 1-4 / 5), odd and even symbol counts.
template <int kStates>
static void check_rans_roundtrip(const std::vector<uint8_t>& syms) {
  std::vector<uint64_t> counts(kAlphabet, 0);
  for (uint8_t s : syms) ++counts[s];
  if (syms.empty()) counts[0] = 1;
  std::vector<uint32_t> freqs(kAlphabet);
  normalize_frequencies(counts.data(), freqs.data());
  uint32_t sum = 0;
  for (auto f : freqs) sum += f;
  CHECK(sum == kProbScale);
  std::vector<RansEncSymbol> enc(kAlphabet);
  uint32_t cum = 0;
  for (int s = 0; s < kAlphabet; ++s) {
    if (freqs[s]) enc[s] = RansEncSymbol(cum, freqs[s]);
    cum += freqs[s];
  }
  RansEncoder<kStates> e(syms.size()), exact(syms.size());
  for (size_t i = syms.size(); i-- > 0;) {
    e.put(enc[syms[i]]);
    exact.put_exact(enc[syms[i]]);
  }
  const std::vector<uint8_t> bytes = e.finish();
  CHECK(bytes == exact.finish());  // reciprocal fast path == division path
  CHECK(bytes.size() >= 4u * kStates);
  std::vector<uint8_t> table_bytes;
  write_tables(freqs, 1, table_bytes);
  std::unique_ptr<DecTable[]> tables;
  std::vector<uint8_t> used;
  CHECK(read_tables(table_bytes.data(), table_bytes.size(), 1, 255, tables, used));
  RansDecoder<kStates> d(bytes.data(), bytes.size());
  for (uint8_t s : syms) CHECK(d.get(tables[0]) == s);
  CHECK(d.finished_cleanly());
  // A stream of the other state count does not end cleanly (for non-trivial inputs).
  if (syms.size() > 100) {
    RansDecoder<3 - kStates> other(bytes.data(), bytes.size());
    for (size_t i = 0; i < syms.size(); ++i) other.get(tables[0]);
    CHECK(!other.finished_cleanly());
  }
}

static void test_rans_roundtrip() {
  std::mt19937 rng(3);
  std::geometric_distribution<int> geo(0.2);
  for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(3), size_t(100000), size_t(100001)}) {
    std::vector<uint8_t> syms(n);
    for (auto& s : syms) s = static_cast<uint8_t>(std::min(geo(rng), 255));
    check_rans_roundtrip<1>(syms);
    check_rans_roundtrip<2>(syms);
  }
  ++tests_run;
}

static void test_log_bucket_split_join() {
  std::mt19937_64 rng(4);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t v = i < 300 ? static_cast<uint64_t>(i) : rng() >> (rng() % 64);
    const Split s = log_bucket_split(v);
    CHECK(s.symbol <= static_cast<uint32_t>(log_bucket_max_symbol(64)));
    CHECK(log_bucket_tail_bits(s.symbol) == s.tail_bits);
    CHECK(log_bucket_join(s.symbol, s.tail) == v);
    CHECK(log_bucket_symbol(v) == s.symbol);
  }
  CHECK(zigzag<uint32_t>(0xFFFFFFFFu) == 1u);
  CHECK(unzigzag<uint32_t>(zigzag<uint32_t>(0x80000000u)) == 0x80000000u);
  ++tests_run;
}

template <typename U>
static void roundtrip(DType dtype, const std::vector<U>& x, const std::vector<U>* ref,
                      const std::vector<U>* prev) {
  EncodeInput in{
      dtype, {x.size()}, x.data(), ref ? ref->data() : nullptr, prev ? prev->data() : nullptr};
  const std::vector<uint8_t> chunk = encode(in);
  CHECK(chunk.size() <= encode_bound(x.size() * sizeof(U), 1));
  std::vector<U> out(x.size());
  decode(chunk.data(), chunk.size(), out.data(), out.size() * sizeof(U),
         ref ? ref->data() : nullptr, ref ? ref->size() * sizeof(U) : 0,
         prev ? prev->data() : nullptr, prev ? prev->size() * sizeof(U) : 0);
  CHECK(out == x);
}

static void test_chunk_roundtrips() {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.f, 0.02f);
  for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(1000), size_t(50000)}) {
    std::vector<float> w(n), w1(n), w2(n);
    for (size_t i = 0; i < n; ++i) {
      w[i] = normal(rng);
      w1[i] = w[i] + 1e-4f * normal(rng);
      w2[i] = (i % 3) ? w1[i] : w1[i] + 1e-4f * normal(rng);
    }
    auto bits = [](const std::vector<float>& f) {
      std::vector<uint32_t> u(f.size());
      if (!f.empty()) std::memcpy(u.data(), f.data(), f.size() * 4);
      return u;
    };
    const auto u = bits(w), u1 = bits(w1), u2 = bits(w2);
    roundtrip<uint32_t>(DType::kFloat32, u, nullptr, nullptr);
    roundtrip<uint32_t>(DType::kFloat32, u1, &u, nullptr);
    roundtrip<uint32_t>(DType::kFloat32, u2, &u1, &u);
    roundtrip<uint32_t>(DType::kInt32, u2, nullptr, nullptr);
    std::vector<uint16_t> h(n), h1(n);
    for (size_t i = 0; i < n; ++i) {
      h[i] = static_cast<uint16_t>(u[i] >> 16);
      h1[i] = static_cast<uint16_t>(u2[i] >> 16);
    }
    roundtrip<uint16_t>(DType::kBFloat16, h1, &h, nullptr);
    roundtrip<uint16_t>(DType::kBFloat16, h1, nullptr, nullptr);
    std::vector<uint64_t> d(n);
    for (size_t i = 0; i < n; ++i) d[i] = (uint64_t(u[i]) << 32) | u1[i];
    roundtrip<uint64_t>(DType::kFloat64, d, nullptr, nullptr);
    roundtrip<uint64_t>(DType::kInt64, d, &d, nullptr);
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = (i / 17) & 1;
    roundtrip<uint8_t>(DType::kBool, b, nullptr, nullptr);
  }
  // Special values: NaN payloads, infinities, signed zeros, denormals.
  std::vector<uint32_t> special = {0x7FC00001u, 0xFFC12345u, 0x7F800000u, 0xFF800000u, 0x00000000u,
                                   0x80000000u, 0x00000001u, 0x807FFFFFu, 0x3F800000u};
  std::vector<uint32_t> special_ref(special.rbegin(), special.rend());
  roundtrip<uint32_t>(DType::kFloat32, special, nullptr, nullptr);
  roundtrip<uint32_t>(DType::kFloat32, special, &special_ref, nullptr);
  ++tests_run;
}

static int expect_error(const std::vector<uint8_t>& chunk, size_t out_size, const void* ref,
                        size_t ref_size) {
  std::vector<uint8_t> out(out_size + 1);
  try {
    decode(chunk.data(), chunk.size(), out.data(), out_size, ref, ref_size, nullptr, 0);
  } catch (const Error& e) {
    return static_cast<int>(e.code());
  }
  return 0;
}

static void test_bad_input() {
  std::vector<uint32_t> x(1000), r(1000);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = static_cast<uint32_t>(i * 2654435761u);
    r[i] = x[i] ^ (i % 5);
  }
  EncodeInput in{DType::kFloat32, {x.size()}, x.data(), r.data(), nullptr};
  const auto chunk = encode(in);
  const size_t nb = x.size() * 4;
  CHECK(expect_error(chunk, nb, nullptr, 0) == int(ErrorCode::kMissingReference));
  std::vector<uint32_t> wrong = r;
  wrong[3] ^= 1;
  CHECK(expect_error(chunk, nb, wrong.data(), nb) == int(ErrorCode::kReferenceMismatch));
  CHECK(expect_error(chunk, nb - 4, r.data(), nb) == int(ErrorCode::kSizeMismatch));
  for (size_t cut = 0; cut < chunk.size(); cut += 7) {
    std::vector<uint8_t> t(chunk.begin(), chunk.begin() + cut);
    const int code = expect_error(t, nb, r.data(), nb);
    CHECK(code == int(ErrorCode::kTruncated) || code == int(ErrorCode::kBadMagic));
  }
  auto flipped = chunk;
  flipped[flipped.size() / 2] ^= 0x10;
  CHECK(expect_error(flipped, nb, r.data(), nb) == int(ErrorCode::kChecksum));
  auto version = chunk;
  version[4] = 99;
  CHECK(expect_error(version, nb, r.data(), nb) == int(ErrorCode::kUnsupportedVersion));
  ++tests_run;
}

// Lossy chain with error feedback: each step is coded against the previous reconstruction;
// every value stays within the bound, and re-encoding a reconstruction gives the same bytes.
template <typename U>
static void lossy_chain(DType dtype, LossyKind kind, double bound) {
  std::mt19937 rng(7);
  std::normal_distribution<double> normal(0.0, 1.0);
  const size_t n = 5000;
  std::vector<double> truth(n);
  for (auto& t : truth) t = normal(rng) * 0.05;
  auto to_bits = [&](double d) { return from_double<U>(d, dtype); };
  std::vector<U> ref(n), prev(n), x(n), recon(n), recon2(n);
  bool first = true;
  for (int step = 0; step < 55; ++step) {
    for (size_t i = 0; i < n; ++i) {
      truth[i] += normal(rng) * 1e-3 * (i % 7 == 0 ? 0.0 : 1.0);
      x[i] = to_bits(kind == LossyKind::kLogRelative ? std::fabs(truth[i]) + 1e-6 : truth[i]);
    }
    EncodeInput in{
        dtype, {n},   x.data(),    first ? nullptr : ref.data(), step >= 2 ? prev.data() : nullptr,
        kind,  bound, recon.data()};
    const std::vector<uint8_t> chunk = encode(in);
    const Header h = read_header(chunk.data(), chunk.size());
    CHECK(h.lossy == kind);
    std::vector<U> out(n);
    decode(chunk.data(), chunk.size(), out.data(), n * sizeof(U), in.reference,
           in.reference ? n * sizeof(U) : 0, in.prev_reference,
           in.prev_reference ? n * sizeof(U) : 0);
    CHECK(std::memcmp(out.data(), recon.data(), n * sizeof(U)) == 0);
    for (size_t i = 0; i < n; ++i) {
      const double xd = to_double<U>(x[i], dtype), rd = to_double<U>(out[i], dtype);
      const double allowed = kind == LossyKind::kAbsolute ? bound : bound * std::fabs(xd) + 1e-30;
      CHECK(std::fabs(xd - rd) <= allowed);
    }
    EncodeInput again = in;
    again.data = recon.data();
    again.reconstruction = recon2.data();
    CHECK(encode(again) == chunk);  // idempotent
    CHECK(std::memcmp(recon2.data(), recon.data(), n * sizeof(U)) == 0);
    prev = ref;
    ref = recon;
    first = false;
  }
}

static void test_lossy() {
  lossy_chain<uint32_t>(DType::kFloat32, LossyKind::kAbsolute, 1e-4);
  lossy_chain<uint32_t>(DType::kFloat32, LossyKind::kLogRelative, 0.01);
  lossy_chain<uint16_t>(DType::kBFloat16, LossyKind::kAbsolute, 1e-3);
  lossy_chain<uint16_t>(DType::kFloat16, LossyKind::kAbsolute, 1e-3);
  lossy_chain<uint64_t>(DType::kFloat64, LossyKind::kLogRelative, 1e-3);
  // Half conversions round to nearest even, exactly.
  for (uint32_t h = 0; h < 0x7C00; ++h)
    CHECK(double_to_half(half_to_double(static_cast<uint16_t>(h))) == h);
  CHECK(double_to_half(1.0 + 1.0 / 2048) == 0x3C00);  // tie to even
  CHECK(double_to_half(1.0 + 3.0 / 2048) == 0x3C02);
  // Log-relative: zeros and tiny values keep their sign and stay within r x 2N.
  {
    std::vector<uint32_t> z = {0x00000000u, 0x80000000u, 0x00000001u, 0x80000005u, 0x00800000u},
                          ref(5), rz(5);
    for (auto& r : ref) r = 0x3A83126Fu;  // 1e-3
    EncodeInput zin{DType::kFloat32,         {5}, z.data(), ref.data(), nullptr,
                    LossyKind::kLogRelative, 0.3, rz.data()};
    encode(zin);
    for (size_t i = 0; i < z.size(); ++i) {
      CHECK((rz[i] >> 31) == (z[i] >> 31));
      CHECK(std::fabs(double(float_from_bits(rz[i])) - double(float_from_bits(z[i]))) <=
            0.3 * 2 * 1.1754943508222875e-38);
    }
  }
  // A bound below the dtype's resolution falls back to lossless.
  std::vector<uint32_t> x = {0x3F800001u, 0x3F800003u}, recon(2);
  EncodeInput in{DType::kFloat32,      {2},   x.data(),    nullptr, nullptr,
                 LossyKind::kAbsolute, 1e-12, recon.data()};
  const auto chunk = encode(in);
  CHECK(read_header(chunk.data(), chunk.size()).lossy == LossyKind::kNone);
  CHECK(recon == x);
  ++tests_run;
}

// The vector path of the 16-bit extrapolation (and any other) equals extrapolate_one, the
// int64 definition of docs/format.md 4.4, over the whole parameter range.
static void test_extrapolation_paths_agree() {
  std::mt19937_64 g(7);
  const uint64_t n = 4099;  // not a multiple of 8: the scalar tail runs too
  std::vector<uint16_t> r(n), q(n), out(n);
  std::vector<uint32_t> r32(n), q32(n), out32(n);
  for (int trial = 0; trial < 400; ++trial) {
    for (uint64_t i = 0; i < n; ++i) {
      r[i] = static_cast<uint16_t>(g());
      q[i] = trial % 2 ? static_cast<uint16_t>(g())
                       : static_cast<uint16_t>(r[i] + static_cast<int>(g() % 2001) - 1000);
      r32[i] = static_cast<uint32_t>(g());
      q32[i] = trial % 2 ? static_cast<uint32_t>(g())
                         : r32[i] + static_cast<uint32_t>(g() % 200001) - 100000u;
    }
    Extrapolation e;
    e.slope = trial % 5 == 0   ? kMaxSlope
              : trial % 5 == 1 ? -kMaxSlope
                               : static_cast<int32_t>(g() % (2 * kMaxSlope + 1)) - kMaxSlope;
    e.offset = trial % 3 == 0   ? 32768
               : trial % 3 == 1 ? -32768
                                : static_cast<int32_t>(g() % 201) - 100;
    CHECK(extrapolation_valid<uint16_t>(e));
    bool same = true;
    for (bool avx2 : {true, false}) {  // every vector path this CPU has, then SSE2 alone
      extrapolate<uint16_t>(r.data(), q.data(), n, e, out.data(), avx2);
      for (uint64_t i = 0; i < n; ++i) same &= out[i] == extrapolate_one<uint16_t>(r[i], q[i], e);
    }
    CHECK(same);
    Extrapolation e32 = e;
    if (trial % 4 == 3) e32.offset = trial % 8 == 3 ? INT32_MIN : INT32_MAX;  // |offset| <= 2^31
    CHECK(extrapolation_valid<uint32_t>(e32));
    for (bool avx2 : {true, false}) {
      extrapolate<uint32_t>(r32.data(), q32.data(), n, e32, out32.data(), avx2);
      for (uint64_t i = 0; i < n; ++i)
        same &= out32[i] == extrapolate_one<uint32_t>(r32[i], q32[i], e32);
    }
    CHECK(same);
  }
  Extrapolation too_steep;
  too_steep.slope = kMaxSlope + 1;
  CHECK(!extrapolation_valid<uint16_t>(too_steep));
  Extrapolation far;
  far.offset = 32769;
  CHECK(!extrapolation_valid<uint16_t>(far) && extrapolation_valid<uint32_t>(far));
  // Opposite signs never move; a move across the sign keeps the reference.
  Extrapolation unit;
  unit.slope = 1 << 16;
  CHECK(extrapolate_one<uint16_t>(0x8005, 0x0003, unit) == 0x8005);
  CHECK(extrapolate_one<uint16_t>(0x0002, 0x0006, unit) == 0x0002);
  CHECK(extrapolate_one<uint16_t>(0x0006, 0x0002, unit) == 0x000A);
}

// Transform 2: scale_one against the exact product rounded once by the hardware (x87 or
// quad long double holds the 56-bit product exactly), and the 16-bit table path of
// apply_scaled against scale_one on every bit pattern.
static void test_scaled_reference() {
  std::mt19937_64 g(11);
  if constexpr (std::numeric_limits<long double>::digits >= 64) {
    uint64_t checked = 0;
    for (int trial = 0; trial < 2000000; ++trial) {
      const uint32_t mantissa = static_cast<uint32_t>(g()) | 0x80000000u;
      const int32_t shift = static_cast<int32_t>(g() % 40) - 8;
      const uint32_t r = static_cast<uint32_t>(g());
      float rf;
      std::memcpy(&rf, &r, 4);
      const uint32_t got = scale_one<uint32_t>(r, mantissa, shift, 23, 8);
      if (!std::isnormal(rf)) {
        CHECK(got == r);
        continue;
      }
      const long double exact = std::ldexp(static_cast<long double>(rf) * mantissa, -32 - shift);
      const float rounded = static_cast<float>(exact);  // one rounding, to nearest even
      uint32_t want = r;
      if (std::isnormal(rounded)) std::memcpy(&want, &rounded, 4);
      CHECK(got == want);
      ++checked;
    }
    CHECK(checked > 1000000);
  }
  std::vector<uint16_t> all(65536), prev(65536), pred(65536), prev_out(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = prev[i] = static_cast<uint16_t>(i);
  for (int trial = 0; trial < 8; ++trial) {
    ScaledSegments s;
    s.mantissa = static_cast<uint32_t>(g()) | 0x80000000u;
    s.shift = static_cast<int32_t>(g() % 20) - 4;
    s.segment = 1000;
    s.bitmap.assign((segment_count(65536, s.segment) + 7) / 8, 0x5B);
    for (auto [m, e] : {std::pair{7, 8}, std::pair{10, 5}}) {
      apply_scaled<uint16_t>(all.data(), prev.data(), 65536, s, m, e, pred.data(), prev_out.data());
      bool same = true;
      for (uint32_t i = 0; i < 65536; ++i) {
        const bool selected = segment_selected(s.bitmap, i / s.segment);
        const uint16_t want =
            selected ? scale_one<uint16_t>(all[i], s.mantissa, s.shift, m, e) : all[i];
        same &= pred[i] == want && prev_out[i] == (selected ? want : prev[i]);
      }
      CHECK(same);
    }
  }
  CHECK(scale_valid(0x80000000u, -16) && scale_valid(0xFFFFFFFFu, 96));
  CHECK(!scale_valid(0x7FFFFFFFu, 0) && !scale_valid(0x80000000u, 97) &&
        !scale_valid(0x80000000u, -17));
  // Zero, infinity and NaN keep their reference; 1.5 x 0.5 = 0.75.
  CHECK(scale_one<uint32_t>(0x00000000u, 0x80000000u, 0, 23, 8) == 0x00000000u);
  CHECK(scale_one<uint32_t>(0x7F800000u, 0x80000000u, 0, 23, 8) == 0x7F800000u);
  CHECK(scale_one<uint32_t>(0x7FC00001u, 0x80000000u, 0, 23, 8) == 0x7FC00001u);
  CHECK(scale_one<uint32_t>(0x3FC00000u, 0x80000000u, 0, 23, 8) == 0x3F400000u);
  ++tests_run;
}

int main() {
  test_bitstream_roundtrip();
  test_elias_roundtrip();
  test_rans_roundtrip();
  test_log_bucket_split_join();
  test_chunk_roundtrips();
  test_bad_input();
  test_lossy();
  test_extrapolation_paths_agree();
  test_scaled_reference();
  std::printf("%d passed, 0 failed\n", tests_run);
  return 0;
}
