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

struct SimdF32 {
  using T = float;
  using V = __m256;
  static constexpr int L = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static V bcast(T x) { return _mm256_set1_ps(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
};

struct SimdF64 {
  using T = double;
  using V = __m256d;
  static constexpr int L = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static V bcast(T x) { return _mm256_set1_pd(x); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
};

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
