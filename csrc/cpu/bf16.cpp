// bf16 front end (cpu/bf16.h): checks, trivial cases, the choice of path, and the
// scalar model the tests compare every path against. Baseline flags.
#include "cpu/bf16.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "common/cpu_features.h"
#include "common/runtime.h"
#include "cpu/gemm_args.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// As gemm.cpp: a thread gets at least 2 MFLOP.
constexpr int64_t kMinFlopsPerThread = 2'000'000;

// Pairs per depth block, balanced over k so no block is much thinner than the others.
// 384 pairs (K = 768) measured best on Zen 4 at 1 thread (192 pairs: 2-4% slower at
// 1024^2 and 4096 x 768 x 3072; 64-128: slower still): fewer passes over C, and the
// packed A block (192 rows x 768, 288 KiB) still sits in the 1 MiB L2.
constexpr int64_t kDepthPairs = 384;

void check_args(const GemmBf16Args& g) { gemm_args::check(g, "gemm_bf16"); }

using gemm_args::scale_c;

float widen(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float flush(float x) { return std::fabs(x) < std::numeric_limits<float>::min() ? std::copysign(0.0f, x) : x; }

}  // namespace

void bf16_from_f32(const float* x, uint16_t* dst, int64_t n) {
  if (n > 0) active_kernels().bf16.from_f32(x, dst, n);
}

void bf16_to_f32(const uint16_t* x, float* dst, int64_t n) {
  if (n > 0) active_kernels().bf16.to_f32(x, dst, n);
}

int64_t gemm_bf16_depth_block(int64_t k) {
  const int64_t pairs = (k + 1) / 2;
  if (pairs <= kDepthPairs) return pairs < 1 ? 1 : pairs;
  const int64_t blocks = (pairs + kDepthPairs - 1) / kDepthPairs;
  return (pairs + blocks - 1) / blocks;
}

bool gemm_bf16_has_dpbf16() { return isa_supported(Isa::avx512) && isa_kernels(Isa::avx512).bf16.gemm_dpbf16; }

void gemm_bf16(const GemmBf16Args& g, Bf16Path path) {
  check_args(g);
  const Bf16Kernels& k = active_kernels().bf16;
  if (path == Bf16Path::dpbf16 && !k.gemm_dpbf16)
    throw std::runtime_error(std::string("gemm_bf16: the vdpbf16ps path cannot run on ISA '") +
                             isa_name(active_isa()) + "'" +
                             (cpu_features().avx512bf16 ? "" : " (this CPU lacks AVX-512 BF16)"));
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0 || g.alpha == 0.0f) {
    scale_c(g);
    return;
  }
  const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k);
  const int nt = threads_for(flops > 9.0e18 ? INT64_MAX : static_cast<int64_t>(flops), kMinFlopsPerThread);
  if (k.gemm_dpbf16 && path != Bf16Path::fallback)
    k.gemm_dpbf16(g, nt);
  else
    k.gemm_fallback(g, nt);
}

void gemm_bf16_model(const GemmBf16Args& g, bool flush_denormals) {
  check_args(g);
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0 || g.alpha == 0.0f) {
    scale_c(g);
    return;
  }
  const int64_t pairs = (g.k + 1) / 2, kcp = gemm_bf16_depth_block(g.k);
  auto in = [&](uint16_t h) { return flush_denormals ? flush(widen(h)) : widen(h); };
  auto out = [&](float x) { return flush_denormals ? flush(x) : x; };
  for (int64_t i = 0; i < g.m; ++i)
    for (int64_t j = 0; j < g.n; ++j) {
      float* cp = g.c + i * g.ldc + j;
      for (int64_t q0 = 0; q0 < pairs; q0 += kcp) {
        float acc = 0.0f;
        for (int64_t q = q0; q < std::min(pairs, q0 + kcp); ++q) {
          const int64_t e = 2 * q, o = e + 1;
          const float ao = o < g.k ? in(g.a[i * g.a_rs + o * g.a_cs]) : 0.0f;
          const float bo = o < g.k ? in(g.b[o * g.b_rs + j * g.b_cs]) : 0.0f;
          acc = out(std::fma(ao, bo, acc));
          acc = out(std::fma(in(g.a[i * g.a_rs + e * g.a_cs]), in(g.b[e * g.b_rs + j * g.b_cs]), acc));
        }
        const float v = g.alpha * acc;
        const float beta = q0 == 0 ? g.beta : 1.0f;
        *cp = beta == 0.0f ? v : std::fma(beta, *cp, v);
      }
    }
}

}  // namespace dlkern::cpu
