// float16 front end (cpu/f16.h): the checks and trivial cases of gemm_f16, and the
// threaded conversion between float32, bf16 and float16. Baseline flags.
#include "cpu/f16.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/parallel.h"
#include "common/runtime.h"
#include "cpu/gemm_args.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// As gemm.cpp and bf16.cpp: a thread gets at least 2 MFLOP.
constexpr int64_t kMinFlopsPerThread = 2'000'000;
// Conversions: a thread gets at least 64 Ki elements (~20-40 us at the ~4-8 GB/s of one
// core), in blocks of 16 Ki that a thread's dynamic chunks hand out.
constexpr int64_t kMinConvertPerThread = 1 << 16, kConvertBlock = 1 << 14;
// bf16 <-> f16 stages through float32 in pieces this small (stays in L1).
constexpr int64_t kStage = 1024;

void narrow(const float* x, FloatFormat to, void* dst, int64_t n) {
  if (to == FloatFormat::bf16)
    bf16_from_f32(x, static_cast<uint16_t*>(dst), n);
  else if (to == FloatFormat::f16)
    f16_from_f32(x, static_cast<uint16_t*>(dst), n);
  else
    std::memcpy(dst, x, size_t(n) * 4);
}

void widen(const void* src, FloatFormat from, float* dst, int64_t n) {
  if (from == FloatFormat::bf16)
    bf16_to_f32(static_cast<const uint16_t*>(src), dst, n);
  else if (from == FloatFormat::f16)
    f16_to_f32(static_cast<const uint16_t*>(src), dst, n);
  else
    std::memcpy(dst, src, size_t(n) * 4);
}

int64_t item_size(FloatFormat f) { return f == FloatFormat::f64 ? 8 : f == FloatFormat::f32 ? 4 : 2; }

template <class To, class From>
To bit_cast(From x) {
  To y;
  std::memcpy(&y, &x, sizeof(y));
  return y;
}

// A float32 standing for d on the way to a 16-bit format. Finite or infinite d: d rounded
// to odd (truncated, the last bit set when inexact), so the one RNE that follows rounds
// as if from d itself. NaN: the float32 NaN whose 16-bit rounding is NumPy's / ml_dtypes'
// for d (float16: 0x7c00 + the top 10 payload bits, a NaN with none of them 0x7c01; bf16:
// canonical), i.e. d's top 23 payload bits, at least 1 so that it stays a NaN.
float odd_f32(double d) {
  const uint64_t u = bit_cast<uint64_t>(d);
  if (std::isnan(d)) {
    const uint32_t sig = static_cast<uint32_t>((u & 0xfffffffffffffull) >> 29);
    return bit_cast<float>(static_cast<uint32_t>(u >> 32 & 0x80000000u) | 0x7f800000u | (sig ? sig : 1u));
  }
  const float f = static_cast<float>(d);  // RNE (inf past the range)
  const double back = f;
  uint32_t b = bit_cast<uint32_t>(f);
  if (back != d) {
    if (std::fabs(back) > std::fabs(d)) b -= 1;  // rounded away from zero: one step back
    b |= 1u;
  }
  return bit_cast<float>(b);
}

// 16 bits -> float64: through the exact float32; float16 NaNs keep their bits as NumPy's
// half -> double does, float32 and bf16 (as ml_dtypes) go through the hardware cast.
double wide_f64(float f, bool from_f16) {
  if (from_f16 && std::isnan(f)) {
    const uint32_t b = bit_cast<uint32_t>(f);
    return bit_cast<double>(uint64_t(b & 0x80000000u) << 32 | 0x7ff0000000000000ull |
                            uint64_t(b & 0x7fffffu) << 29);
  }
  return static_cast<double>(f);
}

void convert_f64_block(const char* src, FloatFormat from, char* dst, FloatFormat to, int64_t n) {
  alignas(64) float stage[kStage];
  for (int64_t i = 0; i < n; i += kStage) {
    const int64_t len = std::min(kStage, n - i);
    if (from == FloatFormat::f64) {
      const double* d = reinterpret_cast<const double*>(src) + i;
      if (to == FloatFormat::f32) {
        float* o = reinterpret_cast<float*>(dst) + i;
        for (int64_t j = 0; j < len; ++j) o[j] = static_cast<float>(d[j]);
        continue;
      }
      for (int64_t j = 0; j < len; ++j) stage[j] = odd_f32(d[j]);
      narrow(stage, to, dst + i * 2, len);
    } else {
      widen(src + i * item_size(from), from, stage, len);
      double* o = reinterpret_cast<double*>(dst) + i;
      const bool f16 = from == FloatFormat::f16;
      for (int64_t j = 0; j < len; ++j) o[j] = wide_f64(stage[j], f16);
    }
  }
}

void convert_block(const char* src, FloatFormat from, char* dst, FloatFormat to, int64_t n) {
  if (from == to) {
    std::memcpy(dst, src, size_t(n * item_size(from)));
  } else if (from == FloatFormat::f64 || to == FloatFormat::f64) {
    convert_f64_block(src, from, dst, to, n);
  } else if (from == FloatFormat::f32) {
    narrow(reinterpret_cast<const float*>(src), to, dst, n);
  } else if (to == FloatFormat::f32) {
    widen(src, from, reinterpret_cast<float*>(dst), n);
  } else {
    alignas(64) float stage[kStage];
    for (int64_t i = 0; i < n; i += kStage) {
      const int64_t len = std::min(kStage, n - i);
      widen(src + i * 2, from, stage, len);
      narrow(stage, to, dst + i * 2, len);
    }
  }
}

}  // namespace

void f16_from_f32(const float* x, uint16_t* dst, int64_t n) {
  if (n > 0) active_kernels().bf16.f16_from_f32(x, dst, n);
}

void f16_to_f32(const uint16_t* x, float* dst, int64_t n) {
  if (n > 0) active_kernels().bf16.f16_to_f32(x, dst, n);
}

void gemm_f16(const GemmBf16Args& g) {
  gemm_args::check(g, "gemm_f16");
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0 || g.alpha == 0.0f) {
    gemm_args::scale_c(g);
    return;
  }
  const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k);
  const int nt = threads_for(flops > 9.0e18 ? INT64_MAX : static_cast<int64_t>(flops), kMinFlopsPerThread);
  active_kernels().bf16.gemm_f16(g, nt);
}

void convert(const void* src, FloatFormat from, void* dst, FloatFormat to, int64_t n) {
  if (n <= 0) return;
  const int64_t blocks = (n + kConvertBlock - 1) / kConvertBlock;
  const int nt = threads_for(n, kMinConvertPerThread, blocks);
  const char* s = static_cast<const char*>(src);
  char* d = static_cast<char*>(dst);
  const int64_t si = item_size(from), di = item_size(to);
  parallel_for(blocks, nt, [&](int64_t b) {
    const int64_t lo = b * kConvertBlock, len = std::min(kConvertBlock, n - lo);
    convert_block(s + lo * si, from, d + lo * di, to, len);
  });
}

}  // namespace dlkern::cpu
