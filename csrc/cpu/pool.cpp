// Pooling front end: PyTorch's output-size rule and argument checks, thread-count
// choice, run-time choice of ISA path, and the two backward kernels that need no SIMD
// (max: a scatter through the saved indices; adaptive: spreading each gradient).
#include "cpu/pool.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/cpu_features.h"
#include "common/parallel.h"
#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A thread gets at least this many element visits: about 20-40 us of work.
constexpr int64_t kMinWorkPerThread = 1 << 17;

int threads_for(const Pool2dGeometry& g, double work_per_plane) {
  const double work = std::min(double(g.planes) * work_per_plane, 9.0e18);
  return dlkern::threads_for(static_cast<int64_t>(work), kMinWorkPerThread, g.planes);
}

double window_work(const Pool2dGeometry& g) {
  return double(g.in_h) * double(g.in_w) +
         double(g.out_h) * double(g.out_w) * double(g.kernel_h) * double(g.kernel_w);
}

// Dynamic chunks of about 1/8 of a thread's share (see for_each_plane in pool_driver.h).
std::string pair_str(const int64_t v[2]) {
  return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")";
}

[[noreturn]] void invalid(const std::string& what) { throw std::invalid_argument(what); }

}  // namespace

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                         int64_t dilation, bool ceil_mode) {
  const int64_t span = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  // Floor division (span may be negative when the kernel is larger than the input).
  int64_t out = (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

Pool2dGeometry make_pool2d_geometry(const char* op, int64_t planes, int64_t in_h, int64_t in_w,
                                    const int64_t kernel[2], const int64_t stride[2],
                                    const int64_t pad[2], const int64_t dilation[2],
                                    bool ceil_mode) {
  const std::string name(op);
  const std::pair<const char*, const int64_t*> args[] = {
      {"kernel_size", kernel}, {"stride", stride}, {"padding", pad}, {"dilation", dilation}};
  for (const auto& [arg, v] : args)
    if (v[0] > kMaxPoolArg || v[1] > kMaxPoolArg)
      invalid(name + ": " + arg + " " + pair_str(v) + " is too large (limit 2^31)");
  if (kernel[0] < 1 || kernel[1] < 1)
    invalid(name + ": kernel_size must be positive, got " + pair_str(kernel));
  if (stride[0] < 1 || stride[1] < 1)
    invalid(name + ": stride must be positive, got " + pair_str(stride));
  if (dilation[0] < 1 || dilation[1] < 1)
    invalid(name + ": dilation must be positive, got " + pair_str(dilation));
  if (pad[0] < 0 || pad[1] < 0) invalid(name + ": padding must be non-negative, got " + pair_str(pad));
  for (int a = 0; a < 2; ++a) {
    const int64_t effective = (kernel[a] - 1) * dilation[a] + 1;
    if (pad[a] > effective / 2)
      invalid(name + ": padding " + pair_str(pad) + " is more than half the effective kernel size " +
              "(kernel_size " + pair_str(kernel) + ", dilation " + pair_str(dilation) + ")");
  }
  Pool2dGeometry g;
  g.planes = planes, g.in_h = in_h, g.in_w = in_w;
  g.kernel_h = kernel[0], g.kernel_w = kernel[1];
  g.stride_h = stride[0], g.stride_w = stride[1];
  g.pad_h = pad[0], g.pad_w = pad[1];
  g.dilation_h = dilation[0], g.dilation_w = dilation[1];
  g.out_h = pool_output_size(in_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h, ceil_mode);
  g.out_w = pool_output_size(in_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w, ceil_mode);
  if (g.out_h < 1 || g.out_w < 1)
    invalid(name + ": input plane (" + std::to_string(in_h) + ", " + std::to_string(in_w) +
            ") gives output size (" + std::to_string(g.out_h) + ", " + std::to_string(g.out_w) +
            "), which is too small (kernel_size " + pair_str(kernel) + ", stride " + pair_str(stride) +
            ", padding " + pair_str(pad) + ", dilation " + pair_str(dilation) + ")");
  return g;
}

// The vector paths cover whole rows of outputs L lanes wide: output rows narrower
// than an AVX-512 vector (14 floats in LeNet's first pool) would all fall to the
// scalar border code, so they take the AVX2 path, half as wide, instead.
template <typename T>
const TypedKernels<T>& pool_kernels(const Pool2dGeometry& g) {
  const Isa isa = active_isa();
  return isa_kernels(isa == Isa::avx512 && g.out_w < int64_t(64 / sizeof(T)) ? Isa::avx2 : isa).typed<T>();
}

template <typename T>
void max_pool2d_forward(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g) {
  if (g.planes == 0 || g.out_h * g.out_w == 0) return;
  const int nt = threads_for(g, window_work(g));
  pool_kernels<T>(g).max_pool2d_fwd(x, y, indices, g, nt);
}

template <typename T>
void max_pool2d_backward(const T* dy, const int64_t* indices, T* dx, const Pool2dGeometry& g) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  if (g.planes == 0 || in_plane == 0) return;
  const int nt = threads_for(g, double(in_plane) + 2.0 * double(out_plane));
  int64_t bad_index = 0;
  bool bad = false;
  parallel_for(g.planes, nt, [&](int64_t p) {
    T* dxp = dx + p * in_plane;
    const T* dyp = dy + p * out_plane;
    const int64_t* ip = indices + p * out_plane;
    for (int64_t i = 0; i < in_plane; ++i) dxp[i] = T(0);
    for (int64_t i = 0; i < out_plane; ++i) {
      const int64_t at = ip[i];
      if (static_cast<uint64_t>(at) < static_cast<uint64_t>(in_plane)) {
        dxp[at] += dyp[i];
      } else if (at != -1) {
#pragma omp critical(dlkern_pool_bad_index)
        {
          bad = true;
          bad_index = at;
        }
      }
    }
  });
  if (bad)
    invalid("max_pool2d_backward: indices holds " + std::to_string(bad_index) +
            ", outside [0, " + std::to_string(in_plane) + ") for input planes of (" +
            std::to_string(g.in_h) + ", " + std::to_string(g.in_w) + ")");
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad,
                        int64_t divisor_override) {
  if (g.planes == 0 || g.out_h * g.out_w == 0) return;
  const int nt = threads_for(g, window_work(g));
  pool_kernels<T>(g).avg_pool2d_fwd(x, y, g, count_include_pad, divisor_override, nt);
}

template <typename T>
void avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g, bool count_include_pad,
                         int64_t divisor_override) {
  if (g.planes == 0 || g.in_h * g.in_w == 0) return;
  const int nt = threads_for(g, window_work(g));
  pool_kernels<T>(g).avg_pool2d_bwd(dy, dx, g, count_include_pad, divisor_override, nt);
}

template <typename T>
void adaptive_avg_pool2d_forward(const T* x, T* y, const Pool2dGeometry& g) {
  if (g.planes == 0 || g.out_h * g.out_w == 0) return;
  const int nt = threads_for(g, double(g.in_h) * double(g.in_w) + double(g.out_h) * double(g.out_w));
  pool_kernels<T>(g).adaptive_avg_pool2d_fwd(x, y, g, nt);
}

template <typename T>
void adaptive_avg_pool2d_backward(const T* dy, T* dx, const Pool2dGeometry& g) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  if (g.planes == 0 || in_plane == 0) return;
  const int nt = threads_for(g, 2.0 * double(in_plane) + double(out_plane));
  parallel_for(g.planes, nt, [&](int64_t p) {
    T* dxp = dx + p * in_plane;
    const T* dyp = dy + p * out_plane;
    if (out_plane == 1) {
      const T share = dyp[0] / static_cast<T>(in_plane);
      for (int64_t i = 0; i < in_plane; ++i) dxp[i] = share;
      return;
    }
    for (int64_t i = 0; i < in_plane; ++i) dxp[i] = T(0);
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const int64_t h0 = oh * g.in_h / g.out_h, h1 = ((oh + 1) * g.in_h + g.out_h - 1) / g.out_h;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t w0 = ow * g.in_w / g.out_w, w1 = ((ow + 1) * g.in_w + g.out_w - 1) / g.out_w;
        const T share = dyp[oh * g.out_w + ow] / static_cast<T>((h1 - h0) * (w1 - w0));
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) dxp[ih * g.in_w + iw] += share;
      }
    }
  });
}

#define DLKERN_INSTANTIATE_POOL(T)                                                                \
  template void max_pool2d_forward<T>(const T*, T*, int64_t*, const Pool2dGeometry&);             \
  template void max_pool2d_backward<T>(const T*, const int64_t*, T*, const Pool2dGeometry&);      \
  template void avg_pool2d_forward<T>(const T*, T*, const Pool2dGeometry&, bool, int64_t);        \
  template void avg_pool2d_backward<T>(const T*, T*, const Pool2dGeometry&, bool, int64_t);       \
  template void adaptive_avg_pool2d_forward<T>(const T*, T*, const Pool2dGeometry&);              \
  template void adaptive_avg_pool2d_backward<T>(const T*, T*, const Pool2dGeometry&);
DLKERN_INSTANTIATE_POOL(float)
DLKERN_INSTANTIATE_POOL(double)
#undef DLKERN_INSTANTIATE_POOL

}  // namespace dlkern::cpu
