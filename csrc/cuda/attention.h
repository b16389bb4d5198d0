// Decode-time attention pieces on a CUDA device: rotary embedding (RoPE) forward and
// backward, and attention of a few query positions against the first `length`
// positions of a KV cache (grouped-query heads share their K/V reads; the keys are
// split over blocks, flash-decoding style, when there are few (batch, kv head) pairs).
// Same contracts as cpu/attention.h; kv_cache_append needs no kernel of its own (a
// strided copy into a view of the cache). float and double. Launch failures throw
// cuda::Error naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace dlkern::cuda {

// x, y: (rows, D) contiguous with rows = n * T_len, D even; cos_sin: (T_len, D/2, 2)
// (cos, sin) per position and pair, computed by the caller in double (sin negated for
// the inverse). Rotates the pairs (x[d], x[d + D/2]).
template <typename T>
void rope(const T* x, T* y, const T* cos_sin, int64_t rows, int64_t T_len, int64_t D, cudaStream_t stream,
          const char* op);

// Strided 4-D view: element (b, h, t, d) at data[b*sb + h*sh + t*st + d] (unit last stride).
template <typename T>
struct HeadArray {
  const T* data;
  int64_t sb, sh, st;
};

// Launch plan of decode attention, chosen on the host (testable without a GPU).
struct DecodePlan {
  int64_t row_groups;  // blocks per (batch, kv head) along the query rows (kRowsPerBlock rows each)
  int64_t splits;      // key chunks per (batch, kv head, row group)
  int64_t chunk;       // keys per split (a multiple of tile_keys, except that the last may be short)
  int64_t tile_keys;   // keys staged in shared memory at once
  int64_t smem_bytes;  // dynamic shared memory per block
};
constexpr int kDecodeRowsPerBlock = 8;  // one warp per query row
constexpr int kDecodeMaxHeadDim = 256;  // D and Dv: 8 values per lane
DecodePlan plan_decode(int64_t B, int64_t Hkv, int64_t rows_per_kv_head, int64_t length, int64_t D, int64_t Dv,
                       int64_t elem_bytes, int sm_count);

// out (B, Hq, Tq, Dv) contiguous = softmax(q k^T * scale + mask, causal bottom-right) v
// over cache positions 0 .. length-1, query i at position length - Tq + i. q, k, v:
// strided views with unit last stride; mask: nullptr or a float mask read at
// mask[b*msb + h*msh + i*msi + j*msj] (zero strides broadcast). A row with no visible
// key gives 0. scratch: plan.splits * B * Hq * Tq * (Dv + 2) elements.
template <typename T>
void decode_attention(HeadArray<T> q, HeadArray<T> k, HeadArray<T> v, const T* mask, const int64_t mask_strides[4],
                      T* out, T* scratch, int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t length, int64_t D,
                      int64_t Dv, T scale, const DecodePlan& plan, cudaStream_t stream, const char* op);

}  // namespace dlkern::cuda
