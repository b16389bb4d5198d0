// The activation loops, written once over a vector type S (simd.h's VecF32 / VecF64)
// and instantiated per ISA by cpu/isa_kernels.h.
//
// GELU (tanh): 0.5 (1 + tanh(z)) = sigmoid(2 z) = 1 / (1 + exp(-2 z)); exp saturates to
// inf / 0 for large |z|, giving exactly 0 / 1, and a NaN input stays NaN. float32 uses
// the polynomial exp (relative error ~2e-9), float64 the C library's.

template <typename S>
struct GeluTanh {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;
  static constexpr double kC = 0.7978845608028654;   // sqrt(2/pi)
  static constexpr double kK = 0.044715;

  // s = sigmoid(2 z) of one vector.
  DLKERN_INLINE static V sig(V x) {
    const V x2 = S::mul(x, x);
    const V m2z = S::mul(x, S::fma(x2, S::bcast(T(-2 * kC * kK)), S::bcast(T(-2 * kC))));   // -2 z
    return S::div(S::bcast(T(1)), S::add(S::bcast(T(1)), S::exp(m2z)));
  }

  DLKERN_INLINE static V fwd1(V x) { return S::mul(x, sig(x)); }

  DLKERN_INLINE static V bwd1(V dy, V x) {
    const V s = sig(x);
    const V x2 = S::mul(x, x);
    const V dz2 = S::fma(x2, S::bcast(T(6 * kC * kK)), S::bcast(T(2 * kC)));   // 2 dz/dx
    const V xs1s = S::mul(S::mul(x, s), S::sub(S::bcast(T(1)), s));
    return S::mul(dy, S::fma(xs1s, dz2, s));
  }

  static void forward(const T* x, T* y, int64_t n) {
    int64_t i = 0;
    for (; i + L <= n; i += L) S::store(y + i, fwd1(S::load(x + i)));
    if (i < n) S::store_tail(y + i, fwd1(S::load_tail(x + i, n - i, T(0))), n - i);
  }

  static void backward(const T* dy, const T* x, T* dx, int64_t n) {
    int64_t i = 0;
    for (; i + L <= n; i += L) S::store(dx + i, bwd1(S::load(dy + i), S::load(x + i)));
    if (i < n)
      S::store_tail(dx + i, bwd1(S::load_tail(dy + i, n - i, T(0)), S::load_tail(x + i, n - i, T(0))), n - i);
  }
};

// GELU (exact): float32 through erf_poly.h's fitted rationals, one vector pass each way
// with no exp and no branch (accuracy there: a little better than PyTorch's float32
// GELU); float64 through the C library's erf and exp per element (correctly rounded to
// ~1 ulp; erf_poly.h's fits are float32-accurate only). erf(NaN) is NaN, and x = -inf
// gives -inf * 0 = NaN, as in PyTorch.
template <typename S>
struct GeluErf {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;
  static constexpr bool kVector = sizeof(T) == 4;
  static constexpr double kInvSqrt2 = 0.7071067811865476;     // 1 / sqrt(2)
  static constexpr double kInvSqrt2Pi = 0.3989422804014327;   // 1 / sqrt(2 pi)

  static T cdf(T x) { return T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2))); }

  // x Phi(x) = 0.5 x + x (0.5 erf(x / sqrt 2)).
  DLKERN_INLINE static V fwd1(V x) { return S::fma(x, gelu_half_erf_f32<S>(x), S::mul(x, S::bcast(T(0.5)))); }
  DLKERN_INLINE static V bwd1(V dy, V x) { return S::mul(dy, gelu_grad_f32<S>(x)); }

  static void forward(const T* x, T* y, int64_t n) {
    if constexpr (kVector) {
      int64_t i = 0;
      for (; i + L <= n; i += L) S::store(y + i, fwd1(S::load(x + i)));
      if (i < n) S::store_tail(y + i, fwd1(S::load_tail(x + i, n - i, T(0))), n - i);
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * cdf(x[i]);
    }
  }

  static void backward(const T* dy, const T* x, T* dx, int64_t n) {
    if constexpr (kVector) {
      int64_t i = 0;
      for (; i + L <= n; i += L) S::store(dx + i, bwd1(S::load(dy + i), S::load(x + i)));
      if (i < n)
        S::store_tail(dx + i, bwd1(S::load_tail(dy + i, n - i, T(0)), S::load_tail(x + i, n - i, T(0))), n - i);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const T v = x[i];
        dx[i] = dy[i] * (cdf(v) + v * T(kInvSqrt2Pi) * std::exp(T(-0.5) * v * v));
      }
    }
  }
};

// erf itself (dlkern.ops.erf): float32 by erf_poly.h's erf_f32 (<= 1.9 ulp), float64 by
// the C library's erf per element.
template <typename S>
struct Erf {
  using T = typename S::T;
  static constexpr int L = S::L;

  static void forward(const T* x, T* y, int64_t n) {
    if constexpr (sizeof(T) == 4) {
      int64_t i = 0;
      for (; i + L <= n; i += L) S::store(y + i, erf_f32<S>(S::load(x + i)));
      if (i < n) S::store_tail(y + i, erf_f32<S>(S::load_tail(x + i, n - i, T(0))), n - i);
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = std::erf(x[i]);
    }
  }
};
