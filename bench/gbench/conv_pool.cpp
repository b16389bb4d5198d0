// Convolution and pooling: conv2d forward/backward, max pool (forward with indices,
// backward), average pool and adaptive average pool.
#include "cpu/conv.h"
#include "cpu/pool.h"
#include "gbench_util.h"

namespace {

using dlkern::cpu::Conv2dShape;

// Args: n, c, size (h = w), o, kernel, stride, pad, groups.
Conv2dShape conv_shape(const benchmark::State& state) {
  Conv2dShape s;
  s.n = state.range(0), s.c = state.range(1), s.h = s.w = state.range(2), s.o = state.range(3);
  s.kh = s.kw = state.range(4), s.stride_h = s.stride_w = state.range(5), s.pad_h = s.pad_w = state.range(6);
  s.groups = state.range(7);
  s.out_h = (s.h + 2 * s.pad_h - s.kh) / s.stride_h + 1;
  s.out_w = (s.w + 2 * s.pad_w - s.kw) / s.stride_w + 1;
  return s;
}

// y = conv(x, w) + bias by the definition (cross-correlation, zero padding), in double.
std::vector<double> ref_conv2d(const Conv2dShape& s, const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>* bias) {
  const int64_t cpg = s.c / s.groups, opg = s.o / s.groups;
  std::vector<double> y(size_t(s.n * s.o * s.out_h * s.out_w));
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t o = 0; o < s.o; ++o)
      for (int64_t i = 0; i < s.out_h; ++i)
        for (int64_t j = 0; j < s.out_w; ++j) {
          double acc = bias ? (*bias)[o] : 0.0;
          for (int64_t c = 0; c < cpg; ++c)
            for (int64_t p = 0; p < s.kh; ++p)
              for (int64_t q = 0; q < s.kw; ++q) {
                const int64_t r = i * s.stride_h - s.pad_h + p, col = j * s.stride_w - s.pad_w + q;
                if (r < 0 || r >= s.h || col < 0 || col >= s.w) continue;
                acc += x[((n * s.c + (o / opg) * cpg + c) * s.h + r) * s.w + col] * w[((o * cpg + c) * s.kh + p) * s.kw + q];
              }
          y[((n * s.o + o) * s.out_h + i) * s.out_w + j] = acc;
        }
  return y;
}

void BM_conv2d_forward(benchmark::State& state) {
  const Conv2dShape s = conv_shape(state);
  auto x = gbench::uniform<float>(s.n * s.c * s.h * s.w, 11);
  auto w = gbench::uniform<float>(s.o * (s.c / s.groups) * s.kh * s.kw, 12);
  auto b = gbench::uniform<float>(s.o, 13);
  std::vector<float> y(size_t(s.n * s.o * s.out_h * s.out_w));
  auto run = [&] { dlkern::cpu::conv2d_forward(s, x.data(), w.data(), b.data(), y.data()); };
  run();
  const auto bd = gbench::widen(b);
  if (!gbench::check_close(state, "conv2d_forward", y.data(), ref_conv2d(s, gbench::widen(x), gbench::widen(w), &bd),
                           1e-5))
    return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_flops(state, 2.0 * double(y.size()) * double(s.c / s.groups * s.kh * s.kw));
}

// The backward is the adjoint of the forward: for any u, <dy, conv(u, w)> = <dx, u> and
// <dy, conv(x, u)> = <dweight, u>, with conv the plain loop above; dbias sums dy.
void BM_conv2d_backward(benchmark::State& state) {
  const Conv2dShape s = conv_shape(state);
  auto x = gbench::uniform<float>(s.n * s.c * s.h * s.w, 14);
  auto w = gbench::uniform<float>(s.o * (s.c / s.groups) * s.kh * s.kw, 15);
  auto dy = gbench::uniform<float>(s.n * s.o * s.out_h * s.out_w, 16);
  std::vector<float> dx(x.size()), dw(w.size()), db(size_t(s.o));
  auto run = [&] { dlkern::cpu::conv2d_backward(s, dy.data(), x.data(), w.data(), dx.data(), dw.data(), db.data()); };
  run();
  const auto xd = gbench::widen(x), wd = gbench::widen(w), dyd = gbench::widen(dy);
  const auto ux = gbench::uniform<double>(int64_t(x.size()), 17), uw = gbench::uniform<double>(int64_t(w.size()), 18);
  const auto want_x = gbench::dot(ref_conv2d(s, ux, wd, nullptr), dyd), got_x = gbench::dot(dx, ux);
  const auto want_w = gbench::dot(ref_conv2d(s, xd, uw, nullptr), dyd), got_w = gbench::dot(dw, uw);
  std::vector<double> want_b(size_t(s.o), 0.0);
  for (size_t i = 0; i < dy.size(); ++i) want_b[(int64_t(i) / (s.out_h * s.out_w)) % s.o] += dyd[i];
  if (!gbench::check_scalar(state, "conv2d_backward dx", got_x.first, want_x.first, 1e-5, want_x.second) ||
      !gbench::check_scalar(state, "conv2d_backward dweight", got_w.first, want_w.first, 1e-5, want_w.second) ||
      !gbench::check_close(state, "conv2d_backward dbias", db.data(), want_b, 1e-4))
    return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_flops(state, 4.0 * double(dy.size()) * double(s.c / s.groups * s.kh * s.kw));
}

#define DLKERN_CONV_SHAPES(b)                                                                                   \
  b->ArgNames({"n", "c", "size", "o", "k", "stride", "pad", "groups"})                                         \
      ->Args({8, 32, 32, 32, 3, 1, 1, 1})      /* a ResNet-style 3x3 */                                        \
      ->Args({8, 64, 16, 64, 1, 1, 0, 1})      /* 1x1: the input is the GEMM operand */                        \
      ->Args({8, 64, 32, 64, 3, 2, 1, 64})     /* depthwise, stride 2 */                                       \
      ->Args({8, 1, 28, 6, 5, 1, 0, 1})        /* LeNet's first layer: one input channel (im2col) */           \
      ->UseRealTime()
DLKERN_CONV_SHAPES(BENCHMARK(BM_conv2d_forward)->Name("conv2d_forward/f32"));
DLKERN_CONV_SHAPES(BENCHMARK(BM_conv2d_backward)->Name("conv2d_backward/f32"));

// Args: planes (N*C), size (square), kernel, stride; no padding or dilation.
dlkern::cpu::Pool2dGeometry pool_geometry(const benchmark::State& state, const char* op) {
  const int64_t k[2] = {state.range(2), state.range(2)}, st[2] = {state.range(3), state.range(3)};
  const int64_t pad[2] = {0, 0}, dil[2] = {1, 1};
  return dlkern::cpu::make_pool2d_geometry(op, state.range(0), state.range(1), state.range(1), k, st, pad, dil, false);
}

// Window (oh, ow)'s input positions, visited in scan order.
template <typename F>
void for_window(const dlkern::cpu::Pool2dGeometry& g, int64_t oh, int64_t ow, F f) {
  for (int64_t p = 0; p < g.kernel_h; ++p)
    for (int64_t q = 0; q < g.kernel_w; ++q) f((oh * g.stride_h + p) * g.in_w + ow * g.stride_w + q);
}

// Forward (kind 0: max with indices, 1: average), or max's backward (kind 2).
void BM_pool2d(benchmark::State& state, int kind) {
  const auto g = pool_geometry(state, "pool2d");
  const int64_t in = g.in_h * g.in_w, out = g.out_h * g.out_w;
  auto x = gbench::uniform<float>(g.planes * in, 21);
  auto dy = gbench::uniform<float>(g.planes * out, 22);
  std::vector<float> y(size_t(g.planes * out)), dx(x.size());
  std::vector<int64_t> idx(y.size());
  dlkern::cpu::max_pool2d_forward(x.data(), y.data(), idx.data(), g);
  std::vector<double> want_y(y.size()), want_dx(x.size(), 0.0);
  for (int64_t pl = 0; pl < g.planes; ++pl)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t o = pl * out + oh * g.out_w + ow;
        double best = -INFINITY, sum = 0;
        for_window(g, oh, ow, [&](int64_t i) {
          best = std::max(best, double(x[pl * in + i]));
          sum += x[pl * in + i];
        });
        want_y[o] = kind == 1 ? sum / double(g.kernel_h * g.kernel_w) : best;
        if (kind == 0 && x[pl * in + idx[o]] != y[o]) {
          gbench::fail(state, "max_pool2d_forward: an index does not point at the maximum");
          return;
        }
        want_dx[pl * in + idx[o]] += dy[o];
      }
  auto run = [&] {
    if (kind == 0) dlkern::cpu::max_pool2d_forward(x.data(), y.data(), idx.data(), g);
    if (kind == 1) dlkern::cpu::avg_pool2d_forward(x.data(), y.data(), g, false, 0);
    if (kind == 2) dlkern::cpu::max_pool2d_backward(dy.data(), idx.data(), dx.data(), g);
  };
  run();
  const bool ok = kind == 2 ? gbench::check_close(state, "max_pool2d_backward", dx.data(), want_dx, 1e-6)
                            : gbench::check_close(state, kind ? "avg_pool2d_forward" : "max_pool2d_forward",
                                                  y.data(), want_y, 1e-6);
  if (!ok) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(x.size() + y.size()));
}
#define DLKERN_POOL_SHAPES(b) \
  b->ArgNames({"planes", "size", "k", "stride"})->Args({512, 32, 2, 2})->Args({256, 28, 3, 1})->UseRealTime()
DLKERN_POOL_SHAPES(BENCHMARK_CAPTURE(BM_pool2d, max, 0)->Name("max_pool2d_forward/f32"));
DLKERN_POOL_SHAPES(BENCHMARK_CAPTURE(BM_pool2d, avg, 1)->Name("avg_pool2d_forward/f32"));
DLKERN_POOL_SHAPES(BENCHMARK_CAPTURE(BM_pool2d, max_backward, 2)->Name("max_pool2d_backward/f32"));

// Args: planes, in size, out size (square). Output row oh averages input rows
// [floor(oh*in/out), ceil((oh+1)*in/out)), as PyTorch.
void BM_adaptive_avg_pool2d(benchmark::State& state) {
  dlkern::cpu::Pool2dGeometry g;
  g.planes = state.range(0), g.in_h = g.in_w = state.range(1), g.out_h = g.out_w = state.range(2);
  auto x = gbench::uniform<float>(g.planes * g.in_h * g.in_w, 23);
  std::vector<float> y(size_t(g.planes * g.out_h * g.out_w));
  auto run = [&] { dlkern::cpu::adaptive_avg_pool2d_forward(x.data(), y.data(), g); };
  run();
  auto lo = [](int64_t o, int64_t in, int64_t out) { return o * in / out; };
  auto hi = [](int64_t o, int64_t in, int64_t out) { return ((o + 1) * in + out - 1) / out; };
  std::vector<double> want(y.size());
  for (int64_t pl = 0; pl < g.planes; ++pl)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        double sum = 0;
        int64_t count = 0;
        for (int64_t r = lo(oh, g.in_h, g.out_h); r < hi(oh, g.in_h, g.out_h); ++r)
          for (int64_t c = lo(ow, g.in_w, g.out_w); c < hi(ow, g.in_w, g.out_w); ++c, ++count)
            sum += x[(pl * g.in_h + r) * g.in_w + c];
        want[(pl * g.out_h + oh) * g.out_w + ow] = sum / double(count);
      }
  if (!gbench::check_close(state, "adaptive_avg_pool2d_forward", y.data(), want, 1e-6)) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(x.size() + y.size()));
}
BENCHMARK(BM_adaptive_avg_pool2d)->Name("adaptive_avg_pool2d_forward/f32")->ArgNames({"planes", "in", "out"})
    ->Args({512, 7, 1})->Args({256, 30, 7})->UseRealTime();

}  // namespace
