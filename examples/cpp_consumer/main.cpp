// dlkern from C++: a GEMM and a softmax on small arrays, each checked against a plain
// loop. Exits 1 on a mismatch, so CI fails when the installed package computes wrong.
#include <dlkern/dlkern.h>  // every public family; or just <dlkern/cpu/gemm.h> etc.

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

int failures = 0;

void expect_close(const char* what, double got, double want, double tol) {
  if (!(std::fabs(got - want) <= tol * (1.0 + std::fabs(want)))) {
    std::printf("MISMATCH %s: got %.9g, want %.9g\n", what, got, want);
    ++failures;
  }
}

}  // namespace

int main() {
  std::printf("dlkern %d.%d.%d, ISA %s, %d threads\n", DLKERN_VERSION_MAJOR, DLKERN_VERSION_MINOR,
              DLKERN_VERSION_PATCH, dlkern::isa_name(dlkern::active_isa()), dlkern::get_num_threads());

  // C (m, n) = A (m, k) B (k, n), row-major, large enough for the packed kernels' edges.
  const int64_t m = 37, k = 53, n = 29;
  std::vector<float> a(m * k), b(k * n), c(m * n, 0.f);
  for (int64_t i = 0; i < m * k; ++i) a[i] = float((i * 7) % 13) / 13.f - 0.5f;
  for (int64_t i = 0; i < k * n; ++i) b[i] = float((i * 5) % 11) / 11.f - 0.5f;
  dlkern::cpu::gemm<float>(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c.data(), n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t p = 0; p < k; ++p) want += double(a[i * k + p]) * b[p * n + j];
      expect_close("gemm", c[i * n + j], want, 1e-5);
    }

  // softmax over the last axis of a (rows, dim) array.
  const int64_t rows = 4, dim = 10;
  std::vector<double> x(rows * dim), y(rows * dim);
  for (int64_t i = 0; i < rows * dim; ++i) x[i] = std::sin(0.7 * double(i)) * 3;
  dlkern::cpu::softmax_forward<double>(x.data(), y.data(), rows, dim, 1, /*log=*/false);
  for (int64_t r = 0; r < rows; ++r) {
    double total = 0;
    for (int64_t j = 0; j < dim; ++j) total += std::exp(x[r * dim + j]);
    for (int64_t j = 0; j < dim; ++j) expect_close("softmax", y[r * dim + j], std::exp(x[r * dim + j]) / total, 1e-12);
  }

  if (failures) {
    std::printf("FAILED: %d mismatches\n", failures);
    return 1;
  }
  std::printf("gemm (%lldx%lldx%lld) and softmax match the reference loops\n", (long long)m, (long long)k,
              (long long)n);
  return 0;
}
