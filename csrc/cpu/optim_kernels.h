// The fused optimizer steps (cpu/optim.h has the contract) over one contiguous block,
// written once over a vector type S (simd.h's VecF32 / VecF64) and instantiated per ISA
// by cpu/isa_kernels.h. The arithmetic is the NumPy composition's (optim/adam.py,
// sgd.py) and the CUDA kernels' (cuda/optim.cu), operation by operation with every
// factor rounded to T once, so the three agree to a rounding of an fma the compiler may
// contract. The options are loop-invariant branches: each block tests them once per
// vector, which the branch predictor makes free next to the memory traffic.

template <typename S>
struct OptimKernels {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;

  struct Adam {
    V decay, l2, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, step_size;
    bool decayed, coupled, amsgrad, maximize;
  };

  DLKERN_INLINE static void adam_vec(V& p, V g, V& m, V& v, V* vmax, const Adam& a) {
    if (a.decayed) p = S::mul(p, a.decay);
    if (a.maximize) g = S::mul(g, S::bcast(T(-1)));  // -0 for +0, as numpy.negative
    if (a.coupled) g = S::add(S::mul(p, a.l2), g);
    m = S::add(S::mul(m, a.beta1), S::mul(g, a.one_minus_beta1));
    v = S::add(S::mul(v, a.beta2), S::mul(S::mul(g, g), a.one_minus_beta2));
    V vhat = v;
    if (a.amsgrad) {
      vhat = S::max_nan(*vmax, v);
      *vmax = vhat;
    }
    const V denom = S::add(S::div(S::sqrt(vhat), a.bc2_sqrt), a.eps);
    p = S::add(p, S::mul(S::div(m, denom), a.step_size));
  }

  static void adam(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
                   const AdamFactors& f) {
    const Adam a{S::bcast(T(f.decay)), S::bcast(T(f.l2)), S::bcast(T(f.beta1)), S::bcast(T(f.one_minus_beta1)),
                 S::bcast(T(f.beta2)), S::bcast(T(f.one_minus_beta2)), S::bcast(T(f.bias_correction2_sqrt)),
                 S::bcast(T(f.eps)), S::bcast(T(f.step_size)), f.decay != 1.0, f.l2 != 0.0, f.amsgrad, f.maximize};
    // One body for full vectors and the tail: r lanes at offset i (tail lanes are
    // filled with 1, so no lane divides 0 by 0 or takes a square root of garbage).
    auto body = [&](int64_t i, int64_t r) {
      const bool full = r == L;
      auto ld = [&](const T* x) { return full ? S::load(x + i) : S::load_tail(x + i, r, T(1)); };
      auto st = [&](T* x, V y) { full ? S::store(x + i, y) : S::store_tail(x + i, y, r); };
      V p = ld(param), m = ld(exp_avg), v = ld(exp_avg_sq);
      V vm = a.amsgrad ? ld(max_exp_avg_sq) : v;
      adam_vec(p, ld(grad), m, v, &vm, a);
      st(exp_avg, m);
      st(exp_avg_sq, v);
      if (a.amsgrad) st(max_exp_avg_sq, vm);
      st(param, p);
    };
    int64_t i = 0;
    for (; i + L <= n; i += L) body(i, L);
    if (i < n) body(i, n - i);
  }

  static void sgd(T* param, const T* grad, T* buf, int64_t n, const SgdFactors& f) {
    const V l2 = S::bcast(T(f.l2)), mom = S::bcast(T(f.momentum)), omd = S::bcast(T(f.one_minus_dampening)),
            neg_lr = S::bcast(T(f.neg_lr));
    const bool coupled = f.l2 != 0.0, use_momentum = f.momentum != 0.0;
    auto body = [&](int64_t i, int64_t r) {
      const bool full = r == L;
      auto ld = [&](const T* x) { return full ? S::load(x + i) : S::load_tail(x + i, r, T(0)); };
      auto st = [&](T* x, V y) { full ? S::store(x + i, y) : S::store_tail(x + i, y, r); };
      const V p = ld(param);
      V g = ld(grad);
      if (f.maximize) g = S::mul(g, S::bcast(T(-1)));
      if (coupled) g = S::add(S::mul(p, l2), g);
      if (use_momentum) {
        const V b = f.first ? g : S::add(S::mul(ld(buf), mom), S::mul(g, omd));
        st(buf, b);
        g = f.nesterov ? S::add(g, S::mul(b, mom)) : b;
      }
      st(param, S::add(p, S::mul(g, neg_lr)));
    };
    int64_t i = 0;
    for (; i + L <= n; i += L) body(i, L);
    if (i < n) body(i, n - i);
  }
};
