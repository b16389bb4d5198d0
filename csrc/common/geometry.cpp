#include "common/geometry.h"

#include <algorithm>
#include <cmath>

#include "common/errors.h"

namespace dlkern {
namespace {

// The value, or the tuple of values when there are several (as dlkern.ops prints
// stride / dilation / padding).
std::string tuple_or_scalar(const Dims& v) { return v.size() == 1 ? std::to_string(v[0]) : dims_str(v); }

// dilation*(k-1) above kMaxConvArg, tested by division (the product may not fit).
bool extent_too_large(int64_t dilation, int64_t k) { return k - 1 > kMaxConvArg / dilation; }

// The checks every convolution makes on x, weight and groups.
ConvGeometry conv_shapes(const char* op, int nd, const Dims& x, const Dims& w, int64_t groups) {
  const char* spatial = nd == 1 ? "(N, C, L)" : "(N, C, H, W)";
  const char* kernel = nd == 1 ? "(O, C/groups, K)" : "(O, C/groups, kH, kW)";
  if (static_cast<int>(x.size()) != nd + 2)
    throw_value_error(op, ": x must be ", nd + 2, "-D ", spatial, ", got shape ", dims_str(x));
  if (static_cast<int>(w.size()) != nd + 2)
    throw_value_error(op, ": weight must be ", nd + 2, "-D ", kernel, ", got shape ", dims_str(w));
  if (groups < 1) throw_value_error(op, ": groups must be positive, got ", groups);
  ConvGeometry g;
  g.nd = nd, g.n = x[0], g.c = x[1], g.o = w[0], g.groups = groups;
  if (g.c % groups)
    throw_value_error(op, ": groups=", groups, " does not divide the ", g.c, " input channels of x ", dims_str(x));
  if (g.o % groups)
    throw_value_error(op, ": groups=", groups, " does not divide the ", g.o, " output channels of weight ",
                      dims_str(w));
  if (w[1] != g.c / groups)
    throw_value_error(op, ": weight ", dims_str(w), " must have C/groups = ", g.c / groups, " in dimension 1 (x ",
                      dims_str(x), ", groups=", groups, ")");
  g.size.assign(x.begin() + 2, x.end());
  g.kernel.assign(w.begin() + 2, w.end());
  if (*std::min_element(g.kernel.begin(), g.kernel.end()) < 1)
    throw_value_error(op, ": weight ", dims_str(w), " has an empty kernel");
  return g;
}

// Output sizes from the padded sizes; ValueError when the kernel does not fit.
void output_sizes(const char* op, ConvGeometry& g, const Dims& x, const Dims& w) {
  g.out.clear();
  for (int a = 0; a < g.nd; ++a) {
    const int64_t size = g.size[a], k = g.kernel[a], d = g.dilation[a];
    const int64_t span = d * (k - 1) + 1, padded = size + g.pad_before[a] + g.pad_after[a];
    if (padded < span)
      throw_value_error(op, ": kernel size ", k, " with dilation ", d, " spans ", span,
                        ", larger than the padded input ", padded, " (size ", size, " + padding ",
                        g.pad_before[a] + g.pad_after[a], "); x ", dims_str(x), ", weight ", dims_str(w));
    g.out.push_back((padded - span) / g.stride[a] + 1);
  }
}

}  // namespace

std::string dims_str(const Dims& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + (d.size() == 1 ? ",)" : ")");
}

Dims ConvGeometry::out_shape() const {
  Dims s{n, o};
  s.insert(s.end(), out.begin(), out.end());
  return s;
}

ConvGeometry conv_geometry(const char* op, int nd, const Dims& x, const Dims& w, int64_t groups,
                           const Dims& stride, const Dims& dilation, const ConvPadding& padding) {
  ConvGeometry g = conv_shapes(op, nd, x, w, groups);
  g.stride = stride, g.dilation = dilation;
  if (*std::min_element(stride.begin(), stride.end()) < 1)
    throw_value_error(op, ": stride must be positive, got ", tuple_or_scalar(stride));
  if (*std::min_element(dilation.begin(), dilation.end()) < 1)
    throw_value_error(op, ": dilation must be positive, got ", tuple_or_scalar(dilation));
  for (int a = 0; a < nd; ++a)
    if (extent_too_large(dilation[a], g.kernel[a]))
      throw_value_error(op, ": dilation ", tuple_or_scalar(dilation), " with kernel ", dims_str(w),
                        " spans more than 2**31 (the limit)");
  for (int a = 0; a < nd; ++a) {
    int64_t before = 0, after = 0;
    if (padding.mode == ConvPadding::Mode::same) {
      if (*std::max_element(stride.begin(), stride.end()) != 1)
        throw_value_error(op, ": padding='same' needs stride 1, got stride ", dims_str(stride));
      const int64_t total = dilation[a] * (g.kernel[a] - 1);
      before = total / 2, after = total - total / 2;
    } else if (padding.mode == ConvPadding::Mode::explicit_sizes) {
      if (*std::min_element(padding.sizes.begin(), padding.sizes.end()) < 0)
        throw_value_error(op, ": padding must be non-negative, got ", tuple_or_scalar(padding.sizes));
      before = after = padding.sizes[a];
    }
    g.pad_before.push_back(before);
    g.pad_after.push_back(after);
  }
  output_sizes(op, g, x, w);
  return g;
}

ConvGeometry causal_conv1d_geometry(const char* op, const Dims& x, const Dims& w, int64_t groups,
                                    int64_t dilation) {
  ConvGeometry g = conv_shapes(op, 1, x, w, groups);
  if (dilation < 1) throw_value_error(op, ": dilation must be positive, got ", dilation);
  if (extent_too_large(dilation, w[2]))
    throw_value_error(op, ": dilation ", dilation, " with kernel size ", w[2],
                      " needs a causal padding above the limit 2**31");
  if (x[2] < 1) throw_value_error(op, ": x ", dims_str(x), " has no time steps");
  g.stride = {1}, g.dilation = {dilation};
  g.pad_before = {(w[2] - 1) * dilation}, g.pad_after = {0};
  output_sizes(op, g, x, w);
  return g;
}

std::pair<int64_t, int64_t> norm_rows_cols(const char* op, const Dims& x, const Dims& ns) {
  const size_t k = ns.size();
  if (k == 0) throw_value_error(op, ": normalized_shape is empty; it must name at least the last dimension");
  if (k > x.size() || !std::equal(ns.begin(), ns.end(), x.end() - static_cast<std::ptrdiff_t>(k)))
    throw_value_error(op, ": normalized_shape ", dims_str(ns), " does not match the trailing dimensions of x with shape ",
                      dims_str(x));
  int64_t rows = 1, cols = 1;
  for (size_t i = 0; i < x.size(); ++i) (i < x.size() - k ? rows : cols) *= x[i];
  return {rows, cols};
}

void check_norm_eps(const char* op, double eps) {
  if (!(eps >= 0.0 && std::isfinite(eps))) throw_value_error(op, ": eps must be finite and >= 0, got ", eps);
}

}  // namespace dlkern
