// The recurrent cells' pointwise loops (cpu/rnn.h), written once over a vector type S
// (simd.h's VecF32 / VecF64) and instantiated per ISA by cpu/isa_kernels.h. One pass over
// each batch row: the gate blocks of a row are read at offsets 0, H, 2H, 3H, so one
// vector of hidden units needs one load from each block and no transposes.
//
// Accuracy: sigmoid(x) from exp(-|x|) (below: exactly 1 for large x, subnormal then 0 for
// large negative x; a NaN stays NaN). tanh: float64 from the C library per lane (accuracy
// over speed, as float64's exp); float32 as (1 - t) / (1 + t), t = exp(-2|x|), with the sign put back,
// where |x| >= 0.5 (there 1 - t >= 0.63, so t's rounding costs under 1e-7 relative), and
// its odd Taylor series to x^15 below (truncation error < 1e-8 relative at |x| = 0.5),
// where the quotient would cancel.

template <typename S>
struct RnnMath {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;

  DLKERN_INLINE static V one() { return S::bcast(T(1)); }

  // e = exp(-|x|) never overflows; 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0, so a
  // large negative x gives its (subnormal) value rather than 1 / inf = 0: then
  // sigmoid(x) * inf stays inf, as in PyTorch, instead of 0 * inf = NaN.
  DLKERN_INLINE static V sigmoid(V x) {
    const V e = S::exp(S::sub(S::zero(), S::abs(x)));
    const V pos = S::div(one(), S::add(one(), e));
    // A NaN compares false, so it takes `pos`, which is NaN.
    return S::select_lt(x, S::zero(), S::mul(e, pos), pos);
  }

  DLKERN_INLINE static V tanh(V x) {
    if constexpr (sizeof(T) == 4) {
      const V ax = S::abs(x);
      const V t = S::exp(S::mul(ax, S::bcast(T(-2))));
      const V big = S::copysign(S::div(S::sub(one(), t), S::add(one(), t)), x);
      const V x2 = S::mul(x, x);
      V p = S::bcast(T(-929569.0 / 638512875.0));
      p = S::fma(p, x2, S::bcast(T(21844.0 / 6081075.0)));
      p = S::fma(p, x2, S::bcast(T(-1382.0 / 155925.0)));
      p = S::fma(p, x2, S::bcast(T(62.0 / 2835.0)));
      p = S::fma(p, x2, S::bcast(T(-17.0 / 315.0)));
      p = S::fma(p, x2, S::bcast(T(2.0 / 15.0)));
      p = S::fma(p, x2, S::bcast(T(-1.0 / 3.0)));
      const V small = S::fma(S::mul(p, x2), x, x);
      // A NaN compares false, so it takes `big`, which keeps it NaN.
      return S::select_lt(ax, S::bcast(T(0.5)), small, big);
    } else {
      alignas(64) T v[L];
      std::memcpy(v, &x, sizeof(V));
      for (int i = 0; i < L; ++i) v[i] = std::tanh(v[i]);
      std::memcpy(&x, v, sizeof(V));
      return x;
    }
  }
};

template <typename S>
struct RnnKernels {
  using T = typename S::T;
  using V = typename S::V;
  using M = RnnMath<S>;
  static constexpr int L = S::L;

  // body(j, n) for each vector of a row of H units: n = the lanes left (>= L: a whole vector).
  template <typename F>
  DLKERN_INLINE static void over_units(int64_t H, F&& body) {
    for (int64_t j = 0; j < H; j += L) body(j, H - j);
  }

  static void lstm_forward(const T* gates, const T* c_prev, T* h, T* c, T* act, int64_t B, int64_t H, int nthreads) {
    parallel_for(B, nthreads, [&](int64_t b) {
      const T* g = gates + b * 4 * H;
      T* a = act + b * 4 * H;
      const int64_t r = b * H;
      over_units(H, [&](int64_t j, int64_t n) {
        const V gi = M::sigmoid(load_n<S>(g + j, n, T(0)));
        const V gf = M::sigmoid(load_n<S>(g + H + j, n, T(0)));
        const V gg = M::tanh(load_n<S>(g + 2 * H + j, n, T(0)));
        const V go = M::sigmoid(load_n<S>(g + 3 * H + j, n, T(0)));
        const V cn = S::fma(gf, load_n<S>(c_prev + r + j, n, T(0)), S::mul(gi, gg));
        store_n<S>(a + j, gi, n);
        store_n<S>(a + H + j, gf, n);
        store_n<S>(a + 2 * H + j, gg, n);
        store_n<S>(a + 3 * H + j, go, n);
        store_n<S>(c + r + j, cn, n);
        store_n<S>(h + r + j, S::mul(go, M::tanh(cn)), n);
      });
    });
  }

  // dc_total = dc + dh o (1 - tanh(c)^2); d(pre-activation) = d(activated) * its derivative:
  // s (1 - s) for the sigmoids, 1 - g^2 for tanh.
  static void lstm_backward(const T* dh, const T* dc, const T* act, const T* c_prev, const T* c, T* dgates,
                            T* dc_prev, int64_t B, int64_t H, int nthreads) {
    parallel_for(B, nthreads, [&](int64_t b) {
      const T* a = act + b * 4 * H;
      T* dg = dgates + b * 4 * H;
      const int64_t r = b * H;
      const V one = M::one();
      over_units(H, [&](int64_t j, int64_t n) {
        const V gi = load_n<S>(a + j, n, T(0)), gf = load_n<S>(a + H + j, n, T(0));
        const V gg = load_n<S>(a + 2 * H + j, n, T(0)), go = load_n<S>(a + 3 * H + j, n, T(0));
        const V vdh = load_n<S>(dh + r + j, n, T(0));
        const V tc = M::tanh(load_n<S>(c + r + j, n, T(0)));
        const V dct = S::fma(S::mul(vdh, go), S::sub(one, S::mul(tc, tc)), load_n<S>(dc + r + j, n, T(0)));
        const V cp = load_n<S>(c_prev + r + j, n, T(0));
        store_n<S>(dg + j, S::mul(S::mul(dct, gg), S::mul(gi, S::sub(one, gi))), n);
        store_n<S>(dg + H + j, S::mul(S::mul(dct, cp), S::mul(gf, S::sub(one, gf))), n);
        store_n<S>(dg + 2 * H + j, S::mul(S::mul(dct, gi), S::sub(one, S::mul(gg, gg))), n);
        store_n<S>(dg + 3 * H + j, S::mul(S::mul(vdh, tc), S::mul(go, S::sub(one, go))), n);
        store_n<S>(dc_prev + r + j, S::mul(dct, gf), n);
      });
    });
  }

  static void gru_forward(const T* gi, const T* gh, const T* h_prev, T* h, T* saved, int64_t B, int64_t H,
                          int nthreads) {
    parallel_for(B, nthreads, [&](int64_t b) {
      const T* xi = gi + b * 3 * H;
      const T* xh = gh + b * 3 * H;
      T* sv = saved + b * 4 * H;
      const int64_t r = b * H;
      over_units(H, [&](int64_t j, int64_t n) {
        const V rg = M::sigmoid(S::add(load_n<S>(xi + j, n, T(0)), load_n<S>(xh + j, n, T(0))));
        const V zg = M::sigmoid(S::add(load_n<S>(xi + H + j, n, T(0)), load_n<S>(xh + H + j, n, T(0))));
        const V hn = load_n<S>(xh + 2 * H + j, n, T(0));
        const V ng = M::tanh(S::fma(rg, hn, load_n<S>(xi + 2 * H + j, n, T(0))));
        const V hp = load_n<S>(h_prev + r + j, n, T(0));
        store_n<S>(sv + j, rg, n);
        store_n<S>(sv + H + j, zg, n);
        store_n<S>(sv + 2 * H + j, ng, n);
        store_n<S>(sv + 3 * H + j, hn, n);
        // (1 - z) n + z h_prev: each term's rounding is relative to its own size.
        store_n<S>(h + r + j, S::fma(zg, hp, S::mul(S::sub(M::one(), zg), ng)), n);
      });
    });
  }

  // dn = dh (1 - z), dz = dh (h_prev - n); dgi_n = dn (1 - n^2), dgi_z = dz z (1 - z),
  // dgi_r = dgi_n gh_n r (1 - r).
  static void gru_backward(const T* dh, const T* saved, const T* h_prev, T* dgi, T* dgh, T* dh_prev, int64_t B,
                           int64_t H, int nthreads) {
    parallel_for(B, nthreads, [&](int64_t b) {
      const T* sv = saved + b * 4 * H;
      T* di = dgi + b * 3 * H;
      T* dg = dgh + b * 3 * H;
      const int64_t r = b * H;
      const V one = M::one();
      over_units(H, [&](int64_t j, int64_t n) {
        const V rg = load_n<S>(sv + j, n, T(0)), zg = load_n<S>(sv + H + j, n, T(0));
        const V ng = load_n<S>(sv + 2 * H + j, n, T(0)), hn = load_n<S>(sv + 3 * H + j, n, T(0));
        const V vdh = load_n<S>(dh + r + j, n, T(0));
        const V hp = load_n<S>(h_prev + r + j, n, T(0));
        const V dn = S::mul(S::mul(vdh, S::sub(one, zg)), S::sub(one, S::mul(ng, ng)));
        const V dz = S::mul(S::mul(vdh, S::sub(hp, ng)), S::mul(zg, S::sub(one, zg)));
        const V dr = S::mul(S::mul(dn, hn), S::mul(rg, S::sub(one, rg)));
        store_n<S>(di + j, dr, n);
        store_n<S>(di + H + j, dz, n);
        store_n<S>(di + 2 * H + j, dn, n);
        store_n<S>(dg + j, dr, n);
        store_n<S>(dg + H + j, dz, n);
        store_n<S>(dg + 2 * H + j, S::mul(dn, rg), n);
        store_n<S>(dh_prev + r + j, S::mul(vdh, zg), n);
      });
    });
  }

  // The vanilla RNN's activation over B rows of H units: h = tanh(pre) or relu(pre) (a NaN
  // compares false, so relu keeps it, as torch.relu does).
  static void rnn_forward(const T* pre, T* h, int64_t B, int64_t H, bool relu, int nthreads) {
    parallel_for(B, nthreads, [&](int64_t b) {
      const int64_t r = b * H;
      over_units(H, [&](int64_t j, int64_t n) {
        const V x = load_n<S>(pre + r + j, n, T(0));
        store_n<S>(h + r + j, relu ? S::select_lt(x, S::zero(), S::zero(), x) : M::tanh(x), n);
      });
    });
  }

  // dpre = dh (1 - h^2) for tanh, dh [h > 0] for relu (dh times 1 or 0, so an infinite dh
  // on a zero unit gives NaN, as the product does in PyTorch).
  static void rnn_backward(const T* dh, const T* h, T* dpre, int64_t B, int64_t H, bool relu, int nthreads) {
    parallel_for(B, nthreads, [&](int64_t b) {
      const int64_t r = b * H;
      const V one = M::one();
      over_units(H, [&](int64_t j, int64_t n) {
        const V vdh = load_n<S>(dh + r + j, n, T(0)), hv = load_n<S>(h + r + j, n, T(0));
        const V d = relu ? S::select_lt(S::zero(), hv, one, S::zero()) : S::sub(one, S::mul(hv, hv));
        store_n<S>(dpre + r + j, S::mul(vdh, d), n);
      });
    });
  }
};
