// Scaled dot-product attention on a CUDA device, FlashAttention-2 style: forward with
// an online softmax that saves the per-row log-sum-exp, backward that recomputes the
// score tiles from it. Same contracts as cpu/attention.h (top-left causal, additive
// float masks through broadcast strides, GQA, fully masked rows -> 0 / lse = -inf, the
// same dropout counter hash). float and double, FP32/FP64 math (no tensor cores).
// Launch failures throw cuda::Error naming `op`. Plain C++ header: the dropout hash is
// marked host+device only when nvcc compiles it, so host code and kernels share it.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/attention.h"  // HeadArray

#if defined(__CUDACC__)
#define DLKERN_HOST_DEVICE __host__ __device__
#else
#define DLKERN_HOST_DEVICE
#endif

namespace dlkern::cuda {

// ---- dropout: a port of the CPU kernel's counter hash (cpu/attention_kernels.h) ----
// Element (b, h, i, j) of the attention weights is kept when the 53-bit uniform drawn
// from splitmix64 steps over (seed, b, h, i, j) is >= dropout_p, so CPU and CUDA drop
// the same elements for the same seed.
DLKERN_HOST_DEVICE inline uint64_t flash_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
DLKERN_HOST_DEVICE inline uint64_t flash_dropout_row_key(uint64_t seed, int64_t b, int64_t h, int64_t i) {
  uint64_t x = flash_mix64(seed + 0x9e3779b97f4a7c15ULL);
  x = flash_mix64(x ^ static_cast<uint64_t>(b));
  x = flash_mix64(x ^ static_cast<uint64_t>(h));
  return flash_mix64(x ^ static_cast<uint64_t>(i));
}
// The CPU tests u = (hash >> 11) * 2^-53 >= p in double. u is exact, so that equals
// (hash >> 11) >= ceil(p * 2^53) (p * 2^53 is exact too): one integer compare on device.
inline uint64_t flash_dropout_threshold(double p) {
  const double x = p * 9007199254740992.0;  // 2^53
  const uint64_t t = static_cast<uint64_t>(x);
  return static_cast<double>(t) < x ? t + 1 : t;
}
DLKERN_HOST_DEVICE inline bool flash_dropout_keep(uint64_t row_key, int64_t j, uint64_t threshold) {
  return (flash_mix64(row_key + static_cast<uint64_t>(j) * 0x9e3779b97f4a7c15ULL) >> 11) >= threshold;
}

// ---- problem and launch plan ----

constexpr int64_t kFlashMaxHeadDim = 128;  // D and Dv: at most 8 columns per thread (16 threads per row)
constexpr int kFlashThreads = 256;         // 16 x 16 threads per block

// Launch plan, chosen on the host (testable without a GPU). The forward runs one block per
// (b, q head, tile of `tile` query rows); dK/dV one block per (b, kv head, tile of keys,
// head split); dQ one block per (b, q head, query tile). Tiles are square (tile rows x
// tile keys). With few (b, kv head, key tile) blocks for the SMs (GQA/MQA at small batch),
// the query heads of a group are split over dkdv_splits blocks that write partial dK/dV,
// summed by a second pass.
struct FlashPlan {
  int64_t tile;           // 64, 32 or 16: rows and keys per tile (each thread owns tile/16 of each)
  int64_t threads;        // kFlashThreads
  int64_t q_tiles;        // ceil(Tq / tile)
  int64_t k_tiles;        // ceil(Tk / tile)
  int64_t fwd_blocks, fwd_smem;    // B * Hq * q_tiles, dynamic shared memory in bytes
  int64_t dkdv_splits;             // query-head splits per (b, kv head, key tile); 1 .. Hq / Hkv
  int64_t dkdv_heads;              // query heads per split (the last may have fewer)
  int64_t dkdv_blocks, dkdv_smem;  // B * Hkv * k_tiles * dkdv_splits
  int64_t dq_blocks, dq_smem;      // B * Hq * q_tiles
};
// max_smem: the device's opt-in shared memory per block; sm_count: its SMs. Picks the
// largest tile (64 for float, 32 for double, whose accumulators take twice the registers)
// whose three kernels fit; throws std::invalid_argument naming `op` when even 16 does not
// or D/Dv > 128. Splits the heads of a group for dK/dV when the unsplit grid has fewer
// than two blocks per SM.
FlashPlan plan_flash(int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv,
                     int64_t elem_bytes, int64_t max_smem, int64_t sm_count, const char* op);

template <typename T>
struct FlashProblem {
  int64_t B = 0, Hq = 0, Hkv = 0, Tq = 0, Tk = 0, D = 0, Dv = 0;
  HeadArray<T> q{}, k{}, v{};
  const T* mask = nullptr;   // additive, element (b, h, i, j) at mask[b*ms[0] + h*ms[1] + i*ms[2] + j*ms[3]]
  int64_t ms[4] = {0, 0, 0, 0};
  bool causal = false;       // key j takes part in row i only when j <= i (top-left aligned)
  T scale = T(1);
  double dropout_p = 0.0;    // > 0: weights kept by flash_dropout_keep, scaled by 1 / (1 - p)
  uint64_t seed = 0;
};

// out (B, Hq, Tq, Dv), lse (B, Hq, Tq): contiguous. A row with no key left: out 0, lse -inf.
template <typename T>
void flash_attention_forward(const FlashProblem<T>& pr, const FlashPlan& plan, T* out, T* lse, cudaStream_t stream,
                             const char* op);

// dout, o: (B, Hq, Tq, Dv) views; lse from the forward (contiguous). delta: scratch of
// B * Hq * Tq elements (rowsum(dout * o)). dkdv_part: scratch of dkdv_splits * B * Hkv *
// Tk * (D + Dv) elements when plan.dkdv_splits > 1, else unused (may be null). dq (B, Hq, Tq, D), dk (B, Hkv, Tk, D),
// dv (B, Hkv, Tk, Dv): contiguous, overwritten; dk/dv sum over the heads of a group.
template <typename T>
void flash_attention_backward(const FlashProblem<T>& pr, const FlashPlan& plan, HeadArray<T> dout, HeadArray<T> o,
                              const T* lse, T* delta, T* dkdv_part, T* dq, T* dk, T* dv, cudaStream_t stream,
                              const char* op);

}  // namespace dlkern::cuda
