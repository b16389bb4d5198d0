// Launch size of the grid-stride kernels (elementwise, indexing, random numbers,
// convolution helpers, pooling, GELU): enough blocks of `threads` to give every element
// a thread, capped where more blocks would only queue (threads then loop), and at least
// one so an empty launch stays valid. Included by .cu files only.
#pragma once
#include <algorithm>
#include <cstdint>

namespace dlkern::cuda {

constexpr int64_t kMaxGridBlocks = 65535;

inline unsigned grid_stride_blocks(int64_t n, int threads) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, kMaxGridBlocks)));
}

}  // namespace dlkern::cuda
