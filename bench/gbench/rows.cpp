// Row-wise and elementwise kernels: softmax / log_softmax forward and backward, layer /
// RMS / group / batch norm, cross-entropy forward and backward, the activations.
#include "cpu/activation.h"
#include "cpu/cross_entropy.h"
#include "cpu/norm.h"
#include "cpu/softmax.h"
#include "gbench_util.h"

namespace {

// Args: rows, dim; log (0/1).
void BM_softmax(benchmark::State& state, bool backward) {
  const int64_t rows = state.range(0), dim = state.range(1);
  const bool log = state.range(2) != 0;
  auto x = gbench::uniform<float>(rows * dim, 31, -5, 5), dy = gbench::uniform<float>(rows * dim, 32);
  std::vector<float> y(x.size()), dx(x.size());
  dlkern::cpu::softmax_forward(x.data(), y.data(), rows, dim, 1, log);
  std::vector<double> want(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * dim;
    double mx = -INFINITY, sum = 0, dot = 0, dsum = 0;
    for (int64_t j = 0; j < dim; ++j) mx = std::max(mx, double(xr[j]));
    for (int64_t j = 0; j < dim; ++j) sum += std::exp(xr[j] - mx);
    for (int64_t j = 0; j < dim; ++j) {
      const double p = std::exp(xr[j] - mx) / sum;
      dot += dy[r * dim + j] * p;
      dsum += dy[r * dim + j];
    }
    for (int64_t j = 0; j < dim; ++j) {
      const double p = std::exp(xr[j] - mx) / sum, g = dy[r * dim + j];
      // softmax: dx = p (dy - sum(dy p)); log_softmax: dx = dy - p sum(dy).
      want[r * dim + j] = backward ? (log ? g - p * dsum : p * (g - dot)) : (log ? std::log(p) : p);
    }
  }
  auto run = [&] {
    if (backward)
      dlkern::cpu::softmax_backward(dy.data(), y.data(), dx.data(), rows, dim, 1, log);
    else
      dlkern::cpu::softmax_forward(x.data(), y.data(), rows, dim, 1, log);
  };
  run();
  if (!gbench::check_close(state, backward ? "softmax_backward" : "softmax_forward", backward ? dx.data() : y.data(),
                           want, 1e-5))
    return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(x.size()) * (backward ? 3 : 2));
}
#define DLKERN_SOFTMAX_SHAPES(b) \
  b->ArgNames({"rows", "dim", "log"})->Args({1024, 1024, 0})->Args({1024, 1024, 1})->Args({4096, 64, 0})->UseRealTime()
DLKERN_SOFTMAX_SHAPES(BENCHMARK_CAPTURE(BM_softmax, forward, false)->Name("softmax_forward/f32"));
DLKERN_SOFTMAX_SHAPES(BENCHMARK_CAPTURE(BM_softmax, backward, true)->Name("softmax_backward/f32"));

// Normalisation over `cols` contiguous values per (row or group): mean, then the biased
// variance, both in double.
void moments(const float* x, int64_t count, int64_t stride, double& mean, double& var) {
  mean = 0, var = 0;
  for (int64_t i = 0; i < count; ++i) mean += x[i * stride];
  mean /= double(count);
  for (int64_t i = 0; i < count; ++i) var += (x[i * stride] - mean) * (x[i * stride] - mean);
  var /= double(count);
}

// kind: 0 layer_norm forward, 1 layer_norm backward, 2 rms_norm forward (rows, cols);
// 3 group_norm forward (32 groups), 4 batch_norm forward in training, both on
// (n = rows, channels = cols / 64, inner = 64).
void BM_norm(benchmark::State& state, int kind) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const float eps = 1e-5f;
  auto x = gbench::uniform<float>(rows * cols, 41, -3, 5), dy = gbench::uniform<float>(rows * cols, 42);
  auto w = gbench::uniform<float>(cols, 43, 0.5, 1.5), b = gbench::uniform<float>(cols, 44);
  std::vector<float> y(x.size()), dx(x.size()), dw(static_cast<size_t>(cols)), db(static_cast<size_t>(cols));
  std::vector<float> mean(size_t(rows * cols)), rstd(size_t(rows * cols)), rm(size_t(cols), 0.f), rv(size_t(cols), 1.f);
  const int64_t inner = 64, channels = cols / inner, groups = 32;
  std::vector<double> want(x.size());
  if (kind <= 2) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * cols;
      double mu, var, ms = 0;
      moments(xr, cols, 1, mu, var);
      for (int64_t j = 0; j < cols; ++j) ms += double(xr[j]) * xr[j];
      const double rs = 1 / std::sqrt(var + eps), rms = 1 / std::sqrt(ms / double(cols) + eps);
      // Layer norm's input gradient: rstd (g - mean(g) - xhat mean(g xhat)), g = dy w.
      double mg = 0, mgx = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double g = double(dy[r * cols + j]) * w[j];
        mg += g / double(cols);
        mgx += g * (xr[j] - mu) * rs / double(cols);
      }
      for (int64_t j = 0; j < cols; ++j) {
        const double xhat = (xr[j] - mu) * rs, g = double(dy[r * cols + j]) * w[j];
        want[r * cols + j] = kind == 0   ? xhat * w[j] + b[j]
                             : kind == 1 ? rs * (g - mg - xhat * mgx)
                                         : xr[j] * rms * w[j];
      }
    }
  } else {
    // (n = rows, channels, inner): group_norm normalises each (n, group); batch_norm each
    // channel over (n, inner). Weight and bias per channel.
    const int64_t per_group = channels / groups * inner;
    std::vector<double> bn_mu(static_cast<size_t>(channels)), bn_var(static_cast<size_t>(channels));
    for (int64_t c = 0; c < channels; ++c) {
      // One channel's values across the batch.
      std::vector<float> vals;
      for (int64_t m = 0; m < rows; ++m)
        vals.insert(vals.end(), x.begin() + m * cols + c * inner, x.begin() + m * cols + (c + 1) * inner);
      moments(vals.data(), int64_t(vals.size()), 1, bn_mu[c], bn_var[c]);
    }
    for (int64_t n = 0; n < rows; ++n)
      for (int64_t gr = 0; gr < groups; ++gr) {
        double mu, var;
        moments(x.data() + n * cols + gr * per_group, per_group, 1, mu, var);
        for (int64_t at = n * cols + gr * per_group; at < n * cols + (gr + 1) * per_group; ++at) {
          const int64_t c = (at % cols) / inner;
          if (kind == 4) mu = bn_mu[c], var = bn_var[c];
          want[at] = (x[at] - mu) / std::sqrt(var + eps) * w[c] + b[c];
        }
      }
  }
  auto run = [&] {
    using namespace dlkern::cpu;
    switch (kind) {
      case 0: layer_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, cols, eps); break;
      case 1: layer_norm_backward(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(), dw.data(),
                                  db.data(), rows, cols); break;
      case 2: rms_norm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, cols, eps); break;
      case 3: group_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, channels,
                                 inner, groups, eps); break;
      default: batch_norm_forward(x.data(), w.data(), b.data(), rm.data(), rv.data(), y.data(), mean.data(),
                                  rstd.data(), rows, channels, inner, true, 0.1f, eps);
    }
  };
  if (kind == 1)
    dlkern::cpu::layer_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, cols, eps);
  run();
  static const char* names[] = {"layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "group_norm_forward",
                                "batch_norm_forward"};
  if (!gbench::check_close(state, names[kind], kind == 1 ? dx.data() : y.data(), want, 1e-4)) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(x.size()) * (kind == 1 ? 3 : 2));
}
#define DLKERN_NORM_SHAPES(b) b->ArgNames({"rows", "cols"})->Args({2048, 1024})->UseRealTime()
DLKERN_NORM_SHAPES(BENCHMARK_CAPTURE(BM_norm, layer_forward, 0)->Name("layer_norm_forward/f32"));
DLKERN_NORM_SHAPES(BENCHMARK_CAPTURE(BM_norm, layer_backward, 1)->Name("layer_norm_backward/f32"));
DLKERN_NORM_SHAPES(BENCHMARK_CAPTURE(BM_norm, rms_forward, 2)->Name("rms_norm_forward/f32"));
// (n, channels = 64, inner = 64): 32 groups of two channels.
BENCHMARK_CAPTURE(BM_norm, group_forward, 3)->Name("group_norm_forward/f32")->ArgNames({"n", "cols"})
    ->Args({64, 4096})->UseRealTime();
BENCHMARK_CAPTURE(BM_norm, batch_forward, 4)->Name("batch_norm_forward/f32")->ArgNames({"n", "cols"})
    ->Args({64, 4096})->UseRealTime();

// Args: n, classes. Mean reduction, no weights; label_smoothing 0.1.
void BM_cross_entropy(benchmark::State& state, bool backward) {
  using dlkern::cpu::Reduction;
  const int64_t n = state.range(0), c = state.range(1);
  const float ls = 0.1f;
  auto x = gbench::uniform<float>(n * c, 51, -4, 4);
  std::vector<int64_t> target(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) target[i] = (i * 7919) % c;
  std::vector<float> loss(static_cast<size_t>(n)), lse(static_cast<size_t>(n)), dx(x.size());
  const float grad = 1.f;
  float got_loss = 0;
  if (backward)  // the backward reads the forward's lse
    dlkern::cpu::cross_entropy_forward(x.data(), target.data(), (const float*)nullptr, loss.data(), lse.data(), n, c,
                                       1, -100, Reduction::mean, ls);
  // loss_i = lse_i - (1 - ls) x_it - ls mean_j x_ij; dx_ij = (p_ij - (1 - ls) [j = t] - ls / c) / n.
  double want_loss = 0;
  std::vector<double> want_dx(x.size());
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x.data() + i * c;
    double mx = -INFINITY, sum = 0, mean_x = 0;
    for (int64_t j = 0; j < c; ++j) mx = std::max(mx, double(xi[j]));
    for (int64_t j = 0; j < c; ++j) sum += std::exp(xi[j] - mx), mean_x += xi[j] / double(c);
    const double l = mx + std::log(sum);
    want_loss += (l - (1 - ls) * xi[target[i]] - ls * mean_x) / double(n);
    for (int64_t j = 0; j < c; ++j)
      want_dx[i * c + j] = (std::exp(xi[j] - l) - (j == target[i] ? 1 - ls : 0.0) - ls / double(c)) / double(n);
  }
  auto run = [&] {
    if (backward)
      dlkern::cpu::cross_entropy_backward(&grad, x.data(), target.data(), lse.data(), (const float*)nullptr,
                                          dx.data(), n, c, 1, -100, Reduction::mean, ls);
    else
      got_loss = dlkern::cpu::cross_entropy_forward(x.data(), target.data(), (const float*)nullptr, loss.data(),
                                                    lse.data(), n, c, 1, -100, Reduction::mean, ls);
  };
  run();
  const bool ok = backward ? gbench::check_close(state, "cross_entropy_backward", dx.data(), want_dx, 1e-6)
                           : gbench::check_scalar(state, "cross_entropy_forward", got_loss, want_loss, 1e-5,
                                                  std::fabs(want_loss));
  if (!ok) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(x.size()) * (backward ? 2 : 1));
}
BENCHMARK_CAPTURE(BM_cross_entropy, forward, false)->Name("cross_entropy_forward/f32")->ArgNames({"n", "classes"})
    ->Args({512, 1000})->Args({4096, 10})->UseRealTime();
BENCHMARK_CAPTURE(BM_cross_entropy, backward, true)->Name("cross_entropy_backward/f32")->ArgNames({"n", "classes"})
    ->Args({512, 1000})->Args({4096, 10})->UseRealTime();

// kind: 0 gelu_tanh, 1 gelu_erf (forward and backward), 2 erf (forward only).
void BM_activation(benchmark::State& state, int kind, bool backward) {
  using dlkern::cpu::Activation;
  const int64_t n = state.range(0);
  auto x = gbench::uniform<float>(n, 61, -6, 6), dy = gbench::uniform<float>(n, 62);
  std::vector<float> out(static_cast<size_t>(n));
  std::vector<double> want(static_cast<size_t>(n));
  const double k0 = std::sqrt(2 / M_PI);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    double f, df;
    if (kind == 0) {
      const double z = k0 * (v + 0.044715 * v * v * v), t = std::tanh(z);
      f = 0.5 * v * (1 + t);
      df = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * k0 * (1 + 3 * 0.044715 * v * v);
    } else if (kind == 1) {
      const double cdf = 0.5 * (1 + std::erf(v / std::sqrt(2.0)));
      f = v * cdf;
      df = cdf + v * std::exp(-v * v / 2) / std::sqrt(2 * M_PI);
    } else {
      f = std::erf(v), df = 0;
    }
    want[i] = backward ? dy[i] * df : f;
  }
  const Activation act = kind == 0 ? Activation::gelu_tanh : Activation::gelu_erf;
  auto run = [&] {
    if (kind == 2)
      dlkern::cpu::unary_forward(dlkern::cpu::Unary::erf, x.data(), out.data(), n);
    else if (backward)
      dlkern::cpu::activation_backward(act, dy.data(), x.data(), out.data(), n);
    else
      dlkern::cpu::activation_forward(act, x.data(), out.data(), n);
  };
  run();
  if (!gbench::check_close(state, "activation", out.data(), want, 1e-5)) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, 4.0 * double(n) * (backward ? 3 : 2));
}
#define DLKERN_ACT(name, kind, bwd) \
  BENCHMARK_CAPTURE(BM_activation, name, kind, bwd)->Name(#name "/f32")->ArgNames({"n"})->Arg(1 << 20)->UseRealTime()
DLKERN_ACT(gelu_tanh_forward, 0, false);
DLKERN_ACT(gelu_tanh_backward, 0, true);
DLKERN_ACT(gelu_erf_forward, 1, false);
DLKERN_ACT(gelu_erf_backward, 1, true);
DLKERN_ACT(erf_forward, 2, false);

}  // namespace
