// softmax / log_softmax kernels written once over a vector type S (simd.h),
// instantiated per ISA by cpu/isa_kernels.h.
// Plain loops only (no std templates in ISA code).
//
// Layout: the array is (outer, dim, inner) contiguous and the softmax runs over dim.
// inner == 1: each row is contiguous; three short passes over a row that stays in L1
// (max; exp and sum; scale), so only the first pass reads from memory.
// inner > 1: a block of up to kChunk consecutive inner positions is processed at
// once, vectorised across inner, walking dim with stride inner; no transposes.
#pragma once

template <typename S>
struct SoftmaxKernels {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;
  static constexpr int kChunkVecs = 4;  // inner positions per strided task: 4 vectors
  static constexpr int64_t kChunk = kChunkVecs * L;



  static T row_max(const T* x, int64_t n) {
    const T ninf = neg_inf<T>();
    V m0 = S::bcast(ninf), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
      m0 = S::max(m0, S::load(x + i));
      m1 = S::max(m1, S::load(x + i + L));
      m2 = S::max(m2, S::load(x + i + 2 * L));
      m3 = S::max(m3, S::load(x + i + 3 * L));
    }
    for (; i < n; i += L) m0 = S::max(m0, load_n<S>(x + i, n - i, ninf));
    return S::hmax(S::max(S::max(m0, m1), S::max(m2, m3)));
  }

  // y = exp(x - m) (stored when y != nullptr); returns the sum.
  static T row_exp_sum(const T* x, T* y, int64_t n, T m) {
    const V mv = S::bcast(m);
    V s0 = S::bcast(T(0)), s1 = s0;
    int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
      const V e0 = S::exp(S::sub(S::load(x + i), mv));
      const V e1 = S::exp(S::sub(S::load(x + i + L), mv));
      if (y) {
        S::store(y + i, e0);
        S::store(y + i + L, e1);
      }
      s0 = S::add(s0, e0);
      s1 = S::add(s1, e1);
    }
    for (; i < n; i += L) {
      const V e = S::exp(S::sub(load_n<S>(x + i, n - i, neg_inf<T>()), mv));
      if (y) store_n<S>(y + i, e, n - i);
      s0 = S::add(s0, e);
    }
    return S::hsum(S::add(s0, s1));
  }

  static void row_forward(const T* x, T* y, int64_t n, bool log) {
    const T m = row_max(x, n);
    if (m == neg_inf<T>()) {
      // Every entry -inf (softmax 0, log_softmax -inf), unless the max dropped a NaN
      // (S::max returns its second operand when one is NaN): then NaN in, NaN out.
      // Otherwise a NaN reaches the sum below and makes the whole row NaN.
      bool has_nan = false;
      for (int64_t i = 0; i < n; ++i) has_nan |= x[i] != x[i];
      const T fill = has_nan ? T(__builtin_nan("")) : log ? neg_inf<T>() : T(0);
      for (int64_t i = 0; i < n; ++i) y[i] = fill;
      return;
    }
    if (!log) {
      const T sum = row_exp_sum(x, y, n, m);
      const V inv = S::bcast(T(1) / sum);
      int64_t i = 0;
      for (; i + L <= n; i += L) S::store(y + i, S::mul(S::load(y + i), inv));
      if (i < n) store_n<S>(y + i, S::mul(load_n<S>(y + i, n - i, T(0)), inv), n - i);
    } else {
      const T sum = row_exp_sum(x, nullptr, n, m);
      const V mv = S::bcast(m), ls = S::bcast(std::log(sum));
      for (int64_t i = 0; i < n; i += L) store_n<S>(y + i, S::sub(S::sub(load_n<S>(x + i, n - i, T(0)), mv), ls), n - i);
    }
  }

  // softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy).
  static void row_backward(const T* dy, const T* y, T* dx, int64_t n, bool log) {
    V a0 = S::bcast(T(0)), a1 = a0;
    int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
      if (log) {
        a0 = S::add(a0, S::load(dy + i));
        a1 = S::add(a1, S::load(dy + i + L));
      } else {
        a0 = S::fma(S::load(dy + i), S::load(y + i), a0);
        a1 = S::fma(S::load(dy + i + L), S::load(y + i + L), a1);
      }
    }
    for (; i < n; i += L) {
      const V g = load_n<S>(dy + i, n - i, T(0));
      a0 = log ? S::add(a0, g) : S::fma(g, load_n<S>(y + i, n - i, T(0)), a0);
    }
    const V dot = S::bcast(S::hsum(S::add(a0, a1)));
    for (i = 0; i < n; i += L) {
      const V g = load_n<S>(dy + i, n - i, T(0)), yv = load_n<S>(y + i, n - i, T(0));
      const V d = log ? S::sub(g, S::mul(S::exp(yv), dot)) : S::mul(yv, S::sub(g, dot));
      store_n<S>(dx + i, d, n - i);
    }
  }

  // One (dim, inner) block, inner positions [j0, j0 + w) with w <= kChunk.
  static void chunk_forward(const T* x, T* y, int64_t dim, int64_t inner, int64_t j0, int64_t w, bool log) {
    const T ninf = neg_inf<T>();
    const int nv = static_cast<int>((w + L - 1) / L);
    V m[kChunkVecs], s[kChunkVecs];
    for (int q = 0; q < nv; ++q) m[q] = S::bcast(ninf), s[q] = S::bcast(T(0));
    for (int64_t d = 0; d < dim; ++d) {
      const T* xr = x + d * inner + j0;
      for (int q = 0; q < nv; ++q) m[q] = S::max(m[q], load_n<S>(xr + q * L, w - q * L, ninf));
    }
    // A lane whose entries are all -inf subtracts -big instead (x - m would be NaN);
    // its sum is 0, which the clamps below turn into softmax 0 and log_softmax -inf.
    // A NaN in a lane (even one the max dropped) makes x - m, hence its sum, NaN, and
    // the clamps keep it (S::min/max return their second operand for NaN): all NaN.
    for (int q = 0; q < nv; ++q) m[q] = S::max(S::bcast(-max_finite<T>()), m[q]);
    for (int64_t d = 0; d < dim; ++d) {
      const T* xr = x + d * inner + j0;
      T* yr = y + d * inner + j0;
      for (int q = 0; q < nv; ++q) {
        const V e = S::exp(S::sub(load_n<S>(xr + q * L, w - q * L, ninf), m[q]));
        if (!log) store_n<S>(yr + q * L, e, w - q * L);
        s[q] = S::add(s[q], e);
      }
    }
    if (!log) {
      for (int q = 0; q < nv; ++q) s[q] = S::min(S::bcast(max_finite<T>()), recip(s[q]));
      for (int64_t d = 0; d < dim; ++d) {
        T* yr = y + d * inner + j0;
        for (int q = 0; q < nv; ++q) store_n<S>(yr + q * L, S::mul(load_n<S>(yr + q * L, w - q * L, T(0)), s[q]), w - q * L);
      }
    } else {
      // y = (x - m) - log(s): x - m is exact near the max, x - (m + log s) is not.
      for (int q = 0; q < nv; ++q) s[q] = vlog(S::max(S::bcast(min_normal<T>()), s[q]));
      for (int64_t d = 0; d < dim; ++d) {
        const T* xr = x + d * inner + j0;
        T* yr = y + d * inner + j0;
        for (int q = 0; q < nv; ++q)
          store_n<S>(yr + q * L, S::sub(S::sub(load_n<S>(xr + q * L, w - q * L, T(0)), m[q]), s[q]), w - q * L);
      }
    }
  }

  static void chunk_backward(const T* dy, const T* y, T* dx, int64_t dim, int64_t inner, int64_t j0, int64_t w,
                             bool log) {
    const int nv = static_cast<int>((w + L - 1) / L);
    V a[kChunkVecs];
    for (int q = 0; q < nv; ++q) a[q] = S::bcast(T(0));
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t off = d * inner + j0;
      for (int q = 0; q < nv; ++q) {
        const V g = load_n<S>(dy + off + q * L, w - q * L, T(0));
        a[q] = log ? S::add(a[q], g) : S::fma(g, load_n<S>(y + off + q * L, w - q * L, T(0)), a[q]);
      }
    }
    for (int64_t d = 0; d < dim; ++d) {
      const int64_t off = d * inner + j0;
      for (int q = 0; q < nv; ++q) {
        const V g = load_n<S>(dy + off + q * L, w - q * L, T(0)), yv = load_n<S>(y + off + q * L, w - q * L, T(0));
        const V r = log ? S::sub(g, S::mul(S::exp(yv), a[q])) : S::mul(yv, S::sub(g, a[q]));
        store_n<S>(dx + off + q * L, r, w - q * L);
      }
    }
  }

  DLKERN_INLINE static V recip(V v) {
    alignas(64) T t[L];
    S::store(t, v);
    for (int i = 0; i < L; ++i) t[i] = T(1) / t[i];
    return S::load(t);
  }
  DLKERN_INLINE static V vlog(V v) {
    alignas(64) T t[L];
    S::store(t, v);
    for (int i = 0; i < L; ++i) t[i] = std::log(t[i]);
    return S::load(t);
  }

  static void forward(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log, int nthreads) {
    if (inner == 1) {
      // Rows and tasks are thread-independent: parallel_for's dynamic chunks.
      dlkern::parallel_for(outer, nthreads, [&](int64_t r) { row_forward(x + r * dim, y + r * dim, dim, log); });
      return;
    }
    const int64_t chunks = (inner + kChunk - 1) / kChunk, tasks = outer * chunks;
    dlkern::parallel_for(tasks, nthreads, [&](int64_t t) {
      const int64_t o = t / chunks, j0 = (t % chunks) * kChunk;
      const int64_t w = inner - j0 < kChunk ? inner - j0 : kChunk;
      chunk_forward(x + o * dim * inner, y + o * dim * inner, dim, inner, j0, w, log);
    });
  }

  static void backward(const T* dy, const T* y, T* dx, int64_t outer, int64_t dim, int64_t inner, bool log,
                       int nthreads) {
    if (inner == 1) {
      dlkern::parallel_for(outer, nthreads,
                           [&](int64_t r) { row_backward(dy + r * dim, y + r * dim, dx + r * dim, dim, log); });
      return;
    }
    const int64_t chunks = (inner + kChunk - 1) / kChunk, tasks = outer * chunks;
    dlkern::parallel_for(tasks, nthreads, [&](int64_t t) {
      const int64_t o = t / chunks, j0 = (t % chunks) * kChunk;
      const int64_t w = inner - j0 < kChunk ? inner - j0 : kChunk;
      const int64_t base = o * dim * inner;
      chunk_backward(dy + base, y + base, dx + base, dim, inner, j0, w, log);
    });
  }
};
