// TF32 tensor-core GEMM (sm_80+) through WMMA: each 128-thread block computes a 64 x 64
// tile of C as four warps of 32 x 32, each warp holding 2 x 2 accumulator fragments of
// 16 x 16 (m16n16k8 TF32 operations). BK = 16 slices of op(A) and op(B) are staged in
// shared memory, the next slice's global loads issued before the current slice's
// multiplies. The epilogue goes through shared memory so alpha, beta and the edge
// bounds are applied per element.
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>

#include "cuda/gemm.h"
#include "cuda/gemm_launch.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16;
constexpr int kThreads = 128;  // 4 warps as 2 x 2, each 32 x 32 of the tile
// Row padding of the shared tiles: keeps every WMMA pointer 32-byte aligned (ldm a
// multiple of 4 floats, 16-row steps a multiple of 8 floats) and spreads banks.
constexpr int kPadA = kBK + 4, kPadB = kBN + 4, kPadC = kBN + 4;
constexpr int kLoadsA = kBM * kBK / kThreads;  // 8 elements of each operand per thread
constexpr int kLoadsB = kBK * kBN / kThreads;
using Tf32Params = gemm_detail::GemmParams<float>;

// Element (i, kk) of op(A) and (kk, j) of op(B) in their stored layouts.
template <bool Trans>
__device__ __forceinline__ int64_t a_offset(int64_t i, int64_t kk, int64_t ld) {
  return Trans ? kk * ld + i : i * ld + kk;
}
template <bool Trans>
__device__ __forceinline__ int64_t b_offset(int64_t kk, int64_t j, int64_t ld) {
  return Trans ? j * ld + kk : kk * ld + j;
}

template <bool TransA, bool TransB>
__global__ void __launch_bounds__(kThreads) gemm_tf32_kernel(const Tf32Params p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace nvcuda;
  __shared__ __align__(32) float a_tile[kBM][kPadA];   // [row][k]
  __shared__ __align__(32) float b_tile[kBK][kPadB];   // [k][col]
  __shared__ __align__(32) float c_tile[kBM][kPadC];

  const int tid = static_cast<int>(threadIdx.x);
  const int warp = tid / 32, wm = warp / 2, wn = warp % 2;
  const int64_t item = p.first_item + blockIdx.z;
  const int64_t row0 = (p.first_tile_row + blockIdx.y) * kBM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const float* __restrict__ a = p.a + item * p.stride_a;
  const float* __restrict__ b = p.b + item * p.stride_b;
  float* __restrict__ c = p.c + item * p.stride_c;

  // Which tile element each of a thread's loads covers: consecutive threads walk the
  // operand's contiguous axis so the global loads coalesce.
  auto a_pos = [&](int l, int& r, int& kk) {
    if (TransA) { r = tid % kBM; kk = tid / kBM + l * (kThreads / kBM); }
    else        { kk = tid % kBK; r = tid / kBK + l * (kThreads / kBK); }
  };
  auto b_pos = [&](int l, int& kk, int& col) {
    if (TransB) { kk = tid % kBK; col = tid / kBK + l * (kThreads / kBK); }
    else        { col = tid % kBN; kk = tid / kBN + l * (kThreads / kBN); }
  };

  float a_stage[kLoadsA], b_stage[kLoadsB];
  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int l = 0; l < kLoadsA; ++l) {
      int r, kk;
      a_pos(l, r, kk);
      const int64_t gi = row0 + r, gk = k0 + kk;
      a_stage[l] = (gi < p.m && gk < p.k) ? a[a_offset<TransA>(gi, gk, p.lda)] : 0.0f;
    }
#pragma unroll
    for (int l = 0; l < kLoadsB; ++l) {
      int kk, col;
      b_pos(l, kk, col);
      const int64_t gk = k0 + kk, gj = col0 + col;
      b_stage[l] = (gk < p.k && gj < p.n) ? b[b_offset<TransB>(gk, gj, p.ldb)] : 0.0f;
    }
  };
  auto stash = [&]() {
#pragma unroll
    for (int l = 0; l < kLoadsA; ++l) {
      int r, kk;
      a_pos(l, r, kk);
      a_tile[r][kk] = a_stage[l];
    }
#pragma unroll
    for (int l = 0; l < kLoadsB; ++l) {
      int kk, col;
      b_pos(l, kk, col);
      b_tile[kk][col] = b_stage[l];
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  fetch(0);
  for (int64_t k0 = 0; k0 < p.k; k0 += kBK) {
    stash();
    __syncthreads();
    // The next slice's loads are in flight while the tensor cores work on this one.
    if (k0 + kBK < p.k) fetch(k0 + kBK);
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], &a_tile[wm * 32 + i * 16][kk], kPadA);
#pragma unroll
        for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(fb[j], &b_tile[kk][wn * 32 + j * 16], kPadB);
#pragma unroll
        for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();  // the tiles are overwritten by the next stash
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&c_tile[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], kPadC,
                              wmma::mem_row_major);
  __syncthreads();
  for (int e = tid; e < kBM * kBN; e += kThreads) {
    const int r = e / kBN, col = e % kBN;
    const int64_t gi = row0 + r, gj = col0 + col;
    if (gi >= p.m || gj >= p.n) continue;
    float* dst = c + gi * p.ldc + gj;
    const float v = p.alpha * c_tile[r][col];
    *dst = p.beta == 0.0f ? v : v + p.beta * *dst;  // beta == 0: C is write-only
  }
#else
  __trap();  // never launched: the host checks tf32_supported first
#endif
}

template <bool TransA, bool TransB>
cudaError_t launch(const Tf32Params& p, int64_t batch, cudaStream_t stream) {
  return gemm_detail::launch_tile_grid(p, kBM, kBN, batch, [&](dim3 grid, const Tf32Params& q) {
    gemm_tf32_kernel<TransA, TransB><<<grid, kThreads, 0, stream>>>(q);
  });
}

}  // namespace

bool tf32_supported(int device) noexcept {
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 8;
}

cudaError_t gemm_tf32_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                      float alpha, const float* a, int64_t lda, int64_t stride_a,
                                      const float* b, int64_t ldb, int64_t stride_b, float beta,
                                      float* c, int64_t ldc, int64_t stride_c, int64_t batch,
                                      cudaStream_t stream) {
  const bool reads_ab = k > 0 && alpha != 0.0f;
  check_gemm_args(trans_a, trans_b, m, n, k, reads_ab, a, lda, b, ldb, c, ldc, stride_c, batch);
  if (m == 0 || n == 0 || batch == 0) return cudaSuccess;
  // No product to add: the FP32 entry scales C (no tensor cores involved).
  if (!reads_ab)
    return gemm_strided_batched<float>(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b,
                                       beta, c, ldc, stride_c, batch, stream);
  cudaGetLastError();  // report only this launch's failures
  int device = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) {
    cudaGetLastError();
    return err;
  }
  if (!tf32_supported(device)) return cudaErrorNotSupported;
  const Tf32Params p =
      gemm_detail::make_params(m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c);
  cudaError_t err = trans_a ? (trans_b ? launch<true, true>(p, batch, stream) : launch<true, false>(p, batch, stream))
                            : (trans_b ? launch<false, true>(p, batch, stream) : launch<false, false>(p, batch, stream));
  if (err != cudaSuccess) cudaGetLastError();
  return err;
}

}  // namespace dlkern::cuda
