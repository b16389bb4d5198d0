// Elementwise kernels: one grid-stride kernel template, map_kernel<N>, walks a strided
// loop of N operands and calls a small functor per element; each family below is one
// functor. The op inside a family is a switch on a kernel argument (uniform across the
// grid, so it costs no divergence and keeps one instantiation per dtype rather than
// one per op). Pointers carry no __restrict__: the output may alias an input in place.
#include "cuda/elementwise.h"

#include <cuda_runtime.h>

#include <type_traits>

#include "cuda/check.h"
#include "cuda/strided_loop.cuh"
#include "cuda/launch.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kThreads = 256;

template <int N, typename F>
__global__ void __launch_bounds__(kThreads) map_kernel(const StridedLoop loop, const F fn) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < loop.numel;
       i += step) {
    int64_t off[N];
    if (loop.ndim == 1) {
      // The common (coalesced, contiguous or simply strided) case: no divisions.
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] = i * loop.strides[k][0];
    } else {
      offsets_of<N>(loop, i, off);
    }
    fn(off);
  }
}

// Enough blocks to cover the elements, capped: the grid-stride loop does the rest.

template <int N, typename F>
void launch(const StridedLoop& loop, const F& fn, cudaStream_t stream, const char* op) {
  if (loop.numel == 0) return;
  map_kernel<N, F><<<grid_stride_blocks(loop.numel, kThreads), kThreads, 0, stream>>>(loop, fn);
  check_launch(op);
}

// An input element, or the scalar standing for the whole input.
template <typename T>
__device__ __forceinline__ T load(const T* p, T scalar, int64_t off) {
  return p ? p[off] : scalar;
}

// bool is stored as a byte: any nonzero byte is true, and results are written 0 or 1.
template <typename T>
__device__ __forceinline__ auto value_of(T v) {
  if constexpr (std::is_same_v<T, uint8_t>) return v != 0;
  else return v;
}

template <typename T>
__device__ __forceinline__ T apply(UnaryOp f, T x) {
  switch (f) {
    case UnaryOp::neg: return -x;
    case UnaryOp::exp: return exp(x);
    case UnaryOp::log: return log(x);
    case UnaryOp::sqrt: return sqrt(x);
    case UnaryOp::abs: return fabs(x);
    case UnaryOp::tanh: return tanh(x);
    // From e = exp(-|x|), as the CPU path: no overflow, and a large negative x keeps its
    // small (down to subnormal) value instead of rounding to 0 as 0.5 tanh(x / 2) + 0.5 does.
    case UnaryOp::sigmoid: {
      const T e = exp(-fabs(x));
      const T pos = T(1) / (T(1) + e);
      return x < T(0) ? e * pos : pos;
    }
    // NaN stays NaN (x > 0 is false for NaN, so test the other way).
    case UnaryOp::relu: return x < T(0) ? T(0) : x;
    case UnaryOp::sin: return sin(x);
    case UnaryOp::cos: return cos(x);
    // NaN comes back as itself and both zeros as +0, as in NumPy (np.sign(-0.0) is 0.0;
    // returning x gave -0.0, so 1 / sign(x) differed in sign from the CPU op).
    case UnaryOp::sign: return x > T(0) ? T(1) : x < T(0) ? T(-1) : x == T(0) ? T(0) : x;
    case UnaryOp::log1p: return log1p(x);
    case UnaryOp::expm1: return expm1(x);
    case UnaryOp::erf: return erf(x);
    case UnaryOp::square: return x * x;
    case UnaryOp::reciprocal: return T(1) / x;
  }
  return x;
}

template <typename T>
__device__ __forceinline__ T apply(BinaryOp f, T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    // Two's-complement wrap-around as NumPy, without signed-overflow UB.
    using U = std::make_unsigned_t<T>;
    switch (f) {
      case BinaryOp::add: return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
      case BinaryOp::sub: return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
      case BinaryOp::mul: return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
      case BinaryOp::maximum: return a > b ? a : b;
      case BinaryOp::minimum: return a < b ? a : b;
      default: return T(0);  // refused for integers by the bindings
    }
  } else {
    switch (f) {
      case BinaryOp::add: return a + b;
      case BinaryOp::sub: return a - b;
      case BinaryOp::mul: return a * b;
      case BinaryOp::div: return a / b;
      // NumPy's maximum/minimum propagate NaN from either side.
      case BinaryOp::maximum: return (a != a || a > b) ? a : b;
      case BinaryOp::minimum: return (a != a || a < b) ? a : b;
      case BinaryOp::pow: return pow(a, b);
      case BinaryOp::logaddexp: {
        // log(e^a + e^b) = max + log1p(e^-|a-b|): never overflows. Equal arguments
        // (including two equal infinities, where a - b is NaN) take the short way.
        if (a == b) return a + T(0.693147180559945309417232121458176568);
        const T d = a - b;
        if (d > T(0)) return a + log1p(exp(-d));
        if (d <= T(0)) return b + log1p(exp(d));
        return d;  // NaN
      }
    }
    return a;
  }
}

template <typename T>
__device__ __forceinline__ bool apply(CompareOp f, T a, T b) {
  switch (f) {
    case CompareOp::greater: return a > b;
    case CompareOp::greater_equal: return a >= b;
    case CompareOp::less: return a < b;
    case CompareOp::less_equal: return a <= b;
    case CompareOp::equal: return a == b;
    case CompareOp::not_equal: return a != b;
  }
  return false;
}

template <typename T>
struct UnaryFn {
  UnaryOp f;
  T* out;
  const T* in;
  __device__ void operator()(const int64_t (&off)[2]) const { out[off[0]] = apply(f, in[off[1]]); }
};

template <typename T>
struct BinaryFn {
  BinaryOp f;
  T* out;
  const T *a, *b;
  T a_scalar, b_scalar;
  __device__ void operator()(const int64_t (&off)[3]) const {
    out[off[0]] = apply(f, load(a, a_scalar, off[1]), load(b, b_scalar, off[2]));
  }
};

template <typename T>
struct CompareFn {
  CompareOp f;
  uint8_t* out;
  const T *a, *b;
  T a_scalar, b_scalar;
  __device__ void operator()(const int64_t (&off)[3]) const {
    out[off[0]] = apply(f, value_of(load(a, a_scalar, off[1])), value_of(load(b, b_scalar, off[2])));
  }
};

struct LogicalFn {
  LogicalOp f;
  uint8_t* out;
  const uint8_t *a, *b;
  uint8_t a_scalar, b_scalar;
  // logical_not: operands (out, a).
  __device__ void operator()(const int64_t (&off)[2]) const { out[off[0]] = load(a, a_scalar, off[1]) == 0; }
  __device__ void operator()(const int64_t (&off)[3]) const {
    const bool x = load(a, a_scalar, off[1]) != 0, y = load(b, b_scalar, off[2]) != 0;
    out[off[0]] = f == LogicalOp::logical_and ? (x && y) : (x || y);
  }
};

template <typename T>
struct WhereFn {
  T* out;
  const uint8_t* cond;
  const T *a, *b;
  T a_scalar, b_scalar;
  __device__ void operator()(const int64_t (&off)[4]) const {
    const T v = cond[off[1]] ? load(a, a_scalar, off[2]) : load(b, b_scalar, off[3]);
    out[off[0]] = static_cast<T>(value_of(v));
  }
};

template <typename T>
struct ClipFn {
  T* out;
  const T* in;
  bool has_lo, has_hi;
  T lo, hi;
  __device__ void operator()(const int64_t (&off)[2]) const {
    T y = in[off[1]];
    // min(max(x, lo), hi) as numpy.clip (so hi wins when lo > hi), with NumPy's NaN
    // propagation (a NaN bound gives NaN).
    if (has_lo) y = apply(BinaryOp::maximum, y, lo);
    if (has_hi) y = apply(BinaryOp::minimum, y, hi);
    out[off[0]] = y;
  }
};

template <typename T>
struct FillFn {
  T* out;
  T value;
  __device__ void operator()(const int64_t (&off)[1]) const { out[off[0]] = value; }
};

template <typename T>
struct ArangeFn {
  T* out;
  double start_f, step_f;
  int64_t start_i, step_i;
  __device__ void operator()(const int64_t (&off)[1]) const {
    const int64_t i = off[0];  // the loop is the contiguous output itself: offset == index
    if constexpr (std::is_integral_v<T>)
      out[i] = static_cast<T>(static_cast<uint64_t>(start_i) + static_cast<uint64_t>(i) * static_cast<uint64_t>(step_i));
    else
      out[i] = static_cast<T>(start_f + static_cast<double>(i) * step_f);
  }
};

template <typename O, typename I>
__device__ __forceinline__ O convert_one(I v) {
  if constexpr (std::is_same_v<O, uint8_t>) return v != I(0);
  else if constexpr (std::is_same_v<I, uint8_t>) return v != 0 ? O(1) : O(0);
  else return static_cast<O>(v);  // float -> int64 truncates toward zero
}

template <typename O, typename I>
struct ConvertFn {
  O* out;
  const I* in;
  __device__ void operator()(const int64_t (&off)[2]) const { out[off[0]] = convert_one<O>(in[off[1]]); }
};

template <typename E>
struct CopyFn {
  E* out;
  const E* in;
  __device__ void operator()(const int64_t (&off)[2]) const { out[off[0]] = in[off[1]]; }
};

// Calls f(T{}) with T the element type of a dtype.
template <typename F>
void dispatch_any(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i64: return f(int64_t{});
    case DType::b8: return f(uint8_t{});
  }
}

}  // namespace

template <typename T>
void unary(UnaryOp f, const StridedLoop& loop, T* out, const T* in, cudaStream_t stream, const char* op) {
  launch<2>(loop, UnaryFn<T>{f, out, in}, stream, op);
}

template <typename T>
void binary(BinaryOp f, const StridedLoop& loop, T* out, const T* a, T a_scalar, const T* b, T b_scalar,
            cudaStream_t stream, const char* op) {
  launch<3>(loop, BinaryFn<T>{f, out, a, b, a_scalar, b_scalar}, stream, op);
}

template <typename T>
void compare(CompareOp f, const StridedLoop& loop, uint8_t* out, const T* a, T a_scalar, const T* b,
             T b_scalar, cudaStream_t stream, const char* op) {
  launch<3>(loop, CompareFn<T>{f, out, a, b, a_scalar, b_scalar}, stream, op);
}

void logical(LogicalOp f, const StridedLoop& loop, uint8_t* out, const uint8_t* a, uint8_t a_scalar,
             const uint8_t* b, uint8_t b_scalar, cudaStream_t stream, const char* op) {
  const LogicalFn fn{f, out, a, b, a_scalar, b_scalar};
  if (f == LogicalOp::logical_not)
    launch<2>(loop, fn, stream, op);
  else
    launch<3>(loop, fn, stream, op);
}

template <typename T>
void where(const StridedLoop& loop, T* out, const uint8_t* cond, const T* a, T a_scalar, const T* b,
           T b_scalar, cudaStream_t stream, const char* op) {
  launch<4>(loop, WhereFn<T>{out, cond, a, b, a_scalar, b_scalar}, stream, op);
}

template <typename T>
void clip(const StridedLoop& loop, T* out, const T* in, bool has_lo, T lo, bool has_hi, T hi,
          cudaStream_t stream, const char* op) {
  launch<2>(loop, ClipFn<T>{out, in, has_lo, has_hi, lo, hi}, stream, op);
}

template <typename T>
void fill(const StridedLoop& loop, T* out, T value, cudaStream_t stream, const char* op) {
  launch<1>(loop, FillFn<T>{out, value}, stream, op);
}

void arange(int64_t n, void* out, DType dtype, double start_f, double step_f, int64_t start_i, int64_t step_i,
            cudaStream_t stream, const char* op) {
  const StridedLoop loop = make_loop({n}, {{1}});
  dispatch_any(dtype, [&](auto zero) {
    using T = decltype(zero);
    if constexpr (!std::is_same_v<T, uint8_t>)
      launch<1>(loop, ArangeFn<T>{static_cast<T*>(out), start_f, step_f, start_i, step_i}, stream, op);
  });
}

void convert(const StridedLoop& loop, void* out, DType out_dtype, const void* in, DType in_dtype,
             cudaStream_t stream, const char* op) {
  dispatch_any(out_dtype, [&](auto out_zero) {
    dispatch_any(in_dtype, [&](auto in_zero) {
      using O = decltype(out_zero);
      using I = decltype(in_zero);
      launch<2>(loop, ConvertFn<O, I>{static_cast<O*>(out), static_cast<const I*>(in)}, stream, op);
    });
  });
}

void copy_strided(const StridedLoop& loop, void* out, const void* in, int elem_bytes, cudaStream_t stream,
                  const char* op) {
  auto run = [&](auto zero) {
    using E = decltype(zero);
    launch<2>(loop, CopyFn<E>{static_cast<E*>(out), static_cast<const E*>(in)}, stream, op);
  };
  if (elem_bytes == 1)
    run(uint8_t{});
  else if (elem_bytes == 4)
    run(uint32_t{});
  else
    run(uint64_t{});
}

template void unary<float>(UnaryOp, const StridedLoop&, float*, const float*, cudaStream_t, const char*);
template void unary<double>(UnaryOp, const StridedLoop&, double*, const double*, cudaStream_t, const char*);

#define DLKERN_BINARY(T) \
  template void binary<T>(BinaryOp, const StridedLoop&, T*, const T*, T, const T*, T, cudaStream_t, const char*);
DLKERN_BINARY(float)
DLKERN_BINARY(double)
DLKERN_BINARY(int64_t)
#undef DLKERN_BINARY

#define DLKERN_ANY_DTYPE(T)                                                                                  \
  template void compare<T>(CompareOp, const StridedLoop&, uint8_t*, const T*, T, const T*, T, cudaStream_t, \
                           const char*);                                                                     \
  template void where<T>(const StridedLoop&, T*, const uint8_t*, const T*, T, const T*, T, cudaStream_t,    \
                         const char*);                                                                       \
  template void fill<T>(const StridedLoop&, T*, T, cudaStream_t, const char*);
DLKERN_ANY_DTYPE(float)
DLKERN_ANY_DTYPE(double)
DLKERN_ANY_DTYPE(int64_t)
DLKERN_ANY_DTYPE(uint8_t)
#undef DLKERN_ANY_DTYPE

template void clip<float>(const StridedLoop&, float*, const float*, bool, float, bool, float, cudaStream_t,
                          const char*);
template void clip<double>(const StridedLoop&, double*, const double*, bool, double, bool, double,
                           cudaStream_t, const char*);
template void clip<int64_t>(const StridedLoop&, int64_t*, const int64_t*, bool, int64_t, bool, int64_t,
                            cudaStream_t, const char*);

}  // namespace dlkern::cuda
