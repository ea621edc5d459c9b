// CRC32C (Castagnoli): SSE4.2 instruction when the CPU has it (three interleaved streams on
// long inputs), slicing-by-8 tables otherwise. Runtime dispatch: the build targets any x86-64.
#include <array>
#include <cstring>

#include "tpde/tpde.hpp"

namespace tpde {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;

struct Tables {
  uint32_t t[8][256];
  Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (kPoly & (0u - (c & 1u)));
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};

uint32_t crc32c_soft(const uint8_t* p, size_t n, uint32_t crc) {
  static const Tables tables;
  const auto& t = tables.t;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    v ^= crc;
    crc = t[7][v & 0xFF] ^ t[6][(v >> 8) & 0xFF] ^ t[5][(v >> 16) & 0xFF] ^ t[4][(v >> 24) & 0xFF] ^
          t[3][(v >> 32) & 0xFF] ^ t[2][(v >> 40) & 0xFF] ^ t[1][(v >> 48) & 0xFF] ^ t[0][v >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xFF];
  return crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(TPDE_NO_SIMD)
#define TPDE_HW_CRC 1

// The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle, so one
// dependent stream runs at a third of the speed the unit allows. Long inputs are cut into
// three adjacent blocks of kBlock bytes coded as independent streams (the 2nd and 3rd from
// 0) and joined with crc(A || B) = shift(crc(A), |B|) ^ crc0(B), where shift appends |B|
// zero bytes: a linear map of the 32-bit register, tabulated per byte of the register.
constexpr size_t kLongBlock = 8192;
constexpr size_t kShortBlock = 256;

// a * b modulo the CRC polynomial, in the reflected bit order of the register.
uint32_t multmodp(uint32_t a, uint32_t b) {
  uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = b & 1 ? (b >> 1) ^ kPoly : b >> 1;
  }
  return p;
}

struct ShiftTable {
  uint32_t t[4][256];
  explicit ShiftTable(size_t bytes) {
    uint32_t xn = 1u << 31;  // x^0; each zero byte multiplies by x^8
    for (size_t i = 0; i < bytes; ++i)
      for (int k = 0; k < 8; ++k) xn = (xn >> 1) ^ (kPoly & (0u - (xn & 1u)));
    for (int k = 0; k < 4; ++k)
      for (uint32_t i = 0; i < 256; ++i) t[k][i] = multmodp(xn, i << (8 * k));
  }
  uint32_t shift(uint32_t crc) const {
    return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24];
  }
};

template <size_t kBlock>
__attribute__((target("sse4.2"))) inline uint64_t crc32c_hw_3way(const uint8_t*& p, size_t& n,
                                                                 uint64_t c0,
                                                                 const ShiftTable& shift) {
  while (n >= 3 * kBlock) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < kBlock; i += 8) {
      uint64_t v0, v1, v2;
      std::memcpy(&v0, p + i, 8);
      std::memcpy(&v1, p + kBlock + i, 8);
      std::memcpy(&v2, p + 2 * kBlock + i, 8);
      c0 = __builtin_ia32_crc32di(c0, v0);
      c1 = __builtin_ia32_crc32di(c1, v1);
      c2 = __builtin_ia32_crc32di(c2, v2);
    }
    c0 = shift.shift(static_cast<uint32_t>(c0)) ^ c1;
    c0 = shift.shift(static_cast<uint32_t>(c0)) ^ c2;
    p += 3 * kBlock;
    n -= 3 * kBlock;
  }
  return c0;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_hw(const uint8_t* p, size_t n, uint32_t crc) {
  uint64_t c = crc;
  if (n >= 3 * kShortBlock) {
    static const ShiftTable long_shift(kLongBlock), short_shift(kShortBlock);
    c = crc32c_hw_3way<kLongBlock>(p, n, c, long_shift);
    c = crc32c_hw_3way<kShortBlock>(p, n, c, short_shift);
  }
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return c32;
}
bool cpu_has_sse42() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#endif

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
#ifdef TPDE_HW_CRC
  if (cpu_has_sse42()) return ~crc32c_hw(p, size, crc);
#endif
  return ~crc32c_soft(p, size, crc);
}

}  // namespace tpde
