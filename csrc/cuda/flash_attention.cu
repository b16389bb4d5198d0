// Flash attention kernels (FlashAttention-2 schedule, FP32/FP64 SIMT math).
//
// Every kernel runs 256 threads as a 16 x 16 grid over one square tile of TILE query
// rows x TILE keys: thread (ty, tx) owns rows ty*RM .. ty*RM+RM-1 (RM = TILE/16), score
// columns tx, tx+16, ... (strided, so the 16-byte K reads of a half-warp touch 16
// different rows, padded to spread over the banks) and output columns tx, tx+16, ...
// (D, Dv <= 128: at most 8 per thread). A row's 16 threads sit in one half-warp, so row
// max and sum are 4 xor-shuffles. Q (scaled by `scale` once, as on the CPU), K, V, dO
// tiles are staged in shared memory; scores, online-softmax state and output
// accumulators stay in registers; the probabilities go through shared memory once to be
// multiplied with V.
//
// Forward: one block per (b, q head, query tile), keys tile by tile; a causal block
// stops at its last row's diagonal, and blocks are launched heaviest (last) tile first.
// GQA reads the kv head h / (Hq / Hkv) in place; blocks of one group share it through L2.
//
// Backward: delta = rowsum(dO * O) first; then a dK/dV kernel, one block per (b, kv head,
// key tile), looping over the group's query heads (or a split of them, partial sums
// added by a second pass, when there are too few blocks for the SMs) and the query tiles
// that see its keys, accumulating dK and dV in registers; then a dQ kernel, one block per
// (b, q head, query tile), looping over key tiles. Why two kernels rather than atomics
// for dQ: every gradient element then has exactly one writer, so results are
// deterministic (run to run and CPU-comparable), need no zeroed buffer and no float64
// atomics; the price is recomputing Q K^T and dO V^T once more (7 tile products, not 5).
#include "cuda/flash_attention.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <tuple>

#include "cuda/check.h"
#include "cuda/warp.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kSide = 16;   // threads per tile side
constexpr int kMaxCols = 8;  // output columns per thread: kFlashMaxHeadDim / kSide

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Row length (elements) of a staged Q/K/V/dO tile: whole 16-byte vectors (vn elements),
// an odd number of them, so the 8 lanes of one 16-byte load phase, reading 8 different
// rows at the same column, hit 8 different groups of 4 banks.
__host__ __device__ constexpr int64_t vec_ld(int64_t n, int64_t vn) { return (((n + vn - 1) / vn) | 1) * vn; }

// Shared-memory bytes of each kernel for a tile (see the kernels' layouts).
// (P and dS tiles keep rows of t + 1 elements: they are read as broadcast scalars.)
int64_t fwd_smem(int64_t t, int64_t D, int64_t Dv, int64_t eb) {
  const int64_t vn = 16 / eb;
  return (2 * t * vec_ld(D, vn) + t * vec_ld(Dv, vn) + t * (t + 1)) * eb;
}
int64_t dkdv_smem(int64_t t, int64_t D, int64_t Dv, int64_t eb) {
  const int64_t vn = 16 / eb;
  return (2 * t * vec_ld(D, vn) + 2 * t * vec_ld(Dv, vn) + 2 * t * (t + 1) + 2 * t) * eb;
}
int64_t dq_smem(int64_t t, int64_t D, int64_t Dv, int64_t eb) {
  const int64_t vn = 16 / eb;
  return (2 * t * vec_ld(D, vn) + 2 * t * vec_ld(Dv, vn) + t * (t + 1) + 2 * t) * eb;
}

// 16-byte vectors of the staged tiles.
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  using type = float4;
  static constexpr int n = 4;
  __device__ static float dot(const float4& a, const float4& b, float acc) {
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, acc))));
  }
};
template <>
struct Vec<double> {
  using type = double2;
  static constexpr int n = 2;
  __device__ static double dot(const double2& a, const double2& b, double acc) {
    return fma(a.y, b.y, fma(a.x, b.x, acc));
  }
};

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

template <typename T>
__device__ __forceinline__ T neg_inf() {
  return -INFINITY;
}

// Max / sum over the 16 lanes of a half-warp (the threads of one tile row).
template <typename T>
__device__ __forceinline__ T row_max16(T v) {
#pragma unroll
  for (int s = kSide / 2; s > 0; s /= 2) {
    const T o = __shfl_xor_sync(0xffffffffu, v, s);
    v = (o > v || o != o) ? o : v;  // NaN wins, as in warp_max
  }
  return v;
}
template <typename T>
__device__ __forceinline__ T row_sum16(T v) {
#pragma unroll
  for (int s = kSide / 2; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;
}

// dst[r*ld + d] = src_row(r)[d] * mul for r < n (row r at base + r*st), 0 for n <= r < TILE
// and for the columns cols .. (whole vectors) that dot_tile reads past the end of a row.
template <typename T, int TILE>
__device__ __forceinline__ void load_rows(T* __restrict__ dst, int ld, const T* __restrict__ base, int64_t st, int n,
                                          int cols, T mul) {
  const int padded = (cols + Vec<T>::n - 1) / Vec<T>::n * Vec<T>::n;
  for (int idx = threadIdx.x; idx < TILE * padded; idx += kFlashThreads) {
    const int r = idx / padded, d = idx - r * padded;
    dst[r * ld + d] = r < n && d < cols ? base[r * st + d] * mul : T(0);
  }
}

// acc[r][c] = sum_{k<K} A[(ty*RM + r)*lda + k] * B[(tx + 16c)*ldb + k]: rows of A dotted
// with rows of B (S = Q K^T and dP = dO V^T, or their transposes). Read in 16-byte
// vectors (rows are zero-padded to whole vectors by load_rows): a quarter of the
// shared-memory instructions of scalar loads, which would otherwise bound this loop.
template <typename T, int RM>
__device__ __forceinline__ void dot_tile(const T* __restrict__ A, int lda, const T* __restrict__ B, int ldb, int K,
                                         int ty, int tx, T (&acc)[RM][RM]) {
  using V = typename Vec<T>::type;
#pragma unroll
  for (int r = 0; r < RM; ++r)
#pragma unroll
    for (int c = 0; c < RM; ++c) acc[r][c] = T(0);
  const T* a0 = A + ty * RM * lda;
  const T* b0 = B + tx * ldb;
#pragma unroll 1
  for (int k = 0; k < K; k += Vec<T>::n) {
    V a[RM], b[RM];
#pragma unroll
    for (int r = 0; r < RM; ++r) a[r] = *reinterpret_cast<const V*>(a0 + r * lda + k);
#pragma unroll
    for (int c = 0; c < RM; ++c) b[c] = *reinterpret_cast<const V*>(b0 + c * kSide * ldb + k);
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int c = 0; c < RM; ++c) acc[r][c] = Vec<T>::dot(a[r], b[c], acc[r][c]);
  }
}

// A masked (row, key) pair's weight or dS is stored as -0, a marker no computed weight
// takes (exp gives +0 at worst); mul_tile<.., true> skips such terms, because 0 times a
// NaN or Inf in a masked key's K or V row would still be NaN.
template <typename T>
__device__ __forceinline__ bool masked_marker(T a) {
  return a == T(0) && signbit(a);
}

// acc[r][c] += sum_{k<K} A[(ty*RM + r)*lda + k] * B[k*ldb + tx + 16c] for columns < N:
// a probability (or dS) tile times V, dO, Q or K. kSkipMasked: terms whose A is the -0
// marker are left out (tiles with masked pairs; the others keep the plain loop).
template <typename T, int RM, bool kSkipMasked = false>
__device__ __forceinline__ void mul_tile(const T* __restrict__ A, int lda, const T* __restrict__ B, int ldb, int K,
                                         int N, int ty, int tx, T (&acc)[RM][kMaxCols]) {
  const T* a0 = A + ty * RM * lda;
  if (N > kSide * 4) {
    for (int k = 0; k < K; ++k) {
      T a[RM];
      bool skip[RM];
#pragma unroll
      for (int r = 0; r < RM; ++r) {
        a[r] = a0[r * lda + k];
        skip[r] = kSkipMasked && masked_marker(a[r]);
      }
#pragma unroll
      for (int c = 0; c < kMaxCols; ++c) {
        const int col = tx + kSide * c;
        if (col < N) {
          const T b = B[k * ldb + col];
#pragma unroll
          for (int r = 0; r < RM; ++r) acc[r][c] = skip[r] ? acc[r][c] : fma(a[r], b, acc[r][c]);
        }
      }
    }
  } else {  // D <= 64: half the columns, so the loop carries no dead predicates
    for (int k = 0; k < K; ++k) {
      T a[RM];
      bool skip[RM];
#pragma unroll
      for (int r = 0; r < RM; ++r) {
        a[r] = a0[r * lda + k];
        skip[r] = kSkipMasked && masked_marker(a[r]);
      }
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int col = tx + kSide * c;
        if (col < N) {
          const T b = B[k * ldb + col];
#pragma unroll
          for (int r = 0; r < RM; ++r) acc[r][c] = skip[r] ? acc[r][c] : fma(a[r], b, acc[r][c]);
        }
      }
    }
  }
}

struct DropoutArgs {
  uint64_t threshold;  // flash_dropout_threshold(p); unused when !on
  bool on;
};

// ---- forward ----

// (Two blocks per SM: 128 registers hold the 4 x 8 output accumulators and the 4 x 4
// scores without spilling, and the second block hides the barrier stalls.)
template <typename T, int TILE>
__global__ void __launch_bounds__(kFlashThreads, 2)
    flash_fwd_kernel(const FlashProblem<T> pr, T* __restrict__ out, T* __restrict__ lse, const int64_t q_tiles,
                     const DropoutArgs drop, const T inv_keep) {
  constexpr int RM = TILE / kSide;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = static_cast<int>(pr.D), Dv = static_cast<int>(pr.Dv);
  const int ldq = static_cast<int>(vec_ld(D, Vec<T>::n)), ldv = static_cast<int>(vec_ld(Dv, Vec<T>::n));
  const int ldp = TILE + 1;
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [TILE][ldq] q * scale
  T* Ks = Qs + TILE * ldq;                 // [TILE][ldq]
  T* Vs = Ks + TILE * ldq;                 // [TILE][ldv]
  T* Ps = Vs + TILE * ldv;                 // [TILE][ldp] probabilities (after dropout)
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;

  const int64_t heads = pr.B * pr.Hq;
  const int64_t qt = q_tiles - 1 - static_cast<int64_t>(blockIdx.x) / heads;  // heaviest causal tiles first
  const int64_t bh = static_cast<int64_t>(blockIdx.x) % heads, b = bh / pr.Hq, h = bh % pr.Hq;
  const int64_t hk = h / (pr.Hq / pr.Hkv);
  const int64_t i0 = qt * TILE;
  const int nq = static_cast<int>(min64(TILE, pr.Tq - i0));

  load_rows<T, TILE>(Qs, ldq, pr.q.data + b * pr.q.sb + h * pr.q.sh + i0 * pr.q.st, pr.q.st, nq, D, pr.scale);
  const T* kb = pr.k.data + b * pr.k.sb + hk * pr.k.sh;
  const T* vb = pr.v.data + b * pr.v.sb + hk * pr.v.sh;

  T o[RM][kMaxCols], m[RM], l[RM];
  uint64_t rkey[RM];
  int64_t moff[RM];
#pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int64_t i = i0 + ty * RM + r;
    m[r] = neg_inf<T>();
    l[r] = T(0);
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) o[r][c] = T(0);
    rkey[r] = drop.on ? flash_dropout_row_key(pr.seed, b, h, i) : 0;
    moff[r] = b * pr.ms[0] + h * pr.ms[1] + i * pr.ms[2];
  }
  // Top-left causal: row i sees keys j <= i, so the tile needs keys < i0 + nq.
  const int64_t k_end = pr.causal ? min64(pr.Tk, i0 + nq) : pr.Tk;
  for (int64_t j0 = 0; j0 < k_end; j0 += TILE) {
    const int nk = static_cast<int>(min64(TILE, pr.Tk - j0));
    __syncthreads();  // the previous tile's K, V and P are no longer read
    load_rows<T, TILE>(Ks, ldq, kb + j0 * pr.k.st, pr.k.st, nk, D, T(1));
    load_rows<T, TILE>(Vs, ldv, vb + j0 * pr.v.st, pr.v.st, nk, Dv, T(1));
    __syncthreads();
    T s[RM][RM];
    dot_tile<T, RM>(Qs, ldq, Ks, ldq, D, ty, tx, s);
#pragma unroll
    for (int r = 0; r < RM; ++r) {
      const int row = ty * RM + r;
      const int64_t i = i0 + row;
      T mx = neg_inf<T>();
#pragma unroll
      for (int c = 0; c < RM; ++c) {
        const int col = tx + kSide * c;
        const int64_t j = j0 + col;
        bool ok = row < nq && col < nk && (!pr.causal || j <= i);
        T x = ok ? s[r][c] : neg_inf<T>();
        if (ok && pr.mask) {  // -inf masks the key out whatever its score (NaN + -inf is NaN)
          const T a = pr.mask[moff[r] + j * pr.ms[3]];
          x = a == neg_inf<T>() ? a : x + a;
        }
        s[r][c] = x;
        mx = (x > mx || x != x) ? x : mx;
      }
      mx = row_max16(mx);
      const T m_new = (mx > m[r] || mx != mx) ? mx : m[r];
      const T mu = m_new == neg_inf<T>() ? T(0) : m_new;  // a row still all -inf subtracts a finite value
      T sum = T(0);
#pragma unroll
      for (int c = 0; c < RM; ++c) {
        const int col = tx + kSide * c;
        T p = exp(s[r][c] - mu);
        sum += p;  // the softmax sum is taken before dropout, as on the CPU
        if (drop.on) p = flash_dropout_keep(rkey[r], j0 + col, drop.threshold) ? p * inv_keep : T(0);
        Ps[row * ldp + col] = s[r][c] == neg_inf<T>() ? -T(0) : p;  // masked: the -0 marker
      }
      sum = row_sum16(sum);
      const T alpha = exp(m[r] - mu);
      l[r] = l[r] * alpha + sum;
      m[r] = m_new;
#pragma unroll
      for (int c = 0; c < kMaxCols; ++c) o[r][c] *= alpha;
    }
    __syncthreads();
    // Tiles with masked pairs skip them: p = 0 there, but V may hold NaN/Inf.
    if (pr.mask || (pr.causal && j0 + nk - 1 > i0)) mul_tile<T, RM, true>(Ps, ldp, Vs, ldv, nk, Dv, ty, tx, o);
    else mul_tile<T, RM>(Ps, ldp, Vs, ldv, nk, Dv, ty, tx, o);
  }
#pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int row = ty * RM + r;
    if (row >= nq) continue;
    const int64_t flat = (b * pr.Hq + h) * pr.Tq + i0 + row;
    const bool none = l[r] == T(0);  // no key left: 0 and -inf, as on the CPU (NaN propagates)
    const T inv = none ? T(0) : T(1) / l[r];
    T* orow = out + flat * Dv;
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) {
      const int col = tx + kSide * c;
      if (col < Dv) orow[col] = none ? T(0) : o[r][c] * inv;
    }
    if (tx == 0) lse[flat] = none ? neg_inf<T>() : m[r] + log(l[r]);
  }
}

// ---- backward ----

// delta[row] = sum_e dout[row, e] * o[row, e] (one warp per row, accumulated in double as
// on the CPU).
template <typename T>
__global__ void flash_delta_kernel(const HeadArray<T> dout, const HeadArray<T> o, T* __restrict__ delta, int64_t Hq,
                                   int64_t Tq, int64_t Dv, int64_t rows) {
  const WarpRows w;
  for (int64_t r = w.first; r < rows; r += w.step) {
    const int64_t i = r % Tq, bh = r / Tq, h = bh % Hq, b = bh / Hq;
    const T* g = dout.data + b * dout.sb + h * dout.sh + i * dout.st;
    const T* oo = o.data + b * o.sb + h * o.sh + i * o.st;
    double acc = 0;
    for (int64_t e = w.lane; e < Dv; e += kWarpSize) acc += static_cast<double>(g[e]) * static_cast<double>(oo[e]);
    acc = warp_sum(acc);
    if (w.lane == 0) delta[r] = static_cast<T>(acc);
  }
}

// Whether a score element takes part: inside the tile and the causal limit (ok) and not
// masked out by a -inf mask value (whatever the score: NaN + -inf is NaN).
template <typename T>
__device__ __forceinline__ bool takes_part(bool ok, const T* mask_at) {
  return ok && (!mask_at || *mask_at != neg_inf<T>());
}

// P (or its transpose) of one score element that takes part: exp(s + mask - lse); 0 for a
// -inf score. A fully masked row (lse = -inf) has every s = -inf, so it gets 0 without NaN.
template <typename T>
__device__ __forceinline__ T prob(T s, const T* mask_at, T row_lse) {
  if (mask_at) s += *mask_at;
  return s > neg_inf<T>() || s != s ? exp(s - row_lse) : T(0);
}

// dK/dV of one key tile of (b, kv head) over the query heads of one split of the group:
// rows of the register tile are keys (ty), columns query rows (tx + 16c). With splits > 1,
// split s writes its partial sums to dk/dv + s * part (summed by flash_sum_parts_kernel).
template <typename T, int TILE>
__global__ void __launch_bounds__(kFlashThreads)
    flash_dkdv_kernel(const FlashProblem<T> pr, const HeadArray<T> dout, const T* __restrict__ lse,
                      const T* __restrict__ delta, T* __restrict__ dk, T* __restrict__ dv, const int64_t q_tiles,
                      const int64_t splits, const int64_t split_heads, const DropoutArgs drop, const T inv_keep) {
  constexpr int RM = TILE / kSide;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = static_cast<int>(pr.D), Dv = static_cast<int>(pr.Dv);
  const int ldq = static_cast<int>(vec_ld(D, Vec<T>::n)), ldv = static_cast<int>(vec_ld(Dv, Vec<T>::n));
  const int ldp = TILE + 1;
  T* Ks = reinterpret_cast<T*>(smem_raw);  // [TILE][ldq]
  T* Qs = Ks + TILE * ldq;                 // [TILE][ldq] q * scale
  T* Vs = Qs + TILE * ldq;                 // [TILE][ldv]
  T* dOs = Vs + TILE * ldv;                // [TILE][ldv]
  T* PT = dOs + TILE * ldv;                // [TILE keys][ldp] P * dropout, transposed
  T* dST = PT + TILE * ldp;                // [TILE keys][ldp] P * (dP * dropout - delta), transposed
  T* ls = dST + TILE * ldp;                // [TILE] lse of the query rows
  T* dl = ls + TILE;                       // [TILE] delta of the query rows
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;

  const int64_t per_tile = pr.B * pr.Hkv * splits;
  const int64_t kt = static_cast<int64_t>(blockIdx.x) / per_tile;  // early key tiles (most causal work) first
  const int64_t rem = static_cast<int64_t>(blockIdx.x) % per_tile, split = rem % splits, bk = rem / splits;
  const int64_t b = bk / pr.Hkv, hk = bk % pr.Hkv;
  const int64_t g = pr.Hq / pr.Hkv;
  const int64_t hh_begin = split * split_heads, hh_end = min64(g, hh_begin + split_heads);
  const int64_t j0 = kt * TILE;
  const int nk = static_cast<int>(min64(TILE, pr.Tk - j0));
  load_rows<T, TILE>(Ks, ldq, pr.k.data + b * pr.k.sb + hk * pr.k.sh + j0 * pr.k.st, pr.k.st, nk, D, T(1));
  load_rows<T, TILE>(Vs, ldv, pr.v.data + b * pr.v.sb + hk * pr.v.sh + j0 * pr.v.st, pr.v.st, nk, Dv, T(1));

  T adk[RM][kMaxCols], adv[RM][kMaxCols];
#pragma unroll
  for (int r = 0; r < RM; ++r)
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) adk[r][c] = adv[r][c] = T(0);
  // Causal: only rows i >= j0 see these keys.
  const int64_t qt_first = pr.causal ? j0 / TILE : 0;
  for (int64_t hh = hh_begin; hh < hh_end; ++hh) {
    const int64_t h = hk * g + hh;
    for (int64_t qt = qt_first; qt < q_tiles; ++qt) {
      const int64_t i0 = qt * TILE;
      const int nq = static_cast<int>(min64(TILE, pr.Tq - i0));
      const int64_t flat0 = (b * pr.Hq + h) * pr.Tq + i0;
      __syncthreads();  // the previous query tile is no longer read
      load_rows<T, TILE>(Qs, ldq, pr.q.data + b * pr.q.sb + h * pr.q.sh + i0 * pr.q.st, pr.q.st, nq, D, pr.scale);
      load_rows<T, TILE>(dOs, ldv, dout.data + b * dout.sb + h * dout.sh + i0 * dout.st, dout.st, nq, Dv, T(1));
      for (int r = threadIdx.x; r < TILE; r += kFlashThreads) {
        ls[r] = r < nq ? lse[flat0 + r] : T(0);
        dl[r] = r < nq ? delta[flat0 + r] : T(0);
      }
      __syncthreads();
      T s[RM][RM], dp[RM][RM];
      dot_tile<T, RM>(Ks, ldq, Qs, ldq, D, ty, tx, s);
      dot_tile<T, RM>(Vs, ldv, dOs, ldv, Dv, ty, tx, dp);
#pragma unroll
      for (int c = 0; c < RM; ++c) {
        const int qr = tx + kSide * c;
        const int64_t i = i0 + qr;
        const uint64_t rkey = drop.on ? flash_dropout_row_key(pr.seed, b, h, i) : 0;
        const T* mrow = pr.mask ? pr.mask + b * pr.ms[0] + h * pr.ms[1] + i * pr.ms[2] : nullptr;
#pragma unroll
        for (int r = 0; r < RM; ++r) {
          const int kr = ty * RM + r;
          const int64_t j = j0 + kr;
          const T* mat = mrow ? mrow + j * pr.ms[3] : nullptr;
          const bool in = takes_part(kr < nk && qr < nq && (!pr.causal || j <= i), mat);
          // A masked pair gives exactly 0, whatever dP (V), lse or delta hold.
          const T p = in ? prob(s[r][c], mat, ls[qr]) : T(0);
          T z = T(1);
          if (drop.on) z = flash_dropout_keep(rkey, j, drop.threshold) ? inv_keep : T(0);
          PT[kr * ldp + qr] = in ? p * z : T(0);
          dST[kr * ldp + qr] = in ? p * (dp[r][c] * z - dl[qr]) : T(0);
        }
      }
      __syncthreads();
      mul_tile<T, RM>(PT, ldp, dOs, ldv, nq, Dv, ty, tx, adv);
      mul_tile<T, RM>(dST, ldp, Qs, ldq, nq, D, ty, tx, adk);  // Qs carries the scale
    }
  }
#pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int kr = ty * RM + r;
    if (kr >= nk) continue;
    const int64_t flat = (b * pr.Hkv + hk) * pr.Tk + j0 + kr;
    const int64_t rows = pr.B * pr.Hkv * pr.Tk;  // one split's part: rows x D, then rows x Dv
    T* dkp = dk + split * rows * D;
    T* dvp = dv + split * rows * Dv;
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) {
      const int col = tx + kSide * c;
      if (col < D) dkp[flat * D + col] = adk[r][c];
      if (col < Dv) dvp[flat * Dv + col] = adv[r][c];
    }
  }
}

// out[i] = sum over s < splits of part[s * n + i] (the head splits' partial dK or dV).
template <typename T>
__global__ void flash_sum_parts_kernel(const T* __restrict__ part, T* __restrict__ out, int64_t n, int64_t splits) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    T acc = part[i];
    for (int64_t s = 1; s < splits; ++s) acc += part[s * n + i];
    out[i] = acc;
  }
}

// dQ of one query tile of (b, q head): rows are query rows (ty), columns keys (tx + 16c).
template <typename T, int TILE>
__global__ void __launch_bounds__(kFlashThreads)
    flash_dq_kernel(const FlashProblem<T> pr, const HeadArray<T> dout, const T* __restrict__ lse,
                    const T* __restrict__ delta, T* __restrict__ dq, const int64_t q_tiles, const DropoutArgs drop,
                    const T inv_keep) {
  constexpr int RM = TILE / kSide;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int D = static_cast<int>(pr.D), Dv = static_cast<int>(pr.Dv);
  const int ldq = static_cast<int>(vec_ld(D, Vec<T>::n)), ldv = static_cast<int>(vec_ld(Dv, Vec<T>::n));
  const int ldp = TILE + 1;
  T* Qs = reinterpret_cast<T*>(smem_raw);  // [TILE][ldq] q * scale
  T* Ks = Qs + TILE * ldq;                 // [TILE][ldq]
  T* dOs = Ks + TILE * ldq;                // [TILE][ldv]
  T* Vs = dOs + TILE * ldv;                // [TILE][ldv]
  T* dS = Vs + TILE * ldv;                 // [TILE][ldp] P * (dP * dropout - delta) * scale
  T* ls = dS + TILE * ldp;
  T* dl = ls + TILE;
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;

  const int64_t heads = pr.B * pr.Hq;
  const int64_t qt = q_tiles - 1 - static_cast<int64_t>(blockIdx.x) / heads;
  const int64_t bh = static_cast<int64_t>(blockIdx.x) % heads, b = bh / pr.Hq, h = bh % pr.Hq;
  const int64_t hk = h / (pr.Hq / pr.Hkv);
  const int64_t i0 = qt * TILE;
  const int nq = static_cast<int>(min64(TILE, pr.Tq - i0));
  const int64_t flat0 = bh * pr.Tq + i0;
  load_rows<T, TILE>(Qs, ldq, pr.q.data + b * pr.q.sb + h * pr.q.sh + i0 * pr.q.st, pr.q.st, nq, D, pr.scale);
  load_rows<T, TILE>(dOs, ldv, dout.data + b * dout.sb + h * dout.sh + i0 * dout.st, dout.st, nq, Dv, T(1));
  for (int r = threadIdx.x; r < TILE; r += kFlashThreads) {
    ls[r] = r < nq ? lse[flat0 + r] : T(0);
    dl[r] = r < nq ? delta[flat0 + r] : T(0);
  }
  const T* kb = pr.k.data + b * pr.k.sb + hk * pr.k.sh;
  const T* vb = pr.v.data + b * pr.v.sb + hk * pr.v.sh;
  uint64_t rkey[RM];
#pragma unroll
  for (int r = 0; r < RM; ++r) rkey[r] = drop.on ? flash_dropout_row_key(pr.seed, b, h, i0 + ty * RM + r) : 0;
  T acc[RM][kMaxCols];
#pragma unroll
  for (int r = 0; r < RM; ++r)
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) acc[r][c] = T(0);
  const int64_t k_end = pr.causal ? min64(pr.Tk, i0 + nq) : pr.Tk;
  for (int64_t j0 = 0; j0 < k_end; j0 += TILE) {
    const int nk = static_cast<int>(min64(TILE, pr.Tk - j0));
    __syncthreads();
    load_rows<T, TILE>(Ks, ldq, kb + j0 * pr.k.st, pr.k.st, nk, D, T(1));
    load_rows<T, TILE>(Vs, ldv, vb + j0 * pr.v.st, pr.v.st, nk, Dv, T(1));
    __syncthreads();
    T s[RM][RM], dp[RM][RM];
    dot_tile<T, RM>(Qs, ldq, Ks, ldq, D, ty, tx, s);
    dot_tile<T, RM>(dOs, ldv, Vs, ldv, Dv, ty, tx, dp);
#pragma unroll
    for (int r = 0; r < RM; ++r) {
      const int row = ty * RM + r;
      const int64_t i = i0 + row;
      const T* mrow = pr.mask ? pr.mask + b * pr.ms[0] + h * pr.ms[1] + i * pr.ms[2] : nullptr;
#pragma unroll
      for (int c = 0; c < RM; ++c) {
        const int col = tx + kSide * c;
        const int64_t j = j0 + col;
        const T* mat = mrow ? mrow + j * pr.ms[3] : nullptr;
        const bool in = takes_part(row < nq && col < nk && (!pr.causal || j <= i), mat);
        T z = T(1);
        if (drop.on) z = flash_dropout_keep(rkey[r], j, drop.threshold) ? inv_keep : T(0);
        // masked: the -0 marker (the products below skip it: K may hold NaN/Inf there)
        dS[row * ldp + col] = in ? prob(s[r][c], mat, ls[row]) * (dp[r][c] * z - dl[row]) * pr.scale : -T(0);
      }
    }
    __syncthreads();
    if (pr.mask || (pr.causal && j0 + nk - 1 > i0)) mul_tile<T, RM, true>(dS, ldp, Ks, ldq, nk, D, ty, tx, acc);
    else mul_tile<T, RM>(dS, ldp, Ks, ldq, nk, D, ty, tx, acc);
  }
#pragma unroll
  for (int r = 0; r < RM; ++r) {
    const int row = ty * RM + r;
    if (row >= nq) continue;
    T* qrow = dq + (flat0 + row) * D;
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) {
      const int col = tx + kSide * c;
      if (col < D) qrow[col] = acc[r][c];
    }
  }
}

// ---- launches ----

void check_blocks(int64_t blocks, const char* op) {
  if (blocks > 2147483647LL)
    throw Error(op, "launch flash attention (more than 2^31 - 1 blocks)", cudaErrorInvalidConfiguration);
}

template <typename Kernel>
void set_smem(Kernel kernel, int64_t bytes, const char* op) {
  // Above 48 KiB a kernel must opt in to the larger dynamic shared memory.
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)), op,
        "set the flash attention shared memory size");
}

DropoutArgs dropout_args(double p) { return {p > 0 ? flash_dropout_threshold(p) : 0, p > 0}; }

template <typename T, int TILE>
void forward_tile(const FlashProblem<T>& pr, const FlashPlan& plan, T* out, T* lse, cudaStream_t stream,
                  const char* op) {
  auto kernel = flash_fwd_kernel<T, TILE>;
  set_smem(kernel, plan.fwd_smem, op);
  cudaGetLastError();
  kernel<<<static_cast<unsigned>(plan.fwd_blocks), kFlashThreads, static_cast<size_t>(plan.fwd_smem), stream>>>(
      pr, out, lse, plan.q_tiles, dropout_args(pr.dropout_p), T(1.0 / (1.0 - pr.dropout_p)));
  check_launch(op);
}

template <typename T, int TILE>
void backward_tile(const FlashProblem<T>& pr, const FlashPlan& plan, HeadArray<T> dout, const T* lse, const T* delta,
                   T* dkdv_part, T* dq, T* dk, T* dv, cudaStream_t stream, const char* op) {
  const DropoutArgs drop = dropout_args(pr.dropout_p);
  const T inv_keep = T(1.0 / (1.0 - pr.dropout_p));
  auto dkdv = flash_dkdv_kernel<T, TILE>;
  auto dqk = flash_dq_kernel<T, TILE>;
  set_smem(dkdv, plan.dkdv_smem, op);
  set_smem(dqk, plan.dq_smem, op);
  cudaGetLastError();
  if (plan.dkdv_blocks > 0) {
    const bool split = plan.dkdv_splits > 1;
    const int64_t nk = pr.B * pr.Hkv * pr.Tk * pr.D, nv = pr.B * pr.Hkv * pr.Tk * pr.Dv;
    T* dk_out = split ? dkdv_part : dk;
    T* dv_out = split ? dkdv_part + plan.dkdv_splits * nk : dv;
    dkdv<<<static_cast<unsigned>(plan.dkdv_blocks), kFlashThreads, static_cast<size_t>(plan.dkdv_smem), stream>>>(
        pr, dout, lse, delta, dk_out, dv_out, plan.q_tiles, plan.dkdv_splits, plan.dkdv_heads, drop, inv_keep);
    check_launch(op);
    if (split) {
      for (const auto& [part, out, n] : {std::tuple<const T*, T*, int64_t>{dk_out, dk, nk}, {dv_out, dv, nv}}) {
        if (n == 0) continue;
        const int64_t blocks = std::min<int64_t>(ceil_div(n, 256), 4096);
        flash_sum_parts_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(part, out, n, plan.dkdv_splits);
        check_launch(op);
      }
    }
  }
  if (plan.dq_blocks > 0) {
    dqk<<<static_cast<unsigned>(plan.dq_blocks), kFlashThreads, static_cast<size_t>(plan.dq_smem), stream>>>(
        pr, dout, lse, delta, dq, plan.q_tiles, drop, inv_keep);
    check_launch(op);
  }
}

}  // namespace

FlashPlan plan_flash(int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv,
                     int64_t elem_bytes, int64_t max_smem, int64_t sm_count, const char* op) {
  if (D < 1 || D > kFlashMaxHeadDim || Dv < 0 || Dv > kFlashMaxHeadDim)
    throw std::invalid_argument(std::string(op) + ": CUDA flash attention supports head dims 1.." +
                                std::to_string(kFlashMaxHeadDim) + " (got D=" + std::to_string(D) +
                                ", Dv=" + std::to_string(Dv) + ")");
  FlashPlan p{};
  p.threads = kFlashThreads;
  p.tile = 0;
  for (int64_t t = elem_bytes >= 8 ? 32 : 64; t >= 16; t /= 2) {
    const int64_t need = std::max({fwd_smem(t, D, Dv, elem_bytes), dkdv_smem(t, D, Dv, elem_bytes),
                                   dq_smem(t, D, Dv, elem_bytes)});
    if (need <= max_smem) {
      p.tile = t;
      break;
    }
  }
  if (p.tile == 0)
    throw std::invalid_argument(std::string(op) + ": head dims D=" + std::to_string(D) + ", Dv=" +
                                std::to_string(Dv) + " need more shared memory than the device's " +
                                std::to_string(max_smem) + " bytes per block");
  p.q_tiles = ceil_div(std::max<int64_t>(Tq, 0), p.tile);
  p.k_tiles = ceil_div(std::max<int64_t>(Tk, 0), p.tile);
  p.fwd_blocks = B * Hq * p.q_tiles;
  p.dq_blocks = p.fwd_blocks;
  // dK/dV: split the g query heads of a group over blocks when the plain grid would leave
  // SMs idle (fewer than two blocks each; GQA/MQA at small batch), as evenly as possible.
  const int64_t g = Hkv > 0 ? Hq / Hkv : 1, base = B * Hkv * p.k_tiles;
  const int64_t want = base > 0 ? ceil_div(2 * std::max<int64_t>(sm_count, 1), base) : 1;
  p.dkdv_heads = ceil_div(std::max<int64_t>(g, 1), std::max<int64_t>(1, std::min(g, want)));
  p.dkdv_splits = ceil_div(std::max<int64_t>(g, 1), p.dkdv_heads);  // no empty split
  if (Tq == 0) p.dkdv_splits = 1, p.dkdv_heads = std::max<int64_t>(g, 1);  // nothing to sum: zeros directly
  p.dkdv_blocks = base * p.dkdv_splits;
  p.fwd_smem = fwd_smem(p.tile, D, Dv, elem_bytes);
  p.dkdv_smem = dkdv_smem(p.tile, D, Dv, elem_bytes);
  p.dq_smem = dq_smem(p.tile, D, Dv, elem_bytes);
  return p;
}

template <typename T>
void flash_attention_forward(const FlashProblem<T>& pr, const FlashPlan& plan, T* out, T* lse, cudaStream_t stream,
                             const char* op) {
  if (plan.fwd_blocks <= 0) return;
  check_blocks(plan.fwd_blocks, op);
  switch (plan.tile) {
    case 16: return forward_tile<T, 16>(pr, plan, out, lse, stream, op);
    case 32: return forward_tile<T, 32>(pr, plan, out, lse, stream, op);
    default:
      if constexpr (sizeof(T) == 4) return forward_tile<T, 64>(pr, plan, out, lse, stream, op);
      throw Error(op, "launch flash attention (tile 64 is float32 only)", cudaErrorInvalidConfiguration);
  }
}

template <typename T>
void flash_attention_backward(const FlashProblem<T>& pr, const FlashPlan& plan, HeadArray<T> dout, HeadArray<T> o,
                              const T* lse, T* delta, T* dkdv_part, T* dq, T* dk, T* dv, cudaStream_t stream,
                              const char* op) {
  check_blocks(std::max(plan.dkdv_blocks, plan.dq_blocks), op);
  const int64_t rows = pr.B * pr.Hq * pr.Tq;
  if (rows > 0) {
    const int64_t warps_per_block = 8;
    const int64_t blocks = std::min<int64_t>(ceil_div(rows, warps_per_block), 65535);
    cudaGetLastError();
    flash_delta_kernel<T><<<static_cast<unsigned>(blocks), static_cast<unsigned>(warps_per_block * kWarpSize), 0,
                            stream>>>(dout, o, delta, pr.Hq, pr.Tq, pr.Dv, rows);
    check_launch(op);
  }
  switch (plan.tile) {
    case 16: return backward_tile<T, 16>(pr, plan, dout, lse, delta, dkdv_part, dq, dk, dv, stream, op);
    case 32: return backward_tile<T, 32>(pr, plan, dout, lse, delta, dkdv_part, dq, dk, dv, stream, op);
    default:
      if constexpr (sizeof(T) == 4)
        return backward_tile<T, 64>(pr, plan, dout, lse, delta, dkdv_part, dq, dk, dv, stream, op);
      throw Error(op, "launch flash attention (tile 64 is float32 only)", cudaErrorInvalidConfiguration);
  }
}

#define DLKERN_INSTANTIATE_FLASH(T)                                                                                \
  template void flash_attention_forward<T>(const FlashProblem<T>&, const FlashPlan&, T*, T*, cudaStream_t,         \
                                           const char*);                                                          \
  template void flash_attention_backward<T>(const FlashProblem<T>&, const FlashPlan&, HeadArray<T>, HeadArray<T>,  \
                                            const T*, T*, T*, T*, T*, T*, cudaStream_t, const char*);
DLKERN_INSTANTIATE_FLASH(float)
DLKERN_INSTANTIATE_FLASH(double)
#undef DLKERN_INSTANTIATE_FLASH

}  // namespace dlkern::cuda
