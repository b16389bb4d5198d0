// The accuracy of csrc/cpu/erf_poly.h, measured: erf_f32 over every non-negative float32
// below 4 (erf_f32 is odd by construction and clamps at 4) against the C library's double
// erf, in ulps of the float32 result; the GELU forward and derivative over every 5th
// float32 with |x| < 12 against float64 formulas. One ISA per build (~2 min each):
//   g++ -O2 -std=c++17 -Icsrc -DDLKERN_SIMD_AVX512 -mavx512f -mavx512vl -mavx512bw -mavx512dq
//       -mavx2 -mfma tools/erf_accuracy.cpp -o /tmp/erf_acc && /tmp/erf_acc
//   (AVX2: -DDLKERN_SIMD_AVX2 -mavx2 -mfma; the portable path: no define, no flags)
// Results are quoted in erf_poly.h's comments.
// GCC 12's AVX-512 intrinsics trip these falsely (as in csrc/cpu/isa_avx512.cpp).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <algorithm>
namespace chk {
#include "cpu/simd.h"
#include "cpu/erf_poly.h"
}
using S = chk::VecF32;
static float bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static double ulp_of(double ref) {  // float32 ulp at |ref|
  float r = std::fabs((float)ref);
  if (r < 1.17549435e-38f) return std::ldexp(1.0, -149);
  return std::nextafter(r, INFINITY) - r;
}
int main() {
  const int L = S::L;
  double worst = 0; float worst_x = 0;
  // erf: every non-negative float below 4 (erf is odd by construction), then the rest by stride.
  alignas(64) float in[64], out[64];
  for (uint64_t u = 0; u < 0x7f800000u; u += L) {
    if (u >= 0x40800000u && (u & 0xFFFF) >= (uint64_t)L) { u = (u | 0xFFFF) + 1 - L; continue; }
    for (int i = 0; i < L; ++i) in[i] = bits((uint32_t)(u + i));
    S::store(out, chk::erf_f32<S>(S::load(in)));
    for (int i = 0; i < L; ++i) {
      const double ref = std::erf((double)in[i]);
      const double e = std::fabs(out[i] - ref) / ulp_of(ref);
      if (e > worst) { worst = e; worst_x = in[i]; }
    }
  }
  printf("erf: max %.3f ulp at x = %.9g\n", worst, worst_x);
  const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, -1e-45f, 1e-38f};
  for (float v : sp) { for (int i = 0; i < L; ++i) in[i] = v; S::store(out, chk::erf_f32<S>(S::load(in)));
    printf("  erf(%g) = %g (signbit %d)\n", v, out[0], (int)std::signbit(out[0])); }
  // GELU forward / backward: every 5th float with |x| <= 12, both signs.
  double wf = 0, wb = 0, wfu = 0; float xf = 0, xb = 0, xfu = 0;
  for (int sgn = 0; sgn < 2; ++sgn)
    for (uint64_t u = 0; u < 0x41400000u; u += 5 * L) {
      for (int i = 0; i < L; ++i) in[i] = bits((uint32_t)(u + 5 * i) | (sgn ? 0x80000000u : 0));
      const S::V x = S::load(in);
      alignas(64) float f[64], b[64];
      S::store(f, S::fma(x, chk::gelu_half_erf_f32<S>(x), S::mul(x, S::bcast(0.5f))));
      S::store(b, chk::gelu_grad_f32<S>(x));
      for (int i = 0; i < L; ++i) {
        const double xd = in[i];
        const double Phi = xd < 0 ? 0.5 * std::erfc(-xd / std::sqrt(2.0)) : 0.5 * (1 + std::erf(xd / std::sqrt(2.0)));
        const double y = xd * Phi, d = Phi + xd * std::exp(-0.5 * xd * xd) / std::sqrt(2 * M_PI);
        const double ef = std::fabs(f[i] - y) / (std::fabs(xd) + 1), eb = std::fabs(b[i] - d);
        if (ef > wf) { wf = ef; xf = in[i]; }
        if (eb > wb) { wb = eb; xb = in[i]; }
        if (xd > 0) { const double eu = std::fabs(f[i] - y) / ulp_of(y); if (eu > wfu) { wfu = eu; xfu = in[i]; } }
      }
    }
  printf("gelu fwd: max |err|/(|x|+1) %.3g at %.9g; x > 0: max %.3f ulp at %.9g\n", wf, xf, wfu, xfu);
  printf("gelu bwd: max |err| %.3g at %.9g\n", wb, xb);
}
