#include "common/runtime.h"

#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <stdexcept>
#include <string>

namespace dlkern {

namespace {
// A process-wide count rather than OpenMP's per-thread ICV, so kernels called from
// any Python thread see the same setting.
std::atomic<int> g_num_threads{0};
}  // namespace

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  n = omp_get_max_threads();
  if (n < 1) n = 1;
  int expected = 0;
  g_num_threads.compare_exchange_strong(expected, n);
  return g_num_threads.load(std::memory_order_relaxed);
}

void set_num_threads(int n) {
  if (n < 1) {
    throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
  }
  g_num_threads.store(n, std::memory_order_relaxed);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

void* AlignedBuffer::reserve(std::size_t bytes) {
  if (bytes > capacity_) {
    std::free(data_);
    data_ = nullptr;
    capacity_ = 0;
    // Big packing buffers are swept over and over: back them with 2 MiB pages where
    // the kernel allows it (THP in "madvise" mode), so the sweeps do not miss the TLB.
    constexpr std::size_t kHuge = std::size_t(2) << 20;
    const std::size_t align = bytes >= kHuge ? kHuge : 64;
    const std::size_t rounded = (bytes + align - 1) / align * align;
    data_ = std::aligned_alloc(align, rounded);
    if (!data_) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align == kHuge) madvise(data_, rounded, MADV_HUGEPAGE);
#endif
    capacity_ = rounded;
  }
  return data_;
}

}  // namespace dlkern
