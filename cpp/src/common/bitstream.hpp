// Bit I/O, MSB-first, on 64-bit words.
//
// READ ME FIRST
// - BitWriter::put(v, n) needs n <= 32 and v < 2^n; put_wide handles n <= 64.
// - BitReader never reads outside its buffer: bits past the end read as zeros, and
//   overran() tells afterwards whether that happened. Callers bound every loop by a
//   count they validated, then check overran() once.
// - get(n) needs n <= 57 (one unaligned 64-bit load covers it); get_wide handles 64.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace tpde {

class BitWriter {
 public:
  // Appends to out; expected_bytes sizes the buffer up front (it still grows if needed).
  explicit BitWriter(std::vector<uint8_t>& out, size_t expected_bytes = 0)
      : out_(out), pos_(out.size()) {
    out_.resize(pos_ + expected_bytes + 8);
  }

  void put(uint64_t value, int nbits) {
    acc_ = (acc_ << nbits) | value;
    filled_ += nbits;
    if (filled_ >= 32) {
      filled_ -= 32;
      if (pos_ + 4 > out_.size()) out_.resize(2 * out_.size() + 8);
      const uint32_t word = __builtin_bswap32(static_cast<uint32_t>(acc_ >> filled_));
      std::memcpy(out_.data() + pos_, &word, 4);
      pos_ += 4;
    }
  }

  void put_wide(uint64_t value, int nbits) {
    if (nbits > 32) {
      put(value >> 32, nbits - 32);
      put(value & 0xFFFFFFFFu, 32);
    } else {
      put(value, nbits);
    }
  }

  // Pads the last byte with zero bits and trims the buffer to what was written.
  void finish() {
    out_.resize(pos_);
    while (filled_ > 0) {
      const int take = filled_ >= 8 ? 8 : filled_;
      const uint8_t byte = static_cast<uint8_t>((acc_ >> (filled_ - take)) << (8 - take));
      out_.push_back(byte);
      filled_ -= take;
    }
    pos_ = out_.size();
    acc_ = 0;
  }

 private:
  std::vector<uint8_t>& out_;
  size_t pos_;
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
