// General matrix multiply on the CPU: C = alpha * op(A) * op(B) + beta * C.
// float and double; packed, cache-blocked, register-blocked per ISA, OpenMP-parallel.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

// One product in element strides. A is (m, k): element (i, p) at a[i*a_rs + p*a_cs];
// B is (k, n): element (p, j) at b[p*b_rs + j*b_cs]; a transpose just swaps the two
// strides, so no operand is ever copied to transpose it. C is (m, n) with row stride
// ldc and unit column stride. beta == 0 makes C write-only (NaN/Inf in C are not
// propagated), as in BLAS. Strides may be any value, including 0 (broadcast rows/cols).
template <typename T>
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  T alpha = 1;
  const T* a = nullptr;
  int64_t a_rs = 0, a_cs = 0;
  const T* b = nullptr;
  int64_t b_rs = 0, b_cs = 0;
  T beta = 0;
  T* c = nullptr;
  int64_t ldc = 0;
};

// Single product, using up to get_num_threads() threads; called from inside an
// OpenMP parallel region it runs on the calling thread only.
template <typename T>
void gemm(const GemmArgs<T>& args);

// BLAS-style row-major interface: op(A) is (m, k), op(B) is (k, n);
// A is stored (m, lda) or, when trans_a, (k, lda); likewise B.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Strided batch: item i uses args.a + i*stride_a, args.b + i*stride_b, args.c + i*stride_c.
// A stride of 0 broadcasts that operand (stride_c must not be 0 when batch > 1).
// Small products run one per thread; large ones run one after another, each threaded.
template <typename T>
void gemm_strided_batched(const GemmArgs<T>& args, int64_t batch, int64_t stride_a,
                          int64_t stride_b, int64_t stride_c);

}  // namespace dlkern::cpu
