// float32 erf and the exact GELU's two functions, written once over a vector type S
// (simd.h's VecF32) from polynomials and rationals fitted for this file. Included by
// cpu/isa_kernels.h after simd.h, inside one ISA unit's anonymous namespace. float64
// keeps the C library's erf (activation_kernels.h): these fits are float32-accurate only.
//
// Why not the C library per element: glibc's erff branches on five ranges of |x| (and
// calls expf in the outer ones), so on a random-sign, spread input it costs ~15 ns per
// element (measured: 15 ns random, 10 ns sorted, 4 ns constant), 30x a vector pass.
//
// How the coefficients were made: a near-minimax fit of least maximum relative error
// (linearised least squares on ~20000 Chebyshev-spaced points, reweighted by Lawson's
// rule for a few hundred rounds) in float64 against scipy's erf/erfcx, then rounded to
// float32. The errors below were then measured on float32 evaluation by
// tools/erf_accuracy.cpp (tests/test_erf.py checks a dense sweep against math.erf).
//
// erf_f32 (the dlkern.ops.erf kernel): erf(-x) = -erf(x), so a = |x| and the sign is
// put back last (erf(-0) = -0). Two ranges, chosen per lane:
//   a < 0.9:  erf(a) = a + a P(a^2), P of degree 6 (fit error 3e-10 relative). Writing
//             erf = a + a P rather than a (1 + P) keeps the last rounding on the small
//             a P term: one rounding of the result, not two.
//   a >= 0.9: erf(a) = 1 - erfc(a), erfc(a) = exp(-a^2) R(a), R a [3/3] rational in a
//             fitted to erfcx(a) = exp(a^2) erfc(a) on [0.9, 4] (fit error 4e-8). erfc
//             is at most 0.2 here, so its few-ulp relative error is < 1 ulp of erf.
//             a is clamped to 4, where erf rounds to exactly 1 (erfc(4) = 1.5e-8 <
//             2^-25): +-inf gives +-1. exp(-a^2) is simd.h's polynomial exp (2e-9).
// NaN stays NaN (the clamp keeps it; exp(NaN) is NaN); subnormals are not flushed.
// Max error over every float32 input: 1.18 ulp (AVX2, AVX-512: fused multiply-adds),
// 1.46 ulp (the portable path, separate multiply and add).
//
// The GELU kernels need speed more than the last ulp (the target: 1.5x PyTorch's
// vectorised GELU at one thread), so each is one rational in t = x^2 with one division,
// no exp, no range split:
//   gelu_cdf_f32: 0.5 erf(x / sqrt 2) = x P(t) / Q(t), [5/5], fitted as erf(u) = u P(u^2)/Q(u^2)
//             on |u| <= 3.92 (fit error 1.9e-8) and rescaled (p_i 2^-i / (2 sqrt 2), q_i 2^-i)
//             for u = x / sqrt 2; x clamped to +-3.92 sqrt 2, beyond which erf(u) rounds
//             to +-1. y = 0.5 x + x (0.5 erf) as one fma.
//   gelu_grad_f32: d GELU / dx = Phi(x) + x phi(x) = 0.5 + x H(t), H a [7/5] rational
//             fitted to (0.5 erf(x / sqrt 2) + x phi(x)) / x on |x| <= 6.1, beyond which
//             the derivative is 0 or 1 to float32 precision.
// Measured over every 5th float32 with |x| < 12 against float64: forward max
// |err| / (|x| + 1) = 1.7e-7 (portable path 2.0e-7; PyTorch's float32 F.gelu: 2.7e-7),
// backward max |err| = 2.3e-7 (portable 2.9e-7; PyTorch's gelu_backward: 2.9e-7). Like PyTorch's form
// 0.5 x (1 + erf), the forward loses relative accuracy in the far negative tail, where
// GELU(x) is below 1e-7 |x|. At x = +-inf both give PyTorch's values (inf, NaN; the
// derivative NaN: x * 0 is added so inf * 0 propagates as in PyTorch).

// c0 + t (c1 + t (c2 + ...)) by Horner's rule, one fma per coefficient (unrolled at
// compile time: the coefficients are arguments, not an array to loop over).
template <class S>
DLKERN_INLINE typename S::V horner(typename S::V, double c) {
  return S::bcast(typename S::T(c));
}
template <class S, class... C>
DLKERN_INLINE typename S::V horner(typename S::V t, double c0, C... rest) {
  return S::fma(horner<S>(t, rest...), t, S::bcast(typename S::T(c0)));
}

// erf of float32 lanes (see above): <= 1.18 ulp (1.46 on the portable path).
template <class S>
DLKERN_INLINE typename S::V erf_f32(typename S::V x) {
  using V = typename S::V;
  const V a = S::min(S::bcast(4.0f), S::abs(x));   // min(c, NaN) keeps the NaN
  const V t = S::mul(a, a);
  const V p = horner<S>(t, 1.283791661e-01, -3.761263490e-01, 1.128371507e-01, -2.686050907e-02,
                        5.203858949e-03, -8.175638504e-04, 8.513100329e-05);
  const V small = S::fma(a, p, a);
  const V r = S::div(horner<S>(a, 1.001205683e+00, 7.460678220e-01, 2.418437898e-01, -7.268237823e-05),
                     horner<S>(a, 1.000000000e+00, 1.881893039e+00, 1.343780160e+00, 4.261535108e-01));
  const V large = S::sub(S::bcast(1.0f), S::mul(S::exp(S::sub(S::zero(), t)), r));
  return S::copysign(S::select_lt(a, S::bcast(0.9f), small, large), x);
}

// 0.5 erf(x / sqrt 2) of float32 lanes (the GELU forward's half of Phi - 0.5).
template <class S>
DLKERN_INLINE typename S::V gelu_half_erf_f32(typename S::V x) {
  using V = typename S::V;
  constexpr float kClamp = 5.5437349f;   // 3.92 sqrt 2
  const V xc = S::max(S::bcast(-kClamp), S::min(S::bcast(kClamp), x));   // NaN kept
  const V t = S::mul(xc, xc);
  const V p = horner<S>(t, 3.989422619e-01, 3.365964070e-02, 4.662387539e-03, 1.664207230e-04,
                        6.295113053e-06, 2.265042554e-08);
  const V q = horner<S>(t, 1.0, 2.510385811e-01, 2.852740511e-02, 1.871165703e-03, 7.265932800e-05,
                        1.190367129e-06);
  return S::div(S::mul(xc, p), q);
}

// Phi(x) + x phi(x) of float32 lanes (the GELU derivative); +-inf give NaN as PyTorch.
template <class S>
DLKERN_INLINE typename S::V gelu_grad_f32(typename S::V x) {
  using V = typename S::V;
  constexpr float kClamp = 6.1f;
  const V xc = S::max(S::bcast(-kClamp), S::min(S::bcast(kClamp), x));
  const V t = S::mul(xc, xc);
  const V p = horner<S>(t, 7.978846431e-01, -4.061267897e-02, 1.449485589e-02, -1.332067477e-04,
                        3.311770342e-05, -7.888451137e-08, 2.551946654e-09, -1.400169650e-11);
  const V q = horner<S>(t, 1.0, 2.824344039e-01, 3.730655089e-02, 2.996991621e-03, 1.537799544e-04,
                        5.771739779e-06);
  const V half = S::fma(x, S::zero(), S::bcast(0.5f));   // 0.5, or NaN where x is +-inf / NaN
  return S::fma(xc, S::div(p, q), half);
}
