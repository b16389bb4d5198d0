// parallel_for: the one loop shape most CPU kernels thread over (independent rows,
// planes or tasks, each with a thread-independent result), so the OpenMP pragma and its
// schedule are written once.
//
// Iterations are handed out in chunks of dynamic_chunk(n, nthreads) (about 8 per thread)
// rather than split in fixed shares: on a shared host a thread that loses its core for a
// time slice leaves its rest to the others instead of holding up the whole call.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/runtime.h"

namespace dlkern {

// body(i) for i in [0, n) on `nthreads` threads (1: the calling thread; the region is
// kept, inactive, because the kernels measured as fast as before that way, and an
// inline loop was ~2% slower on softmax rows).
// `nthreads` is the caller's threads_for(work, min_per_thread, n) decision: the work
// threshold below which an op runs on one thread, with its contention scaling, stays
// in one place (runtime.h).
template <typename F>
inline void parallel_for(int64_t n, int nthreads, F&& body) {
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, dynamic_chunk(n, nthreads)) if (nthreads > 1)
  for (int64_t i = 0; i < n; ++i) body(i);
}

// The same, then per_thread_end() once on each thread after its last iteration (the
// fence after non-temporal stores).
template <typename F, typename G>
inline void parallel_for(int64_t n, int nthreads, F&& body, G&& per_thread_end) {
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
#pragma omp for schedule(dynamic, dynamic_chunk(n, nthreads)) nowait
    for (int64_t i = 0; i < n; ++i) body(i);
    per_thread_end();
  }
}

// body(start, len) over [0, n) cut in blocks of `block` elements, for elementwise
// kernels (any split gives the same result): one call on the calling thread when
// threads_for gives one thread (below two blocks a thread), else a block per task,
// handed out as threads come free.
template <typename F>
inline void parallel_blocks(int64_t n, int64_t block, F&& body) {
  const int64_t blocks = (n + block - 1) / block;
  const int nt = threads_for(n, 2 * block, blocks);
  if (nt == 1) {
    body(int64_t(0), n);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t b = 0; b < blocks; ++b) body(b * block, std::min(block, n - b * block));
}

}  // namespace dlkern
