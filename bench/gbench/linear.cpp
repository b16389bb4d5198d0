// Matrix products and float-format conversion: gemm (float, double), gemm_packed,
// gemm_strided_batched, gemm_bf16, gemm_f16, convert.
#include <cstring>

#include "cpu/bf16.h"
#include "cpu/f16.h"
#include "cpu/gemm.h"
#include "gbench_util.h"

namespace {

using gbench::check_close;

// C = A B for row-major A (m, k), B (k, n), in double, at 256 sampled entries (a full
// reference would cost more than the timed product).
template <typename In, typename Out>
bool check_gemm_sampled(benchmark::State& state, const char* what, const In* a, const In* b, const Out* c,
                        int64_t m, int64_t k, int64_t n, double tol, double (*decode)(In) = nullptr) {
  std::mt19937_64 rng(7);
  for (int t = 0; t < 256; ++t) {
    const int64_t i = int64_t(rng() % uint64_t(m)), j = int64_t(rng() % uint64_t(n));
    double ref = 0, scale = 0;
    for (int64_t p = 0; p < k; ++p) {
      const double x = decode ? decode(a[i * k + p]) : double(a[i * k + p]);
      const double y = decode ? decode(b[p * n + j]) : double(b[p * n + j]);
      ref += x * y;
      scale += std::fabs(x * y);
    }
    if (!gbench::check_scalar(state, what, double(c[i * n + j]), ref, tol, scale)) return false;
  }
  return true;
}

template <typename T>
void BM_gemm(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  auto a = gbench::uniform<T>(m * k, 1), b = gbench::uniform<T>(k * n, 2);
  std::vector<T> c(size_t(m * n));
  auto run = [&] {
    dlkern::cpu::gemm<T>(false, false, m, n, k, T(1), a.data(), k, b.data(), n, T(0), c.data(), n);
  };
  run();
  if (!check_gemm_sampled(state, "gemm", a.data(), b.data(), c.data(), m, k, n, sizeof(T) == 4 ? 1e-5 : 1e-13))
    return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_flops(state, 2.0 * double(m) * double(n) * double(k));
}
BENCHMARK(BM_gemm<float>)->Name("gemm/f32")->ArgNames({"m", "k", "n"})->Args({64, 64, 64})
    ->Args({256, 256, 256})->Args({512, 512, 512})->Args({32, 256, 1024})->UseRealTime();
BENCHMARK(BM_gemm<double>)->Name("gemm/f64")->ArgNames({"m", "k", "n"})->Args({256, 256, 256})->UseRealTime();

// The recurrence's product: B packed once, multiplied at every step.
void BM_gemm_packed(benchmark::State& state) {
  const int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  auto a = gbench::uniform<float>(m * k, 3), b = gbench::uniform<float>(k * n, 4);
  std::vector<float> c(size_t(m * n));
  const auto packed = dlkern::cpu::gemm_pack_b(b.data(), n, 1, k, n);
  auto run = [&] { dlkern::cpu::gemm_packed<float>(m, 1.f, a.data(), k, 1, packed, 0.f, c.data(), n); };
  run();
  if (!check_gemm_sampled(state, "gemm_packed", a.data(), b.data(), c.data(), m, k, n, 1e-5)) return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_flops(state, 2.0 * double(m) * double(n) * double(k));
}
BENCHMARK(BM_gemm_packed)->Name("gemm_packed/f32")->ArgNames({"m", "k", "n"})->Args({32, 256, 1024})->UseRealTime();

// Attention-sized products: many small (m, k) x (k, n), one per batch item.
void BM_gemm_strided_batched(benchmark::State& state) {
  const int64_t batch = state.range(0), s = state.range(1);
  auto a = gbench::uniform<float>(batch * s * s, 5), b = gbench::uniform<float>(batch * s * s, 6);
  std::vector<float> c(size_t(batch * s * s));
  dlkern::cpu::GemmArgs<float> g;
  g.m = g.n = g.k = s;
  g.a = a.data(), g.a_rs = s, g.a_cs = 1;
  g.b = b.data(), g.b_rs = s, g.b_cs = 1;
  g.c = c.data(), g.ldc = s;
  auto run = [&] { dlkern::cpu::gemm_strided_batched(g, batch, s * s, s * s, s * s); };
  run();
  // The last item: its offsets are where a wrong batch stride would show.
  const int64_t last = (batch - 1) * s * s;
  if (!check_gemm_sampled(state, "gemm_strided_batched", a.data() + last, b.data() + last, c.data() + last, s, s, s,
                          1e-5))
    return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_flops(state, 2.0 * double(batch) * double(s) * double(s) * double(s));
}
BENCHMARK(BM_gemm_strided_batched)->Name("gemm_strided_batched/f32")->ArgNames({"batch", "size"})
    ->Args({64, 64})->UseRealTime();

double bits_to_double_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// IEEE binary16 decoded from its fields (independent of the library's conversion).
double bits_to_double_f16(uint16_t h) {
  const int e = (h >> 10) & 31, frac = h & 1023;
  const double mag = e == 0 ? std::ldexp(double(frac), -24)
                     : e == 31 ? (frac ? NAN : INFINITY)
                               : std::ldexp(double(1024 + frac), e - 25);
  return (h >> 15) ? -mag : mag;
}

// 16-bit inputs, float32 accumulation: bf16 (vdpbf16ps where the CPU has it) and f16.
void BM_gemm_16(benchmark::State& state, bool bf16) {
  const int64_t s = state.range(0);
  auto af = gbench::uniform<float>(s * s, 7), bf = gbench::uniform<float>(s * s, 8);
  std::vector<uint16_t> a(af.size()), b(bf.size());
  if (bf16) {
    dlkern::cpu::bf16_from_f32(af.data(), a.data(), s * s);
    dlkern::cpu::bf16_from_f32(bf.data(), b.data(), s * s);
  } else {
    dlkern::cpu::f16_from_f32(af.data(), a.data(), s * s);
    dlkern::cpu::f16_from_f32(bf.data(), b.data(), s * s);
  }
  std::vector<float> c(size_t(s * s));
  dlkern::cpu::GemmBf16Args g;
  g.m = g.n = g.k = s;
  g.a = a.data(), g.a_rs = s, g.a_cs = 1;
  g.b = b.data(), g.b_rs = s, g.b_cs = 1;
  g.c = c.data(), g.ldc = s;
  auto run = [&] { bf16 ? dlkern::cpu::gemm_bf16(g) : dlkern::cpu::gemm_f16(g); };
  run();
  // Products of 16-bit values are exact in float32; only the float32 sums round.
  if (!check_gemm_sampled(state, bf16 ? "gemm_bf16" : "gemm_f16", a.data(), b.data(), c.data(), s, s, s, 1e-5,
                          bf16 ? bits_to_double_bf16 : bits_to_double_f16))
    return;
  for (auto _ : state) {
    run();
    benchmark::ClobberMemory();
  }
  gbench::set_flops(state, 2.0 * double(s) * double(s) * double(s));
}
BENCHMARK_CAPTURE(BM_gemm_16, bf16, true)->Name("gemm_bf16")->ArgNames({"size"})->Arg(256)->UseRealTime();
BENCHMARK_CAPTURE(BM_gemm_16, f16, false)->Name("gemm_f16")->ArgNames({"size"})->Arg(256)->UseRealTime();

// float32 -> 16 bits and back. The narrowing is checked against its definition: the
// 16-bit value (decoded from its bits here) is within half a unit in the last place of
// x, so it is the nearest (normal range: 7 stored mantissa bits for bf16, 10 for f16),
// and the widening gives exactly that value.
void BM_convert(benchmark::State& state, dlkern::cpu::FloatFormat narrow) {
  using dlkern::cpu::FloatFormat;
  const int64_t n = state.range(0);
  const bool to_16 = state.range(1) == 1;
  auto x = gbench::uniform<float>(n, 9, -100.0, 100.0);
  for (auto& v : x)
    if (std::fabs(v) < 1e-3f) v = 1e-3f;  // keep the f16 round trip in its normal range
  std::vector<uint16_t> h(static_cast<size_t>(n));
  std::vector<float> back(static_cast<size_t>(n));
  dlkern::cpu::convert(x.data(), FloatFormat::f32, h.data(), narrow, n);
  dlkern::cpu::convert(h.data(), narrow, back.data(), FloatFormat::f32, n);
  const int mantissa_bits = narrow == FloatFormat::bf16 ? 7 : 10;
  for (int64_t i = 0; i < n; ++i) {
    const double d = narrow == FloatFormat::bf16 ? bits_to_double_bf16(h[i]) : bits_to_double_f16(h[i]);
    int e;
    std::frexp(double(x[i]), &e);  // |x| in [2^(e-1), 2^e): one ulp there is 2^(e-1-mantissa_bits)
    const double half_ulp = std::ldexp(1.0, e - 2 - mantissa_bits);
    if (double(back[i]) != d || std::fabs(d - double(x[i])) > half_ulp) {
      char msg[200];
      std::snprintf(msg, sizeof msg, "convert: element %lld: %.9g -> %.9g -> %.9g", (long long)i, double(x[i]), d,
                    double(back[i]));
      gbench::fail(state, msg);
      return;
    }
  }
  for (auto _ : state) {
    if (to_16)
      dlkern::cpu::convert(x.data(), FloatFormat::f32, h.data(), narrow, n);
    else
      dlkern::cpu::convert(h.data(), narrow, back.data(), FloatFormat::f32, n);
    benchmark::ClobberMemory();
  }
  gbench::set_bytes(state, double(n) * 6.0);
}
BENCHMARK_CAPTURE(BM_convert, bf16, dlkern::cpu::FloatFormat::bf16)->Name("convert/bf16")
    ->ArgNames({"n", "narrow"})->Args({1 << 20, 1})->Args({1 << 20, 0})->UseRealTime();
BENCHMARK_CAPTURE(BM_convert, f16, dlkern::cpu::FloatFormat::f16)->Name("convert/f16")
    ->ArgNames({"n", "narrow"})->Args({1 << 20, 1})->Args({1 << 20, 0})->UseRealTime();

}  // namespace
