// Fused cross-entropy kernels for contiguous rows (input (n, c), one sample per row),
// written once over a vector type S (simd.h) and instantiated per ISA by
// cpu/isa_kernels.h. Plain loops only.
//
// Per sample i with target t and lse = log(sum_c exp(x_c)), eps = label_smoothing:
//   loss_i = (1-eps) w_t (lse - x_t) + (eps/C) sum_c w_c (lse - x_c)   (0 if ignored)
// Forward: one pass over the logits with a per-lane online max and sum (blocks of 4
// vectors share one rescale), plus sum_c w_c (x_c - x_0) for the smoothing term
// (shifted by x_0, or by 0 if x_0 is infinite, so large logits do not cancel
// catastrophically in W lse - sum_c w_c x_c).
// Backward: dx_c = g_i * ((1-eps) w_t + (eps/C) W) * exp(x_c - lse) - g_i (eps/C) w_c
//                  - [c == t] g_i (1-eps) w_t,       W = sum_c w_c,
// one pass from the logits and the saved lse; no one-hot or softmax array.
// Precision: lse is stored rounded at its own size, so exp(x - lse) errs by about
// |lse| * eps / 2 relative. Up to |lse| < kRecomputeLse that is at most 16 eps; above
// it (large logits) the row's max m and log(sum) are recomputed and exp((x - m) -
// log(sum)) used instead, as the forward does for the loss (x - m is exact near m).
#pragma once

template <typename S>
struct CrossEntropyKernels {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;



  // Online per-lane max m and sum s of exp(x - m) over one block of vectors.
  DLKERN_INLINE static void online_block(V& m, V& s, V v0, V v1, V v2, V v3) {
    const V bm = S::max(S::max(v0, v1), S::max(v2, v3));
    const V mn = S::max(S::max(m, bm), S::bcast(-max_finite<T>()));  // -big for all -inf lanes
    V add = S::add(S::exp(S::sub(v0, mn)), S::exp(S::sub(v1, mn)));
    add = S::add(add, S::add(S::exp(S::sub(v2, mn)), S::exp(S::sub(v3, mn))));
    s = S::fma(s, S::exp(S::sub(m, mn)), add);
    m = mn;
  }

  static constexpr double kRecomputeLse = 32.0;

  // lse = m + log_sum, kept apart (m = 0 and log_sum = -inf for an all -inf row).
  struct Lse {
    T m, log_sum;
  };

  // *smooth = sum_c w_c (x_c - shift) (w_c = 1 without weights) and *shift_out when wanted.
  template <bool Smooth, bool Weighted>
  // Inlined into its row loops: out of line it measured ~8% slower (AVX2, float32).
  DLKERN_INLINE static Lse row_lse(const T* x, const T* w, int64_t c, T* smooth, T* shift_out = nullptr) {
    const T ninf = neg_inf<T>();
    V m = S::bcast(ninf), s = S::bcast(T(0));
    V acc = S::bcast(T(0));
    // Shift of the smoothing sum: x_0 unless infinite (then x - x_0 could be inf - inf).
    const T shift = x[0] - x[0] == T(0) ? x[0] : T(0);
    const V x0 = S::bcast(shift);
    int64_t i = 0;
    for (; i + 4 * L <= c; i += 4 * L) {
      const V v0 = S::load(x + i), v1 = S::load(x + i + L), v2 = S::load(x + i + 2 * L), v3 = S::load(x + i + 3 * L);
      online_block(m, s, v0, v1, v2, v3);
      if (Smooth) {
        for (int k = 0; k < 4; ++k) {
          const V d = S::sub(k == 0 ? v0 : k == 1 ? v1 : k == 2 ? v2 : v3, x0);
          acc = Weighted ? S::fma(S::load(w + i + k * L), d, acc) : S::add(acc, d);
        }
      }
    }
    for (; i < c; i += L) {
      const V v = load_n<S>(x + i, c - i, ninf);
      const V ninfv = S::bcast(ninf);
      online_block(m, s, v, ninfv, ninfv, ninfv);
      if (Smooth) {
        // Lanes past the end: x loaded as the shift and weight 0 contribute nothing.
        const V d = S::sub(load_n<S>(x + i, c - i, shift), x0);
        acc = Weighted ? S::fma(load_n<S>(w + i, c - i, T(0)), d, acc) : S::add(acc, d);
      }
    }
    const T mx = S::hmax(m);
    const T msub = mx == ninf ? T(0) : mx;
    const T total = S::hsum(S::mul(s, S::exp(S::sub(m, S::bcast(msub)))));
    if (Smooth) *smooth = S::hsum(acc), *shift_out = shift;
    return Lse{msub, std::log(total)};
  }

  template <bool Smooth, bool Weighted>
  static void forward_rows(const T* x, const int64_t* target, const T* w, T w_all, T* loss, T* lse, int64_t n,
                           int64_t c, int64_t ignore_index, T eps, int nthreads) {
    // Each row's result is thread-independent: parallel_for's dynamic chunks.
    dlkern::parallel_for(n, nthreads, [&](int64_t r) {
      const T* xr = x + r * c;
      T smooth = 0, shift = 0;
      const Lse l = row_lse<Smooth, Weighted>(xr, w, c, &smooth, &shift);
      lse[r] = l.m + l.log_sum;
      const int64_t t = target[r];
      if (t == ignore_index) {
        loss[r] = 0;
        return;
      }
      const T wt = Weighted ? w[t] : T(1);
      // lse - x as (m - x) + log_sum: exact m - x keeps large logits accurate.
      T v = (T(1) - eps) * wt * ((l.m - xr[t]) + l.log_sum);
      if (Smooth) v += eps / T(c) * (w_all * ((l.m - shift) + l.log_sum) - smooth);
      loss[r] = v;
    });
  }

  static void forward(const T* x, const int64_t* target, const T* w, T w_all, T* loss, T* lse, int64_t n,
                      int64_t c, int64_t ignore_index, T eps, int nthreads) {
    const bool smooth = eps != T(0);
    if (smooth && w)
      forward_rows<true, true>(x, target, w, w_all, loss, lse, n, c, ignore_index, eps, nthreads);
    else if (smooth)
      forward_rows<true, false>(x, target, w, w_all, loss, lse, n, c, ignore_index, eps, nthreads);
    else if (w)
      forward_rows<false, true>(x, target, w, w_all, loss, lse, n, c, ignore_index, eps, nthreads);
    else
      forward_rows<false, false>(x, target, w, w_all, loss, lse, n, c, ignore_index, eps, nthreads);
  }

  // g_i = grad[i * grad_stride] * grad_scale.
  static void backward(const T* grad, int64_t grad_stride, T grad_scale, const T* x, const int64_t* target,
                       const T* lse, const T* w, T w_all, T* dx, int64_t n, int64_t c, int64_t ignore_index, T eps,
                       int nthreads) {
    // Each row's result is thread-independent: parallel_for's dynamic chunks.
    dlkern::parallel_for(n, nthreads, [&](int64_t r) {
      const T* xr = x + r * c;
      T* dr = dx + r * c;
      const int64_t t = target[r];
      if (t == ignore_index) {
        const V z = S::bcast(T(0));
        int64_t i = 0;
        for (; i + L <= c; i += L) S::store(dr + i, z);
        if (i < c) S::store_tail(dr + i, z, c - i);
        return;
      }
      const T g = grad[r * grad_stride] * grad_scale;
      const T wt = w ? w[t] : T(1);
      const V a = S::bcast(g * ((T(1) - eps) * wt + eps / T(c) * w_all));
      const V b = S::bcast(-g * eps / T(c));
      Lse l{lse[r], T(0)};
      if (!(std::fabs(l.m) < T(kRecomputeLse))) {  // also NaN, harmlessly
        T unused;
        l = row_lse<false, false>(xr, nullptr, c, &unused);
      }
      const V mv = S::bcast(l.m), lv = S::bcast(l.log_sum);
      int64_t i = 0;
      if (w && eps != T(0)) {
        for (; i + L <= c; i += L)
          S::store(dr + i, S::fma(b, S::load(w + i), S::mul(a, S::exp(S::sub(S::sub(S::load(xr + i), mv), lv)))));
        if (i < c)
          S::store_tail(dr + i,
                        S::fma(b, load_n<S>(w + i, c - i, T(0)), S::mul(a, S::exp(S::sub(S::sub(load_n<S>(xr + i, c - i, T(0)), mv), lv)))),
                        c - i);
      } else {
        // Without weights b * w_c is the constant b (zero without smoothing).
        for (; i + 2 * L <= c; i += 2 * L) {
          S::store(dr + i, S::fma(a, S::exp(S::sub(S::sub(S::load(xr + i), mv), lv)), b));
          S::store(dr + i + L, S::fma(a, S::exp(S::sub(S::sub(S::load(xr + i + L), mv), lv)), b));
        }
        for (; i < c; i += L) {
          const V d = S::fma(a, S::exp(S::sub(S::sub(load_n<S>(xr + i, c - i, T(0)), mv), lv)), b);
          if (c - i >= L)
            S::store(dr + i, d);
          else
            S::store_tail(dr + i, d, c - i);
        }
      }
      dr[t] -= g * (T(1) - eps) * wt;
    });
  }
};
