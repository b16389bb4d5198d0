// Shared by the FP32 tiled GEMM (gemm.cu) and the TF32 tensor-core GEMM (gemm_tf32.cu):
// the parameter block their kernels take and the launch loop that covers products with
// more than 65535 tile rows or batch items (grid y and z limits) in several launches.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace dlkern::cuda::gemm_detail {

template <typename T>
struct GemmParams {
  int64_t m, n, k;
  T alpha, beta;
  const T* a;
  int64_t lda, stride_a;
  const T* b;
  int64_t ldb, stride_b;
  T* c;
  int64_t ldc, stride_c;
  // Where this launch starts in the tile rows and batch items (see launch_tile_grid).
  int64_t first_tile_row, first_item;
};

template <typename T>
GemmParams<T> make_params(int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, int64_t stride_a,
                          const T* b, int64_t ldb, int64_t stride_b, T beta, T* c, int64_t ldc,
                          int64_t stride_c) {
  GemmParams<T> p{};
  p.m = m, p.n = n, p.k = k;
  p.alpha = alpha, p.beta = beta;
  p.a = a, p.lda = lda, p.stride_a = stride_a;
  p.b = b, p.ldb = ldb, p.stride_b = stride_b;
  p.c = c, p.ldc = ldc, p.stride_c = stride_c;
  return p;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kMaxGridYZ = 65535;
constexpr int64_t kMaxGridX = 2147483647;

// Launches a grid of (n tiles, m tiles, batch) blocks of bm x bn tiles, split into as many
// launches as the grid limits need; launch(grid, params) issues one kernel launch.
template <typename T, class Launch>
cudaError_t launch_tile_grid(GemmParams<T> p, int64_t bm, int64_t bn, int64_t batch, Launch launch) {
  const int64_t tiles_m = ceil_div(p.m, bm), tiles_n = ceil_div(p.n, bn);
  if (tiles_n > kMaxGridX) return cudaErrorInvalidConfiguration;
  for (int64_t z0 = 0; z0 < batch; z0 += kMaxGridYZ) {
    for (int64_t y0 = 0; y0 < tiles_m; y0 += kMaxGridYZ) {
      p.first_item = z0;
      p.first_tile_row = y0;
      const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(std::min(kMaxGridYZ, tiles_m - y0)),
                      static_cast<unsigned>(std::min(kMaxGridYZ, batch - z0)));
      launch(grid, p);
      if (cudaError_t err = cudaGetLastError(); err != cudaSuccess) return err;
    }
  }
  return cudaSuccess;
}

}  // namespace dlkern::cuda::gemm_detail
