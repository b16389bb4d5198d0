// Shape arithmetic and argument checks shared by the CPU and CUDA bindings, free of
// Python: convolution output sizes and "same" / causal padding, the argument limits,
// normalisation shapes.
// Each check throws dlkern::ValueError (common/errors.h) naming the op, the argument and
// what was wrong; the messages are the ones dlkern.ops has always raised.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dlkern {

using Dims = std::vector<int64_t>;

// Largest stride, dilation, padding (each side) and dilated kernel extent
// dilation*(kernel-1) a convolution takes, and the largest pooling kernel, stride,
// padding, dilation and adaptive output size: far beyond any real layer, and small
// enough that no size or index the kernels compute from them can overflow int64.
constexpr int64_t kMaxConvArg = int64_t(1) << 31;
constexpr int64_t kMaxPoolArg = kMaxConvArg;

// Python's repr of a tuple of ints: "(3, 4)", "(3,)", "()".
std::string dims_str(const Dims& d);

// How a convolution's padding was given: explicit sizes (one per spatial dimension, the
// same before and after), "valid" (none) or "same" (the output keeps the input's size).
struct ConvPadding {
  enum class Mode { explicit_sizes, valid, same };
  Mode mode = Mode::explicit_sizes;
  Dims sizes;
};

// A validated convolution over nd = 1 or 2 spatial dimensions: x (N, C, *size), weight
// (O, C/groups, *kernel), output (N, O, *out). pad_before / pad_after per dimension.
struct ConvGeometry {
  int nd = 2;
  int64_t n = 0, c = 0, o = 0, groups = 1;
  Dims size, kernel, stride, dilation, pad_before, pad_after, out;
  Dims out_shape() const;
};

// Checks x and weight shapes against groups, then stride, dilation and padding (each
// already within kMaxConvArg: the bindings refuse larger values while parsing them),
// and computes the output size floor((size + before + after - dilation*(k-1) - 1) /
// stride) + 1 along each dimension. "same" needs stride 1; as PyTorch, the extra element
// of an odd total padding goes after.
ConvGeometry conv_geometry(const char* op, int nd, const Dims& x, const Dims& weight, int64_t groups,
                           const Dims& stride, const Dims& dilation, const ConvPadding& padding);

// causal_conv1d: x (N, C, L) with L >= 1, stride 1, left padding (K-1)*dilation only, so
// the output has L steps and y[t] sees x[<= t].
ConvGeometry causal_conv1d_geometry(const char* op, const Dims& x, const Dims& weight, int64_t groups,
                                    int64_t dilation);

// layer_norm / rms_norm over the trailing `normalized` dimensions of x (at least one):
// (rows, cols) = (product of the leading sizes, product of normalized).
std::pair<int64_t, int64_t> norm_rows_cols(const char* op, const Dims& x, const Dims& normalized);

// A normalisation's eps: finite and >= 0 (a negative one makes var + eps negative and the
// output silently NaN).
void check_norm_eps(const char* op, double eps);

}  // namespace dlkern
