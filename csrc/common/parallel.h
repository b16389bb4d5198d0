// parallel_for: the one loop shape most CPU kernels thread over (independent rows,
// planes or tasks, each with a thread-independent result), so the OpenMP pragma and its
// schedule are written once.
//
// Iterations are handed out in chunks of dynamic_chunk(n, nthreads) (about 8 per thread)
// rather than split in fixed shares: on a shared host a thread that loses its core for a
// time slice leaves its rest to the others instead of holding up the whole call.
#pragma once
#include <cstdint>

#include "common/runtime.h"

namespace dlkern {

// body(i) for i in [0, n) on `nthreads` threads (1: inline, no OpenMP region).
// `nthreads` is the caller's threads_for() decision.
template <typename F>
inline void parallel_for(int64_t n, int nthreads, F&& body) {
  if (nthreads <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, dynamic_chunk(n, nthreads))
  for (int64_t i = 0; i < n; ++i) body(i);
}

// The same with the work threshold applied here: threads_for(work, min_per_thread, n)
// threads, so an op too small to amortise a fork/join runs inline.
template <typename F>
inline void parallel_for(int64_t n, int64_t work, int64_t min_per_thread, F&& body) {
  parallel_for(n, threads_for(work, min_per_thread, n), static_cast<F&&>(body));
}

}  // namespace dlkern
