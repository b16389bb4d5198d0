// Shapes, strides and broadcasting for device arrays: pure host C++ (no CUDA calls), so
// it is tested on machines without a GPU through dlkern._C_cuda's underscore helpers.
// Strides are in elements, as in DLPack and PyTorch (NumPy's are in bytes).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dlkern::cuda {

using Shape = std::vector<int64_t>;

// Kernels index at most this many dimensions after coalescing (see make_loop).
constexpr int kMaxDims = 8;
// Operands of one strided loop: the output and up to three inputs (where's cond, a, b).
constexpr int kMaxOperands = 4;

// "(2, 3)"; "()" for a scalar.
std::string shape_str(const Shape& shape);
int64_t numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
// Row-major compact (size-1 dimensions may have any stride; an empty array is contiguous).
bool is_contiguous(const Shape& shape, const Shape& strides);

// NumPy broadcasting of two shapes; std::invalid_argument naming both otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b);
// Strides that read an array of (shape, strides) as if it had out_shape: leading and
// size-1 dimensions that are broadcast get stride 0. Assumes broadcast_shapes passed.
Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& out_shape);

// Axis in [-ndim, ndim) to [0, ndim); std::out_of_range naming the op otherwise.
int normalize_axis(int64_t axis, int ndim, const char* op);

// Checks that a view (shape, strides, offset) stays inside a storage of storage_numel
// elements; std::invalid_argument / std::out_of_range otherwise. Negative strides are
// allowed as long as every element is inside.
void check_view(const Shape& shape, const Shape& strides, int64_t offset, int64_t storage_numel);

// How an input and an output of one elementwise launch share memory, both read with
// strides broadcast to `shape` and starting at byte addresses out_addr / in_addr:
// disjoint; the same bytes at every position (each thread reads its element before
// writing it, so computing in place is safe: numpy's `add(p, w, out=p)`); or any other
// overlap, which needs a temporary. Pure arithmetic on addresses, so it also sees
// aliasing between arrays that came through DLPack with separate Storage objects.
enum class Alias { none, same, partial };
Alias classify_alias(const Shape& shape, uintptr_t out_addr, const Shape& out_strides, int64_t out_item,
                     uintptr_t in_addr, const Shape& in_strides, int64_t in_item);

// A loop over `numel` elements of a shape, with each operand's element strides:
// dimensions of size 1 are dropped and neighbours that are contiguous for every
// operand merged, so a contiguous case becomes one flat dimension. Innermost last.
// Passed by value to kernels (plain data).
struct StridedLoop {
  int ndim = 0;
  int operands = 0;
  int64_t numel = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxOperands][kMaxDims] = {};
};

// std::invalid_argument if more than kMaxDims dimensions remain after coalescing.
StridedLoop make_loop(const Shape& shape, const std::vector<Shape>& operand_strides);

// Splits an array into the dimensions a reduction keeps and the ones it reduces
// (axis < 0 after normalising means "all"): out_loop walks the kept dimensions with
// (output strides, input strides); reduce_loop walks the reduced ones with the input's.
struct ReduceLayout {
  Shape out_shape;  // with keepdim applied
  StridedLoop out_loop;
  StridedLoop reduce_loop;
};
ReduceLayout make_reduce_layout(const Shape& shape, const Shape& strides, bool all_axes, int axis,
                                bool keepdim);

}  // namespace dlkern::cuda
