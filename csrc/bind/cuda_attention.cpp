// dlkern._C_cuda rope / rope_backward, kv_cache_append and decode_attention on
// DeviceArrays, with the CPU ops' names, call shapes and semantics
// (dlkern.ops.attention). On CUDA, attn_mask must be a float array of q's dtype (device
// arrays have no bool dtype) and head dims are limited to 256. Arguments are checked
// before any device work.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "bind/cuda_attention_args.h"
#include "bind/cuda_common.h"
#include "common/attention_checks.h"
#include "cuda/attention.h"
#include "cuda/check.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

DeviceArray rope_call(const py::object& x_obj, const py::object& offset_obj, double base, bool inverse) {
  const char* op = inverse ? "rope_backward" : "rope";
  const char* arg = inverse ? "grad_out" : "x";
  const DeviceArray& x = require_float_device_array(x_obj, op, arg);
  const int64_t offset = int64_arg(offset_obj, op, "offset");
  const auto [T_len, D] = rope_dims(op, arg, x.shape, base, offset);
  const int64_t half = D / 2;
  const int64_t rows = T_len * D == 0 ? 0 : x.numel() / D;
  // (cos, sin) per position and pair, in double as on the CPU, rounded once.
  std::vector<double> table(static_cast<size_t>(T_len * half * 2));
  for (int64_t t = 0; t < T_len; ++t)
    for (int64_t d = 0; d < half; ++d) {
      const double ang = double(offset + t) * std::pow(base, -2.0 * double(d) / double(D));
      table[(t * half + d) * 2] = std::cos(ang);
      table[(t * half + d) * 2 + 1] = inverse ? -std::sin(ang) : std::sin(ang);
    }
  DeviceArray y;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    const DeviceArray xc = cuda::contiguous(x, op);
    y = cuda::empty(x.shape, x.dtype, x.device, xc.stream, op);
    if (rows == 0 || half == 0) return y;
    dispatch_cuda_float(x.dtype, [&](auto zero) {
      using T = decltype(zero);
      const std::vector<T> tab(table.begin(), table.end());
      const DeviceArray cs = cuda::from_host(tab.data(), {T_len, half, 2}, x.dtype, x.device, y.stream, op);
      cuda::rope<T>(static_cast<const T*>(xc.data()), static_cast<T*>(y.data()), static_cast<const T*>(cs.data()),
                    rows, T_len, D, y.stream, op);
    });
  }
  return y;
}

int64_t append(const py::object& cache_obj, const py::object& new_obj, const py::object& offset_obj) {
  const char* op = "kv_cache_append";
  const int64_t offset = int64_arg(offset_obj, op, "offset");
  DeviceArray& c = require_device_array(cache_obj, op, "cache");
  const DeviceArray& n = require_float_device_array(new_obj, op, "new");
  require_float_device_array(cache_obj, op, "cache");
  require_same(n, "new", c, "cache", op);
  kv_cache_bounds(op, c.shape, n.shape, offset);
  if (n.storage && n.storage == c.storage) value_error(op, ": new shares memory with cache; pass a separate array");
  if (n.numel() > 0) {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(c.device, op);
    DeviceArray view = c;  // positions offset .. offset + T - 1 of the cache
    view.offset += offset * c.strides[2];
    view.shape[2] = n.shape[2];
    cuda::copy_into(view, n, op);
  }
  return offset + n.shape[2];
}

DeviceArray decode(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
                   const py::object& length_obj, const py::object& mask_obj, const py::object& scale_obj) {
  const char* op = "decode_attention";
  const int64_t length = int64_arg(length_obj, op, "length");
  const DeviceArray& q = require_float_device_array(q_obj, op, "q");
  const DeviceArray& k = require_float_device_array(k_obj, op, "k_cache");
  const DeviceArray& v = require_float_device_array(v_obj, op, "v_cache");
  require_same(k, "k_cache", q, "q", op);
  require_same(v, "v_cache", q, "q", op);
  AttentionDims dims = attention_dims(op, q.shape, k.shape, v.shape, "k_cache", "v_cache");
  const int64_t B = dims.B, Hq = dims.Hq, Tq = dims.Tq, D = dims.D, Hkv = dims.Hkv, Dv = dims.Dv;
  if (D > cuda::kDecodeMaxHeadDim || Dv > cuda::kDecodeMaxHeadDim)
    value_error(op, ": CUDA decode_attention supports head dims up to ", cuda::kDecodeMaxHeadDim, " (got D=", D,
                ", Dv=", Dv, ")");
  decode_length(op, length, dims, q.shape, k.shape);
  Shape mask_strides;
  const DeviceArray* mask = float_mask(mask_obj, q, Shape{B, Hq, Tq, length}, mask_strides, op);
  const double scale = scale_obj.is_none() ? 1.0 / std::sqrt(double(D)) : scale_obj.cast<double>();
  if (!std::isfinite(scale) || (q.dtype == DType::f32 && !std::isfinite(static_cast<float>(scale))))
    value_error(op, ": scale must be finite in ", cuda::dtype_name(q.dtype), ", got ", scale);
  DeviceArray out;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(q.device, op);
    const cudaStream_t s = q.stream;
    const DeviceArray qc = unit_last(q, s, op), kc = unit_last(k, s, op), vc = unit_last(v, s, op);
    wait_for_inputs(s, {&kc, &vc, mask}, op);
    out = cuda::empty({B, Hq, Tq, Dv}, q.dtype, q.device, s, op);
    if (out.numel() == 0) return out;
    int sm_count = 0;
    cuda::check(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, q.device), op, "query the SM count");
    const cuda::DecodePlan plan = cuda::plan_decode(B, Hkv, (Hq / Hkv) * Tq, length, D, Dv,
                                                    static_cast<int64_t>(cuda::itemsize(q.dtype)), sm_count);
    const DeviceArray scratch = cuda::empty({plan.splits * B * Hq * Tq * (Dv + 2)}, q.dtype, q.device, s, op);
    dispatch_cuda_float(q.dtype, [&](auto zero) {
      using T = decltype(zero);
      auto head = [](const DeviceArray& a) {
        return cuda::HeadArray<T>{static_cast<const T*>(a.data()), a.strides[0], a.strides[1], a.strides[2]};
      };
      cuda::decode_attention<T>(head(qc), head(kc), head(vc), mask ? static_cast<const T*>(mask->data()) : nullptr,
                                mask_strides.data(), static_cast<T*>(out.data()), static_cast<T*>(scratch.data()), B, Hq,
                                Hkv, Tq, length, D, Dv, static_cast<T>(scale), plan, s, op);
    });
    release_after(s, {&k, &v, mask}, op);
  }
  return out;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_attention) {
  m.def("rope",
        [](const py::object& x, const py::object& offset, double base) { return rope_call(x, offset, base, false); },
        py::arg("x"), py::arg("offset") = 0, py::arg("base") = 10000.0,
        "rope(x, offset=0, base=10000.0): rotary embedding of a DeviceArray (..., T, D), rotate-half pairs.");
  m.def("rope_backward",
        [](const py::object& g, const py::object& offset, double base) { return rope_call(g, offset, base, true); },
        py::arg("grad_out"), py::arg("offset") = 0, py::arg("base") = 10000.0,
        "rope_backward(grad_out, offset=0, base=10000.0): the inverse rotation.");
  m.def("kv_cache_append", &append, py::arg("cache"), py::arg("new"), py::arg("offset"),
        "kv_cache_append(cache, new, offset) -> offset + T: writes new (B, H, T, D) into the cache DeviceArray in place.");
  m.def("decode_attention", &decode, py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("length"),
        py::arg("attn_mask") = py::none(), py::arg("scale") = py::none(),
        "decode_attention(q, k_cache, v_cache, length, attn_mask=None, scale=None) -> out (B, Hq, Tq, Dv): q against "
        "the first length cache positions (causal, bottom-right aligned; GQA); attn_mask: float, q's dtype.");
  m.def("_decode_plan", [](int64_t B, int64_t Hkv, int64_t rows, int64_t length, int64_t D, int64_t Dv,
                           int64_t elem_bytes, int sm_count) {
    const cuda::DecodePlan p = cuda::plan_decode(B, Hkv, rows, length, D, Dv, elem_bytes, sm_count);
    return int_dict({{"row_groups", p.row_groups}, {"splits", p.splits}, {"chunk", p.chunk},
                     {"tile_keys", p.tile_keys}, {"smem_bytes", p.smem_bytes}});
  }, py::arg("B"), py::arg("Hkv"), py::arg("rows_per_kv_head"), py::arg("length"), py::arg("D"), py::arg("Dv"),
  py::arg("elem_bytes"), py::arg("sm_count"),
  "Testing aid: the decode-attention launch plan (row groups, key splits, chunk, tile, shared memory).");
}

}  // namespace dlkern::bind
