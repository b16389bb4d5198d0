// Warp-level helpers shared by the row-wise kernels (one warp per row).
#pragma once
#include <cstdint>
#include <type_traits>

namespace dlkern::cuda {

constexpr int kWarpSize = 32;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int s = kWarpSize / 2; s > 0; s /= 2) v += __shfl_xor_sync(0xffffffffu, v, s);
  return v;  // every lane holds the total
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int s = kWarpSize / 2; s > 0; s /= 2) {
    const T o = __shfl_xor_sync(0xffffffffu, v, s);
    v = (o > v || o != o) ? o : v;  // NaN wins, so a NaN row stays NaN
  }
  return v;
}

// Calls f(i, row[i]) for the row elements lane `lane` owns. When vec is set (float rows
// whose start is 16-byte aligned and whose length is a multiple of 4, checked by the
// host), each lane reads four consecutive floats with one float4 load.
template <typename T, typename F>
__device__ __forceinline__ void for_lane(const T* __restrict__ row, int64_t cols, bool vec, int lane, F&& f) {
  if constexpr (std::is_same_v<T, float>) {
    if (vec) {
      const float4* row4 = reinterpret_cast<const float4*>(row);
      for (int64_t i = lane; i < cols / 4; i += kWarpSize) {
        const float4 v = row4[i];
        f(4 * i, v.x);
        f(4 * i + 1, v.y);
        f(4 * i + 2, v.z);
        f(4 * i + 3, v.w);
      }
      return;
    }
  }
  for (int64_t i = lane; i < cols; i += kWarpSize) f(i, row[i]);
}

// The (row, lane) pairs of a grid-stride loop with one warp per row.
struct WarpRows {
  int64_t first, step;
  int lane;
  __device__ WarpRows()
      : first((static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarpSize),
        step(static_cast<int64_t>(gridDim.x) * blockDim.x / kWarpSize),
        lane(static_cast<int>(threadIdx.x % kWarpSize)) {}
};

}  // namespace dlkern::cuda
