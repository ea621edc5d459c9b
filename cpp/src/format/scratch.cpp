#include "scratch.hpp"

#include <algorithm>
#include <mutex>
#include <new>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace tpde {
namespace {

constexpr size_t kPooledFrom = size_t(256) << 10;  // smaller requests: the allocator's own
constexpr size_t kGranule = size_t(64) << 10;      // pooled sizes are rounded up to this
constexpr size_t kMaxHeld = size_t(1) << 30;       // never hold more than this for reuse
constexpr std::align_val_t kAlign{64};

struct Block {
  void* data;
  size_t capacity;
};

struct Pool {
  std::mutex mutex;
  std::vector<Block> free;  // blocks held for reuse
  size_t held = 0;
};

// Never destroyed: blocks may come back during exit. A child forked while another thread
// held the mutex would wait on it forever, so the child starts a fresh pool (the parent's
// blocks are left to the parent).
Pool* g_pool = new Pool();

#if defined(__unix__) || defined(__APPLE__)
void fresh_pool_in_child() { g_pool = new Pool(); }
const int g_atfork = pthread_atfork(nullptr, nullptr, fresh_pool_in_child);
#endif

Pool& pool() { return *g_pool; }

}  // namespace

void* scratch_acquire(size_t bytes, size_t* capacity) {
  if (bytes < kPooledFrom) {
    *capacity = bytes ? bytes : 1;
    return ::operator new(*capacity, kAlign);
  }
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    auto best = p.free.end();
    for (auto it = p.free.begin(); it != p.free.end(); ++it)
      if (it->capacity >= bytes && (best == p.free.end() || it->capacity < best->capacity))
        best = it;
    if (best != p.free.end()) {
      Block b = *best;
      *best = p.free.back();
      p.free.pop_back();
      p.held -= b.capacity;
      *capacity = b.capacity;
      return b.data;
    }
  }
  *capacity = (bytes + kGranule - 1) / kGranule * kGranule;
  return ::operator new(*capacity, kAlign);
}

void scratch_release(void* block, size_t capacity) noexcept {
  if (capacity < kPooledFrom) {
    ::operator delete(block, kAlign);
    return;
  }
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    if (p.held + capacity <= kMaxHeld) {
      try {
        p.free.push_back(Block{block, capacity});
        p.held += capacity;
        return;
      } catch (...) {  // no room to record it: free it instead
      }
    }
  }
  ::operator delete(block, kAlign);
}

size_t trim_scratch() noexcept {
  Pool& p = pool();
  std::vector<Block> blocks;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    blocks.swap(p.free);
    p.held = 0;
  }
  size_t freed = 0;
  for (const Block& b : blocks) {
    freed += b.capacity;
    ::operator delete(b.data, kAlign);
  }
  return freed;
}

size_t scratch_cached_bytes() noexcept {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.held;
}

}  // namespace tpde
