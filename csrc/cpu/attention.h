// Attention family on the CPU: tiled (flash-style) scaled dot-product attention
// forward and backward, KV-cache append and RoPE. float and double; the attention
// kernels are vectorised per ISA (attention_<isa>.cpp), OpenMP over independent tasks.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

// A read-only (B, H, T, last) view: element (b, h, t, x) at p[b*sb + h*sh + t*st + x]
// (the last axis is unit-stride; any other stride, including 0 or negative, is allowed).
template <typename T>
struct HeadView {
  const T* p = nullptr;
  int64_t sb = 0, sh = 0, st = 0;
  const T* row(int64_t b, int64_t h, int64_t t) const { return p + b * sb + h * sh + t * st; }
};

enum class MaskKind : int { none = 0, boolean = 1, additive = 2 };

// Scaled dot-product attention problem. q (B, Hq, Tq, D), k (B, Hkv, Tk, D),
// v (B, Hkv, Tk, Dv); Hq % Hkv == 0 and query head h reads kv head h / (Hq / Hkv).
// mask: element (b, h, i, j) at mask[b*m_sb + h*m_sh + i*m_sq + j*m_sk] (strides 0 on
// broadcast axes); a bool mask (bytes, nonzero = attend) or an additive mask of type T.
// causal: key j takes part in query row i only when j <= i + causal_offset (0: top-left
// aligned as PyTorch's is_causal; Tk - Tq: bottom-right, as in decoding).
// dropout_p > 0: each weight is kept when a counter hash of (seed, b, h, i, j) is
// >= dropout_p and scaled by 1 / (1 - dropout_p); the backward regenerates it.
template <typename T>
struct AttentionProblem {
  int64_t B = 0, Hq = 0, Hkv = 0, Tq = 0, Tk = 0, D = 0, Dv = 0;
  HeadView<T> q, k, v;
  MaskKind mask_kind = MaskKind::none;
  const void* mask = nullptr;
  int64_t m_sb = 0, m_sh = 0, m_sq = 0, m_sk = 0;
  bool causal = false;
  int64_t causal_offset = 0;
  T scale = T(1);
  double dropout_p = 0.0;
  uint64_t seed = 0;
};

// out: (B, Hq, Tq, Dv) contiguous; lse: (B, Hq, Tq) contiguous, the log-sum-exp of each
// row's scaled, masked scores (read by the backward). A row with no key left gives
// out = 0 and lse = -inf. The T x T score matrix is never materialised.
template <typename T>
void attention_forward(const AttentionProblem<T>& pr, T* out, T* lse);

// dout, o: (B, Hq, Tq, Dv) views (the forward's output and its gradient); lse from the
// forward. dq (B, Hq, Tq, D), dk (B, Hkv, Tk, D), dv (B, Hkv, Tk, Dv): contiguous,
// overwritten; dk/dv sum over the query heads sharing a kv head.
template <typename T>
void attention_backward(const AttentionProblem<T>& pr, HeadView<T> dout, HeadView<T> o, const T* lse, T* dq,
                        T* dk, T* dv);

// Copies src (B, H, T, D) into rows offset..offset+T-1 of cache (B, H, S, D); both views
// with a unit-stride last axis. The caller checks 0 <= offset <= S - T (never as
// offset + T <= S, which overflows for a caller's offset near 2^63).
template <typename T>
void kv_cache_append(HeadView<T> src, T* cache, int64_t c_sb, int64_t c_sh, int64_t c_st, int64_t B, int64_t H,
                     int64_t T_new, int64_t D, int64_t offset);

// x, y: (n, T, D) contiguous, D even. Rotates the pairs (x[d], x[d + D/2]) of position
// t by angle (offset + t) * base^(-2d/D) (computed in double); inverse: by minus it.
// The caller checks 0 <= offset <= INT64_MAX - T.
template <typename T>
void rope(const T* x, T* y, int64_t n, int64_t T_len, int64_t D, int64_t offset, double base, bool inverse);

}  // namespace dlkern::cpu
