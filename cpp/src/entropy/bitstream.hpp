// Bit I/O, MSB-first, on 64-bit words.
//
// READ ME FIRST
// - BitWriter::put(v, n) needs n <= 56 and v < 2^n; put_wide handles n <= 64. It writes
//   into a buffer the caller sized (8 bytes of slack past the last byte).
// - BitReader never reads outside its buffer: bits past the end read as zeros, and
//   overran() tells afterwards whether that happened. Callers bound every loop by a
//   count they validated, then check overran() once.
// - get(n) needs n <= 57 (one unaligned 64-bit load covers it); get_wide handles 64.
#pragma once
#include <cstdint>
#include <cstring>

namespace tpde {

// The one bit writer of tpde (gap, tail and test sections): MSB-first, its state small
// enough to stay in registers in the hot loops. Pending bits (< 8 after each put) go out as
// one big-endian 8-byte store and the pointer advances by the whole bytes, so the caller
// sizes the buffer: the bytes the bits need plus 8 bytes of slack.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : p_(out) {}

  __attribute__((always_inline)) void put(uint64_t value, int nbits) {  // nbits <= 56
    acc_ = (acc_ << nbits) | value;
    filled_ += nbits;
    const uint64_t word = __builtin_bswap64((acc_ << 1) << (63 - filled_));
    std::memcpy(p_, &word, 8);
    p_ += filled_ >> 3;
    filled_ &= 7;
  }

  void put_wide(uint64_t value, int nbits) {  // nbits <= 64
    if (nbits > 32) {
      put(value >> 32, nbits - 32);
      put(value & 0xFFFFFFFFu, 32);
    } else {
      put(value, nbits);
    }
  }

  // Pads the last byte with zero bits; returns the end of the written bytes.
  uint8_t* finish() {
    if (filled_ > 0) *p_++ = static_cast<uint8_t>(acc_ << (8 - filled_));
    filled_ = 0;
    return p_;
  }

 private:
  uint8_t* p_;
  uint64_t acc_ = 0;
  int filled_ = 0;
};

class BitReader {
 public:
  // The last (up to) 8 bytes are also kept zero-padded in pad_, so that a read near or past
  // the end is one fixed-size load too (short sections are read there entirely).
  BitReader(const uint8_t* data, size_t size)
      : data_(data), size_(size), pad_start_(size >= 8 ? size - 8 : 0) {
    if (size > pad_start_) std::memcpy(pad_, data + pad_start_, size - pad_start_);
  }

  __attribute__((always_inline)) uint64_t peek64() const {
    const size_t byte = bitpos_ >> 3;
    uint64_t w;
    if (byte + 8 <= size_) {
      std::memcpy(&w, data_ + byte, 8);
    } else {
      // byte > size_ - 8, so byte - pad_start_ < 8 while byte < size_; past the end only
      // zero bytes are read (offset size_ - pad_start_ <= 8, pad_ has 16).
      const size_t b = byte < size_ ? byte : size_;
      std::memcpy(&w, pad_ + (b - pad_start_), 8);
    }
    w = __builtin_bswap64(w);
    return w << (bitpos_ & 7);
  }

  __attribute__((always_inline)) uint64_t get(int nbits) {
    const uint64_t v = (peek64() >> 1) >> (63 - nbits);  // no branch for nbits == 0
    bitpos_ += static_cast<uint64_t>(nbits);
    return v;
  }

  uint64_t get_wide(int nbits) {
    if (nbits > 32) {
      const uint64_t hi = get(nbits - 32);
      return (hi << 32) | get(32);
    }
    return get(nbits);
  }

  void skip(int nbits) { bitpos_ += static_cast<uint64_t>(nbits); }
  bool overran() const { return bitpos_ > static_cast<uint64_t>(size_) * 8; }
  uint64_t bit_position() const { return bitpos_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pad_start_;
  uint64_t bitpos_ = 0;
  uint8_t pad_[16] = {0};
};

}  // namespace tpde
