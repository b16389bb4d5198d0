// AVX-512 GEMM path. On Zen 4 a 512-bit FMA occupies both 256-bit pipes, so peak
// FLOPs equal AVX2's; the gain is 32 registers (a larger register tile, fewer loads
// per FMA) and 4 rather than 8 accumulator chains to hide FMA latency.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "common/runtime.h"
#include "cpu/gemm_isa.h"

namespace dlkern::cpu::avx512 {
namespace {

#include "cpu/simd_avx512.h"

using SimdF32 = VecF32;
using SimdF64 = VecF64;

#include "cpu/gemm_driver.h"

// 6 x 64 float tile: 24 accumulators + 4 B vectors + 1 broadcast in 32 registers;
// 10 loads per 24 FMAs (an 8 x 32 tile needs 10 per 16), measured a few % faster on
// the large DL shapes.
// Blocking {KC, MC, NC}: KC = 384 measured best on Zen 4 (fewer passes over C, whose
// tiles come from L3/DRAM); the packed A block (MC x KC, 192 KiB) sits in the 1 MiB L2;
// the packed B block (KC x NC, 6 MiB) in the ~8 MiB of L3 that behaves like L3.
using KernelF32 = GemmKernel<SimdF32, 6, 4>;
using KernelF64 = GemmKernel<SimdF64, 8, 2>;

}  // namespace

void gemm_run(const GemmArgs<float>& g, int nthreads) {
  gemm_dispatch<KernelF32, SimdF32>(g, nthreads, {384, 128, 4096});
}
void gemm_run(const GemmArgs<double>& g, int nthreads) {
  gemm_dispatch<KernelF64, SimdF64>(g, nthreads, {256, 128, 2048});
}

}  // namespace dlkern::cpu::avx512
