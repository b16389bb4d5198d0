// Shared by the dlkern_gbench files: inputs, the one-time check against a reference, and
// the rate counters. Each benchmark computes its result once, compares it with a plain
// loop (or, for a gradient, the directional derivative of a plain forward) and calls
// fail() (state.SkipWithError) on a mismatch before its timing loop starts, so a wrong kernel
// never reports a time. Every benchmark is timed in wall-clock time (UseRealTime): the
// kernels run on OpenMP threads, which the default per-thread CPU time would not see.
#pragma once
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace gbench {

// Set by fail(): main() exits 1 when any benchmark found a mismatch (Google Benchmark
// itself only prints the error and exits 0, which CI would take for a pass).
inline bool& any_failed() {
  static bool failed = false;
  return failed;
}

// Marks the benchmark as failed: an error row instead of a time, and exit status 1.
inline void fail(benchmark::State& state, const char* msg) {
  any_failed() = true;
  state.SkipWithError(msg);
}

// Uniform in [lo, hi), fixed seed: the same inputs every run.
template <typename T>
std::vector<T> uniform(int64_t n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(size_t(n > 0 ? n : 0));
  for (auto& x : v) x = T(dist(rng));
  return v;
}

template <typename T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// got[i] against want[i]: |got - want| <= tol * (1 + |want|) everywhere (NaN fails).
// On the first mismatch: fail() naming `what`, the index and both values.
template <typename G>
bool check_close(benchmark::State& state, const char* what, const G* got, const std::vector<double>& want,
                 double tol) {
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = double(got[i]);
    if (!(std::fabs(g - want[i]) <= tol * (1.0 + std::fabs(want[i])))) {
      char msg[256];
      std::snprintf(msg, sizeof msg, "%s: element %zu is %.9g, reference %.9g (tolerance %g)", what, i, g,
                    want[i], tol);
      fail(state, msg);
      return false;
    }
  }
  return true;
}

// One scalar (a directional derivative, a reduced loss) against its reference, the
// tolerance relative to `scale` (the sum of the magnitudes that were added up).
inline bool check_scalar(benchmark::State& state, const char* what, double got, double want, double tol,
                         double scale) {
  if (std::fabs(got - want) <= tol * (1.0 + scale)) return true;
  char msg[256];
  std::snprintf(msg, sizeof msg, "%s: %.12g, reference %.12g (scale %.3g, tolerance %g)", what, got, want, scale,
                tol);
  fail(state, msg);
  return false;
}

// sum_i a[i] * b[i] and sum_i |a[i] * b[i]| (the rounding scale of the sum).
template <typename A>
std::pair<double, double> dot(const std::vector<A>& a, const std::vector<double>& b) {
  double s = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    s += double(a[i]) * b[i];
    scale += std::fabs(double(a[i]) * b[i]);
  }
  return {s, scale};
}

// d/dt loss(t) at t = 0 by a central difference in double: the reference for a backward
// kernel, given the loss <dy, forward(x + t u)> computed by a plain forward.
inline double central_difference(const std::function<double(double)>& loss, double h = 1e-5) {
  return (loss(h) - loss(-h)) / (2 * h);
}

// x + t u, elementwise.
inline std::vector<double> along(const std::vector<double>& x, const std::vector<double>& u, double t) {
  std::vector<double> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = x[i] + t * u[i];
  return r;
}

// Rates in the report: FLOP/s where the work is arithmetic, bytes/s where it is traffic.
inline void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops_per_iter * double(state.iterations()), benchmark::Counter::kIsRate);
}
inline void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.SetBytesProcessed(int64_t(bytes_per_iter * double(state.iterations())));
}

}  // namespace gbench
