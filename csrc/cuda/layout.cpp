// Host-side shape logic for device arrays; see layout.h.
#include "cuda/layout.h"

#include <stdexcept>
#include <utility>

namespace dlkern::cuda {

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  return s + ")";
}

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t step = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = step;
    step *= shape[i] > 0 ? shape[i] : 1;
  }
  return strides;
}

bool is_contiguous(const Shape& shape, const Shape& strides) {
  if (numel(shape) == 0) return true;
  int64_t step = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    if (strides[i] != step) return false;
    step *= shape[i];
  }
  return true;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t nd = a.size() > b.size() ? a.size() : b.size();
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    // Align from the right: missing leading dimensions count as 1.
    const int64_t da = i + a.size() >= nd ? a[i + a.size() - nd] : 1;
    const int64_t db = i + b.size() >= nd ? b[i + b.size() - nd] : 1;
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument("shapes " + shape_str(a) + " and " + shape_str(b) +
                                  " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const Shape& shape, const Shape& strides, const Shape& out_shape) {
  const size_t nd = out_shape.size(), lead = nd - shape.size();
  Shape out(nd, 0);
  for (size_t i = lead; i < nd; ++i)
    out[i] = shape[i - lead] == 1 && out_shape[i] != 1 ? 0 : strides[i - lead];
  return out;
}

int normalize_axis(int64_t axis, int ndim, const char* op) {
  if (axis < -ndim || axis >= ndim)
    throw std::out_of_range(std::string(op) + ": axis " + std::to_string(axis) +
                            " is out of range for an array of " + std::to_string(ndim) +
                            " dimension" + (ndim == 1 ? "" : "s"));
  return static_cast<int>(axis < 0 ? axis + ndim : axis);
}

void check_view(const Shape& shape, const Shape& strides, int64_t offset, int64_t storage_numel) {
  if (shape.size() != strides.size())
    throw std::invalid_argument("as_strided: shape " + shape_str(shape) + " and strides " +
                                shape_str(strides) + " differ in length");
  for (int64_t d : shape)
    if (d < 0) throw std::invalid_argument("as_strided: negative size in shape " + shape_str(shape));
  if (offset < 0) throw std::out_of_range("as_strided: negative offset " + std::to_string(offset));
  if (numel(shape) == 0) return;
  int64_t lo = offset, hi = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t reach = (shape[i] - 1) * strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  if (lo < 0 || hi >= storage_numel)
    throw std::out_of_range("as_strided: shape " + shape_str(shape) + ", strides " +
                            shape_str(strides) + " and offset " + std::to_string(offset) +
                            " reach elements [" + std::to_string(lo) + ", " + std::to_string(hi) +
                            "] outside the storage of " + std::to_string(storage_numel) +
                            " elements");
}

namespace {

// Bytes [lo, hi) a view reaches; empty when it has no elements.
std::pair<uintptr_t, uintptr_t> byte_span(const Shape& shape, uintptr_t addr, const Shape& strides,
                                          int64_t item) {
  if (numel(shape) == 0) return {addr, addr};
  int64_t lo = 0, hi = 0;
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t reach = (shape[i] - 1) * strides[i];
    (reach < 0 ? lo : hi) += reach;
  }
  return {addr + lo * item, addr + (hi + 1) * item};
}

}  // namespace

Alias classify_alias(const Shape& shape, uintptr_t out_addr, const Shape& out_strides, int64_t out_item,
                     uintptr_t in_addr, const Shape& in_strides, int64_t in_item) {
  if (numel(shape) == 0) return Alias::none;
  if (out_addr == in_addr && out_item == in_item) {
    bool same = true;
    for (size_t i = 0; same && i < shape.size(); ++i) same = shape[i] == 1 || out_strides[i] == in_strides[i];
    if (same) return Alias::same;
  }
  const auto o = byte_span(shape, out_addr, out_strides, out_item);
  const auto n = byte_span(shape, in_addr, in_strides, in_item);
  return o.first < n.second && n.first < o.second ? Alias::partial : Alias::none;
}

StridedLoop make_loop(const Shape& shape, const std::vector<Shape>& operand_strides) {
  StridedLoop loop;
  loop.operands = static_cast<int>(operand_strides.size());
  if (loop.operands > kMaxOperands) throw std::invalid_argument("make_loop: too many operands");
  loop.numel = numel(shape);
  // Walk from the innermost dimension out, merging into the current one when every
  // operand steps through the outer dimension exactly one inner extent at a time.
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> strides(operand_strides.size());
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] == 1) continue;
    bool merge = !sizes.empty();
    for (size_t k = 0; merge && k < operand_strides.size(); ++k)
      merge = operand_strides[k][i] == strides[k].back() * sizes.back();
    if (merge) {
      sizes.back() *= shape[i];
      continue;
    }
    sizes.push_back(shape[i]);
    for (size_t k = 0; k < operand_strides.size(); ++k) strides[k].push_back(operand_strides[k][i]);
  }
  if (sizes.empty()) {  // a scalar or all-ones shape: one element
    sizes.push_back(1);
    for (auto& s : strides) s.push_back(0);
  }
  if (sizes.size() > static_cast<size_t>(kMaxDims))
    throw std::invalid_argument("strided loop over " + shape_str(shape) + " needs " +
                                std::to_string(sizes.size()) + " dimensions after merging; at most " +
                                std::to_string(kMaxDims) + " are supported (call .contiguous() first)");
  loop.ndim = static_cast<int>(sizes.size());
  // Stored innermost last, as the kernels index.
  for (int d = 0; d < loop.ndim; ++d) {
    loop.sizes[d] = sizes[loop.ndim - 1 - d];
    for (int k = 0; k < loop.operands; ++k) loop.strides[k][d] = strides[k][loop.ndim - 1 - d];
  }
  return loop;
}

ReduceLayout make_reduce_layout(const Shape& shape, const Shape& strides, bool all_axes, int axis,
                                bool keepdim) {
  ReduceLayout layout;
  Shape kept, kept_strides, reduced, reduced_strides;
  for (size_t i = 0; i < shape.size(); ++i) {
    const bool reduce = all_axes || static_cast<int>(i) == axis;
    (reduce ? reduced : kept).push_back(shape[i]);
    (reduce ? reduced_strides : kept_strides).push_back(strides[i]);
    if (!reduce || keepdim) layout.out_shape.push_back(reduce ? 1 : shape[i]);
  }
  layout.out_loop = make_loop(kept, {contiguous_strides(kept), kept_strides});
  layout.reduce_loop = make_loop(reduced, {reduced_strides});
  return layout;
}

}  // namespace dlkern::cuda
