// Activation front end: blocks of the flat array over threads, and the run-time
// choice of ISA path. Elementwise, so any split gives the same result.
#include "cpu/activation.h"

#include <omp.h>

#include <algorithm>

#include "common/cpu_features.h"
#include "common/parallel.h"
#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A block per task: 64 KiB of floats, about 10 us of GELU. A thread gets at least two
// blocks (~20 us); blocks are handed out as threads come free, so a thread that loses
// its core on a busy host leaves its share to the others.
constexpr int64_t kBlock = 1 << 14;

template <typename F>
void over_blocks(int64_t n, F&& body) {
  parallel_blocks(n, kBlock, body);
}

}  // namespace

template <typename T>
void activation_forward(Activation f, const T* x, T* y, int64_t n) {
  if (n <= 0) return;
  const auto fwd = kernels<T>().activation_fwd[static_cast<int>(f)];
  over_blocks(n, [&](int64_t start, int64_t len) { fwd(x + start, y + start, len); });
}

template <typename T>
void activation_backward(Activation f, const T* dy, const T* x, T* dx, int64_t n) {
  if (n <= 0) return;
  const auto bwd = kernels<T>().activation_bwd[static_cast<int>(f)];
  over_blocks(n, [&](int64_t start, int64_t len) { bwd(dy + start, x + start, dx + start, len); });
}

template <typename T>
void unary_forward(Unary f, const T* x, T* y, int64_t n) {
  if (n <= 0) return;
  const auto fwd = kernels<T>().unary[static_cast<int>(f)];
  over_blocks(n, [&](int64_t start, int64_t len) { fwd(x + start, y + start, len); });
}

template void unary_forward<float>(Unary, const float*, float*, int64_t);
template void unary_forward<double>(Unary, const double*, double*, int64_t);
template void activation_forward<float>(Activation, const float*, float*, int64_t);
template void activation_forward<double>(Activation, const double*, double*, int64_t);
template void activation_backward<float>(Activation, const float*, const float*, float*, int64_t);
template void activation_backward<double>(Activation, const double*, const double*, double*, int64_t);

}  // namespace dlkern::cpu
