// Reused memory for the coder's per-chunk work buffers. Coding a chunk needs several
// buffers of about its size; a fresh large allocation comes from the OS a page at a time
// (a fault and a zeroed page each), which cost about a fifth of the encoder's time on the
// store's 4 MiB chunks. Large blocks are handed back here instead of to the allocator and
// given to the next chunk, on any thread; `trim_scratch` frees the ones not in use (the
// store calls it when a save or load ends). Small requests go to the allocator directly.
#pragma once
#include <cstddef>

namespace tpde {

// A block of at least `bytes` (its real size in `*capacity`), uninitialized.
void* scratch_acquire(size_t bytes, size_t* capacity);
// Give back a block from `scratch_acquire`.
void scratch_release(void* block, size_t capacity) noexcept;
// Free every block held for reuse; the bytes freed.
size_t trim_scratch() noexcept;
// Bytes held for reuse now.
size_t scratch_cached_bytes() noexcept;

// An uninitialized array of `T` from the scratch blocks, returned when it goes.
template <typename T>
class ScratchBuffer {
 public:
  ScratchBuffer() = default;
  explicit ScratchBuffer(size_t n) { resize(n); }
  ~ScratchBuffer() { release(); }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  // Room for `n` elements; earlier contents are not kept.
  void resize(size_t n) {
    if (n * sizeof(T) > capacity_) {
      release();
      data_ = static_cast<T*>(scratch_acquire(n * sizeof(T), &capacity_));
    }
    size_ = n;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T* get() { return data_; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  void release() noexcept {
    if (data_) scratch_release(data_, capacity_);
    data_ = nullptr;
    capacity_ = size_ = 0;
  }
  T* data_ = nullptr;
  size_t capacity_ = 0;
  size_t size_ = 0;
};

}  // namespace tpde
