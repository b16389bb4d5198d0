// Portable GEMM path: GCC/Clang vector extensions, which lower to SSE2 on any x86-64
// (and NEON on Arm). Slower than the wide paths but runs everywhere.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "common/runtime.h"
#include "cpu/gemm_isa.h"

namespace dlkern::cpu::generic {
namespace {

template <typename Scalar, int Lanes>
struct SimdVecExt {
  using T = Scalar;
  typedef Scalar V __attribute__((vector_size(sizeof(Scalar) * Lanes)));
  static constexpr int L = Lanes;
  static V zero() { return V{}; }
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static V bcast(T x) { return V{} + x; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V mul(V a, V b) { return a * b; }
  static V add(V a, V b) { return a + b; }
};

using SimdF32 = SimdVecExt<float, 4>;
using SimdF64 = SimdVecExt<double, 2>;

#include "cpu/gemm_driver.h"

// 16 SSE registers: 4 x 8 float tile = 8 accumulators + 2 B vectors + 1 broadcast.
using KernelF32 = GemmKernel<SimdF32, 4, 2>;
using KernelF64 = GemmKernel<SimdF64, 4, 2>;

}  // namespace

void gemm_run(const GemmArgs<float>& g, int nthreads) {
  gemm_dispatch<KernelF32, SimdF32>(g, nthreads, {256, 128, 2048});
}
void gemm_run(const GemmArgs<double>& g, int nthreads) {
  gemm_dispatch<KernelF64, SimdF64>(g, nthreads, {256, 64, 2048});
}

}  // namespace dlkern::cpu::generic
