// Segment loops of the normalisation kernels, written once over a SIMD type S (simd.h)
// and instantiated per ISA by cpu/isa_kernels.h. S provides: T, V, L, zero, load,
// store, bcast, add, sub, mul, fma(a, b, c) = a*b + c, hsum_tree, stream (a non-temporal
// store to a sizeof(V)-aligned address), fence. Plain loops only (no std algorithms: see
// cpu/isa.h, ODR safety of ISA code).
// Reductions keep 4 vector accumulators (4 * L independent partial sums), which both
// hides add latency and keeps each partial sum short (smaller rounding error).

template <typename S>
struct NormSegments {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;

  // Elements to write with scalar stores before dst is aligned for S::stream (0 when
  // not streaming or when dst is not even element-aligned, which then streams nothing).
  static int64_t peel_for(const T* dst, int64_t n, bool stream) {
    if (!stream) return 0;
    const auto addr = reinterpret_cast<uintptr_t>(dst);
    if (addr % sizeof(T) != 0) return n;
    const int64_t p = static_cast<int64_t>(((sizeof(V) - addr % sizeof(V)) % sizeof(V)) / sizeof(T));
    return p < n ? p : n;
  }

  template <bool Stream>
  static void put(T* p, V v) {
    if (Stream) S::stream(p, v);
    else S::store(p, v);
  }

  static T sum_shifted(const T* x, int64_t n, T k) {
    const V kv = S::bcast(k);
    V a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
    int64_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
      a0 = S::add(a0, S::sub(S::load(x + i), kv));
      a1 = S::add(a1, S::sub(S::load(x + i + L), kv));
      a2 = S::add(a2, S::sub(S::load(x + i + 2 * L), kv));
      a3 = S::add(a3, S::sub(S::load(x + i + 3 * L), kv));
    }
    for (; i + L <= n; i += L) a0 = S::add(a0, S::sub(S::load(x + i), kv));
    T s = S::hsum_tree(S::add(S::add(a0, a1), S::add(a2, a3)));
    for (; i < n; ++i) s += x[i] - k;
    return s;
  }

  static void dev_stats(const T* x, int64_t n, T m, T* sq_out, T* s_out) {
    const V mv = S::bcast(m);
    V q0 = S::zero(), q1 = S::zero(), q2 = S::zero(), q3 = S::zero();
    V s0 = S::zero(), s1 = S::zero();
    int64_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
      const V d0 = S::sub(S::load(x + i), mv), d1 = S::sub(S::load(x + i + L), mv);
      const V d2 = S::sub(S::load(x + i + 2 * L), mv), d3 = S::sub(S::load(x + i + 3 * L), mv);
      q0 = S::fma(d0, d0, q0);
      q1 = S::fma(d1, d1, q1);
      q2 = S::fma(d2, d2, q2);
      q3 = S::fma(d3, d3, q3);
      s0 = S::add(s0, S::add(d0, d1));
      s1 = S::add(s1, S::add(d2, d3));
    }
    for (; i + L <= n; i += L) {
      const V d = S::sub(S::load(x + i), mv);
      q0 = S::fma(d, d, q0);
      s0 = S::add(s0, d);
    }
    T sq = S::hsum_tree(S::add(S::add(q0, q1), S::add(q2, q3)));
    T s = S::hsum_tree(S::add(s0, s1));
    for (; i < n; ++i) {
      const T d = x[i] - m;
      sq += d * d;
      s += d;
    }
    *sq_out = sq;
    *s_out = s;
  }

  static T sum_sq(const T* x, int64_t n) {
    V a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
    int64_t i = 0;
    for (; i + 4 * L <= n; i += 4 * L) {
      const V v0 = S::load(x + i), v1 = S::load(x + i + L);
      const V v2 = S::load(x + i + 2 * L), v3 = S::load(x + i + 3 * L);
      a0 = S::fma(v0, v0, a0);
      a1 = S::fma(v1, v1, a1);
      a2 = S::fma(v2, v2, a2);
      a3 = S::fma(v3, v3, a3);
    }
    for (; i + L <= n; i += L) {
      const V v = S::load(x + i);
      a0 = S::fma(v, v, a0);
    }
    T s = S::hsum_tree(S::add(S::add(a0, a1), S::add(a2, a3)));
    for (; i < n; ++i) s += x[i] * x[i];
    return s;
  }

  template <bool HasW, bool HasB, bool Stream>
  static void normalize_wb_t(const T* x, const T* w, const T* b, T* y, int64_t n, T m, T r) {
    const V mv = S::bcast(m), rv = S::bcast(r);
    auto one = [&](int64_t j) {
      V v = S::mul(S::sub(S::load(x + j), mv), rv);
      if (HasW && HasB) v = S::fma(v, S::load(w + j), S::load(b + j));
      else if (HasW) v = S::mul(v, S::load(w + j));
      else if (HasB) v = S::add(v, S::load(b + j));
      put<Stream>(y + j, v);
    };
    int64_t i = 0;
    for (const int64_t p = peel_for(y, n, Stream); i < p; ++i) {
      T v = (x[i] - m) * r;
      if (HasW) v *= w[i];
      if (HasB) v += b[i];
      y[i] = v;
    }
    for (; i + 2 * L <= n; i += 2 * L) {
      one(i);
      one(i + L);
    }
    for (; i + L <= n; i += L) one(i);
    for (; i < n; ++i) {
      T v = (x[i] - m) * r;
      if (HasW) v *= w[i];
      if (HasB) v += b[i];
      y[i] = v;
    }
  }

  template <bool Stream>
  static void normalize_wb_s(const T* x, const T* w, const T* b, T* y, int64_t n, T m, T r) {
    if (w && b) normalize_wb_t<true, true, Stream>(x, w, b, y, n, m, r);
    else if (w) normalize_wb_t<true, false, Stream>(x, w, b, y, n, m, r);
    else if (b) normalize_wb_t<false, true, Stream>(x, w, b, y, n, m, r);
    else normalize_wb_t<false, false, Stream>(x, w, b, y, n, m, r);
  }

  static void normalize_wb(const T* x, const T* w, const T* b, T* y, int64_t n, T m, T r, bool stream) {
    if (stream) normalize_wb_s<true>(x, w, b, y, n, m, r);
    else normalize_wb_s<false>(x, w, b, y, n, m, r);
  }

  template <bool Stream>
  static void normalize_st_t(const T* x, T* y, int64_t n, T m, T s, T t) {
    const V mv = S::bcast(m), sv = S::bcast(s), tv = S::bcast(t);
    int64_t i = 0;
    for (const int64_t p = peel_for(y, n, Stream); i < p; ++i) y[i] = (x[i] - m) * s + t;
    for (; i + 2 * L <= n; i += 2 * L) {
      put<Stream>(y + i, S::fma(S::sub(S::load(x + i), mv), sv, tv));
      put<Stream>(y + i + L, S::fma(S::sub(S::load(x + i + L), mv), sv, tv));
    }
    for (; i + L <= n; i += L) put<Stream>(y + i, S::fma(S::sub(S::load(x + i), mv), sv, tv));
    for (; i < n; ++i) y[i] = (x[i] - m) * s + t;
  }

  static void normalize_st(const T* x, T* y, int64_t n, T m, T s, T t, bool stream) {
    if (stream) normalize_st_t<true>(x, y, n, m, s, t);
    else normalize_st_t<false>(x, y, n, m, s, t);
  }

  template <bool HasW>
  static void grad_sums_t(const T* dy, const T* x, const T* w, int64_t n, T m, T* s1_out, T* s2_out) {
    const V mv = S::bcast(m);
    V a0 = S::zero(), a1 = S::zero(), b0 = S::zero(), b1 = S::zero();
    int64_t i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
      V g0 = S::load(dy + i), g1 = S::load(dy + i + L);
      if (HasW) {
        g0 = S::mul(g0, S::load(w + i));
        g1 = S::mul(g1, S::load(w + i + L));
      }
      a0 = S::add(a0, g0);
      a1 = S::add(a1, g1);
      b0 = S::fma(g0, S::sub(S::load(x + i), mv), b0);
      b1 = S::fma(g1, S::sub(S::load(x + i + L), mv), b1);
    }
    for (; i + L <= n; i += L) {
      V g = S::load(dy + i);
      if (HasW) g = S::mul(g, S::load(w + i));
      a0 = S::add(a0, g);
      b0 = S::fma(g, S::sub(S::load(x + i), mv), b0);
    }
    T s1 = S::hsum_tree(S::add(a0, a1)), s2 = S::hsum_tree(S::add(b0, b1));
    for (; i < n; ++i) {
      const T g = HasW ? dy[i] * w[i] : dy[i];
      s1 += g;
      s2 += g * (x[i] - m);
    }
    *s1_out = s1;
    *s2_out = s2;
  }

  static void grad_sums(const T* dy, const T* x, const T* w, int64_t n, T m, T* s1, T* s2) {
    if (w) grad_sums_t<true>(dy, x, w, n, m, s1, s2);
    else grad_sums_t<false>(dy, x, w, n, m, s1, s2);
  }

  template <bool HasW, bool HasDW, bool HasDB, bool Stream>
  static void grad_apply_t(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, int64_t n,
                           T m, T r, T a, T b, T c) {
    const V mv = S::bcast(m), rv = S::bcast(r), av = S::bcast(a), bv = S::bcast(b), cv = S::bcast(c);
    auto one = [&](int64_t j) {
      const V g = S::load(dy + j);
      const V d = S::sub(S::load(x + j), mv);
      const V ga = HasW ? S::mul(S::mul(g, S::load(w + j)), av) : S::mul(g, av);
      put<Stream>(dx + j, S::add(ga, S::fma(d, bv, cv)));
      if (HasDW) S::store(dw + j, S::fma(S::mul(g, d), rv, S::load(dw + j)));
      if (HasDB) S::store(db + j, S::add(S::load(db + j), g));
    };
    auto scalar = [&](int64_t j) {
      const T g = dy[j], d = x[j] - m;
      const T ga = HasW ? g * w[j] * a : g * a;
      dx[j] = ga + (d * b + c);
      if (HasDW) dw[j] += g * d * r;
      if (HasDB) db[j] += g;
    };
    int64_t i = 0;
    for (const int64_t p = peel_for(dx, n, Stream); i < p; ++i) scalar(i);
    for (; i + 2 * L <= n; i += 2 * L) {
      one(i);
      one(i + L);
    }
    for (; i + L <= n; i += L) one(i);
    for (; i < n; ++i) scalar(i);
  }

  template <bool Stream>
  static void grad_apply_s(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, int64_t n, T m,
                           T r, T a, T b, T c) {
    // dw is accumulated only with a weight (layer/rms norm per-column accumulators).
    if (w) {
      if (dw && db) grad_apply_t<true, true, true, Stream>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
      else if (dw) grad_apply_t<true, true, false, Stream>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
      else if (db) grad_apply_t<true, false, true, Stream>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
      else grad_apply_t<true, false, false, Stream>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
    } else {
      if (db) grad_apply_t<false, false, true, Stream>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
      else grad_apply_t<false, false, false, Stream>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
    }
  }

  static void grad_apply(const T* dy, const T* x, const T* w, T* dx, T* dw, T* db, int64_t n, T m,
                         T r, T a, T b, T c, bool stream) {
    if (stream) grad_apply_s<true>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
    else grad_apply_s<false>(dy, x, w, dx, dw, db, n, m, r, a, b, c);
  }

  // Orders this thread's streaming (non-temporal) stores before what follows.
  static void stream_fence() { S::fence(); }

  static constexpr NormSegmentKernels<T> table() {
    return {&sum_shifted, &dev_stats, &sum_sq, &normalize_wb, &normalize_st, &grad_sums, &grad_apply, &stream_fence};
  }
};
