// Normalisation kernels: statistics, threading and the run-time choice of ISA path.
// The per-element loops are the per-ISA segment kernels of norm_segments.h; this file
// combines them per row / group / channel. Scalars (means, variances, gradient sums
// across segments) are combined in double: it costs nothing next to the loops.
#include "cpu/norm.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/cpu_features.h"
#include "common/parallel.h"
#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A thread gets at least this many elements: about 25 us of work (a 64 KiB float
// row block is ~3 us), so a fork/join is never a large share of the call.
constexpr int64_t kMinElementsPerThread = 1 << 17;

// Outputs at least this big are written with non-temporal stores: with the input as
// big again, nothing of them would survive in the ~8 MiB of usable L3, and streaming
// skips reading each output line before overwriting it (a third of the traffic).
constexpr int64_t kStreamBytes = int64_t(4) << 20;

template <typename T>
bool stream_output(int64_t elements) {
  return elements * int64_t(sizeof(T)) >= kStreamBytes;
}

int threads_for(int64_t elements, int64_t units) {
  return dlkern::threads_for(elements, kMinElementsPerThread, units);
}

// Mean and biased variance of n contiguous values: mean of the values shifted by the
// first one (no cancellation for a large mean), then squared deviations corrected by
// the (tiny) residual sum: var = (sum d^2 - (sum d)^2 / n) / n.
template <typename T>
void segment_stats(const NormSegmentKernels<T>& k, const T* x, int64_t n, double* mean,
                   double* var) {
  const T shift = x[0];
  const double m = double(shift) + double(k.sum_shifted(x, n, shift)) / double(n);
  T sq, s;
  k.dev_stats(x, n, T(m), &sq, &s);
  const double v = (double(sq) - double(s) * double(s) / double(n)) / double(n);
  *mean = m;  // the deviations were taken from T(m), the value saved
  *var = std::max(v, 0.0);
}

double inv_std(double var, double eps) { return 1.0 / std::sqrt(var + eps); }

// Per-thread column partial sums reduced in thread order: deterministic for a fixed
// thread count, no atomics.
template <typename T>
void reduce_partials(const std::vector<T>& partial, int nthreads, int64_t cols, int64_t slot,
                     int64_t slots, T* out) {
  for (int64_t j = 0; j < cols; ++j) out[j] = T(0);
  for (int t = 0; t < nthreads; ++t) {
    const T* p = partial.data() + (int64_t(t) * slots + slot) * cols;
    for (int64_t j = 0; j < cols; ++j) out[j] += p[j];
  }
}

// Rows [begin, end) of `rows` split evenly over the team.
void thread_rows(int64_t rows, int64_t* begin, int64_t* end) {
  const int t = omp_get_thread_num(), nt = omp_get_num_threads();
  *begin = rows * t / nt;
  *end = rows * (t + 1) / nt;
}

// Shared by layer norm (centered) and RMS norm (not centered: mean 0, no mean term).
template <typename T>
void row_norm_backward(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd,
                       T* dx, T* dweight, T* dbias, int64_t rows, int64_t cols) {
  if (!weight) dweight = nullptr;
  const int64_t slots = (dweight ? 1 : 0) + (dbias ? 1 : 0);
  if (rows == 0 || cols == 0) {
    for (int64_t j = 0; j < cols; ++j) {
      if (dweight) dweight[j] = T(0);
      if (dbias) dbias[j] = T(0);
    }
    return;
  }
  const NormSegmentKernels<T>& k = kernels<T>().norm;
  const int nt = threads_for(rows * cols, rows);
  std::vector<T> partial(static_cast<size_t>(nt * slots * cols), T(0));
  const bool stream = stream_output<T>(rows * cols);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t r0, r1;
    thread_rows(rows, &r0, &r1);
    const int t = omp_get_thread_num();
    T* base = partial.data() + int64_t(t) * slots * cols;
    T* dw_acc = dweight ? base : nullptr;
    T* db_acc = dbias ? base + (dweight ? cols : 0) : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const T* dyr = dy + r * cols;
      const T* xr = x + r * cols;
      const T m = mean ? mean[r] : T(0);
      const double rs = rstd[r];
      T s1, s2;  // sum(g), sum(g * (x - m)), g = dy * weight
      k.grad_sums(dyr, xr, weight, cols, m, &s1, &s2);
      const double a_mean = mean ? double(s1) / double(cols) : 0.0;  // mean(g)
      const double b_mean = rs * double(s2) / double(cols);          // mean(g * xhat)
      // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), xhat = (x - m) * rstd
      k.grad_apply(dyr, xr, weight, dx + r * cols, dw_acc, db_acc, cols, m, T(rs), T(rs),
                   T(-rs * rs * b_mean), T(-rs * a_mean), stream);
    }
    if (stream) k.stream_fence();
  }
  if (dweight) reduce_partials(partial, nt, cols, 0, slots, dweight);
  if (dbias) reduce_partials(partial, nt, cols, dweight ? 1 : 0, slots, dbias);
}

}  // namespace

template <typename T>
void layer_norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                        int64_t rows, int64_t cols, T eps) {
  if (rows == 0) return;
  if (cols == 0) {
    for (int64_t r = 0; r < rows; ++r) mean[r] = T(NAN), rstd[r] = T(NAN);
    return;
  }
  const NormSegmentKernels<T>& k = kernels<T>().norm;
  const int nt = threads_for(rows * cols, rows);
  const bool stream = stream_output<T>(rows * cols);
  parallel_for(rows, nt, [&](int64_t r) {
    const T* xr = x + r * cols;
    double m, v;
    segment_stats(k, xr, cols, &m, &v);
    const double rs = inv_std(v, double(eps));
    mean[r] = T(m);
    rstd[r] = T(rs);
    k.normalize_wb(xr, weight, bias, y + r * cols, cols, T(m), T(rs), stream);
  }, [&] { if (stream) k.stream_fence(); });
}

template <typename T>
void layer_norm_backward(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd,
                         T* dx, T* dweight, T* dbias, int64_t rows, int64_t cols) {
  row_norm_backward(dy, x, weight, mean, rstd, dx, dweight, dbias, rows, cols);
}

template <typename T>
void rms_norm_forward(const T* x, const T* weight, T* y, T* rstd, int64_t rows, int64_t cols,
                      T eps) {
  if (rows == 0) return;
  if (cols == 0) {
    for (int64_t r = 0; r < rows; ++r) rstd[r] = T(NAN);
    return;
  }
  const NormSegmentKernels<T>& k = kernels<T>().norm;
  const int nt = threads_for(rows * cols, rows);
  const bool stream = stream_output<T>(rows * cols);
  parallel_for(rows, nt, [&](int64_t r) {
    const T* xr = x + r * cols;
    const double ms = double(k.sum_sq(xr, cols)) / double(cols);
    const double rs = inv_std(ms, double(eps));
    rstd[r] = T(rs);
    k.normalize_wb(xr, weight, nullptr, y + r * cols, cols, T(0), T(rs), stream);
  }, [&] { if (stream) k.stream_fence(); });
}

template <typename T>
void rms_norm_backward(const T* dy, const T* x, const T* weight, const T* rstd, T* dx, T* dweight,
                       int64_t rows, int64_t cols) {
  row_norm_backward<T>(dy, x, weight, nullptr, rstd, dx, dweight, nullptr, rows, cols);
}

template <typename T>
void group_norm_forward(const T* x, const T* weight, const T* bias, T* y, T* mean, T* rstd,
                        int64_t n, int64_t channels, int64_t inner, int64_t groups, T eps) {
  const int64_t tasks = n * groups, cpg = channels / groups, span = cpg * inner;
  if (tasks == 0) return;
  if (span == 0) {
    for (int64_t i = 0; i < tasks; ++i) mean[i] = T(NAN), rstd[i] = T(NAN);
    return;
  }
  const NormSegmentKernels<T>& k = kernels<T>().norm;
  const int nt = threads_for(tasks * span, tasks);
  const bool stream = stream_output<T>(tasks * span);
  parallel_for(tasks, nt, [&](int64_t i) {
    const int64_t g = i % groups;
    const T* xs = x + i * span;
    double m, v;
    segment_stats(k, xs, span, &m, &v);
    const double rs = inv_std(v, double(eps));
    mean[i] = T(m);
    rstd[i] = T(rs);
    for (int64_t j = 0; j < cpg; ++j) {
      const int64_t c = g * cpg + j;
      const double s = weight ? rs * double(weight[c]) : rs;
      const T t = bias ? bias[c] : T(0);
      k.normalize_st(xs + j * inner, y + i * span + j * inner, inner, T(m), T(s), t, stream);
    }
  }, [&] { if (stream) k.stream_fence(); });
}

template <typename T>
void group_norm_backward(const T* dy, const T* x, const T* weight, const T* mean, const T* rstd,
                         T* dx, T* dweight, T* dbias, int64_t n, int64_t channels, int64_t inner,
                         int64_t groups) {
  const int64_t tasks = n * groups, cpg = channels / groups, span = cpg * inner;
  // Per (n, channel): sum(dy) and sum(dy * (x - mean)), reduced over n afterwards.
  std::vector<double> s1(static_cast<size_t>(n * channels), 0.0), s2(s1.size(), 0.0);
  if (tasks > 0 && span > 0) {
    const NormSegmentKernels<T>& k = kernels<T>().norm;
    const int nt = threads_for(tasks * span, tasks);
    const bool stream = stream_output<T>(tasks * span);
    parallel_for(tasks, nt, [&](int64_t i) {
      const int64_t b = i / groups, g = i % groups;
      const T m = mean[i];
      const double rs = rstd[i];
      double wa = 0, wb = 0;  // sum_c w_c * s1_c, sum_c w_c * s2_c
      for (int64_t j = 0; j < cpg; ++j) {
        const int64_t c = g * cpg + j;
        T a1, a2;
        k.grad_sums(dy + i * span + j * inner, x + i * span + j * inner, nullptr, inner, m, &a1,
                    &a2);
        s1[b * channels + c] = a1;
        s2[b * channels + c] = a2;
        const double w = weight ? double(weight[c]) : 1.0;
        wa += w * a1;
        wb += w * a2;
      }
      const double a_mean = wa / double(span);       // mean(g), g = dy * w
      const double b_mean = rs * wb / double(span);  // mean(g * xhat)
      for (int64_t j = 0; j < cpg; ++j) {
        const int64_t c = g * cpg + j;
        const double w = weight ? double(weight[c]) : 1.0;
        const int64_t off = i * span + j * inner;
        k.grad_apply(dy + off, x + off, nullptr, dx + off, nullptr, nullptr, inner, m, T(rs),
                     T(rs * w), T(-rs * rs * b_mean), T(-rs * a_mean), stream);
      }
    }, [&] { if (stream) k.stream_fence(); });
  }
  for (int64_t c = 0; c < channels; ++c) {
    double dw = 0, db = 0;
    for (int64_t b = 0; b < n; ++b) {
      const int64_t g = c / (cpg > 0 ? cpg : 1);
      dw += s2[b * channels + c] * double(rstd[b * groups + g]);
      db += s1[b * channels + c];
    }
    if (dweight) dweight[c] = T(dw);
    if (dbias) dbias[c] = T(db);
  }
}

namespace {

// Batch-norm statistics of channel c (training): mean and biased variance over n
// planes of `inner` values at stride channels * inner.
template <typename T>
void channel_stats(const NormSegmentKernels<T>& k, const T* x, int64_t n, int64_t channels,
                   int64_t inner, int64_t c, double* mean, double* var) {
  const int64_t stride = channels * inner;
  const T* xc = x + c * inner;
  const T shift = xc[0];
  double sum = 0;
  for (int64_t b = 0; b < n; ++b) sum += double(k.sum_shifted(xc + b * stride, inner, shift));
  const double count = double(n) * double(inner);
  const double m = double(shift) + sum / count;
  double sq = 0, s = 0;
  for (int64_t b = 0; b < n; ++b) {
    T q, d;
    k.dev_stats(xc + b * stride, inner, T(m), &q, &d);
    sq += q;
    s += d;
  }
  *mean = m;
  *var = std::max((sq - s * s / count) / count, 0.0);
}

}  // namespace

namespace {

// Batch norm of (N, C) input (inner == 1): a channel's values are a column, so the
// per-channel segment loops would see one element at a time. Instead each thread
// owns a contiguous block of channels and sweeps the rows, keeping per-channel sums
// in arrays (column loops the compiler vectorises). Same two-pass statistics.
template <typename T>
void batch_norm_columns_forward(const T* x, const T* weight, const T* bias, T* running_mean,
                                T* running_var, T* y, T* save_mean, T* save_rstd, int64_t n,
                                int64_t channels, bool training, double momentum, double eps) {
  std::vector<double> acc(static_cast<size_t>(channels)), acc2(acc.size()), scale(acc.size()),
      shift(acc.size());
  const int nt = threads_for(n * channels, channels);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t c0, c1;
    thread_rows(channels, &c0, &c1);
    if (training) {
      for (int64_t c = c0; c < c1; ++c) acc[c] = 0.0;
      for (int64_t b = 0; b < n; ++b) {
        const T* xr = x + b * channels;
        for (int64_t c = c0; c < c1; ++c) acc[c] += double(xr[c]) - double(x[c]);
      }
      for (int64_t c = c0; c < c1; ++c) {
        save_mean[c] = T(double(x[c]) + acc[c] / double(n));
        acc[c] = 0.0;
        acc2[c] = 0.0;
      }
      for (int64_t b = 0; b < n; ++b) {
        const T* xr = x + b * channels;
        for (int64_t c = c0; c < c1; ++c) {
          const double d = double(xr[c]) - double(save_mean[c]);
          acc[c] += d * d;
          acc2[c] += d;
        }
      }
      for (int64_t c = c0; c < c1; ++c) {
        const double var = std::max((acc[c] - acc2[c] * acc2[c] / double(n)) / double(n), 0.0);
        if (running_mean) {
          running_mean[c] =
              T((1.0 - momentum) * double(running_mean[c]) + momentum * double(save_mean[c]));
          const double unbiased = n > 1 ? var * double(n) / double(n - 1) : NAN;
          running_var[c] = T((1.0 - momentum) * double(running_var[c]) + momentum * unbiased);
        }
        save_rstd[c] = T(inv_std(var, eps));
      }
    } else {
      for (int64_t c = c0; c < c1; ++c) {
        save_mean[c] = running_mean[c];
        save_rstd[c] = T(inv_std(double(running_var[c]), eps));
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      scale[c] = double(save_rstd[c]) * (weight ? double(weight[c]) : 1.0);
      shift[c] = bias ? double(bias[c]) : 0.0;
    }
    for (int64_t b = 0; b < n; ++b) {
      const T* xr = x + b * channels;
      T* yr = y + b * channels;
      for (int64_t c = c0; c < c1; ++c)
        yr[c] = T((double(xr[c]) - double(save_mean[c])) * scale[c] + shift[c]);
    }
  }
}

template <typename T>
void batch_norm_columns_backward(const T* dy, const T* x, const T* weight, const T* save_mean,
                                 const T* save_rstd, T* dx, T* dweight, T* dbias, int64_t n,
                                 int64_t channels, bool training) {
  std::vector<double> s1(static_cast<size_t>(channels)), s2(s1.size()), ca(s1.size()),
      cb(s1.size()), cc(s1.size());
  const int nt = threads_for(n * channels, channels);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t c0, c1;
    thread_rows(channels, &c0, &c1);
    for (int64_t c = c0; c < c1; ++c) s1[c] = 0.0, s2[c] = 0.0;
    for (int64_t b = 0; b < n; ++b) {
      const T *dyr = dy + b * channels, *xr = x + b * channels;
      for (int64_t c = c0; c < c1; ++c) {
        s1[c] += double(dyr[c]);
        s2[c] += double(dyr[c]) * (double(xr[c]) - double(save_mean[c]));
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      const double rs = save_rstd[c], w = weight ? double(weight[c]) : 1.0;
      if (dweight) dweight[c] = T(s2[c] * rs);
      if (dbias) dbias[c] = T(s1[c]);
      ca[c] = w * rs;
      cb[c] = training && n > 0 ? -w * rs * rs * rs * s2[c] / double(n) : 0.0;
      cc[c] = training && n > 0 ? -w * rs * s1[c] / double(n) : 0.0;
    }
    for (int64_t b = 0; b < n; ++b) {
      const T *dyr = dy + b * channels, *xr = x + b * channels;
      T* dxr = dx + b * channels;
      for (int64_t c = c0; c < c1; ++c)
        dxr[c] = T(ca[c] * double(dyr[c]) + cb[c] * (double(xr[c]) - double(save_mean[c])) + cc[c]);
    }
  }
}

}  // namespace

template <typename T>
void batch_norm_forward(const T* x, const T* weight, const T* bias, T* running_mean, T* running_var,
                        T* y, T* save_mean, T* save_rstd, int64_t n, int64_t channels,
                        int64_t inner, bool training, T momentum, T eps) {
  const int64_t count = n * inner;
  if (channels == 0) return;
  if (inner == 1 && n > 0) {
    batch_norm_columns_forward(x, weight, bias, running_mean, running_var, y, save_mean, save_rstd,
                               n, channels, training, double(momentum), double(eps));
    return;
  }
  const NormSegmentKernels<T>& k = kernels<T>().norm;
  const int nt = threads_for(count * channels, channels);
  const int64_t stride = channels * inner;
  const bool stream = stream_output<T>(count * channels);
  parallel_for(channels, nt, [&](int64_t c) {
    double m, v;
    if (training) {
      if (count == 0) {
        m = NAN, v = NAN;
      } else {
        channel_stats(k, x, n, channels, inner, c, &m, &v);
      }
      if (running_mean) {
        const double mom = momentum;
        running_mean[c] = T((1.0 - mom) * double(running_mean[c]) + mom * m);
        const double unbiased = count > 1 ? v * double(count) / double(count - 1) : NAN;
        running_var[c] = T((1.0 - mom) * double(running_var[c]) + mom * unbiased);
      }
    } else {
      m = running_mean[c];
      v = running_var[c];
    }
    const double rs = inv_std(v, double(eps));
    save_mean[c] = T(m);
    save_rstd[c] = T(rs);
    const double s = weight ? rs * double(weight[c]) : rs;
    const T t = bias ? bias[c] : T(0);
    for (int64_t b = 0; b < n; ++b)
      k.normalize_st(x + b * stride + c * inner, y + b * stride + c * inner, inner, T(m), T(s), t,
                     stream);
  }, [&] { if (stream) k.stream_fence(); });
}

template <typename T>
void batch_norm_backward(const T* dy, const T* x, const T* weight, const T* save_mean,
                         const T* save_rstd, T* dx, T* dweight, T* dbias, int64_t n,
                         int64_t channels, int64_t inner, bool training) {
  const int64_t count = n * inner;
  if (channels == 0) return;
  if (inner == 1 && n > 0) {
    batch_norm_columns_backward(dy, x, weight, save_mean, save_rstd, dx, dweight, dbias, n,
                                channels, training);
    return;
  }
  const NormSegmentKernels<T>& k = kernels<T>().norm;
  const int nt = threads_for(count * channels, channels);
  const int64_t stride = channels * inner;
  const bool stream = stream_output<T>(count * channels);
  parallel_for(channels, nt, [&](int64_t c) {
    const T m = save_mean[c];
    const double rs = save_rstd[c];
    double s1 = 0, s2 = 0;  // sum(dy), sum(dy * (x - mean))
    for (int64_t b = 0; b < n; ++b) {
      T a1, a2;
      const int64_t off = b * stride + c * inner;
      k.grad_sums(dy + off, x + off, nullptr, inner, m, &a1, &a2);
      s1 += a1;
      s2 += a2;
    }
    if (dweight) dweight[c] = T(s2 * rs);
    if (dbias) dbias[c] = T(s1);
    const double w = weight ? double(weight[c]) : 1.0;
    double a = w * rs, bcoef = 0, ccoef = 0;
    if (training && count > 0) {
      // dx = w * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
      bcoef = -w * rs * rs * rs * s2 / double(count);
      ccoef = -w * rs * s1 / double(count);
    }
    for (int64_t b = 0; b < n; ++b) {
      const int64_t off = b * stride + c * inner;
      k.grad_apply(dy + off, x + off, nullptr, dx + off, nullptr, nullptr, inner, m, T(rs), T(a),
                   T(bcoef), T(ccoef), stream);
    }
  }, [&] { if (stream) k.stream_fence(); });
}

#define DLKERN_INSTANTIATE_NORM(T)                                                                \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, \
                                      T);                                                         \
  template void layer_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                       T*, int64_t, int64_t);                                     \
  template void rms_norm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, T);             \
  template void rms_norm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t,     \
                                     int64_t);                                                    \
  template void group_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, \
                                      int64_t, int64_t, T);                                       \
  template void group_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                       T*, int64_t, int64_t, int64_t, int64_t);                   \
  template void batch_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, T*, T*, int64_t,  \
                                      int64_t, int64_t, bool, T, T);                              \
  template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                       T*, int64_t, int64_t, int64_t, bool);
DLKERN_INSTANTIATE_NORM(float)
DLKERN_INSTANTIATE_NORM(double)
#undef DLKERN_INSTANTIATE_NORM

}  // namespace dlkern::cpu
