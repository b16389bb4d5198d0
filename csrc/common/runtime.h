// Thread count and aligned scratch buffers shared by all CPU kernels.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dlkern {

// Threads a kernel may use. Starts at OpenMP's default (OMP_NUM_THREADS or the
// core count); set_num_threads(n) requires n >= 1 (std::invalid_argument otherwise).
int get_num_threads();
void set_num_threads(int n);

// Threads worth waking for `work` units when each thread should get at least
// `min_per_thread` of them (a kernel picks its unit and sets min_per_thread to about
// 20-50 us of one-thread work): 1 below 2 * min_per_thread, so small ops never fork;
// never more than get_num_threads() or `max_parts` (the independent pieces there are);
// 1 inside a parallel region. A fork/join costs a few us on an idle machine but can
// cost a scheduler time slice when another process holds a core.
int threads_for(int64_t work, int64_t min_per_thread, int64_t max_parts = INT64_MAX);

// When the CPUs this process may use are contended (other processes, or the host's
// steal time, leave fewer idle CPUs than get_num_threads()), a woken thread can wait a
// scheduler time slice before it runs, so threads_for then asks 64x the work per
// thread. Measured from /proc/stat at most every 100 ms, only when a fork is being
// considered; DLKERN_ADAPTIVE_THREADS=0 turns it off (Linux only).
struct ContentionInfo {
  bool enabled;
  bool contended;
  double others_busy_cpus;  // CPUs' worth used by other processes at the last check; -1: none yet
};
ContentionInfo contention_info();

// Chunk for schedule(dynamic, chunk) over `tasks` independent iterations on `nthreads`
// threads: about 8 chunks per thread, so a thread that loses its core for a while
// leaves its share to the others instead of holding up the whole call.
int64_t dynamic_chunk(int64_t tasks, int nthreads);

// Scales every min_per_thread (default 1). Tests set 0 so that 2-thread runs split
// even tiny inputs and exercise the parallel code paths.
void set_min_work_scale(double scale);
double get_min_work_scale();

// How many times threads_for chose more than one thread (a test hook: a small op at
// several threads must not fork).
int64_t parallel_decisions();

// A growable, 64-byte aligned scratch buffer. Kept per thread (thread_local) by the
// kernels so packing space is allocated once and reused, never per call.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  // At least `bytes` bytes; the contents are not preserved when it grows.
  // Defined out of line (runtime.cpp, baseline flags): an inline body compiled inside
  // an AVX-512 translation unit could be the copy the linker keeps for every caller.
  void* reserve(std::size_t bytes);
  template <typename T>
  T* reserve_elements(std::size_t n) {
    return static_cast<T*>(reserve(n * sizeof(T)));
  }

 private:
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace dlkern
