// Batch axes of a batched matrix product (numpy.matmul broadcasting), shared by the CPU
// and CUDA matmul bindings: each axis as seen by the operands a, b and the output c.
#pragma once
#include <cstdint>
#include <vector>

namespace dlkern {

// One batch axis: its size and the element strides of a, b and c along it (0 broadcasts).
struct BatchAxis {
  int64_t size, sa, sb, sc;
};

// Drops size-1 axes and merges neighbours that step uniformly in all three operands, so
// the common cases (contiguous or broadcast batches) become one strided batch.
std::vector<BatchAxis> merge_batch_axes(const std::vector<BatchAxis>& axes);

}  // namespace dlkern
