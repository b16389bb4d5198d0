// Reductions over a ReduceLayout (layout.h): each output element combines the input
// elements its reduce_loop walks. float and double; the work is queued on `stream`,
// launch failures throw cuda::Error naming `op`. Plain C++ header.
#pragma once
#include <cuda_runtime_api.h>

#include "cuda/layout.h"

namespace dlkern::cuda {

// amax/amin propagate NaN, as NumPy's. An empty reduce_loop (no elements) gives
// 0 for sum and NaN for mean; amax/amin must be rejected by the caller before.
enum class ReduceOp { sum, mean, amax, amin };

// How a reduction is launched, chosen on the host from the layout alone:
//  - threads_per_output == false: one block per output (or per output and part of its
//    elements when `splits` > 1: few outputs with many elements each, e.g. a full sum,
//    are spread over several blocks and their partial results combined by a second pass);
//  - threads_per_output == true: one thread per output, when the outputs are adjacent in
//    memory and the reduced elements are not (a sum over a leading axis), so a warp's
//    loads are consecutive.
struct ReducePlan {
  bool threads_per_output = false;
  int64_t splits = 1;  // parts each output's elements are cut into
  int64_t chunk = 0;   // elements per part
  int64_t scratch = 0; // elements of scratch reduce() needs (outputs * splits, or 0)
};
ReducePlan plan_reduce(const ReduceLayout& layout);

// scratch: plan_reduce(layout).scratch elements of device memory (nullptr when 0),
// stream-ordered with this call.
template <typename T>
void reduce(ReduceOp f, const ReduceLayout& layout, T* out, const T* in, T* scratch,
            cudaStream_t stream, const char* op);

}  // namespace dlkern::cuda
