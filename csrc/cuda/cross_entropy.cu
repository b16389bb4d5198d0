// Cross-entropy kernels: one block per row (grid-stride over rows), the block's threads
// striding over the classes, block-wide max and sums through warp shuffles and one
// shared slot per warp. The scalar reductions (loss total, mean divisor) run in one
// block in double, in a fixed order.
#include "cuda/cross_entropy.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/warp.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kMaxBlocks = 65535;

// Block-wide reductions; every thread gets the result. `slots` holds kWarps values and
// is reused after a barrier, so consecutive calls are safe.
template <typename T>
__device__ T block_sum(T v, T* slots) {
  v = warp_sum(v);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  __syncthreads();  // earlier readers of slots are done
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < kWarps; ++w) total += slots[w];  // same order in every thread
  return total;
}

template <typename T>
__device__ T block_max(T v, T* slots) {
  v = warp_max(v);
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  __syncthreads();
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  T m = slots[0];
  for (int w = 1; w < kWarps; ++w) m = slots[w] > m ? slots[w] : m;
  return m;
}

// Max (NaN ignored, as the CPU's x > m test) and log of the shifted exp-sum of a row.
// Returns m with -inf mapped to 0, and log_sum.
template <typename T>
__device__ void row_max_logsum(const T* __restrict__ xr, int64_t c, T* slots, T& m, T& log_sum) {
  T local = -INFINITY;
  for (int64_t k = threadIdx.x; k < c; k += blockDim.x) local = xr[k] > local ? xr[k] : local;
  // warp_max lets NaN win; the CPU's max ignores NaN, so drop it per thread first (done
  // above: NaN > local is false) and the warp sees no NaN from x.
  m = block_max(local, slots);
  if (m == T(-INFINITY)) m = T(0);
  T s = 0;
  for (int64_t k = threadIdx.x; k < c; k += blockDim.x) s += exp(xr[k] - m);
  log_sum = log(block_sum(s, slots));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ce_forward_kernel(const T* __restrict__ x, const int64_t* __restrict__ target, const T* __restrict__ weight,
                      T* __restrict__ loss, T* __restrict__ lse, T* __restrict__ row_weight,
                      unsigned long long* bad_index, int64_t rows, int64_t c, int64_t ignore_index, T eps) {
  __shared__ T slots[kWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * c;
    T m, log_sum;
    row_max_logsum(xr, c, slots, m, log_sum);
    // Label smoothing: sum_k w_k * (x_k - shift), shifted by x[0] unless that is infinite.
    const T shift = xr[0] - xr[0] == T(0) ? xr[0] : T(0);
    T acc = 0, wsum = 0;
    if (eps != T(0)) {
      for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
        const T wk = weight ? weight[k] : T(1);
        acc += wk * (xr[k] - shift);
        wsum += wk;
      }
      acc = block_sum(acc, slots);
      wsum = block_sum(wsum, slots);
    }
    if (threadIdx.x == 0) {
      lse[r] = m + log_sum;
      const int64_t t = target[r];
      if (t == ignore_index) {
        loss[r] = 0;
        row_weight[r] = 0;
      } else if (t < 0 || t >= c) {
        loss[r] = T(NAN);
        row_weight[r] = T(NAN);
        atomicMin(bad_index, static_cast<unsigned long long>(r));
      } else {
        const T wt = weight ? weight[t] : T(1);
        // lse - x[t] as (m - x[t]) + log_sum: exact m - x keeps large logits accurate.
        T v = (T(1) - eps) * wt * ((m - xr[t]) + log_sum);
        if (eps != T(0)) v += eps / T(c) * (wsum * ((m - shift) + log_sum) - acc);
        loss[r] = v;
        row_weight[r] = wt;
      }
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ce_reduce_kernel(const T* __restrict__ loss, const T* __restrict__ row_weight, T* out, int64_t rows, bool mean) {
  __shared__ double slots[kWarps];
  double total = 0, div = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    total += static_cast<double>(loss[i]);
    if (mean) div += static_cast<double>(row_weight[i]);
  }
  total = block_sum(total, slots);
  if (mean) div = block_sum(div, slots);
  if (threadIdx.x == 0) *out = static_cast<T>(mean ? total / div : total);  // 0/0 = NaN as PyTorch
}

// Sum over rows of weight[target] for non-ignored rows (the mean's divisor).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    ce_divisor_kernel(const int64_t* __restrict__ target, const T* __restrict__ weight, double* out, int64_t rows,
                      int64_t c, int64_t ignore_index) {
  __shared__ double slots[kWarps];
  double d = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    const int64_t t = target[i];
    if (t == ignore_index) continue;
    d += (t < 0 || t >= c) ? NAN : (weight ? static_cast<double>(weight[t]) : 1.0);
  }
  d = block_sum(d, slots);
  if (threadIdx.x == 0) *out = d;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    ce_backward_kernel(const T* __restrict__ grad, T grad_scalar, bool per_row, const double* divisor,
                       const T* __restrict__ x, const int64_t* __restrict__ target, const T* __restrict__ weight,
                       T* __restrict__ dx, int64_t rows, int64_t c, int64_t ignore_index, T eps) {
  __shared__ T slots[kWarps];
  T w_all = T(c);
  if (weight && eps != T(0)) {
    T s = 0;
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) s += weight[k];
    w_all = block_sum(s, slots);
  }
  const T scale = divisor ? static_cast<T>(1.0 / *divisor) : T(1);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * c;
    T* dr = dx + r * c;
    const int64_t t = target[r];
    if (t == ignore_index) {
      for (int64_t k = threadIdx.x; k < c; k += blockDim.x) dr[k] = T(0);
      continue;
    }
    if (t < 0 || t >= c) {
      for (int64_t k = threadIdx.x; k < c; k += blockDim.x) dr[k] = T(NAN);
      continue;
    }
    T m, log_sum;
    row_max_logsum(xr, c, slots, m, log_sum);
    const T g = (per_row ? grad[r] : (grad ? grad[0] : T(1)) * grad_scalar) * scale;
    const T wt = weight ? weight[t] : T(1);
    const T a = g * ((T(1) - eps) * wt + eps / T(c) * w_all);
    const T b = -g * eps / T(c);
    for (int64_t k = threadIdx.x; k < c; k += blockDim.x) {
      const T wk = weight ? weight[k] : T(1);
      // a == 0 (a zero cotangent): exact zeros rather than 0 * exp(...).
      T v = a == T(0) ? b * wk : a * exp((xr[k] - m) - log_sum) + b * wk;
      if (k == t) v -= g * (T(1) - eps) * wt;
      dr[k] = v;
    }
  }
}

unsigned grid_for(int64_t rows) { return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(rows, kMaxBlocks))); }

}  // namespace

template <typename T>
void cross_entropy_forward(const T* x, const int64_t* target, const T* weight, T* loss, T* lse, T* row_weight,
                           unsigned long long* bad_index, int64_t rows, int64_t c, int64_t ignore_index,
                           T label_smoothing, cudaStream_t stream, const char* op) {
  if (rows <= 0 || c <= 0) return;
  cudaGetLastError();
  ce_forward_kernel<T><<<grid_for(rows), kThreads, 0, stream>>>(x, target, weight, loss, lse, row_weight, bad_index,
                                                                rows, c, ignore_index, label_smoothing);
  check_launch(op);
}

template <typename T>
void cross_entropy_reduce(const T* loss, const T* row_weight, T* out, int64_t rows, CeReduction reduction,
                          cudaStream_t stream, const char* op) {
  cudaGetLastError();
  ce_reduce_kernel<T><<<1, kThreads, 0, stream>>>(loss, row_weight, out, rows, reduction == CeReduction::mean);
  check_launch(op);
}

template <typename T>
void cross_entropy_backward(const T* grad, T grad_scalar, const T* x, const int64_t* target, const T* weight,
                            T* dx, double* scratch, int64_t rows, int64_t c, int64_t ignore_index,
                            CeReduction reduction, T label_smoothing, cudaStream_t stream, const char* op) {
  if (rows <= 0 || c <= 0) return;
  cudaGetLastError();
  const bool mean = reduction == CeReduction::mean;
  if (mean) {
    ce_divisor_kernel<T><<<1, kThreads, 0, stream>>>(target, weight, scratch, rows, c, ignore_index);
    check_launch(op);
  }
  ce_backward_kernel<T><<<grid_for(rows), kThreads, 0, stream>>>(
      grad, grad_scalar, reduction == CeReduction::none, mean ? scratch : nullptr, x, target, weight, dx, rows, c,
      ignore_index, label_smoothing);
  check_launch(op);
}

#define DLKERN_INSTANTIATE_CE(T)                                                                                  \
  template void cross_entropy_forward<T>(const T*, const int64_t*, const T*, T*, T*, T*, unsigned long long*,     \
                                         int64_t, int64_t, int64_t, T, cudaStream_t, const char*);                \
  template void cross_entropy_reduce<T>(const T*, const T*, T*, int64_t, CeReduction, cudaStream_t, const char*); \
  template void cross_entropy_backward<T>(const T*, T, const T*, const int64_t*, const T*, T*, double*, int64_t,  \
                                          int64_t, int64_t, CeReduction, T, cudaStream_t, const char*);
DLKERN_INSTANTIATE_CE(float)
DLKERN_INSTANTIATE_CE(double)
#undef DLKERN_INSTANTIATE_CE

}  // namespace dlkern::cuda
