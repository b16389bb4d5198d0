// Integer indexing on device arrays: gathers (take, take_along_axis), scatters
// (put_along_axis, add_at) and arg-reductions (argmax, argmin). Plain C++ header; the
// host-side plans are pure C++ (tested without a GPU), the kernels queue on `stream`
// and launch failures throw cuda::Error naming `op`.
//
// Every gather/scatter is one strided loop (layout.h) over the "index space" with three
// operands: 0 = the dense side (gather output, scatter values; stride 0 for a scalar),
// 1 = x's element offset without the indexed axis, 2 = the int64 index. The element of x
// touched at loop position i is x[off1 + wrap(index[off2]) * axis_stride], with
// wrap(j) = j < 0 ? j + axis_size : j (NumPy wraps negative indices once). An index
// outside [-axis_size, axis_size) is not used (gathers write 0 there) and the smallest
// such loop position is recorded in *bad (atomicMin; the caller fills it with ~0 first
// and reads it back, see index_offset_at for the index element it names).
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/layout.h"

namespace dlkern::cuda {

// The index space of one gather/scatter, before the dense operand is known. Per
// dimension of out_shape: x_strides (0 on dimensions that only the index has, and on
// the indexed axis) and index_strides (0 where the index is broadcast).
struct IndexPlan {
  Shape out_shape;  // the index space (the gather's result shape)
  Shape x_strides, index_strides;
  int64_t axis_size = 0;
  int64_t axis_stride = 0;  // x's stride along the indexed axis
};

// numpy.take(x, index, axis): result shape x.shape[:axis] + index.shape + x.shape[axis+1:].
// axis already normalised.
IndexPlan plan_take(const Shape& x_shape, const Shape& x_strides, const Shape& index_shape,
                    const Shape& index_strides, int axis);

// numpy.take_along_axis / put_along_axis: x and index have the same ndim and broadcast
// against each other on every axis but `axis`, where the index space has
// index.shape[axis]. std::invalid_argument naming the shapes when they do not fit.
IndexPlan plan_along_axis(const Shape& x_shape, const Shape& x_strides, const Shape& index_shape,
                          const Shape& index_strides, int axis);

// numpy.add.at(x, index, values) along axis 0: index space index.shape + x.shape[1:].
IndexPlan plan_add_at(const Shape& x_shape, const Shape& x_strides, const Shape& index_shape,
                      const Shape& index_strides);

// The kernels' loop: operands (dense, x, index), dense read with `dense_strides` (one per
// out_shape dimension: contiguous for a gather's output, broadcast values or zeros for a
// scatter). std::invalid_argument if it needs more than kMaxDims dimensions.
StridedLoop index_loop(const IndexPlan& plan, const Shape& dense_strides);

// Element offset into the index array of loop position `pos` (operand 2), on the host:
// lets the binding copy back the one offending index for its error message.
int64_t index_offset_at(const StridedLoop& loop, int64_t pos);

// out[dense] = x[...] for T float, double or int64_t.
template <typename T>
void gather(const StridedLoop& loop, int64_t axis_size, int64_t axis_stride, T* out, const T* x,
            const int64_t* index, unsigned long long* bad, cudaStream_t stream, const char* op);

// x[...] = values (accumulate false; duplicates: one of the writes wins, unordered) or
// x[...] += values (accumulate true, atomicAdd, so repeats add up; the float order is
// unspecified). A null values pointer stands for `scalar` everywhere.
template <typename T>
void scatter(const StridedLoop& loop, int64_t axis_size, int64_t axis_stride, T* x, const T* values, T scalar,
             const int64_t* index, bool accumulate, unsigned long long* bad, cudaStream_t stream, const char* op);

// argmax / argmin over a ReduceLayout (layout.h): the int64 position, within the reduced
// elements in C order, of the first maximum (minimum); a NaN counts as the extreme (the
// first NaN wins), as NumPy. One block per output, or one thread per output when
// arg_reduce_threads_per_output (many outputs, and either outputs adjacent in memory
// with the reduced elements not, or at most 16 elements each). The layout must reduce
// at least one element.
enum class ArgOp { argmax, argmin };
bool arg_reduce_threads_per_output(const ReduceLayout& layout);
template <typename T>
void arg_reduce(ArgOp f, const ReduceLayout& layout, int64_t* out, const T* in, cudaStream_t stream,
                const char* op);

}  // namespace dlkern::cuda
