// attention front end: thread-count choice and the run-time choice of ISA path for the
// tiled attention kernels; KV-cache append and RoPE (memory-bound, plain loops).
#include "cpu/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/cpu_features.h"
#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A thread gets at least this much work, in FLOPs (scores and outputs) plus 8 per
// K/V element read (a decode step is memory bound): about 8-15 us. Attention tiles
// are independent, so on an idle machine even a (1, 2, 64, 32) problem (~18 us on one
// thread) gains from a second one; a busy machine raises this 64x (threads_for).
constexpr int64_t kMinWorkPerThread = 500'000;
// Copies (KV-cache append) and RoPE: elements per thread, about 20 us.
constexpr int64_t kMinElemsPerThread = 1 << 17;

template <typename T>
int attention_threads(const AttentionProblem<T>& pr, double flops_factor) {
  const double scores = double(pr.B) * double(pr.Hq) * double(pr.Tq) * double(pr.Tk);
  const double kv = double(pr.B) * double(pr.Hkv) * double(pr.Tk) * double(pr.D + pr.Dv);
  const double work = flops_factor * 2.0 * scores * double(pr.D + pr.Dv) + 8.0 * kv;
  return threads_for(static_cast<int64_t>(std::min(work, 9.0e18)), kMinWorkPerThread);
}

bool empty(int64_t a, int64_t b, int64_t c) { return a <= 0 || b <= 0 || c <= 0; }

}  // namespace

template <typename T>
void attention_forward(const AttentionProblem<T>& pr, T* out, T* lse) {
  if (empty(pr.B, pr.Hq, pr.Tq)) return;
  const int nt = attention_threads(pr, 1.0);
  kernels<T>().attention_fwd(pr, out, lse, nt);
}

template <typename T>
void attention_backward(const AttentionProblem<T>& pr, HeadView<T> dout, HeadView<T> o, const T* lse, T* dq, T* dk,
                        T* dv) {
  if (empty(pr.B, pr.Hkv, 1)) return;
  if (pr.Tq <= 0) {  // no queries: no gradient reaches k or v
    std::fill(dk, dk + pr.B * pr.Hkv * pr.Tk * pr.D, T(0));
    std::fill(dv, dv + pr.B * pr.Hkv * pr.Tk * pr.Dv, T(0));
    return;
  }
  const int nt = attention_threads(pr, 2.5);  // dQ, dK, dV, dP and P again
  kernels<T>().attention_bwd(pr, dout, o, lse, dq, dk, dv, nt);
}

template <typename T>
void kv_cache_append(HeadView<T> src, T* cache, int64_t c_sb, int64_t c_sh, int64_t c_st, int64_t B, int64_t H,
                     int64_t T_new, int64_t D, int64_t offset) {
  const int64_t rows = B * H * T_new;
  const int nt = threads_for(rows * D, kMinElemsPerThread, rows);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % T_new, h = (r / T_new) % H, b = r / (T_new * H);
    std::memcpy(cache + b * c_sb + h * c_sh + (offset + t) * c_st, src.row(b, h, t), sizeof(T) * D);
  }
}

template <typename T>
void rope(const T* x, T* y, int64_t n, int64_t T_len, int64_t D, int64_t offset, double base, bool inverse) {
  const int64_t half = D / 2;
  if (n <= 0 || T_len <= 0 || half <= 0) return;
  // cos/sin per (position, pair), in double, rounded once to T.
  std::vector<T> cs(static_cast<size_t>(T_len * half)), sn(cs.size());
  for (int64_t t = 0; t < T_len; ++t)
    for (int64_t d = 0; d < half; ++d) {
      const double ang = double(offset + t) * std::pow(base, -2.0 * double(d) / double(D));
      cs[t * half + d] = T(std::cos(ang));
      sn[t * half + d] = T(inverse ? -std::sin(ang) : std::sin(ang));
    }
  const int64_t rows = n * T_len;
  const int nt = threads_for(rows * D, kMinElemsPerThread, rows);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const T* c = cs.data() + (r % T_len) * half;
    const T* s = sn.data() + (r % T_len) * half;
    const T* a = x + r * D;
    T* o = y + r * D;
    for (int64_t d = 0; d < half; ++d) {
      const T lo = a[d], hi = a[d + half];
      o[d] = lo * c[d] - hi * s[d];
      o[d + half] = hi * c[d] + lo * s[d];
    }
  }
}

#define DLKERN_ATTENTION_INSTANTIATE(T)                                                                          \
  template void attention_forward<T>(const AttentionProblem<T>&, T*, T*);                                        \
  template void attention_backward<T>(const AttentionProblem<T>&, HeadView<T>, HeadView<T>, const T*, T*, T*, T*); \
  template void kv_cache_append<T>(HeadView<T>, T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, \
                                   int64_t);                                                                      \
  template void rope<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t, double, bool);
DLKERN_ATTENTION_INSTANTIATE(float)
DLKERN_ATTENTION_INSTANTIATE(double)
#undef DLKERN_ATTENTION_INSTANTIATE

}  // namespace dlkern::cpu
