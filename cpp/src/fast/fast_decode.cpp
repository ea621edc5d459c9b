// Fast level decoder (docs/format.md section 14). Every length is checked before use; the
// rANS reader never leaves its stream, and each stream must be consumed exactly.
#include "fast_decode.hpp"

#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TPDE_NO_SIMD)
#include <immintrin.h>
#define TPDE_FAST_AVX2 1
#endif

#include "fast_format.hpp"
#include "fast_planes.hpp"
#include "tpde/error.hpp"

namespace tpde {
namespace fast {
namespace {

[[noreturn]] void corrupt(const std::string& what) {
  fail(ErrorCode::kCorrupt, "corrupted chunk payload: " + what);
}

thread_local std::vector<uint8_t> t_planes;

struct Reader {
  const uint8_t* p;
  const uint8_t* end;

  size_t left() const { return static_cast<size_t>(end - p); }
  uint8_t byte(const char* what) {
    if (p == end) corrupt(std::string(what) + " cut short");
    return *p++;
  }
  uint64_t u64(const char* what) {
    if (left() < 8) corrupt(std::string(what) + " cut short");
    const uint64_t v = load_u64le(p);
    p += 8;
    return v;
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      const uint8_t b = byte("frequency table");
      v |= uint64_t(b & 0x7F) << (7 * i);
      if (!(b & 0x80)) return v;
    }
    corrupt("varint longer than 10 bytes");
  }
};

// Decoder table entry for each of the 4096 slots: symbol | (slot - start) << 8 | freq << 20.
void read_table(Reader& r, uint32_t* slots) {
  const uint64_t used = r.varint();
  if (used < 2 || used > 256) corrupt("rANS plane table needs 2 to 256 symbols");
  int64_t last = -1;
  uint32_t cum = 0;
  for (uint64_t k = 0; k < used; ++k) {
    const uint64_t gap = r.varint();
    const uint64_t fm1 = r.varint();
    const int64_t sym = last + 1 + static_cast<int64_t>(gap > 255 ? 256 : gap);
    if (gap > 255 || sym > 255 || fm1 >= kProbScale) corrupt("bad rANS plane table entry");
    const uint32_t freq = static_cast<uint32_t>(fm1 + 1);
    if (cum + freq > kProbScale) corrupt("rANS plane frequencies above 4096");
    for (uint32_t s = 0; s < freq; ++s)
      slots[cum + s] = static_cast<uint32_t>(sym) | (s << 8) | (freq << 20);
    cum += freq;
    last = sym;
  }
  if (cum != kProbScale) corrupt("rANS plane frequencies do not sum to 4096");
}

inline uint32_t step(uint32_t x, const uint32_t* slots, uint8_t& sym) {
  const uint32_t e = slots[x & (kProbScale - 1)];
  sym = static_cast<uint8_t>(e);
  return (e >> 20) * (x >> kProbBits) + ((e >> 8) & 0xFFF);
}

// One word stream: 32 lane states and the renormalisation words.
struct Stream {
  uint32_t x[kLanes];
  const uint8_t* w;
  const uint8_t* end;
};

// A fast round of 32 values reads at most 32 words (64 bytes): with that much left in a
// stream every word read, also the speculative ones, stays inside it.
constexpr ptrdiff_t kRoundBytes = 2 * kLanes;

inline void round_scalar(Stream& st, const uint32_t* slots, uint8_t* out) {
  const uint8_t* w = st.w;
  for (int j = 0; j < kLanes; ++j) {
    uint32_t v = step(st.x[j], slots, out[j]);
    const bool need = v < kStateLow;
    const uint32_t word = load_u16le(w);
    v = need ? (v << 16) | word : v;
    w += 2 * need;
    st.x[j] = v;
  }
  st.w = w;
}

bool rounds_left(const Stream* st, uint64_t i, uint64_t n) {
  if (i + kStreams * kLanes > n) return false;
  for (int k = 0; k < kStreams; ++k)
    if (st[k].end - st[k].w < kRoundBytes) return false;
  return true;
}

// Full rounds, one per stream in stream order, while every stream has a round's bytes
// left; returns the number of values decoded (a multiple of 32 x streams).
uint64_t rounds_scalar(Stream* st, const uint32_t* slots, uint8_t* out, uint64_t n) {
  uint64_t i = 0;
  while (rounds_left(st, i, n)) {
    for (int k = 0; k < kStreams; ++k) round_scalar(st[k], slots, out + i + k * kLanes);
    i += kStreams * kLanes;
  }
  return i;
}

#ifdef TPDE_FAST_AVX2
// For each 8-bit mask of lanes that read a word: a pshufb control that moves the k-th
// word of the next 16 bytes to the k-th reading lane (16-bit slots; 0x80 clears).
struct ExpandTable {
  alignas(16) uint8_t c[256][16];
  ExpandTable() {
    for (int m = 0; m < 256; ++m) {
      int k = 0;
      for (int l = 0; l < 8; ++l) {
        if (m >> l & 1) {
          c[m][2 * l] = static_cast<uint8_t>(2 * k);
          c[m][2 * l + 1] = static_cast<uint8_t>(2 * k + 1);
          ++k;
        } else {
          c[m][2 * l] = c[m][2 * l + 1] = 0x80;
        }
      }
    }
  }
};
const ExpandTable kExpand;

// One 8-lane group: lanes read their words in lane order, as the scalar loop does.
__attribute__((target("avx2,popcnt"))) inline __m256i group_avx2(__m256i& s, const int* table,
                                                                 const uint8_t*& w) {
  const __m256i mask12 = _mm256_set1_epi32(0xFFF);
  const __m256i e = _mm256_i32gather_epi32(table, _mm256_and_si256(s, mask12), 4);
  __m256i v = _mm256_mullo_epi32(_mm256_srli_epi32(e, 20), _mm256_srli_epi32(s, kProbBits));
  v = _mm256_add_epi32(v, _mm256_and_si256(_mm256_srli_epi32(e, 8), mask12));
  const __m256i need = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(kStateLow)), v);
  const int m = _mm256_movemask_ps(_mm256_castsi256_ps(need));
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
  const __m128i ctl = _mm_load_si128(reinterpret_cast<const __m128i*>(kExpand.c[m]));
  const __m256i words = _mm256_cvtepu16_epi32(_mm_shuffle_epi8(raw, ctl));
  s = _mm256_blendv_epi8(v, _mm256_or_si256(_mm256_slli_epi32(v, 16), words), need);
  w += 2 * _mm_popcnt_u32(static_cast<unsigned>(m));
  return _mm256_and_si256(e, _mm256_set1_epi32(0xFF));
}

// 32 lane values (< 256) -> 32 bytes in lane order.
__attribute__((target("avx2"))) inline void store_symbols(const __m256i* sym, uint8_t* out) {
  const __m256i a = _mm256_packus_epi32(sym[0], sym[1]);
  const __m256i b = _mm256_packus_epi32(sym[2], sym[3]);
  const __m256i c = _mm256_packus_epi16(a, b);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permutevar8x32_epi32(c, order));
}

// The rounds of rounds_scalar, 8 lanes a vector; the streams' groups alternate so that
// independent chains are in flight.
__attribute__((target("avx2,popcnt"))) uint64_t rounds_avx2(Stream* st, const uint32_t* slots,
                                                            uint8_t* out, uint64_t n) {
  __m256i s[kStreams][4];
  const uint8_t* w[kStreams];
  for (int k = 0; k < kStreams; ++k) {
    for (int g = 0; g < 4; ++g)
      s[k][g] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st[k].x + 8 * g));
    w[k] = st[k].w;
  }
  const int* table = reinterpret_cast<const int*>(slots);
  uint64_t i = 0;
  while (rounds_left(st, i, n)) {
    __m256i y[kStreams][4];
    for (int g = 0; g < 4; ++g)
      for (int k = 0; k < kStreams; ++k) y[k][g] = group_avx2(s[k][g], table, w[k]);
    for (int k = 0; k < kStreams; ++k) {
      store_symbols(y[k], out + i + k * kLanes);
      st[k].w = w[k];
    }
    i += kStreams * kLanes;
  }
  for (int k = 0; k < kStreams; ++k)
    for (int g = 0; g < 4; ++g)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(st[k].x + 8 * g), s[k][g]);
  return i;
}

bool has_avx2() {
  static const bool yes = simd_allows(2, true);
  return yes;
}
#endif

void open_stream(Reader& r, Stream& st) {
  const uint64_t size = r.u64("rANS stream length");
  if (size > r.left()) corrupt("rANS stream runs past the payload");
  if (size < kStatesBytes || (size & 1))
    corrupt("rANS stream shorter than its states or of odd length");
  for (int j = 0; j < kLanes; ++j) {
    st.x[j] = load_u32le(r.p + 4 * j);
    if (st.x[j] < kStateLow || st.x[j] >= kStateHigh) corrupt("rANS state out of range");
  }
  st.w = r.p + kStatesBytes;
  st.end = r.p + size;
  r.p += size;
}

// Value i: stream (i / 32) mod kStreams, lane i mod 32.
void decode_rans(Reader& r, const uint32_t* slots, uint8_t* out, uint64_t n) {
  Stream st[kStreams];
  for (auto& s : st) open_stream(r, s);
  uint64_t i;
#ifdef TPDE_FAST_AVX2
  if (has_avx2())
    i = rounds_avx2(st, slots, out, n);
  else
#endif
    i = rounds_scalar(st, slots, out, n);
  for (; i < n; ++i) {
    Stream& s = st[(i / kLanes) % kStreams];
    uint32_t& x = s.x[i & (kLanes - 1)];
    uint32_t v = step(x, slots, out[i]);
    if (v < kStateLow) {
      if (s.end - s.w < 2) corrupt("rANS stream cut short");
      v = (v << 16) | load_u16le(s.w);
      s.w += 2;
    }
    x = v;
  }
  for (const auto& s : st) {
    if (s.w != s.end) corrupt("rANS stream not consumed exactly");
    for (int j = 0; j < kLanes; ++j)
      if (s.x[j] != kStateLow) corrupt("rANS stream does not end in its initial states");
  }
}

template <typename U>
void decode_planes(Reader r, uint64_t n, Residual kind, U* out, const U* ref) {
  constexpr int W = sizeof(U);
  const uint8_t* planes[W];
  // Scratch only for the planes that are not raw bytes of the payload.
  if (t_planes.size() < n * W) t_planes.resize(n * W);
  uint32_t slots[kProbScale];
  for (int k = 0; k < W; ++k) {
    const uint8_t mode = r.byte("plane mode");
    uint8_t* scratch = t_planes.data() + k * n;
    if (mode == kPlaneRaw) {
      if (r.left() < n) corrupt("raw plane cut short");
      planes[k] = r.p;
      r.p += n;
    } else if (mode == kPlaneConstant) {
      const uint8_t value = r.byte("constant plane");
      if (n) std::memset(scratch, value, n);
      planes[k] = scratch;
    } else if (mode == kPlaneRans) {
      read_table(r, slots);
      decode_rans(r, slots, scratch, n);
      planes[k] = scratch;
    } else {
      corrupt("unknown plane mode " + std::to_string(mode));
    }
  }
  if (r.p != r.end) corrupt("trailing bytes after the last plane");
  join_planes<U>(kind, planes, ref, n, out);
}

}  // namespace

void decode_fast_payload(DType dtype, const uint8_t* payload, size_t size, uint64_t n, void* out,
                         const void* reference) {
  if (size < 16) corrupt("payload shorter than its 16-byte prefix");
  if (payload[0] != kValueSchemeFastPlanes) corrupt("not a FastPlanes payload");
  for (int k = 1; k < 8; ++k)
    if (payload[k] != 0) corrupt("FastPlanes prefix byte " + std::to_string(k) + " is not 0");
  if (load_u64le(payload + 8) != n) corrupt("coded value count does not match the shape");
  Reader r{payload + 16, payload + size};
  const Residual kind = reference         ? Residual::kDelta
                        : is_float(dtype) ? Residual::kRotate
                                          : Residual::kPlain;
  switch (dtype_size(dtype)) {
    case 1:
      decode_planes<uint8_t>(r, n, kind, static_cast<uint8_t*>(out),
                             static_cast<const uint8_t*>(reference));
      break;
    case 2:
      decode_planes<uint16_t>(r, n, kind, static_cast<uint16_t*>(out),
                              static_cast<const uint16_t*>(reference));
      break;
    case 4:
      decode_planes<uint32_t>(r, n, kind, static_cast<uint32_t*>(out),
                              static_cast<const uint32_t*>(reference));
      break;
    case 8:
      decode_planes<uint64_t>(r, n, kind, static_cast<uint64_t*>(out),
                              static_cast<const uint64_t*>(reference));
      break;
    default: corrupt("unknown dtype");
  }
}

}  // namespace fast
}  // namespace tpde
