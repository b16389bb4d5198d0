// Cross-entropy front end: reductions, the run-time choice of ISA path for (N, C)
// inputs, and a portable kernel for (N, C, d1, ...) inputs, whose classes are strided.
#include "cpu/cross_entropy.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/cpu_features.h"
#include "common/parallel.h"
#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A thread gets at least this many logits: about 20 us of work.
constexpr int64_t kMinElemsPerThread = 1 << 17;

int threads_for(int64_t elems, int64_t tasks) {
  return dlkern::threads_for(elems, kMinElemsPerThread, tasks);
}

template <typename T>
T weight_total(const T* weight, int64_t c) {
  if (!weight) return T(c);
  double w = 0;
  for (int64_t k = 0; k < c; ++k) w += weight[k];
  return T(w);
}

// Sum of w[target] over non-ignored samples: the divisor of the mean.
template <typename T>
double mean_divisor(const int64_t* target, const T* weight, int64_t count, int64_t ignore_index) {
  double d = 0;
  for (int64_t i = 0; i < count; ++i)
    if (target[i] != ignore_index) d += weight ? double(weight[target[i]]) : 1.0;
  return d;
}

// (n, c, s) with s > 1: per sample n, running arrays over the s positions, so every
// read walks memory forwards. exp from the C library.
template <typename T>
void forward_strided(const T* x, const int64_t* target, const T* w, T w_all, T* loss, T* lse, int64_t n,
                     int64_t c, int64_t s, int64_t ignore_index, T eps, int nt) {
  std::vector<T> scratch(size_t(nt) * 3 * size_t(s));
  const T ninf = -std::numeric_limits<T>::infinity();
  parallel_for(n, nt, [&](int64_t i) {
    T* m = scratch.data() + size_t(omp_get_thread_num()) * 3 * size_t(s);
    T* sum = m + s;
    T* acc = sum + s;
    const T* xi = x + i * c * s;
    for (int64_t j = 0; j < s; ++j) m[j] = ninf, sum[j] = 0, acc[j] = 0;
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < s; ++j) m[j] = xi[k * s + j] > m[j] ? xi[k * s + j] : m[j];
    for (int64_t j = 0; j < s; ++j) m[j] = m[j] == ninf ? T(0) : m[j];
    // The smoothing sum is shifted by x[i, 0, j] unless that is infinite (x - shift
    // could then be inf - inf).
    for (int64_t k = 0; k < c; ++k) {
      const T wk = w ? w[k] : T(1);
      for (int64_t j = 0; j < s; ++j) {
        const T shift = xi[j] - xi[j] == T(0) ? xi[j] : T(0);
        sum[j] += std::exp(xi[k * s + j] - m[j]);
        acc[j] += wk * (xi[k * s + j] - shift);
      }
    }
    for (int64_t j = 0; j < s; ++j) {
      const T log_sum = std::log(sum[j]);
      lse[i * s + j] = m[j] + log_sum;
      const int64_t t = target[i * s + j];
      if (t == ignore_index) {
        loss[i * s + j] = 0;
        continue;
      }
      // lse - x as (m - x) + log_sum: exact m - x keeps large logits accurate.
      const T wt = w ? w[t] : T(1);
      T v = (T(1) - eps) * wt * ((m[j] - xi[t * s + j]) + log_sum);
      const T shift = xi[j] - xi[j] == T(0) ? xi[j] : T(0);
      if (eps != T(0)) v += eps / T(c) * (w_all * ((m[j] - shift) + log_sum) - acc[j]);
      loss[i * s + j] = v;
    }
  });
}

template <typename T>
void backward_strided(const T* grad, int64_t grad_stride, T grad_scale, const T* x, const int64_t* target,
                      const T* lse, const T* w, T w_all, T* dx, int64_t n, int64_t c, int64_t s,
                      int64_t ignore_index, T eps, int nt) {
  // The saved lse is rounded at its own size; like the contiguous kernel for large
  // |lse|, this portable path recomputes the max m and log(sum) and uses
  // exp((x - m) - log(sum)) (always: it is not the fast path).
  std::vector<T> scratch(size_t(nt) * 4 * size_t(s));
  const T ninf = -std::numeric_limits<T>::infinity();
  parallel_for(n, nt, [&](int64_t i) {
    T* a = scratch.data() + size_t(omp_get_thread_num()) * 4 * size_t(s);
    T* b = a + s;
    T* m = b + s;
    T* ls = m + s;
    const T* xi = x + i * c * s;
    T* di = dx + i * c * s;
    for (int64_t j = 0; j < s; ++j) m[j] = ninf, ls[j] = 0;
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < s; ++j) m[j] = xi[k * s + j] > m[j] ? xi[k * s + j] : m[j];
    for (int64_t j = 0; j < s; ++j) m[j] = m[j] == ninf ? T(0) : m[j];
    for (int64_t k = 0; k < c; ++k)
      for (int64_t j = 0; j < s; ++j) ls[j] += std::exp(xi[k * s + j] - m[j]);
    for (int64_t j = 0; j < s; ++j) ls[j] = std::log(ls[j]);
    for (int64_t j = 0; j < s; ++j) {
      const int64_t t = target[i * s + j];
      if (t == ignore_index) {
        a[j] = 0, b[j] = 0;
        continue;
      }
      const T g = grad[(i * s + j) * grad_stride] * grad_scale;
      const T wt = w ? w[t] : T(1);
      a[j] = g * ((T(1) - eps) * wt + eps / T(c) * w_all);
      b[j] = -g * eps / T(c);
    }
    for (int64_t k = 0; k < c; ++k) {
      const T wk = w ? w[k] : T(1);
      for (int64_t j = 0; j < s; ++j) {
        // An ignored sample gets exact zeros. A zero cotangent still multiplies
        // exp(...), as the contiguous kernel does, so NaN logits give NaN (0 * NaN).
        di[k * s + j] = target[i * s + j] == ignore_index
                            ? T(0)
                            : a[j] * std::exp((xi[k * s + j] - m[j]) - ls[j]) + b[j] * wk;
      }
    }
    for (int64_t j = 0; j < s; ++j) {
      const int64_t t = target[i * s + j];
      if (t == ignore_index) continue;
      const T g = grad[(i * s + j) * grad_stride] * grad_scale;
      di[t * s + j] -= g * (T(1) - eps) * (w ? w[t] : T(1));
    }
  });
}

}  // namespace

int64_t cross_entropy_bad_target(const int64_t* target, int64_t count, int64_t c, int64_t ignore_index) {
  for (int64_t i = 0; i < count; ++i)
    if (target[i] != ignore_index && (target[i] < 0 || target[i] >= c)) return i;
  return -1;
}

template <typename T>
T cross_entropy_forward(const T* x, const int64_t* target, const T* weight, T* loss, T* lse, int64_t n,
                        int64_t c, int64_t s, int64_t ignore_index, Reduction reduction, T label_smoothing) {
  const int64_t count = n * s;
  if (count > 0 && c > 0) {
    const T w_all = weight_total(weight, c);
    const int nt = threads_for(count * c, n);
    if (s == 1) {
      kernels<T>().cross_entropy_fwd(x, target, weight, w_all, loss, lse, n, c, ignore_index, label_smoothing, nt);
    } else {
      forward_strided(x, target, weight, w_all, loss, lse, n, c, s, ignore_index, label_smoothing, nt);
    }
  }
  if (reduction == Reduction::none) return T(0);
  double total = 0;
  for (int64_t i = 0; i < count; ++i) total += loss[i];
  if (reduction == Reduction::sum) return T(total);
  return T(total / mean_divisor(target, weight, count, ignore_index));
}

template <typename T>
void cross_entropy_backward(const T* grad, const T* x, const int64_t* target, const T* lse, const T* weight,
                            T* dx, int64_t n, int64_t c, int64_t s, int64_t ignore_index, Reduction reduction,
                            T label_smoothing) {
  const int64_t count = n * s;
  if (count <= 0 || c <= 0) return;
  const T w_all = weight_total(weight, c);
  const int64_t grad_stride = reduction == Reduction::none ? 1 : 0;
  const T grad_scale =
      reduction == Reduction::mean ? T(1.0 / mean_divisor(target, weight, count, ignore_index)) : T(1);
  const int nt = threads_for(count * c, n);
  if (s == 1) {
    kernels<T>().cross_entropy_bwd(grad, grad_stride, grad_scale, x, target, lse, weight, w_all, dx, n, c,
                                   ignore_index, label_smoothing, nt);
    return;
  }
  backward_strided(grad, grad_stride, grad_scale, x, target, lse, weight, w_all, dx, n, c, s, ignore_index,
                   label_smoothing, nt);
}

template float cross_entropy_forward<float>(const float*, const int64_t*, const float*, float*, float*, int64_t,
                                            int64_t, int64_t, int64_t, Reduction, float);
template double cross_entropy_forward<double>(const double*, const int64_t*, const double*, double*, double*,
                                              int64_t, int64_t, int64_t, int64_t, Reduction, double);
template void cross_entropy_backward<float>(const float*, const float*, const int64_t*, const float*,
                                            const float*, float*, int64_t, int64_t, int64_t, int64_t, Reduction,
                                            float);
template void cross_entropy_backward<double>(const double*, const double*, const int64_t*, const double*,
                                             const double*, double*, int64_t, int64_t, int64_t, int64_t,
                                             Reduction, double);

}  // namespace dlkern::cpu
