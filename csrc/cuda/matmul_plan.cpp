#include "cuda/matmul_plan.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace dlkern::cuda {

MatrixLayout matrix_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  MatrixLayout l;
  // An empty matrix is never read: any layout will do.
  if (rows == 0 || cols == 0) return {true, false, std::max<int64_t>(cols, 1)};
  // A size-1 axis may have any stride: it is never stepped along.
  const bool unit_cols = cols <= 1 || cs == 1;
  const bool unit_rows = rows <= 1 || rs == 1;
  const int64_t row_len = std::max<int64_t>(cols, 1), col_len = std::max<int64_t>(rows, 1);
  if (unit_cols && (rows <= 1 || rs >= row_len)) {
    l.addressable = true;
    l.trans = false;
    l.ld = rows <= 1 ? row_len : rs;
  } else if (unit_rows && (cols <= 1 || cs >= col_len)) {
    l.addressable = true;
    l.trans = true;
    l.ld = cols <= 1 ? col_len : cs;
  }
  return l;
}

MatmulPlan plan_matmul(const Shape& a_shape, const Shape& a_strides, const Shape& b_shape,
                       const Shape& b_strides) {
  const int an = static_cast<int>(a_shape.size()), bn = static_cast<int>(b_shape.size());
  if (an == 0) throw std::invalid_argument("a is 0-d; matmul needs at least 1 dimension (use * for scalars)");
  if (bn == 0) throw std::invalid_argument("b is 0-d; matmul needs at least 1 dimension (use * for scalars)");
  if (a_strides.size() != a_shape.size() || b_strides.size() != b_shape.size())
    throw std::invalid_argument("shape and strides differ in length");
  const bool a_vec = an == 1, b_vec = bn == 1;
  MatmulPlan p;
  p.m = a_vec ? 1 : a_shape[an - 2];
  p.k = a_shape[an - 1];
  const int64_t kb = b_vec ? b_shape[0] : b_shape[bn - 2];
  p.n = b_vec ? 1 : b_shape[bn - 1];
  if (p.k != kb)
    throw std::invalid_argument("inner dimensions differ: a has shape " + shape_str(a_shape) + " (k=" +
                                std::to_string(p.k) + ") and b has shape " + shape_str(b_shape) +
                                " (k=" + std::to_string(kb) + ")");
  // A promoted axis has size 1, so its stride is never used.
  p.a = matrix_layout(p.m, p.k, a_vec ? 0 : a_strides[an - 2], a_strides[an - 1]);
  p.b = matrix_layout(p.k, p.n, b_strides[b_vec ? 0 : bn - 2], b_vec ? 0 : b_strides[bn - 1]);
  // An empty operand (a zero-size batch axis) is never read; NumPy gives such arrays
  // all-zero strides, which must not force a copy.
  if (numel(a_shape) == 0) p.a = {true, false, std::max<int64_t>(p.k, 1)};
  if (numel(b_shape) == 0) p.b = {true, false, std::max<int64_t>(p.n, 1)};

  // Batch axes, right-aligned; strides of an operand that needs a copy are those of its
  // contiguous copy.
  const Shape a_cs = contiguous_strides(a_shape), b_cs = contiguous_strides(b_shape);
  const Shape& sa_used = p.a.addressable ? a_strides : a_cs;
  const Shape& sb_used = p.b.addressable ? b_strides : b_cs;
  const int a_batch = std::max(0, an - 2), b_batch = std::max(0, bn - 2);
  const int nbatch = std::max(a_batch, b_batch);
  std::vector<BatchAxis> axes(nbatch);
  for (int d = 0; d < nbatch; ++d) {
    const int ia = d - (nbatch - a_batch), ib = d - (nbatch - b_batch);
    const int64_t sa = ia >= 0 ? a_shape[ia] : 1, sb = ib >= 0 ? b_shape[ib] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      throw std::invalid_argument("batch dimensions do not broadcast: a has shape " + shape_str(a_shape) +
                                  ", b has shape " + shape_str(b_shape));
    axes[d].size = sa == 1 ? sb : sa;
    axes[d].sa = (ia >= 0 && sa != 1) ? sa_used[ia] : 0;
    axes[d].sb = (ib >= 0 && sb != 1) ? sb_used[ib] : 0;
    p.out_shape.push_back(axes[d].size);
  }
  if (!a_vec) p.out_shape.push_back(p.m);
  if (!b_vec) p.out_shape.push_back(p.n);
  // The output is contiguous: batch item strides are products of the trailing sizes.
  int64_t step = p.m * p.n;
  for (int d = nbatch - 1; d >= 0; --d) {
    axes[d].sc = step;
    step *= axes[d].size;
  }
  p.batch = merge_batch_axes(axes);
  return p;
}

}  // namespace dlkern::cuda
