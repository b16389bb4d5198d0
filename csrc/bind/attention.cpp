// Bindings for the attention family: SDPA forward/backward, KV-cache append, decode
// attention and RoPE. Attention inputs may be strided views on every axis but the last
// (e.g. (B, T, H, D) transposed to (B, H, T, D)); they reach the kernels without copies.
// Masks are read through broadcast strides (0 on size-1 axes), never expanded.
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "bind/common.h"
#include "common/attention_checks.h"
#include "cpu/attention.h"

namespace dlkern::bind {
namespace {
namespace DLKERN_TU_LOCAL {

using cpu::AttentionProblem;
using cpu::HeadView;
using cpu::MaskKind;

std::vector<py::ssize_t> dims(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

void require_unit_last(const py::array& a, const char* op, const char* arg) {
  const int last = static_cast<int>(a.ndim()) - 1;
  if (a.size() > 0 && a.shape(last) > 1 && a.strides(last) != a.itemsize())
    value_error(op, ": ", arg, " (shape ", shape_str(a), ") must have a unit-stride last axis");
}

void require_same_dtype(const py::array& a, const char* arg, const py::array& ref, const char* ref_arg,
                        const char* op) {
  if (float_dtype(a, op, arg) != float_dtype(ref, op, ref_arg))
    type_error(op, ": ", arg, " has dtype ", dtype_str(a), " but ", ref_arg, " has dtype ", dtype_str(ref),
               "; all must be the same float type");
}

template <typename T>
HeadView<T> head_view(const py::array& a, const char* op, const char* arg) {
  require_unit_last(a, op, arg);
  HeadView<T> h;
  h.p = static_cast<const T*>(a.data());
  if (a.size() == 0) return h;  // nothing is read; an empty array's strides may be anything
  h.sb = elem_stride(a, 0, op, arg);
  h.sh = elem_stride(a, 1, op, arg);
  h.st = elem_stride(a, 2, op, arg);
  return h;
}

using Shape = AttentionDims;

// q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv): dtypes here, shapes in
// common/attention_checks.h.
Shape check_qkv(const py::array& q, const py::array& k, const py::array& v, const char* op, const char* kname,
                const char* vname) {
  float_dtype(q, op, "q");
  require_same_dtype(k, kname, q, "q", op);
  require_same_dtype(v, vname, q, "q", op);
  return attention_dims(op, dims_of(q), dims_of(k), dims_of(v), kname, vname);
}

struct Options {
  bool causal = false;
  int64_t causal_offset = 0;
  double dropout_p = 0.0;
  uint64_t seed = 0;
};

template <typename T>
AttentionProblem<T> make_problem(const py::array& q, const py::array& k, const py::array& v, const Shape& s,
                                 const py::object& mask_obj, const py::object& scale, const Options& opt,
                                 const char* op, const char* kname, const char* vname) {
  AttentionProblem<T> pr;
  pr.causal = opt.causal;
  pr.causal_offset = opt.causal_offset;
  pr.dropout_p = opt.dropout_p;
  pr.seed = opt.seed;
  pr.B = s.B, pr.Hq = s.Hq, pr.Hkv = s.Hkv, pr.Tq = s.Tq, pr.Tk = s.Tk, pr.D = s.D, pr.Dv = s.Dv;
  pr.q = head_view<T>(q, op, "q");
  pr.k = head_view<T>(k, op, kname);
  pr.v = head_view<T>(v, op, vname);
  if (scale.is_none()) {
    pr.scale = T(1.0 / std::sqrt(double(s.D)));
  } else {
    // A NaN or infinite scale (or one that overflows T) can only give NaN/Inf scores.
    const double sc = scale.cast<double>();
    if (!std::isfinite(sc) || !std::isfinite(T(sc)))
      value_error(op, ": scale must be finite in ", sizeof(T) == 4 ? "float32" : "float64", ", got ", sc);
    pr.scale = T(sc);
  }
  if (mask_obj.is_none()) return pr;
  py::array m = require_array(mask_obj, op, "attn_mask");
  const py::dtype dt = m.dtype();
  if (dt.kind() == 'b') {
    pr.mask_kind = MaskKind::boolean;
  } else if (dt.kind() == 'f') {
    if (float_dtype(m, op, "attn_mask") != float_dtype(q, op, "q"))
      type_error(op, ": attn_mask has dtype ", dtype_str(m), " but q has dtype ", dtype_str(q),
                 "; a float mask must match q");
    pr.mask_kind = MaskKind::additive;
  } else {
    type_error(op, ": attn_mask has dtype ", dtype_str(m), "; expected bool or the dtype of q (", dtype_str(q), ")");
  }
  const int64_t want[4] = {s.B, s.Hq, s.Tq, s.Tk};
  int64_t strides[4] = {0, 0, 0, 0};
  const int nd = static_cast<int>(m.ndim());
  bool ok = nd <= 4;
  for (int a = 0; ok && a < nd; ++a) {
    const int t = 4 - nd + a;
    if (m.shape(a) == want[t]) strides[t] = m.shape(a) == 1 ? 0 : elem_stride(m, a, op, "attn_mask");
    else if (m.shape(a) != 1) ok = false;
  }
  if (!ok)
    value_error(op, ": attn_mask of shape ", shape_str(m), " is not broadcastable to (B, Hq, Tq, Tk) = (", s.B, ", ",
                s.Hq, ", ", s.Tq, ", ", s.Tk, ")");
  pr.mask = m.data();
  pr.m_sb = strides[0], pr.m_sh = strides[1], pr.m_sq = strides[2], pr.m_sk = strides[3];
  return pr;
}

void check_dropout(double p, const char* op) {
  if (!(p >= 0.0 && p < 1.0)) value_error(op, ": dropout_p must be in [0, 1), got ", p);
}

template <typename T>
py::array_t<T> new_array(std::vector<py::ssize_t> shape) {
  return py::array_t<T>(shape);
}

py::tuple forward(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj, const py::object& mask,
                  bool is_causal, const py::object& scale, const py::object& dropout_p_obj, uint64_t seed) {
  const char* op = "attention_forward";
  const double dropout_p = double_arg(dropout_p_obj, op, "dropout_p");
  py::array q = require_array(q_obj, op, "q"), k = require_array(k_obj, op, "k"), v = require_array(v_obj, op, "v");
  const Shape s = check_qkv(q, k, v, op, "k", "v");
  check_dropout(dropout_p, op);
  return dispatch_float(float_dtype(q, op, "q"), [&](auto zero) -> py::tuple {
    using T = decltype(zero);
    const AttentionProblem<T> pr =
        make_problem<T>(q, k, v, s, mask, scale, {is_causal, 0, dropout_p, seed}, op, "k", "v");
    auto out = new_array<T>({s.B, s.Hq, s.Tq, s.Dv});
    auto lse = new_array<T>({s.B, s.Hq, s.Tq});
    T* op_ = out.mutable_data();
    T* lp = lse.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::attention_forward(pr, op_, lp);
    }
    return py::make_tuple(out, lse);
  });
}

py::tuple backward(const py::object& g_obj, const py::object& q_obj, const py::object& k_obj,
                   const py::object& v_obj, const py::object& o_obj, const py::object& lse_obj,
                   const py::object& mask, bool is_causal, const py::object& scale,
                   const py::object& dropout_p_obj, uint64_t seed) {
  const char* op = "attention_backward";
  const double dropout_p = double_arg(dropout_p_obj, op, "dropout_p");
  py::array q = require_array(q_obj, op, "q"), k = require_array(k_obj, op, "k"), v = require_array(v_obj, op, "v");
  py::array g = require_array(g_obj, op, "grad_out"), o = require_array(o_obj, op, "out");
  py::array lse = require_array(lse_obj, op, "lse");
  const Shape s = check_qkv(q, k, v, op, "k", "v");
  require_same_dtype(g, "grad_out", q, "q", op);
  require_same_dtype(o, "out", q, "q", op);
  require_same_dtype(lse, "lse", q, "q", op);
  const std::vector<py::ssize_t> out_shape{s.B, s.Hq, s.Tq, s.Dv}, lse_shape{s.B, s.Hq, s.Tq};
  const std::string want = cat("(", s.B, ", ", s.Hq, ", ", s.Tq, ", ", s.Dv, ")");
  if (dims(g) != out_shape) value_error(op, ": grad_out has shape ", shape_str(g), ", expected ", want);
  if (dims(o) != out_shape) value_error(op, ": out has shape ", shape_str(o), ", expected ", want);
  if (dims(lse) != lse_shape)
    value_error(op, ": lse has shape ", shape_str(lse), ", expected (", s.B, ", ", s.Hq, ", ", s.Tq, ")");
  if (!(lse.flags() & py::array::c_style)) value_error(op, ": lse must be C-contiguous");
  check_dropout(dropout_p, op);
  return dispatch_float(float_dtype(q, op, "q"), [&](auto zero) -> py::tuple {
    using T = decltype(zero);
    const AttentionProblem<T> pr =
        make_problem<T>(q, k, v, s, mask, scale, {is_causal, 0, dropout_p, seed}, op, "k", "v");
    const HeadView<T> gv = head_view<T>(g, op, "grad_out"), ov = head_view<T>(o, op, "out");
    const T* lp = static_cast<const T*>(lse.data());
    auto dq = new_array<T>({s.B, s.Hq, s.Tq, s.D});
    auto dk = new_array<T>({s.B, s.Hkv, s.Tk, s.D});
    auto dv = new_array<T>({s.B, s.Hkv, s.Tk, s.Dv});
    T *dqp = dq.mutable_data(), *dkp = dk.mutable_data(), *dvp = dv.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::attention_backward(pr, gv, ov, lp, dqp, dkp, dvp);
    }
    return py::make_tuple(dq, dk, dv);
  });
}

py::array decode(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
                 const py::object& length_obj, const py::object& mask, const py::object& scale) {
  const char* op = "decode_attention";
  py::array q = require_array(q_obj, op, "q"), k = require_array(k_obj, op, "k_cache");
  py::array v = require_array(v_obj, op, "v_cache");
  Shape s = check_qkv(q, k, v, op, "k_cache", "v_cache");
  const int64_t length = int64_arg(length_obj, op, "length");
  decode_length(op, length, s, dims_of(q), dims_of(k));
  return dispatch_float(float_dtype(q, op, "q"), [&](auto zero) -> py::array {
    using T = decltype(zero);
    // Causal, bottom-right aligned: query i sits at position length - Tq + i.
    const AttentionProblem<T> pr =
        make_problem<T>(q, k, v, s, mask, scale, {true, length - s.Tq, 0.0, 0}, op, "k_cache", "v_cache");
    auto out = new_array<T>({s.B, s.Hq, s.Tq, s.Dv});
    std::vector<T> lse(static_cast<size_t>(s.B * s.Hq * s.Tq));
    T* op_ = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      cpu::attention_forward(pr, op_, lse.data());
    }
    return out;
  });
}

int64_t append(const py::object& cache_obj, const py::object& new_obj, const py::object& offset_obj) {
  const char* op = "kv_cache_append";
  py::array c = require_array(cache_obj, op, "cache"), n = require_array(new_obj, op, "new");
  const int64_t offset = int64_arg(offset_obj, op, "offset");
  float_dtype(c, op, "cache");
  require_same_dtype(n, "new", c, "cache", op);
  kv_cache_bounds(op, dims_of(c), dims_of(n), offset);
  require_writeable(c, op, "cache");
  if (may_overlap(c, n)) value_error(op, ": new shares memory with cache; pass a separate array");
  require_unit_last(c, op, "cache");
  dispatch_float(float_dtype(c, op, "cache"), [&](auto zero) {
    using T = decltype(zero);
    const HeadView<T> src = head_view<T>(n, op, "new");
    T* cp = static_cast<T*>(c.mutable_data());
    const int64_t sb = elem_stride(c, 0, op, "cache"), sh = elem_stride(c, 1, op, "cache");
    const int64_t st = elem_stride(c, 2, op, "cache");
    py::gil_scoped_release nogil;
    cpu::kv_cache_append(src, cp, sb, sh, st, n.shape(0), n.shape(1), n.shape(2), n.shape(3), offset);
  });
  return offset + n.shape(2);
}

py::array rope(const py::object& x_obj, const py::object& offset_obj, const py::object& base_obj, bool inverse) {
  const char* op = inverse ? "rope_backward" : "rope";
  const double base = double_arg(base_obj, op, "base");
  const char* arg = inverse ? "grad_out" : "x";
  py::array x = require_array(x_obj, op, arg);
  const DType dt = float_dtype(x, op, arg);
  const int64_t offset = int64_arg(offset_obj, op, "offset");
  const auto [T_len, D] = rope_dims(op, arg, dims_of(x), base, offset);
  if (!(x.flags() & py::array::c_style)) value_error(op, ": ", arg, " must be C-contiguous");
  const int64_t n = T_len * D == 0 ? 0 : x.size() / (T_len * D);
  py::array y(x.dtype(), dims(x));
  const void* xp = x.data();
  void* yp = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      cpu::rope(static_cast<const T*>(xp), static_cast<T*>(yp), n, T_len, D, offset, base, inverse);
    });
  }
  return y;
}

}  // namespace DLKERN_TU_LOCAL
}  // namespace

DLKERN_REGISTER_BINDINGS(attention) {
  m.def("attention_forward", &forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("attn_mask") = py::none(),
        py::arg("is_causal") = false, py::arg("scale") = py::none(), py::arg("dropout_p") = 0.0,
        py::arg("seed") = 0,
        "attention_forward(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0, seed=0) -> "
        "(out, lse): tiled scaled dot-product attention (see dlkern.ops.attention).");
  m.def("attention_backward", &backward, py::arg("grad_out"), py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("out"), py::arg("lse"), py::arg("attn_mask") = py::none(), py::arg("is_causal") = false,
        py::arg("scale") = py::none(), py::arg("dropout_p") = 0.0, py::arg("seed") = 0,
        "attention_backward(grad_out, q, k, v, out, lse, ...) -> (dq, dk, dv), scores recomputed per tile.");
  m.def("decode_attention", &decode, py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("length"),
        py::arg("attn_mask") = py::none(), py::arg("scale") = py::none(),
        "decode_attention(q, k_cache, v_cache, length, attn_mask=None, scale=None) -> out: q against the first "
        "length cache positions, read in place.");
  m.def("kv_cache_append", &append, py::arg("cache"), py::arg("new"), py::arg("offset"),
        "kv_cache_append(cache, new, offset) -> offset + T: writes new (B, H, T, D) into cache in place.");
  m.def("rope",
        [](const py::object& x, const py::object& offset, const py::object& base) { return rope(x, offset, base, false); },
        py::arg("x"), py::arg("offset") = 0, py::arg("base") = 10000.0,
        "rope(x, offset=0, base=10000.0): rotary embedding of x (..., T, D), rotate-half pairs.");
  m.def("rope_backward",
        [](const py::object& g, const py::object& offset, const py::object& base) { return rope(g, offset, base, true); },
        py::arg("grad_out"), py::arg("offset") = 0, py::arg("base") = 10000.0,
        "rope_backward(grad_out, offset=0, base=10000.0): the inverse rotation.");
}

}  // namespace dlkern::bind
