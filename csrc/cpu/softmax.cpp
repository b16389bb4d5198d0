// softmax front end: thread-count choice and the run-time choice of ISA path.
#include "cpu/softmax.h"

#include <algorithm>

#include "common/cpu_features.h"
#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A thread gets at least this many elements: about 20 us of work (a (64, 1024)
// softmax takes ~10 us on one core), so a fork/join is never a large share of the call.
constexpr int64_t kMinElemsPerThread = 1 << 17;

int threads_for(int64_t elems) { return dlkern::threads_for(elems, kMinElemsPerThread); }

}  // namespace

template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  const int nt = threads_for(outer * dim * inner);
  kernels<T>().softmax_fwd(x, y, outer, dim, inner, log, nt);
}

template <typename T>
void softmax_backward(const T* dy, const T* y, T* dx, int64_t outer, int64_t dim, int64_t inner, bool log) {
  if (outer <= 0 || dim <= 0 || inner <= 0) return;
  const int nt = threads_for(outer * dim * inner);
  kernels<T>().softmax_bwd(dy, y, dx, outer, dim, inner, log, nt);
}

template void softmax_forward<float>(const float*, float*, int64_t, int64_t, int64_t, bool);
template void softmax_forward<double>(const double*, double*, int64_t, int64_t, int64_t, bool);
template void softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, bool);
template void softmax_backward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t, bool);

}  // namespace dlkern::cpu
