// Fast level encoder: residual -> byte planes -> per plane raw, constant or static rANS
// with 32 interleaved states (docs/format.md section 14).
//
// READ ME FIRST (rANS): symbols are encoded in reverse (last value first) and the
// renormalisation words are written backwards from the end of a buffer, so that the
// decoder reads values and words forwards. Value i always uses state i mod 32.
#include "fast_encode.hpp"

#include <cmath>
#include <cstring>
#include <memory>

#include "fast_format.hpp"
#include "fast_planes.hpp"
#include "tpde/error.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TPDE_NO_SIMD)
#include <immintrin.h>
#define TPDE_FAST_AVX2 1
#endif

namespace tpde {
namespace fast {
namespace {

// A rANS plane must save at least this share of the raw plane (estimated from the
// frequencies): planes that barely compress cost decode time for almost nothing.
constexpr double kMinPlaneGain = 0.10;

// Precomputed encoder symbol (ryg_rans "RansEncSymbol"): x / freq by a multiply and a
// shift, exact for x < 2^31.
struct EncSymbol {
  uint32_t x_max;  // renormalise (emit a word) when x >= x_max
  uint32_t rcp;
  uint32_t bias;
  uint16_t cmpl;  // 4096 - freq
  uint16_t shift;
};

EncSymbol make_symbol(uint32_t start, uint32_t freq) {
  EncSymbol e;
  e.x_max = ((kStateLow >> kProbBits) << 16) * freq;
  e.cmpl = static_cast<uint16_t>(kProbScale - freq);
  if (freq < 2) {
    e.rcp = ~0u;
    e.shift = 0;
    e.bias = start + kProbScale - 1;
  } else {
    uint32_t shift = 0;
    while (freq > (1u << shift)) ++shift;
    e.rcp = static_cast<uint32_t>(((uint64_t(1) << (shift + 31)) + freq - 1) / freq);
    e.shift = static_cast<uint16_t>(shift - 1);
    e.bias = start;
  }
  return e;
}

inline void put_symbol(uint32_t& state, const EncSymbol& e, uint16_t*& w) {
  uint32_t x = state;
  const bool emit = x >= e.x_max;
  w[-1] = static_cast<uint16_t>(x);  // harmless when not emitted: the slot is rewritten or unused
  w -= emit;
  x = emit ? x >> 16 : x;
  const uint32_t q = static_cast<uint32_t>((uint64_t(x) * e.rcp) >> 32) >> e.shift;
  state = x + e.bias + q * e.cmpl;
}

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  uint8_t b[8];
  std::memcpy(b, &v, 8);
  out.insert(out.end(), b, b + 8);
}

// Eight sub-histograms of 32-bit counts: runs of one byte value (common in low planes) then
// spread their increments over eight counters instead of waiting on one.
struct SubCounts {
  uint32_t h[8][256] = {};
  uint64_t pending = 0;  // values added since the last flush

  // Flushes first when the 32-bit counts could overflow.
  void add(const uint8_t* p, uint64_t n, uint64_t* count) {
    constexpr uint64_t kFlushAt = uint64_t(1) << 31;
    while (n) {
      if (pending >= kFlushAt) flush(count);
      const uint64_t take = std::min<uint64_t>(n, kFlushAt - pending);
      add_unchecked(p, take);
      pending += take;
      p += take;
      n -= take;
    }
  }
  void flush(uint64_t* count) {
    for (int s = 0; s < 256; ++s) {
      uint64_t sum = 0;
      for (int k = 0; k < 8; ++k) {
        sum += h[k][s];
        h[k][s] = 0;
      }
      count[s] += sum;
    }
    pending = 0;
  }

 private:
  void add_unchecked(const uint8_t* p, uint64_t n) {
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t v;
      std::memcpy(&v, p + i, 8);
      ++h[0][v & 0xFF];
      ++h[1][(v >> 8) & 0xFF];
      ++h[2][(v >> 16) & 0xFF];
      ++h[3][(v >> 24) & 0xFF];
      ++h[4][(v >> 32) & 0xFF];
      ++h[5][(v >> 40) & 0xFF];
      ++h[6][(v >> 48) & 0xFF];
      ++h[7][v >> 56];
    }
    for (; i < n; ++i) ++h[0][p[i]];
  }
};

void histogram(const uint8_t* p, uint64_t n, uint64_t* count) {
  if (n < 1024) {  // small planes: four 16-bit sub-histograms, cheaper to clear and sum
    uint16_t h[4][256] = {};
    uint64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; ++k) ++h[k][p[i + k]];
    for (; i < n; ++i) ++h[0][p[i]];
    for (int s = 0; s < 256; ++s) count[s] += uint32_t(h[0][s]) + h[1][s] + h[2][s] + h[3][s];
    return;
  }
  SubCounts sub;
  sub.add(p, n, count);
  sub.flush(count);
}

// The byte values present in a plane (count > 0), ascending: the loops over them have no
// branch on each of the 256 values (mispredicted on small planes).
struct Present {
  int size = 0;
  uint8_t sym[256];
};

Present present_symbols(const uint64_t* count) {
  Present used;
  for (int s = 0; s < 256; ++s) {
    used.sym[used.size] = static_cast<uint8_t>(s);
    used.size += count[s] != 0;
  }
  return used;
}

// Counts -> frequencies summing to 4096, every present symbol at least 1 (at least two
// symbols present, so none reaches 4096). Deterministic.
void normalize(const uint64_t* count, uint64_t n, const Present& used, uint32_t* freq) {
  int64_t sum = 0;
  int largest = -1;
  std::memset(freq, 0, 256 * sizeof(uint32_t));
  for (int k = 0; k < used.size; ++k) {
    const int s = used.sym[k];
    // count * 4096 / n rounded, in 64 bits where the product cannot overflow (always, for
    // chunks under 64 GiB)
    const uint64_t f =
        n < (uint64_t(1) << 51)
            ? (count[s] * kProbScale + n / 2) / n
            : static_cast<uint64_t>(
                  (static_cast<unsigned __int128>(count[s]) * kProbScale + n / 2) / n);
    freq[s] = static_cast<uint32_t>(f ? f : 1);
    sum += freq[s];
    if (largest < 0 || count[s] > count[largest]) largest = s;
  }
  int64_t diff = int64_t(kProbScale) - sum;
  if (int64_t(freq[largest]) + diff >= 1) {
    freq[largest] = static_cast<uint32_t>(freq[largest] + diff);
    return;
  }
  while (diff < 0) {  // rare: many symbols rounded up; take from the largest frequencies
    int big = 0;
    for (int s = 1; s < 256; ++s)
      if (freq[s] > freq[big]) big = s;
    const int64_t take = std::min<int64_t>(-diff, int64_t(freq[big]) - 1);
    freq[big] = static_cast<uint32_t>(freq[big] - take);
    diff += take;
  }
}

// log2(f) for the frequencies f = 1 to 4096: the doubles std::log2 gives, computed once.
const double* log2_of_freq() {
  static const std::vector<double> table = [] {
    std::vector<double> t(kProbScale + 1, 0.0);
    for (uint32_t f = 1; f <= kProbScale; ++f) t[f] = std::log2(double(f));
    return t;
  }();
  return table.data();
}

// Estimated bytes of a rANS plane: entropy under the normalised frequencies + tables + states.
double rans_plane_cost(const uint64_t* count, const uint32_t* freq, const Present& used) {
  const double* log2f = log2_of_freq();
  double bits = 0;
  for (int k = 0; k < used.size; ++k) {
    const int s = used.sym[k];
    bits += double(count[s]) * (kProbBits - log2f[freq[s]]);
  }
  return bits / 8 + 3.0 * used.size + 8 + kStatesBytes + 16;
}

// What a sample of 32 blocks of 1 KiB spread over a plane says (planes under 64 KiB are
// not sampled): whether the plane may be worth coding (a plane that looks incompressible is
// stored without a full count), and its most common byte with that byte's share.
struct Sample {
  bool worth = true;
  uint8_t common = 0;
  double share = 0;
};

Sample sample_plane(const uint8_t* p, uint64_t n) {
  constexpr uint64_t kBlock = 1024, kBlocks = 32;
  Sample out;
  if (n < 2 * kBlock * kBlocks) return out;
  uint64_t count[256] = {};
  SubCounts sub;
  for (uint64_t b = 0; b < kBlocks; ++b)
    sub.add(p + (n - kBlock) / (kBlocks - 1) * b, kBlock, count);
  sub.flush(count);
  double bits = 0;
  const double total = double(kBlock * kBlocks);
  for (int s = 0; s < 256; ++s) {
    if (!count[s]) continue;
    bits -= double(count[s]) * std::log2(double(count[s]) / total);
    if (count[s] > count[out.common]) out.common = static_cast<uint8_t>(s);
  }
  out.share = double(count[out.common]) / total;
  out.worth = bits / 8 < (1.0 - kMinPlaneGain / 2) * total;
  return out;
}

#ifdef TPDE_FAST_SSSE3
// For each 8-bit mask of bytes to keep: a pshufb control that moves them, in order, to the
// front of 8 bytes.
struct CompactTable {
  alignas(8) uint8_t c[256][8];
  CompactTable() {
    for (int m = 0; m < 256; ++m) {
      int k = 0;
      for (int b = 0; b < 8; ++b)
        if (m >> b & 1) c[m][k++] = static_cast<uint8_t>(b);
      for (; k < 8; ++k) c[m][k] = 0x80;
    }
  }
};
const CompactTable kCompact;

// The full count of a plane where one byte value dominates: 16 bytes at a time, the other
// bytes are packed into a small buffer (no branch on their number), which is then counted.
__attribute__((target("ssse3,popcnt"))) void histogram_skewed(const uint8_t* p, uint64_t n,
                                                              uint8_t common, uint64_t* count) {
  constexpr uint64_t kBlock = 4096;
  alignas(16) uint8_t kept[kBlock + 8];
  SubCounts sub;
  const __m128i c = _mm_set1_epi8(static_cast<char>(common));
  uint64_t i = 0, others = 0;
  while (i + 16 <= n) {
    const uint64_t stop = i + std::min<uint64_t>(kBlock, (n - i) & ~uint64_t(15));
    uint8_t* o = kept;
    for (; i < stop; i += 16) {
      const __m128i v = load128(p + i);
      const unsigned keep =
          ~static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, c))) & 0xFFFF;
      const __m128i lo = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompact.c[keep & 0xFF]));
      const __m128i hi = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kCompact.c[keep >> 8]));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(o), _mm_shuffle_epi8(v, lo));
      o += _mm_popcnt_u32(keep & 0xFF);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(o),
                       _mm_shuffle_epi8(_mm_unpackhi_epi64(v, v), hi));
      o += _mm_popcnt_u32(keep >> 8);
    }
    sub.add(kept, static_cast<uint64_t>(o - kept), count);
    others += static_cast<uint64_t>(o - kept);
  }
  sub.flush(count);
  count[common] += i - others;
  histogram(p + i, n - i, count);
}

bool has_ssse3_popcnt() {
  static const bool yes = simd_allows(1, true);
  return yes;
}
#endif

// The full count of plane p, by the sample's most common byte where that one dominates.
void count_plane(const uint8_t* p, uint64_t n, [[maybe_unused]] const Sample& sample,
                 uint64_t* count) {
#ifdef TPDE_FAST_SSSE3
  if (sample.share > 0.4 && has_ssse3_popcnt()) return histogram_skewed(p, n, sample.common, count);
#endif
  histogram(p, n, count);
}

thread_local std::vector<uint8_t> t_planes;
thread_local std::vector<uint16_t> t_words;

// Scalar full rounds of one stream: rounds top, top - 2, ... down to 0 or 1 (32 values
// each, at sym + 32 r), last value first.
void rounds_scalar(uint32_t* x, const uint8_t* sym, int64_t top, const EncSymbol* table,
                   uint16_t*& w) {
  for (int64_t r = top; r >= 0; r -= kStreams) {
    const uint8_t* s = sym + kLanes * r;
    for (int j = kLanes - 1; j >= 0; --j) put_symbol(x[j], table[s[j]], w);
  }
}

// One of the two word streams being coded: its 32 states and its words, written downwards
// from end.
struct EncStream {
  uint32_t x[kLanes];
  uint16_t* w;
  uint16_t* end;
};

#ifdef TPDE_FAST_AVX2
// The table for the vector loops: the reciprocal, and freq | shift << 12 | bias << 16.
void pack_table(const EncSymbol* table, int* rcp, int* packed) {
  for (int s = 0; s < 256; ++s) {
    const EncSymbol& e = table[s];
    const uint32_t freq = kProbScale - e.cmpl;
    rcp[s] = static_cast<int>(e.rcp);
    packed[s] = static_cast<int>((freq & 0xFFF) | (uint32_t(e.shift) << 12) | (e.bias << 16));
  }
}

// For each 8-bit mask of lanes that emit a word: a pshufb control that packs the emitted
// lanes' 16-bit words, in lane order, into the top slots of 8 (the rest is don't-care).
struct PackTable {
  alignas(16) uint8_t c[256][16];
  PackTable() {
    for (int m = 0; m < 256; ++m) {
      const int count = __builtin_popcount(m);
      for (int b = 0; b < 16; ++b) c[m][b] = 0x80;
      int k = 8 - count;
      for (int l = 0; l < 8; ++l) {
        if (m >> l & 1) {
          c[m][2 * k] = static_cast<uint8_t>(2 * l);
          c[m][2 * k + 1] = static_cast<uint8_t>(2 * l + 1);
          ++k;
        }
      }
    }
  }
};
const PackTable kPack;

// The same rounds, 8 lanes a vector (groups 3, 2, 1, 0 of a round, as the scalar loop
// visits lanes 31 down to 0). Two gathers a group: the reciprocal, and freq | shift << 12 |
// bias << 16. Words are stored 8 at a time below w, so w needs 8 slots of slack in front.
__attribute__((target("avx2,popcnt"))) void rounds_avx2(uint32_t* x, const uint8_t* sym,
                                                        int64_t top, const EncSymbol* table,
                                                        uint16_t*& w) {
  alignas(32) int rcp[256];
  alignas(32) int packed[256];
  pack_table(table, rcp, packed);
  __m256i st[4];
  for (int g = 0; g < 4; ++g)
    st[g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 8 * g));
  const __m256i m12 = _mm256_set1_epi32(0xFFF);
  const __m256i m4 = _mm256_set1_epi32(0xF);
  const __m256i scale = _mm256_set1_epi32(static_cast<int>(kProbScale));
  const __m256i lo16 = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0,
                                        1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  for (int64_t round = top; round >= 0; round -= kStreams) {
    const uint8_t* s = sym + kLanes * round;
    for (int g = 3; g >= 0; --g) {
      const __m256i idx =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + 8 * g)));
      const __m256i r = _mm256_i32gather_epi32(rcp, idx, 4);
      const __m256i p = _mm256_i32gather_epi32(packed, idx, 4);
      const __m256i freq = _mm256_and_si256(p, m12);
      __m256i v = st[g];
      // emit when x >= freq << 19 (both below 2^31: a signed compare is exact)
      const __m256i emit = _mm256_cmpgt_epi32(
          v, _mm256_sub_epi32(_mm256_slli_epi32(freq, 19), _mm256_set1_epi32(1)));
      const int m = _mm256_movemask_ps(_mm256_castsi256_ps(emit));
      const __m256i packed16 = _mm256_shuffle_epi8(v, lo16);
      const __m128i words = _mm_unpacklo_epi64(_mm256_castsi256_si128(packed16),
                                               _mm256_extracti128_si256(packed16, 1));
      const __m128i ctl = _mm_load_si128(reinterpret_cast<const __m128i*>(kPack.c[m]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(w - 8), _mm_shuffle_epi8(words, ctl));
      w -= _mm_popcnt_u32(static_cast<unsigned>(m));
      v = _mm256_blendv_epi8(v, _mm256_srli_epi32(v, 16), emit);
      // q = (x * rcp) >> 32 >> shift, exact for x < 2^31
      const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(v, r), 32);
      const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(r, 32));
      __m256i q = _mm256_blend_epi32(even, odd, 0xAA);
      q = _mm256_srlv_epi32(q, _mm256_and_si256(_mm256_srli_epi32(p, 12), m4));
      const __m256i bias = _mm256_srli_epi32(p, 16);
      st[g] = _mm256_add_epi32(_mm256_add_epi32(v, bias),
                               _mm256_mullo_epi32(q, _mm256_sub_epi32(scale, freq)));
    }
  }
  for (int g = 0; g < 4; ++g) _mm256_storeu_si256(reinterpret_cast<__m256i*>(x + 8 * g), st[g]);
}

bool has_avx2() {
  static const bool yes = simd_allows(2, true);
  return yes;
}

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 lanes of a round (lanes 16 h to 16 h + 15) with AVX-512F: the emitted lanes' words
// are packed in lane order (compress) and stored below w.
__attribute__((target("avx512f,popcnt"), always_inline)) inline void lanes_avx512(
    __m512i& st, const uint8_t* s, const int* rcp, const int* packed, uint16_t*& w) {
  const __m512i m12 = _mm512_set1_epi32(0xFFF);
  const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  const __m512i r = _mm512_i32gather_epi32(idx, rcp, 4);
  const __m512i p = _mm512_i32gather_epi32(idx, packed, 4);
  const __m512i freq = _mm512_and_si512(p, m12);
  __m512i v = st;
  const __mmask16 emit = _mm512_cmpge_epu32_mask(v, _mm512_slli_epi32(freq, 19));
  const unsigned count = _mm_popcnt_u32(emit);
  w -= count;
  _mm512_mask_cvtepi32_storeu_epi16(w, static_cast<__mmask16>((1u << count) - 1),
                                    _mm512_maskz_compress_epi32(emit, v));
  v = _mm512_mask_srli_epi32(v, emit, v, 16);
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(v, r), 32);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(v, 32), _mm512_srli_epi64(r, 32));
  const __m512i shift = _mm512_and_si512(_mm512_srli_epi32(p, 12), _mm512_set1_epi32(0xF));
  const __m512i q = _mm512_srlv_epi32(_mm512_mask_blend_epi32(0xAAAA, even, odd), shift);
  const __m512i cmpl = _mm512_sub_epi32(_mm512_set1_epi32(static_cast<int>(kProbScale)), freq);
  st = _mm512_add_epi32(_mm512_add_epi32(v, _mm512_srli_epi32(p, 16)), _mm512_mullo_epi32(q, cmpl));
}

// One round of a stream: lanes 31 to 16, then 15 to 0.
__attribute__((target("avx512f,popcnt"), always_inline)) inline void round_avx512(
    __m512i* st, const uint8_t* s, const int* rcp, const int* packed, uint16_t*& w) {
  lanes_avx512(st[1], s + 16, rcp, packed, w);
  lanes_avx512(st[0], s, rcp, packed, w);
}

// The full rounds top, top - 1, ..., 0 of both streams, interleaved (independent chains in
// flight); each stream sees its own rounds in the order of rounds_scalar.
__attribute__((target("avx512f,popcnt"))) void rounds_avx512(EncStream* streams, const uint8_t* sym,
                                                             int64_t top, const EncSymbol* table) {
  alignas(64) int rcp[256];
  alignas(64) int packed[256];
  pack_table(table, rcp, packed);
  __m512i st[kStreams][2];
  uint16_t* w[kStreams];
  for (int k = 0; k < kStreams; ++k) {
    for (int h = 0; h < 2; ++h) st[k][h] = _mm512_loadu_si512(streams[k].x + 16 * h);
    w[k] = streams[k].w;
  }
  static_assert(kStreams == 2, "rounds alternate between two streams");
  int64_t r = top;
  if (r % 2 == 0) round_avx512(st[0], sym + kLanes * r--, rcp, packed, w[0]);
  for (; r >= 1; r -= 2) {
    round_avx512(st[1], sym + kLanes * r, rcp, packed, w[1]);
    round_avx512(st[0], sym + kLanes * (r - 1), rcp, packed, w[0]);
  }
  for (int k = 0; k < kStreams; ++k) {
    for (int h = 0; h < 2; ++h) _mm512_storeu_si512(streams[k].x + 16 * h, st[k][h]);
    streams[k].w = w[k];
  }
}

#pragma GCC diagnostic pop

bool has_avx512() {
  static const bool yes = simd_allows(3, true);
  return yes;
}
#endif

// The full rounds top, top - 1, ..., 0 (top: the last full round).
void full_rounds(EncStream* streams, const uint8_t* sym, int64_t top, const EncSymbol* table) {
#ifdef TPDE_FAST_AVX2
  if (has_avx512()) return rounds_avx512(streams, sym, top, table);
#endif
  for (int k = 0; k < kStreams; ++k) {
    const int64_t last = top % kStreams == k ? top : top - 1;  // the stream's last full round
    if (last < 0) continue;
#ifdef TPDE_FAST_AVX2
    if (has_avx2()) {
      rounds_avx2(streams[k].x, sym, last, table, streams[k].w);
      continue;
    }
#endif
    rounds_scalar(streams[k].x, sym, last, table, streams[k].w);
  }
}

// Appends one rANS plane body: table, then per stream its u64 length and its bytes.
void put_rans_plane(const uint8_t* sym, uint64_t n, const uint32_t* freq, const Present& used,
                    std::vector<uint8_t>& out) {
  EncSymbol table[256] = {};
  uint32_t start = 0;
  for (int k = 0; k < used.size; ++k) {
    const int s = used.sym[k];
    table[s] = make_symbol(start, freq[s]);
    start += freq[s];
  }
  put_varint(out, used.size);
  int last = -1;
  for (int k = 0; k < used.size; ++k) {
    const int s = used.sym[k];
    put_varint(out, s - last - 1);
    put_varint(out, freq[s] - 1);
    last = s;
  }
  constexpr size_t kSlack = 8;         // the AVX2 loop stores 8 words below w
  const size_t room = n + kSlack + 1;  // words a stream may need, at most one a value
  if (t_words.size() < kStreams * room) t_words.resize(kStreams * room);
  EncStream streams[kStreams];
  for (int k = 0; k < kStreams; ++k) {
    for (auto& v : streams[k].x) v = kStateLow;
    streams[k].w = streams[k].end = t_words.data() + (k + 1) * room;
  }
  // Round r (values 32 r to 32 r + 31) belongs to stream r mod kStreams; last round first.
  int64_t top = static_cast<int64_t>((n + kLanes - 1) / kLanes) - 1;
  if (top >= 0 && static_cast<uint64_t>(kLanes * (top + 1)) > n) {  // the partial last round
    EncStream& st = streams[top % kStreams];
    for (uint64_t i = n; i-- > static_cast<uint64_t>(kLanes * top);)
      put_symbol(st.x[i & (kLanes - 1)], table[sym[i]], st.w);
    --top;
  }
  if (top >= 0) full_rounds(streams, sym, top, table);
  for (const EncStream& st : streams) {
    const size_t words = static_cast<size_t>(st.end - st.w);
    put_u64(out, kStatesBytes + 2 * words);
    const size_t at = out.size();
    out.resize(at + kStatesBytes + 2 * words);
    std::memcpy(out.data() + at, st.x, kStatesBytes);
    std::memcpy(out.data() + at + kStatesBytes, st.w, 2 * words);
  }
}

void put_prefix(std::vector<uint8_t>& out, uint8_t value_scheme, uint64_t n) {
  const uint8_t prefix[8] = {value_scheme, 0, 0, 0, 0, 0, 0, 0};
  out.insert(out.end(), prefix, prefix + 8);
  put_u64(out, n);
}

template <typename U>
void encode_planes(const U* x, const U* ref, Residual kind, uint64_t n, std::vector<uint8_t>& out) {
  constexpr int W = sizeof(U);
  const size_t start = out.size();
  const uint64_t raw = n * W;
  put_prefix(out, kValueSchemeFastPlanes, n);
  if (t_planes.size() < raw) t_planes.resize(raw);
  uint8_t* planes = t_planes.data();
  split_planes<U>(kind, x, ref, n, planes);
  for (int k = 0; k < W; ++k) {
    const uint8_t* p = planes + k * n;
    const Sample sample = sample_plane(p, n);
    if (!sample.worth) {
      out.push_back(kPlaneRaw);
      out.insert(out.end(), p, p + n);
      continue;
    }
    uint64_t count[256] = {};
    count_plane(p, n, sample, count);
    const Present used = present_symbols(count);
    if (used.size <= 1) {
      out.push_back(kPlaneConstant);
      out.push_back(used.size ? used.sym[0] : 0);
      continue;
    }
    uint32_t freq[256];
    normalize(count, n, used, freq);
    if (rans_plane_cost(count, freq, used) < (1.0 - kMinPlaneGain) * double(n)) {
      out.push_back(kPlaneRans);
      put_rans_plane(p, n, freq, used, out);
    } else {
      out.push_back(kPlaneRaw);
      out.insert(out.end(), p, p + n);
    }
  }
  if (out.size() - start >= 16 + raw) {  // not smaller than Stored: store the values
    out.resize(start);
    put_prefix(out, 0, n);
    const uint8_t* b = reinterpret_cast<const uint8_t*>(x);
    out.insert(out.end(), b, b + raw);
  }
}

}  // namespace

void encode_fast_payload(DType dtype, const void* data, const void* reference, uint64_t n,
                         std::vector<uint8_t>& out) {
  const Residual kind = reference         ? Residual::kDelta
                        : is_float(dtype) ? Residual::kRotate
                                          : Residual::kPlain;
  switch (dtype_size(dtype)) {
    case 1:
      encode_planes<uint8_t>(static_cast<const uint8_t*>(data),
                             static_cast<const uint8_t*>(reference), kind, n, out);
      break;
    case 2:
      encode_planes<uint16_t>(static_cast<const uint16_t*>(data),
                              static_cast<const uint16_t*>(reference), kind, n, out);
      break;
    case 4:
      encode_planes<uint32_t>(static_cast<const uint32_t*>(data),
                              static_cast<const uint32_t*>(reference), kind, n, out);
      break;
    case 8:
      encode_planes<uint64_t>(static_cast<const uint64_t*>(data),
                              static_cast<const uint64_t*>(reference), kind, n, out);
      break;
    default: fail(ErrorCode::kBadDtype, "unknown dtype");
  }
}

}  // namespace fast
}  // namespace tpde
