// Elementwise kernels: one grid-stride loop per operand count, the op chosen by a
// switch on a kernel argument (uniform across the grid, so it costs no divergence and
// keeps one instantiation per dtype rather than one per op).
#include "cuda/elementwise.h"

#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/strided_loop.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ T apply(UnaryOp f, T x) {
  switch (f) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return exp(x);
    case UnaryOp::log: return log(x);
    case UnaryOp::sqrt: return sqrt(x);
    case UnaryOp::abs: return fabs(x);
    case UnaryOp::tanh: return tanh(x);
    // 0.5 * tanh(x / 2) + 0.5, as the CPU path: no overflow for large |x|.
    case UnaryOp::sigmoid: return T(0.5) * tanh(T(0.5) * x) + T(0.5);
    // NaN stays NaN (x > 0 is false for NaN, so test the other way).
    case UnaryOp::relu: return x < T(0) ? T(0) : x;
  }
  return x;
}

template <typename T>
__device__ __forceinline__ T apply(BinaryOp f, T a, T b) {
  switch (f) {
    case BinaryOp::add: return a + b;
    case BinaryOp::sub: return a - b;
    case BinaryOp::mul: return a * b;
    case BinaryOp::div: return a / b;
    // NumPy's maximum/minimum propagate NaN from either side.
    case BinaryOp::maximum: return (a != a || a > b) ? a : b;
    case BinaryOp::minimum: return (a != a || a < b) ? a : b;
    case BinaryOp::pow: return pow(a, b);
  }
  return a;
}

template <typename T>
__global__ void unary_kernel(UnaryOp f, const StridedLoop loop, T* __restrict__ out,
                             const T* __restrict__ in) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < loop.numel;
       i += step) {
    int64_t off[2];
    offsets_of<2>(loop, i, off);
    out[off[0]] = apply(f, in[off[1]]);
  }
}

template <typename T>
__global__ void binary_kernel(BinaryOp f, const StridedLoop loop, T* __restrict__ out,
                              const T* __restrict__ a, T a_scalar, const T* __restrict__ b,
                              T b_scalar) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < loop.numel;
       i += step) {
    int64_t off[3];
    offsets_of<3>(loop, i, off);
    const T x = a ? a[off[1]] : a_scalar;
    const T y = b ? b[off[2]] : b_scalar;
    out[off[0]] = apply(f, x, y);
  }
}

template <typename E>
__global__ void copy_kernel(const StridedLoop loop, E* __restrict__ out, const E* __restrict__ in) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < loop.numel;
       i += step) {
    int64_t off[2];
    offsets_of<2>(loop, i, off);
    out[off[0]] = in[off[1]];
  }
}

// Enough blocks to cover the elements, capped: the grid-stride loop does the rest.
unsigned blocks_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
}

}  // namespace

template <typename T>
void unary(UnaryOp f, const StridedLoop& loop, T* out, const T* in, cudaStream_t stream,
           const char* op) {
  if (loop.numel == 0) return;
  unary_kernel<T><<<blocks_for(loop.numel), kThreads, 0, stream>>>(f, loop, out, in);
  check_launch(op);
}

template <typename T>
void binary(BinaryOp f, const StridedLoop& loop, T* out, const T* a, T a_scalar, const T* b,
            T b_scalar, cudaStream_t stream, const char* op) {
  if (loop.numel == 0) return;
  binary_kernel<T><<<blocks_for(loop.numel), kThreads, 0, stream>>>(f, loop, out, a, a_scalar, b,
                                                                   b_scalar);
  check_launch(op);
}

void copy_strided(const StridedLoop& loop, void* out, const void* in, int elem_bytes,
                  cudaStream_t stream, const char* op) {
  if (loop.numel == 0) return;
  if (elem_bytes == 4)
    copy_kernel<uint32_t><<<blocks_for(loop.numel), kThreads, 0, stream>>>(
        loop, static_cast<uint32_t*>(out), static_cast<const uint32_t*>(in));
  else
    copy_kernel<uint64_t><<<blocks_for(loop.numel), kThreads, 0, stream>>>(
        loop, static_cast<uint64_t*>(out), static_cast<const uint64_t*>(in));
  check_launch(op);
}

template void unary<float>(UnaryOp, const StridedLoop&, float*, const float*, cudaStream_t, const char*);
template void unary<double>(UnaryOp, const StridedLoop&, double*, const double*, cudaStream_t, const char*);
template void binary<float>(BinaryOp, const StridedLoop&, float*, const float*, float, const float*,
                            float, cudaStream_t, const char*);
template void binary<double>(BinaryOp, const StridedLoop&, double*, const double*, double,
                             const double*, double, cudaStream_t, const char*);

}  // namespace dlkern::cuda
