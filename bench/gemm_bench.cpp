// dlkern_bench: checks each GEMM against a simple reference, then times it.
//
//   dlkern_bench [--threads 1,2] [--isa avx512,avx2,generic] [--shapes 256,1024x768x3072]
//                [--dtype f32|f64] [--repeats N] [--peak GFLOPS_PER_CORE] [--quick]
//
// A shape is N (square) or MxKxN. Prints shape, threads, ISA, median time, GFLOP/s and
// % of peak (peak = threads x the per-core figure, default 116.8 GFLOP/s float32 =
// 32 FLOP/cycle x 3.65 GHz on Zen 4; half of it for float64).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/cpu_features.h"
#include "common/runtime.h"
#include "cpu/gemm.h"

namespace {

struct Shape {
  int64_t m, k, n;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

Shape parse_shape(const std::string& s) {
  auto parts = split(s, 'x');
  if (parts.size() == 1) {
    int64_t v = std::stoll(parts[0]);
    return {v, v, v};
  }
  if (parts.size() != 3) throw std::invalid_argument("bad shape '" + s + "' (want N or MxKxN)");
  return {std::stoll(parts[0]), std::stoll(parts[1]), std::stoll(parts[2])};
}

// Reference for a sample of C entries, accumulated in double. Returns the worst
// error relative to sum_p |a_ip * b_pj| (the natural scale of the rounding error).
template <typename T>
double check(const Shape& s, const std::vector<T>& a, const std::vector<T>& b, const std::vector<T>& c) {
  std::mt19937_64 rng(7);
  double worst = 0;
  const int samples = 256;
  for (int t = 0; t < samples; ++t) {
    const int64_t i = rng() % s.m, j = rng() % s.n;
    double ref = 0, scale = 0;
    for (int64_t p = 0; p < s.k; ++p) {
      const double prod = double(a[i * s.k + p]) * double(b[p * s.n + j]);
      ref += prod;
      scale += std::fabs(prod);
    }
    worst = std::max(worst, std::fabs(double(c[i * s.n + j]) - ref) / std::max(scale, 1e-30));
  }
  return worst;
}

template <typename T>
bool bench_one(const Shape& s, int threads, dlkern::Isa isa, int repeats, double peak_per_core) {
  dlkern::set_active_isa(isa);
  dlkern::set_num_threads(threads);
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> a(s.m * s.k), b(s.k * s.n), c(s.m * s.n, T(0));
  for (auto& v : a) v = T(dist(rng));
  for (auto& v : b) v = T(dist(rng));
  auto run = [&] {
    dlkern::cpu::gemm<T>(false, false, s.m, s.n, s.k, T(1), a.data(), s.k, b.data(), s.n, T(0),
                         c.data(), s.n);
  };
  run();
  const double err = check(s, a, b, c);
  const double tol = (sizeof(T) == 4 ? 1.2e-7 : 2.3e-16) * 4 * std::sqrt(double(s.k) + 1);
  const char* isa_str = dlkern::isa_name(isa);
  if (!(err <= tol)) {
    std::printf("%5ldx%-5ldx%-5ld  %-4s %2d  %-8s  FAILED CHECK: relative error %.3g > %.3g\n", (long)s.m,
                (long)s.k, (long)s.n, sizeof(T) == 4 ? "f32" : "f64", threads, isa_str, err, tol);
    return false;
  }
  const double flops = 2.0 * s.m * s.n * s.k;
  // Enough inner calls per sample that each sample lasts ~20 ms.
  auto t0 = std::chrono::steady_clock::now();
  run();
  double once = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int inner = std::max(1, static_cast<int>(0.02 / std::max(once, 1e-9)));
  std::vector<double> samples;
  for (int r = 0; r < repeats; ++r) {
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) run();
    samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / inner);
  }
  std::sort(samples.begin(), samples.end());
  const double med = samples[samples.size() / 2];
  const double gflops = flops / med * 1e-9;
  const double peak = peak_per_core * threads * (sizeof(T) == 4 ? 1.0 : 0.5);
  std::printf("%5ldx%-5ldx%-5ld  %-4s %2d  %-8s  %10.4f ms  %8.1f GFLOP/s  %5.1f%% of peak  (err %.1e)\n",
              (long)s.m, (long)s.k, (long)s.n, sizeof(T) == 4 ? "f32" : "f64", threads, isa_str,
              med * 1e3, gflops, 100.0 * gflops / peak, err);
  std::fflush(stdout);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> threads = {1, 2};
  std::vector<dlkern::Isa> isas = {dlkern::best_isa()};
  std::vector<Shape> shapes;
  std::string dtype = "f32";
  int repeats = 7;
  double peak = 116.8;
  const std::vector<std::string> default_shapes = {"64", "128", "256", "512", "1024", "2048",
                                                   "4096x768x3072", "4096x3072x768", "2048x192x768",
                                                   "128x784x256", "1x4096x4096"};
  bool quick = false;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string arg = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
        return argv[++i];
      };
      if (arg == "--threads") {
        threads.clear();
        for (auto& t : split(next(), ',')) threads.push_back(std::stoi(t));
      } else if (arg == "--isa") {
        isas.clear();
        for (auto& t : split(next(), ',')) isas.push_back(dlkern::parse_isa(t));
      } else if (arg == "--shapes") {
        for (auto& t : split(next(), ',')) shapes.push_back(parse_shape(t));
      } else if (arg == "--dtype") {
        dtype = next();
      } else if (arg == "--repeats") {
        repeats = std::stoi(next());
      } else if (arg == "--peak") {
        peak = std::stod(next());
      } else if (arg == "--quick") {
        quick = true;
      } else {
        std::printf("usage: %s [--threads 1,2] [--isa avx512,avx2,generic] [--shapes N|MxKxN,...] "
                    "[--dtype f32|f64] [--repeats N] [--peak GFLOPS_PER_CORE] [--quick]\n", argv[0]);
        return arg == "--help" ? 0 : 2;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dlkern_bench: %s\n", e.what());
    return 2;
  }
  if (quick) {
    repeats = std::min(repeats, 3);
    if (shapes.empty()) shapes = {parse_shape("64"), parse_shape("97x131x67"), parse_shape("256"), parse_shape("1x512x512")};
    isas.clear();
    for (auto isa : {dlkern::Isa::generic, dlkern::Isa::avx2, dlkern::Isa::avx512})
      if (dlkern::isa_supported(isa)) isas.push_back(isa);
  }
  if (shapes.empty())
    for (auto& s : default_shapes) shapes.push_back(parse_shape(s));

  std::printf("dlkern_bench: best ISA %s, %d OpenMP threads available, peak %.1f GFLOP/s/core (f32)\n",
              dlkern::isa_name(dlkern::best_isa()), omp_get_max_threads(), peak);
  std::printf("%-19s  %-4s %2s  %-8s  %13s  %15s  %s\n", "MxKxN", "type", "th", "isa", "median", "rate", "");
  bool ok = true;
  for (auto isa : isas) {
    if (!dlkern::isa_supported(isa)) {
      std::printf("skipping ISA %s: not supported on this CPU\n", dlkern::isa_name(isa));
      continue;
    }
    for (int t : threads)
      for (const auto& s : shapes)
        ok &= dtype == "f64" ? bench_one<double>(s, t, isa, repeats, peak) : bench_one<float>(s, t, isa, repeats, peak);
  }
  return ok ? 0 : 1;
}
