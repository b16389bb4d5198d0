// How a matrix product of two strided device arrays maps onto the strided-batched
// GEMM kernels: which operands the kernels can address in place (unit stride along one
// of the two matrix axes) and which need a contiguous copy first, and how the
// (broadcast) batch axes become strided batches. Pure host C++, tested without a GPU
// through dlkern._C_cuda._matmul_plan.
#pragma once
#include <cstdint>
#include <vector>

#include "common/batch_axes.h"
#include "cuda/layout.h"

namespace dlkern::cuda {

// A matrix view op(X) of rows x cols with element strides (rs, cs), as the kernels see
// it: stored row-major with leading dimension ld (trans false: element (i, j) at
// i*ld + j), or stored transposed (trans true: (i, j) at j*ld + i). addressable false:
// neither axis has unit stride (or the rows overlap); the caller copies X to a
// contiguous array, after which it is (trans false, ld = cols).
struct MatrixLayout {
  bool addressable = false;
  bool trans = false;
  int64_t ld = 0;
};
MatrixLayout matrix_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs);

using dlkern::BatchAxis;  // common/batch_axes.h

// numpy.matmul of a (shape, strides) and b: 1-D operands promoted (and the added axis
// dropped from out_shape), batch axes broadcast right-aligned, then merged where they
// step uniformly in all three operands. The output is a new contiguous array.
// std::invalid_argument (message without the op name) for 0-d operands, differing inner
// dimensions or batch axes that do not broadcast.
struct MatmulPlan {
  Shape out_shape;
  int64_t m = 0, n = 0, k = 0;
  MatrixLayout a, b;            // op(A) (m, k) and op(B) (k, n) as stored
  std::vector<BatchAxis> batch; // merged, size-1 axes dropped; outermost first
};
MatmulPlan plan_matmul(const Shape& a_shape, const Shape& a_strides, const Shape& b_shape,
                       const Shape& b_strides);

}  // namespace dlkern::cuda
