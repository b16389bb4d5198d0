// dlkern._C_cuda attention_forward / attention_backward on DeviceArrays (flash attention),
// with the CPU ops' names, argument order and semantics (dlkern.ops.attention), plus the
// testing aids _attention_plan and _dropout_keep. On CUDA attn_mask must be a float array
// of q's dtype (device arrays have no bool dtype) and head dims are limited to 128.
// Arguments are checked before any device work.
#include <cmath>
#include <string>

#include "bind/cuda_attention_args.h"
#include "bind/cuda_common.h"
#include "common/attention_checks.h"
#include "cuda/check.h"
#include "cuda/flash_attention.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

using Dims = AttentionDims;

// q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv): dtype and device here, shapes
// in common/attention_checks.h, then the CUDA kernels' head-dim limit.
Dims check_qkv(const DeviceArray& q, const DeviceArray& k, const DeviceArray& v, const char* op) {
  require_same(k, "k", q, "q", op);
  require_same(v, "v", q, "q", op);
  const Dims s = attention_dims(op, q.shape, k.shape, v.shape, "k", "v");
  if (s.D > cuda::kFlashMaxHeadDim || s.Dv > cuda::kFlashMaxHeadDim)
    value_error(op, ": CUDA ", op, " supports head dims up to ", cuda::kFlashMaxHeadDim, " (got D=", s.D,
                ", Dv=", s.Dv, ")");
  return s;
}

// The float mask (or nullptr) and its broadcast element strides over (B, Hq, Tq, Tk).
const DeviceArray* check_mask(const py::object& mask_obj, const DeviceArray& q, const Dims& s, Shape& strides,
                              const char* op) {
  return float_mask(mask_obj, q, Shape{s.B, s.Hq, s.Tq, s.Tk}, strides, op);
}

void check_dropout(double p, const char* op) {
  if (!(p >= 0.0 && p < 1.0)) value_error(op, ": dropout_p must be in [0, 1), got ", p);
}

cuda::FlashPlan device_plan(const Dims& s, DType dt, int device, const char* op) {
  int smem = 0, sms = 0;
  cuda::check(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), op,
              "query the shared memory per block");
  cuda::check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), op, "query the SM count");
  return cuda::plan_flash(s.B, s.Hq, s.Hkv, s.Tq, s.Tk, s.D, s.Dv, static_cast<int64_t>(cuda::itemsize(dt)), smem, sms,
                          op);
}

template <typename T>
cuda::HeadArray<T> head(const DeviceArray& a) {
  if (a.numel() == 0) return {static_cast<const T*>(a.data()), 0, 0, 0};  // nothing is read
  return {static_cast<const T*>(a.data()), a.strides[0], a.strides[1], a.strides[2]};
}

template <typename T>
cuda::FlashProblem<T> problem(const Dims& s, const DeviceArray& q, const DeviceArray& k, const DeviceArray& v,
                              const DeviceArray* mask, const Shape& ms, bool causal, double scale, double dropout_p,
                              uint64_t seed) {
  cuda::FlashProblem<T> pr;
  pr.B = s.B, pr.Hq = s.Hq, pr.Hkv = s.Hkv, pr.Tq = s.Tq, pr.Tk = s.Tk, pr.D = s.D, pr.Dv = s.Dv;
  pr.q = head<T>(q), pr.k = head<T>(k), pr.v = head<T>(v);
  pr.mask = mask ? static_cast<const T*>(mask->data()) : nullptr;
  for (int i = 0; i < 4; ++i) pr.ms[i] = mask ? ms[i] : 0;
  pr.causal = causal;
  pr.scale = static_cast<T>(scale);
  pr.dropout_p = dropout_p;
  pr.seed = seed;
  return pr;
}

// 1/sqrt(D) for None; a NaN or infinite scale (or one that overflows q's dtype) can only
// give NaN/Inf scores: ValueError.
double resolve_scale(const py::object& scale, int64_t D, const DeviceArray& q, const char* op) {
  if (scale.is_none()) return 1.0 / std::sqrt(double(D));
  const double sc = scale.cast<double>();
  if (!std::isfinite(sc) || (q.dtype == cuda::DType::f32 && !std::isfinite(static_cast<float>(sc))))
    value_error(op, ": scale must be finite in ", cuda::dtype_name(q.dtype), ", got ", sc);
  return sc;
}

py::tuple forward(const py::object& q_obj, const py::object& k_obj, const py::object& v_obj,
                  const py::object& mask_obj, bool is_causal, const py::object& scale_obj, double dropout_p,
                  uint64_t seed) {
  const char* op = "attention_forward";
  const DeviceArray& q = require_float_device_array(q_obj, op, "q");
  const DeviceArray& k = require_float_device_array(k_obj, op, "k");
  const DeviceArray& v = require_float_device_array(v_obj, op, "v");
  const Dims s = check_qkv(q, k, v, op);
  Shape ms;
  const DeviceArray* mask = check_mask(mask_obj, q, s, ms, op);
  check_dropout(dropout_p, op);
  const double scale = resolve_scale(scale_obj, s.D, q, op);
  DeviceArray out, lse;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(q.device, op);
    const cudaStream_t st = q.stream;
    const DeviceArray qc = unit_last(q, st, op), kc = unit_last(k, st, op), vc = unit_last(v, st, op);
    wait_for_inputs(st, {&kc, &vc, mask}, op);
    out = cuda::empty({s.B, s.Hq, s.Tq, s.Dv}, q.dtype, q.device, st, op);
    lse = cuda::empty({s.B, s.Hq, s.Tq}, q.dtype, q.device, st, op);
    if (lse.numel() > 0) {
      const cuda::FlashPlan plan = device_plan(s, q.dtype, q.device, op);
      dispatch_cuda_float(q.dtype, [&](auto zero) {
        using T = decltype(zero);
        cuda::flash_attention_forward<T>(problem<T>(s, qc, kc, vc, mask, ms, is_causal, scale, dropout_p, seed), plan,
                                         static_cast<T*>(out.data()), static_cast<T*>(lse.data()), st, op);
      });
      release_after(st, {&k, &v, mask}, op);
    }
  }
  return py::make_tuple(py::cast(std::move(out)), py::cast(std::move(lse)));
}

py::tuple backward(const py::object& g_obj, const py::object& q_obj, const py::object& k_obj,
                   const py::object& v_obj, const py::object& o_obj, const py::object& lse_obj,
                   const py::object& mask_obj, bool is_causal, const py::object& scale_obj, double dropout_p,
                   uint64_t seed) {
  const char* op = "attention_backward";
  const DeviceArray& g = require_float_device_array(g_obj, op, "grad_out");
  const DeviceArray& q = require_float_device_array(q_obj, op, "q");
  const DeviceArray& k = require_float_device_array(k_obj, op, "k");
  const DeviceArray& v = require_float_device_array(v_obj, op, "v");
  const DeviceArray& o = require_float_device_array(o_obj, op, "out");
  const DeviceArray& lse = require_float_device_array(lse_obj, op, "lse");
  const Dims s = check_qkv(q, k, v, op);
  const Shape out_shape{s.B, s.Hq, s.Tq, s.Dv}, lse_shape{s.B, s.Hq, s.Tq};
  require_same(g, "grad_out", q, "q", op, &out_shape);
  require_same(o, "out", q, "q", op, &out_shape);
  require_same(lse, "lse", q, "q", op, &lse_shape);
  Shape ms;
  const DeviceArray* mask = check_mask(mask_obj, q, s, ms, op);
  check_dropout(dropout_p, op);
  const double scale = resolve_scale(scale_obj, s.D, q, op);
  DeviceArray dq, dk, dv;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(q.device, op);
    const cudaStream_t st = q.stream;
    const DeviceArray qc = unit_last(q, st, op), kc = unit_last(k, st, op), vc = unit_last(v, st, op);
    const DeviceArray gc = unit_last(g, st, op), oc = unit_last(o, st, op), lc = contiguous_on(lse, st, op);
    wait_for_inputs(st, {&kc, &vc, &gc, &oc, &lc, mask}, op);
    dq = cuda::empty({s.B, s.Hq, s.Tq, s.D}, q.dtype, q.device, st, op);
    dk = cuda::empty({s.B, s.Hkv, s.Tk, s.D}, q.dtype, q.device, st, op);
    dv = cuda::empty({s.B, s.Hkv, s.Tk, s.Dv}, q.dtype, q.device, st, op);
    if (s.B > 0 && (s.Tq > 0 || s.Tk > 0)) {  // (Hq, Hkv >= 1 here)
      const cuda::FlashPlan plan = device_plan(s, q.dtype, q.device, op);
      const DeviceArray delta = cuda::empty({std::max<int64_t>(s.B * s.Hq * s.Tq, 1)}, q.dtype, q.device, st, op);
      const int64_t part = plan.dkdv_splits > 1 ? plan.dkdv_splits * s.B * s.Hkv * s.Tk * (s.D + s.Dv) : 0;
      const DeviceArray dkdv_part = cuda::empty({part}, q.dtype, q.device, st, op);
      dispatch_cuda_float(q.dtype, [&](auto zero) {
        using T = decltype(zero);
        cuda::flash_attention_backward<T>(problem<T>(s, qc, kc, vc, mask, ms, is_causal, scale, dropout_p, seed),
                                          plan, head<T>(gc), head<T>(oc), static_cast<const T*>(lc.data()),
                                          static_cast<T*>(delta.data()), static_cast<T*>(dkdv_part.data()),
                                          static_cast<T*>(dq.data()),
                                          static_cast<T*>(dk.data()), static_cast<T*>(dv.data()), st, op);
      });
      release_after(st, {&k, &v, &g, &o, &lse, mask}, op);
    }
  }
  return py::make_tuple(py::cast(std::move(dq)), py::cast(std::move(dk)), py::cast(std::move(dv)));
}

py::dict plan_dict(int64_t B, int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, int64_t Dv,
                   int64_t elem_bytes, int64_t max_smem_bytes, int64_t sm_count) {
  const cuda::FlashPlan p =
      cuda::plan_flash(B, Hq, Hkv, Tq, Tk, D, Dv, elem_bytes, max_smem_bytes, sm_count, "_attention_plan");
  return int_dict({{"tile", p.tile}, {"threads", p.threads}, {"q_tiles", p.q_tiles}, {"k_tiles", p.k_tiles},
                   {"fwd_blocks", p.fwd_blocks}, {"fwd_smem", p.fwd_smem},
                   {"dkdv_splits", p.dkdv_splits}, {"dkdv_heads", p.dkdv_heads},
                   {"dkdv_blocks", p.dkdv_blocks}, {"dkdv_smem", p.dkdv_smem},
                   {"dq_blocks", p.dq_blocks}, {"dq_smem", p.dq_smem}});
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_flash_attention) {
  m.def("attention_forward", &forward, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("attn_mask") = py::none(),
        py::arg("is_causal") = false, py::arg("scale") = py::none(), py::arg("dropout_p") = 0.0,
        py::arg("seed") = 0,
        "attention_forward(q, k, v, attn_mask=None, is_causal=False, scale=None, dropout_p=0.0, seed=0) -> "
        "(out, lse): flash attention on DeviceArrays (see dlkern.ops.attention). attn_mask: float, q's dtype; "
        "head dims D, Dv <= 128.");
  m.def("attention_backward", &backward, py::arg("grad_out"), py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("out"), py::arg("lse"), py::arg("attn_mask") = py::none(), py::arg("is_causal") = false,
        py::arg("scale") = py::none(), py::arg("dropout_p") = 0.0, py::arg("seed") = 0,
        "attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False, scale=None, "
        "dropout_p=0.0, seed=0) -> (dq, dk, dv): score tiles recomputed from lse; head dims D, Dv <= 128.");
  m.def("_attention_plan", &plan_dict, py::arg("B"), py::arg("Hq"), py::arg("Hkv"), py::arg("Tq"), py::arg("Tk"),
        py::arg("D"), py::arg("Dv"), py::arg("elem_bytes"), py::arg("max_smem"), py::arg("sm_count"),
        "Testing aid: the flash-attention launch plan (tile, grids, shared memory of the forward, dK/dV and dQ "
        "kernels, dK/dV head splits) for a device with max_smem bytes of shared memory per block and sm_count SMs.");
  m.def("_dropout_keep",
        [](uint64_t seed, int64_t b, int64_t h, int64_t i, int64_t j, double p) {
          return cuda::flash_dropout_keep(cuda::flash_dropout_row_key(seed, b, h, i), j,
                                          cuda::flash_dropout_threshold(p));
        },
        py::arg("seed"), py::arg("b"), py::arg("h"), py::arg("i"), py::arg("j"), py::arg("p"),
        "Testing aid: whether CUDA attention dropout keeps weight (b, h, i, j) for this seed and p (the same "
        "counter hash as the CPU kernel).");
}

}  // namespace dlkern::bind
