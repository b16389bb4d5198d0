// Row-wise kernels: one warp per row, the warp's lanes striding over the columns
// (float4 loads for aligned float rows), warp shuffles for the row reductions, a
// grid-stride loop over rows. Layer-norm parameter gradients are column sums: done in
// row chunks into a scratch buffer, then summed per column, so results do not depend
// on scheduling (no atomics).
#include "cuda/rowwise.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <initializer_list>
#include <type_traits>

#include "cuda/check.h"
#include "cuda/warp.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / kWarpSize;

template <typename T>
__global__ void __launch_bounds__(kThreads) softmax_forward_kernel(const T* __restrict__ x, T* __restrict__ y,
                                                                   int64_t rows, int64_t cols, bool is_log,
                                                                   bool vec) {
  const WarpRows w;
  for (int64_t r = w.first; r < rows; r += w.step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = -INFINITY;
    for_lane(xr, cols, vec, w.lane, [&](int64_t, T v) { m = (v > m || v != v) ? v : m; });
    m = warp_max(m);
    if (m == T(-INFINITY)) {  // every entry -inf (or an empty row): no finite shift exists
      for (int64_t i = w.lane; i < cols; i += kWarpSize) yr[i] = is_log ? T(-INFINITY) : T(0);
      continue;
    }
    T s = 0;
    for_lane(xr, cols, vec, w.lane, [&](int64_t, T v) { s += exp(v - m); });
    s = warp_sum(s);
    if (is_log) {
      const T shift = m + log(s);
      for_lane(xr, cols, vec, w.lane, [&](int64_t i, T v) { yr[i] = v - shift; });
    } else {
      const T inv = T(1) / s;
      for_lane(xr, cols, vec, w.lane, [&](int64_t i, T v) { yr[i] = exp(v - m) * inv; });
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) softmax_backward_kernel(const T* __restrict__ dy, const T* __restrict__ y,
                                                                    T* __restrict__ dx, int64_t rows,
                                                                    int64_t cols, bool is_log, bool vec) {
  const WarpRows w;
  for (int64_t r = w.first; r < rows; r += w.step) {
    const T *dyr = dy + r * cols, *yr = y + r * cols;
    T* dxr = dx + r * cols;
    T s = 0;
    for_lane(dyr, cols, vec, w.lane, [&](int64_t i, T g) { s += is_log ? g : g * yr[i]; });
    s = warp_sum(s);
    for_lane(dyr, cols, vec, w.lane, [&](int64_t i, T g) {
      dxr[i] = is_log ? g - exp(yr[i]) * s : yr[i] * (g - s);
    });
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_forward_kernel(
    const T* __restrict__ x, const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ y,
    T* __restrict__ mean, T* __restrict__ rstd, int64_t rows, int64_t cols, T eps, bool vec) {
  const WarpRows w;
  for (int64_t r = w.first; r < rows; r += w.step) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    // Layer norm: two passes (mean, then squared deviations), no cancellation for large
    // means. RMS norm (no mean buffer): not centred.
    T mu = 0;
    if (mean) {
      T s = 0;
      for_lane(xr, cols, vec, w.lane, [&](int64_t, T v) { s += v; });
      mu = warp_sum(s) / T(cols);
    }
    T ss = 0;
    for_lane(xr, cols, vec, w.lane, [&](int64_t, T v) { ss += (v - mu) * (v - mu); });
    const T inv = T(1) / sqrt(warp_sum(ss) / T(cols) + eps);
    for_lane(xr, cols, vec, w.lane, [&](int64_t i, T v) {
      T out = (v - mu) * inv;
      if (weight) out *= weight[i];
      if (bias) out += bias[i];
      yr[i] = out;
    });
    if (w.lane == 0) {
      if (mean) mean[r] = mu;
      rstd[r] = inv;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_backward_kernel(
    const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ weight,
    const T* __restrict__ mean, const T* __restrict__ rstd, T* __restrict__ dx, int64_t rows,
    int64_t cols, bool vec) {
  const WarpRows w;
  for (int64_t r = w.first; r < rows; r += w.step) {
    const T *dyr = dy + r * cols, *xr = x + r * cols;
    T* dxr = dx + r * cols;
    const T mu = mean ? mean[r] : T(0), inv = rstd[r];
    // g = dy * weight; dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); RMS norm (no
    // mean buffer) has no mean(g) term.
    T sg = 0, sgx = 0;
    for_lane(dyr, cols, vec, w.lane, [&](int64_t i, T d) {
      const T g = weight ? d * weight[i] : d;
      sg += g;
      sgx += g * (xr[i] - mu) * inv;
    });
    const T mg = mean ? warp_sum(sg) / T(cols) : T(0), mgx = warp_sum(sgx) / T(cols);
    for_lane(dyr, cols, vec, w.lane, [&](int64_t i, T d) {
      const T g = weight ? d * weight[i] : d;
      dxr[i] = inv * (g - mg - (xr[i] - mu) * inv * mgx);
    });
  }
}

// Rows per chunk of the parameter-gradient column sums: at least 128, and few enough
// chunks for grid y (65535).
int64_t chunk_rows(int64_t rows) { return std::max<int64_t>(128, (rows + 65534) / 65535); }
int64_t chunk_count(int64_t rows) { return (rows + chunk_rows(rows) - 1) / chunk_rows(rows); }

constexpr int kColTile = 32, kRowLanes = 8;

// Block (32 columns, 8 row lanes) per (column tile, row chunk): partial sums of
// dy * xhat (into dw_part) and dy (into db_part) for the chunk.
template <typename T>
__global__ void __launch_bounds__(kColTile * kRowLanes) layer_norm_param_partial_kernel(
    const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ mean,
    const T* __restrict__ rstd, T* __restrict__ dw_part, T* __restrict__ db_part, int64_t rows,
    int64_t cols, int64_t rows_per_chunk) {
  __shared__ T sw[kRowLanes][kColTile + 1], sb[kRowLanes][kColTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  T aw = 0, ab = 0;
  if (c < cols)
    for (int64_t r = r0 + ty; r < r1; r += kRowLanes) {
      const T d = dy[r * cols + c];
      aw += d * (x[r * cols + c] - (mean ? mean[r] : T(0))) * rstd[r];
      ab += d;
    }
  sw[ty][tx] = aw;
  sb[ty][tx] = ab;
  __syncthreads();
  if (ty == 0 && c < cols) {
    for (int k = 1; k < kRowLanes; ++k) {
      aw += sw[k][tx];
      ab += sb[k][tx];
    }
    if (dw_part) dw_part[blockIdx.y * cols + c] = aw;
    if (db_part) db_part[blockIdx.y * cols + c] = ab;
  }
}

// out[c] = sum over k of part[k * cols + c].
template <typename T>
__global__ void column_sum_kernel(const T* __restrict__ part, T* __restrict__ out, int64_t chunks, int64_t cols) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < cols; c += step) {
    T s = 0;
    for (int64_t k = 0; k < chunks; ++k) s += part[k * cols + c];
    out[c] = s;
  }
}

unsigned row_blocks(int64_t rows) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, 65536));
}

// float4 loads need float rows, a multiple-of-4 row length and 16-byte aligned buffers.
template <typename T>
bool can_vectorise(int64_t cols, std::initializer_list<const void*> ptrs) {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    if (cols % 4 != 0) return false;
    for (const void* p : ptrs)
      if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
    return true;
  }
}

}  // namespace

int64_t param_grad_scratch(int64_t rows, int64_t cols) { return 2 * chunk_count(rows) * cols; }

template <typename T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols, bool log, cudaStream_t stream,
                     const char* op) {
  if (rows == 0 || cols == 0) return;
  softmax_forward_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(x, y, rows, cols, log,
                                                                       can_vectorise<T>(cols, {x}));
  check_launch(op);
}

template <typename T>
void softmax_backward(const T* dy, const T* y, T* dx, int64_t rows, int64_t cols, bool log,
                      cudaStream_t stream, const char* op) {
  if (rows == 0 || cols == 0) return;
  softmax_backward_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(dy, y, dx, rows, cols, log,
                                                                        can_vectorise<T>(cols, {dy}));
  check_launch(op);
}

template <typename T>
void layer_norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                        int64_t rows, int64_t cols, T eps, cudaStream_t stream, const char* op) {
  if (rows == 0) return;
  layer_norm_forward_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(
      x, weight, bias, y, mean, rstd, rows, cols, eps, can_vectorise<T>(cols, {x}));
  check_launch(op);
}

template <typename T>
void layer_norm_backward(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd,
                         T* dx, T* dweight, T* dbias, T* scratch, int64_t rows, int64_t cols,
                         cudaStream_t stream, const char* op) {
  if (cols == 0) return;
  if (rows > 0) {
    layer_norm_backward_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(
        dy, x, weight, mean, rstd, dx, rows, cols, can_vectorise<T>(cols, {dy}));
    check_launch(op);
  }
  if (!dweight && !dbias) return;
  const int64_t chunks = chunk_count(rows);
  T* dw_part = dweight ? scratch : nullptr;
  T* db_part = dbias ? scratch + chunks * cols : nullptr;
  if (chunks > 0) {
    const dim3 grid(static_cast<unsigned>((cols + kColTile - 1) / kColTile), static_cast<unsigned>(chunks));
    layer_norm_param_partial_kernel<T><<<grid, dim3(kColTile, kRowLanes), 0, stream>>>(
        dy, x, mean, rstd, dw_part, db_part, rows, cols, chunk_rows(rows));
    check_launch(op);
  }
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((cols + kThreads - 1) / kThreads, 65536));
  // rows == 0: no chunks, and the column sums write zeros.
  if (dweight) column_sum_kernel<T><<<blocks, kThreads, 0, stream>>>(dw_part, dweight, chunks, cols);
  if (dbias) column_sum_kernel<T><<<blocks, kThreads, 0, stream>>>(db_part, dbias, chunks, cols);
  check_launch(op);
}

#define DLKERN_INSTANTIATE_CUDA_ROWWISE(T)                                                          \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t, bool, cudaStream_t, const char*); \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, bool, cudaStream_t,   \
                                    const char*);                                                   \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, T, \
                                      cudaStream_t, const char*);                                   \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, \
                                       T*, int64_t, int64_t, cudaStream_t, const char*);

DLKERN_INSTANTIATE_CUDA_ROWWISE(float)
DLKERN_INSTANTIATE_CUDA_ROWWISE(double)
#undef DLKERN_INSTANTIATE_CUDA_ROWWISE

}  // namespace dlkern::cuda
