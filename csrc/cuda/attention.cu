// RoPE and decode attention kernels.
//
// Decode attention: grid (B * Hkv * row_groups, splits). A block stages tile_keys keys
// and values of its (batch, kv head) in shared memory, and each of its 8 warps runs an
// online softmax for one query row (a query head of the group at one query position)
// against them, so the heads of a GQA group share every K/V read. Each block writes
// its split's (max, sum, unnormalised output) per row; a second kernel merges the
// splits. Lanes hold D/32 query values and Dv/32 accumulators (D, Dv <= 256).
#include "cuda/attention.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.h"
#include "cuda/warp.cuh"

namespace dlkern::cuda {
namespace {

constexpr int kRopeThreads = 256;
constexpr int kWarps = kDecodeRowsPerBlock;
constexpr int kDecodeThreads = kWarps * kWarpSize;
constexpr int kPerLane = kDecodeMaxHeadDim / kWarpSize;

template <typename T>
__global__ void rope_kernel(const T* __restrict__ x, T* __restrict__ y, const T* __restrict__ cos_sin, int64_t rows,
                            int64_t T_len, int64_t half) {
  const int64_t total = rows * half;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
    const int64_t r = idx / half, d = idx % half;
    const T* cs = cos_sin + ((r % T_len) * half + d) * 2;
    const T c = cs[0], s = cs[1];
    const T* a = x + r * 2 * half;
    T* o = y + r * 2 * half;
    const T lo = a[d], hi = a[d + half];
    o[d] = lo * c - hi * s;
    o[d + half] = hi * c + lo * s;
  }
}

struct DecodeArgs {
  int64_t B, Hq, Hkv, Tq, length, D, Dv;
  int64_t group;  // Hq / Hkv
  int64_t row_groups, chunk, tile_keys;
  int64_t ms[4];
};

template <typename T>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_split_kernel(const HeadArray<T> q, const HeadArray<T> k, const HeadArray<T> v, const T* __restrict__ mask,
                        T* __restrict__ part, const DecodeArgs a, const T scale) {
  extern __shared__ unsigned char smem_raw[];
  T* k_tile = reinterpret_cast<T*>(smem_raw);     // [tile_keys][D]
  T* v_tile = k_tile + a.tile_keys * a.D;         // [tile_keys][Dv]

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  // (The many (b, kv head, row group) blocks go on grid.x, limit 2^31 - 1; the few splits,
  // at most ~2 per SM, on grid.y, limit 65535: a prefill-sized Tq overflowed grid.y.)
  const int64_t split = blockIdx.y;
  const int64_t rg = blockIdx.x % a.row_groups;
  const int64_t bk = blockIdx.x / a.row_groups;  // b * Hkv + kv head
  const int64_t b = bk / a.Hkv, kvh = bk % a.Hkv;
  const int64_t rows = a.group * a.Tq;
  const int64_t row = rg * kWarps + warp;  // within the (b, kv head) group: head-major, then query
  const bool active = row < rows;
  const int64_t hq = kvh * a.group + (active ? row / a.Tq : 0);
  const int64_t qi = active ? row % a.Tq : 0;
  // Causal, bottom-right aligned: query qi sees keys j <= last_key.
  const int64_t last_key = a.length - a.Tq + qi;

  T qreg[kPerLane], acc[kPerLane];
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int64_t d = lane + i * kWarpSize;
    qreg[i] = (active && d < a.D) ? q.data[b * q.sb + hq * q.sh + qi * q.st + d] * scale : T(0);
    acc[i] = T(0);
  }
  T m = -INFINITY, l = T(0);

  const int64_t j_begin = split * a.chunk;
  const int64_t j_end = j_begin + a.chunk < a.length ? j_begin + a.chunk : a.length;
  const T* kb = k.data + b * k.sb + kvh * k.sh;
  const T* vb = v.data + b * v.sb + kvh * v.sh;
  for (int64_t j0 = j_begin; j0 < j_end; j0 += a.tile_keys) {
    const int64_t n = j_end - j0 < a.tile_keys ? j_end - j0 : a.tile_keys;
    __syncthreads();  // the previous tile is no longer read
    for (int64_t e = threadIdx.x; e < n * a.D; e += blockDim.x) {
      const int64_t jj = e / a.D, d = e % a.D;
      k_tile[e] = kb[(j0 + jj) * k.st + d];
    }
    for (int64_t e = threadIdx.x; e < n * a.Dv; e += blockDim.x) {
      const int64_t jj = e / a.Dv, d = e % a.Dv;
      v_tile[e] = vb[(j0 + jj) * v.st + d];
    }
    __syncthreads();
    if (!active) continue;  // warp-uniform; the barriers above are outside
    for (int64_t jj = 0; jj < n; ++jj) {
      const int64_t j = j0 + jj;
      if (j > last_key) break;
      T s = 0;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int64_t d = lane + i * kWarpSize;
        if (d < a.D) s += qreg[i] * k_tile[jj * a.D + d];
      }
      s = warp_sum(s);
      if (mask) {  // a -inf mask value skips the key whatever its score (NaN + -inf is NaN)
        const T mv = mask[b * a.ms[0] + hq * a.ms[1] + qi * a.ms[2] + j * a.ms[3]];
        if (mv == T(-INFINITY)) continue;
        s += mv;
      }
      // Masked out (-inf): no weight. A NaN score (NaN in q, k or the mask) must poison the
      // row as on the CPU (which returns NaN there), so it is not skipped: NaN wins the max.
      if (s == T(-INFINITY)) continue;
      const T m_new = (s > m || s != s) ? s : m;
      const T corr = exp(m - m_new);  // m = -inf at first: exp(-inf) = 0
      const T p = exp(s - m_new);
      l = l * corr + p;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int64_t d = lane + i * kWarpSize;
        if (d < a.Dv) acc[i] = acc[i] * corr + p * v_tile[jj * a.Dv + d];
      }
      m = m_new;
    }
  }
  if (!active) return;
  // part: [split][b][hq][qi][Dv + 2] = (acc..., m, l)
  const int64_t flat_row = ((b * a.Hq + hq) * a.Tq + qi);
  T* dst = part + (split * a.B * a.Hq * a.Tq + flat_row) * (a.Dv + 2);
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int64_t d = lane + i * kWarpSize;
    if (d < a.Dv) dst[d] = acc[i];
  }
  if (lane == 0) {
    dst[a.Dv] = m;
    dst[a.Dv + 1] = l;
  }
}

// One warp per output row: merges the splits' partial softmax states.
template <typename T>
__global__ void decode_combine_kernel(const T* __restrict__ part, T* __restrict__ out, int64_t out_rows, int64_t Dv,
                                      int64_t splits) {
  const WarpRows w;
  for (int64_t r = w.first; r < out_rows; r += w.step) {
    T M = -INFINITY;
    for (int64_t s = 0; s < splits; ++s) {
      const T ms = part[(s * out_rows + r) * (Dv + 2) + Dv];
      M = (ms > M || ms != ms) ? ms : M;  // NaN wins: a split's NaN row stays NaN after the merge
    }
    T L = 0;
    for (int64_t s = 0; s < splits; ++s) {
      const T* p = part + (s * out_rows + r) * (Dv + 2);
      if (p[Dv] != T(-INFINITY)) L += p[Dv + 1] * exp(p[Dv] - M);  // (a NaN m or M makes L NaN)
    }
    T* o = out + r * Dv;
    for (int64_t d = w.lane; d < Dv; d += kWarpSize) {
      if (L == T(0)) {  // no visible key: 0, as on the CPU (a NaN L falls through to NaN)
        o[d] = T(0);
        continue;
      }
      T v = 0;
      for (int64_t s = 0; s < splits; ++s) {
        const T* p = part + (s * out_rows + r) * (Dv + 2);
        if (p[Dv] != T(-INFINITY)) v += p[d] * exp(p[Dv] - M);
      }
      o[d] = v / L;
    }
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

DecodePlan plan_decode(int64_t B, int64_t Hkv, int64_t rows_per_kv_head, int64_t length, int64_t D, int64_t Dv,
                       int64_t elem_bytes, int sm_count) {
  DecodePlan p{};
  p.row_groups = std::max<int64_t>(1, ceil_div(rows_per_kv_head, kDecodeRowsPerBlock));
  // Keys staged per tile: as many as fit in 48 KiB (the default dynamic limit), at most 64.
  const int64_t per_key = std::max<int64_t>(1, (D + Dv) * elem_bytes);
  p.tile_keys = std::max<int64_t>(1, std::min<int64_t>(64, (48 * 1024) / per_key));
  p.smem_bytes = p.tile_keys * per_key;
  // Split the keys when there are fewer blocks than two waves of the SMs, keeping at
  // least 4 tiles per split so the merge stays cheap.
  const int64_t blocks = std::max<int64_t>(1, B * Hkv * p.row_groups);
  const int64_t want = std::max<int64_t>(1, ceil_div(2 * std::max(sm_count, 1), blocks));
  const int64_t most = std::max<int64_t>(1, ceil_div(std::max<int64_t>(length, 1), 4 * p.tile_keys));
  p.splits = std::min(want, most);
  p.chunk = ceil_div(ceil_div(std::max<int64_t>(length, 1), p.splits), p.tile_keys) * p.tile_keys;
  p.splits = ceil_div(std::max<int64_t>(length, 1), p.chunk);  // no empty trailing split
  return p;
}

template <typename T>
void rope(const T* x, T* y, const T* cos_sin, int64_t rows, int64_t T_len, int64_t D, cudaStream_t stream,
          const char* op) {
  const int64_t half = D / 2;
  if (rows <= 0 || half <= 0) return;
  const int64_t blocks = std::min<int64_t>(ceil_div(rows * half, kRopeThreads), 65535);
  cudaGetLastError();
  rope_kernel<T><<<static_cast<unsigned>(blocks), kRopeThreads, 0, stream>>>(x, y, cos_sin, rows, T_len, half);
  check_launch(op);
}

template <typename T>
void decode_attention(HeadArray<T> q, HeadArray<T> k, HeadArray<T> v, const T* mask, const int64_t mask_strides[4],
                      T* out, T* scratch, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t length, int64_t D,
                      int64_t Dv, T scale, const DecodePlan& plan, cudaStream_t stream, const char* op) {
  const int64_t out_rows = B * Hq * Tq;
  if (out_rows == 0 || Dv == 0) return;
  DecodeArgs a{};
  a.B = B, a.Hq = Hq, a.Hkv = Hkv, a.Tq = Tq, a.length = length, a.D = D, a.Dv = Dv;
  a.group = Hq / Hkv;
  a.row_groups = plan.row_groups, a.chunk = plan.chunk, a.tile_keys = plan.tile_keys;
  for (int i = 0; i < 4; ++i) a.ms[i] = mask ? mask_strides[i] : 0;
  const int64_t grid_x = B * Hkv * plan.row_groups;
  if (grid_x > 2147483647LL || plan.splits > 65535)
    throw Error(op, "launch the decode kernel (more than 2^31 - 1 (batch, kv head, row group) blocks or 65535 "
                "key splits)", cudaErrorInvalidConfiguration);
  cudaGetLastError();
  decode_split_kernel<T><<<dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(plan.splits)), kDecodeThreads,
                           static_cast<size_t>(plan.smem_bytes), stream>>>(q, k, v, mask, scratch, a, scale);
  check_launch(op);
  const int64_t blocks = std::min<int64_t>(ceil_div(out_rows, kDecodeThreads / kWarpSize), 65535);
  decode_combine_kernel<T><<<static_cast<unsigned>(blocks), kDecodeThreads, 0, stream>>>(scratch, out, out_rows, Dv,
                                                                                       plan.splits);
  check_launch(op);
}

#define DLKERN_INSTANTIATE_ATTENTION(T)                                                                            \
  template void rope<T>(const T*, T*, const T*, int64_t, int64_t, int64_t, cudaStream_t, const char*);             \
  template void decode_attention<T>(HeadArray<T>, HeadArray<T>, HeadArray<T>, const T*, const int64_t[4], T*, T*,  \
                                    int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, T,              \
                                    const DecodePlan&, cudaStream_t, const char*);
DLKERN_INSTANTIATE_ATTENTION(float)
DLKERN_INSTANTIATE_ATTENTION(double)
#undef DLKERN_INSTANTIATE_ATTENTION

}  // namespace dlkern::cuda
