#include "common/runtime.h"

#include <omp.h>

#include <atomic>
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

}  // namespace dlkern
