// Fused optimizer steps' front end: blocks of the flat arrays over threads through the
// active ISA's kernels (cpu/optim_kernels.h).
#include "cpu/optim.h"

#include "common/parallel.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// 16 Ki elements a block: 7 arrays of 64 KiB (float32) touched per Adam block, a few
// microseconds of memory traffic, so a thread gets at least two blocks' worth of work.
constexpr int64_t kBlock = 1 << 14;

}  // namespace

template <typename T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
               const AdamFactors& f) {
  if (n <= 0) return;
  const auto step = kernels<T>().adam_step;
  parallel_blocks(n, kBlock, [&](int64_t s, int64_t len) {
    step(param + s, grad + s, exp_avg + s, exp_avg_sq + s, max_exp_avg_sq ? max_exp_avg_sq + s : nullptr, len, f);
  });
}

template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, int64_t n, const SgdFactors& f) {
  if (n <= 0) return;
  const auto step = kernels<T>().sgd_step;
  parallel_blocks(n, kBlock, [&](int64_t s, int64_t len) {
    step(param + s, grad + s, momentum_buffer ? momentum_buffer + s : nullptr, len, f);
  });
}

template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, const AdamFactors&);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, const AdamFactors&);
template void sgd_step<float>(float*, const float*, float*, int64_t, const SgdFactors&);
template void sgd_step<double>(double*, const double*, double*, int64_t, const SgdFactors&);

}  // namespace dlkern::cpu
