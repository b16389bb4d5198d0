#include "common/runtime.h"

#include <omp.h>

#include <algorithm>
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
std::atomic<int64_t> g_parallel_decisions{0};
std::atomic<double> g_min_work_scale{1.0};
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

int threads_for(int64_t work, int64_t min_per_thread, int64_t max_parts) {
  if (omp_in_parallel()) return 1;
  const double scale = g_min_work_scale.load(std::memory_order_relaxed);
  const double scaled = std::min(double(min_per_thread) * scale, 9.0e18);
  const int64_t min_work = std::max<int64_t>(1, static_cast<int64_t>(scaled));
  const int64_t useful = std::min(work / min_work, max_parts);
  if (useful < 2) return 1;
  const int n = get_num_threads();
  if (n < 2) return 1;
  g_parallel_decisions.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(std::min<int64_t>(n, useful));
}

int64_t dynamic_chunk(int64_t tasks, int nthreads) {
  return std::max<int64_t>(1, tasks / (8 * int64_t(std::max(nthreads, 1))));
}

void set_min_work_scale(double scale) {
  if (!(scale >= 0.0)) throw std::invalid_argument("set_min_work_scale: scale must be >= 0");
  g_min_work_scale.store(scale, std::memory_order_relaxed);
}

double get_min_work_scale() { return g_min_work_scale.load(std::memory_order_relaxed); }

int64_t parallel_decisions() { return g_parallel_decisions.load(std::memory_order_relaxed); }

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
