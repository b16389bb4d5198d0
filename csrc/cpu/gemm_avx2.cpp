// AVX2+FMA GEMM path. 16 vector registers: a 6 x 16 float tile keeps 12 accumulators
// (enough independent chains to cover FMA latency on two pipes) + 2 B vectors + 1
// broadcast.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "common/runtime.h"
#include "cpu/gemm_isa.h"

namespace dlkern::cpu::avx2 {
namespace {

#include "cpu/simd_avx2.h"

using SimdF32 = VecF32;
using SimdF64 = VecF64;

#include "cpu/gemm_driver.h"

using KernelF32 = GemmKernel<SimdF32, 6, 2>;
using KernelF64 = GemmKernel<SimdF64, 6, 2>;

}  // namespace

void gemm_run(const GemmArgs<float>& g, int nthreads) {
  gemm_dispatch<KernelF32, SimdF32>(g, nthreads, {256, 192, 4096});
}
void gemm_run(const GemmArgs<double>& g, int nthreads) {
  gemm_dispatch<KernelF64, SimdF64>(g, nthreads, {256, 96, 2048});
}

}  // namespace dlkern::cpu::avx2
