// dlkern._C_cuda cross_entropy_forward / cross_entropy_backward on DeviceArrays, with
// the CPU ops' names, call shapes and semantics (dlkern.ops.cross_entropy_*): input
// (N, C), (N, C, d1, ...) or unbatched (C,) with a 0-d target; target int64 class
// indices; optional class weight; ignore_index; label_smoothing; reduction. The class
// axis is brought last with one strided copy when there are trailing dims. Arguments
// are checked before device work; the forward copies one flag back to report an
// out-of-range target as ValueError (which waits for the kernel).
#include <cstring>
#include <limits>
#include <string>

#include "bind/cuda_common.h"
#include "cuda/check.h"
#include "cuda/cross_entropy.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

DeviceArray reshaped(DeviceArray a, const Shape& shape) {  // a must be contiguous
  a.shape = shape;
  a.strides = cuda::contiguous_strides(shape);
  return a;
}

// reduction_arg's index is the enum's value.
static_assert(static_cast<int>(cuda::CeReduction::mean) == 1 && static_cast<int>(cuda::CeReduction::sum) == 2);

struct CeArgs {
  const DeviceArray* input = nullptr;
  const DeviceArray* target = nullptr;
  const DeviceArray* weight = nullptr;
  bool unbatched = false;
  Shape sample_shape;  // (N, d1, ...), or (1,) for an unbatched call
  int64_t rows = 0, c = 0;
  cuda::CeReduction reduction = cuda::CeReduction::mean;
};

CeArgs check_common(const py::object& input_obj, const py::object& target_obj, const py::object& weight_obj,
                    const py::object& reduction, double label_smoothing, const char* op) {
  CeArgs a;
  a.input = &require_device_array(input_obj, op, "input");
  const DeviceArray& x = *a.input;
  if (!cuda::is_float(x.dtype))
    type_error(op, ": input has dtype ", cuda::dtype_name(x.dtype), "; expected float32 or float64 logits");
  a.target = &require_device_array(target_obj, op, "target");
  const DeviceArray& t = *a.target;
  if (t.dtype != DType::i64)
    type_error(op, ": target has dtype ", cuda::dtype_name(t.dtype), "; expected int64 class indices");
  if (t.device != x.device) value_error(op, ": target is on cuda:", t.device, " but input is on cuda:", x.device);
  a.unbatched = x.ndim() == 1 && t.ndim() == 0;
  if (x.ndim() < 2 && !a.unbatched)
    value_error(op, ": input must have shape (N, C) or (N, C, d1, ...) (or (C,) with a 0-d target), got shape ",
                cuda::shape_str(x.shape));
  a.c = a.unbatched ? x.shape[0] : x.shape[1];
  if (a.c < 1) value_error(op, ": input has no classes (shape ", cuda::shape_str(x.shape), ")");
  if (a.unbatched) {
    a.sample_shape = {1};
  } else {
    a.sample_shape.push_back(x.shape[0]);
    for (int i = 2; i < x.ndim(); ++i) a.sample_shape.push_back(x.shape[i]);
    if (t.shape != a.sample_shape)
      value_error(op, ": target has shape ", cuda::shape_str(t.shape), ", expected ", cuda::shape_str(a.sample_shape),
                  " for input of shape ", cuda::shape_str(x.shape));
  }
  a.rows = cuda::numel(a.sample_shape);
  if (!weight_obj.is_none()) {
    a.weight = &require_device_array(weight_obj, op, "weight");
    const DeviceArray& w = *a.weight;
    require_like(w, "weight", x, "input", op);
    if (w.ndim() != 1 || w.shape[0] != a.c)
      value_error(op, ": weight has shape ", cuda::shape_str(w.shape), ", expected (", a.c, ",) for input of shape ",
                  cuda::shape_str(x.shape));
  }
  a.reduction = static_cast<cuda::CeReduction>(reduction_arg(reduction, op));
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    value_error(op, ": label_smoothing must be in [0, 1], got ", label_smoothing);
  return a;
}

// The logits as a contiguous (rows, c) buffer: class axis last.
DeviceArray rows_of(const CeArgs& a, const char* op) {
  const DeviceArray& x = *a.input;
  if (a.unbatched) return cuda::contiguous(x, op);
  return cuda::contiguous(cuda::move_axis(x, 1, x.ndim() - 1), op);
}

py::tuple ce_forward(const py::object& input, const py::object& target, const py::object& weight,
                     int64_t ignore_index, const py::object& reduction, double label_smoothing) {
  const char* op = "cross_entropy";
  const CeArgs a = check_common(input, target, weight, reduction, label_smoothing, op);
  const DeviceArray& x = *a.input;
  const Shape out_sample = a.unbatched ? Shape{} : a.sample_shape;
  DeviceArray loss, lse;
  unsigned long long bad = std::numeric_limits<unsigned long long>::max();
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    const DeviceArray xc = rows_of(a, op);
    const cudaStream_t s = xc.stream;
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray tc = contiguous_on(*a.target, s, op);
    const DeviceArray wc = a.weight ? contiguous_on(*a.weight, s, op) : DeviceArray{};
    wait_for_inputs(s, {&tc, a.weight ? &wc : nullptr}, op);
    DeviceArray per_row = cuda::empty({a.rows}, x.dtype, x.device, s, op);
    lse = cuda::empty(out_sample, x.dtype, x.device, s, op);
    const DeviceArray row_weight = cuda::empty({a.rows}, x.dtype, x.device, s, op);
    DeviceArray flag = cuda::empty({1}, DType::i64, x.device, s, op);
    cuda::check(cudaMemsetAsync(flag.data(), 0xFF, sizeof(bad), s), op, "initialise the target check");
    dispatch_cuda_float(x.dtype, [&](auto zero) {
      using T = decltype(zero);
      cuda::cross_entropy_forward<T>(static_cast<const T*>(xc.data()), static_cast<const int64_t*>(tc.data()),
                                     a.weight ? static_cast<const T*>(wc.data()) : nullptr,
                                     static_cast<T*>(per_row.data()), static_cast<T*>(lse.data()),
                                     static_cast<T*>(row_weight.data()),
                                     static_cast<unsigned long long*>(flag.data()), a.rows, a.c, ignore_index,
                                     static_cast<T>(label_smoothing), s, op);
      if (a.reduction == cuda::CeReduction::none) {
        loss = reshaped(per_row, out_sample);
      } else {
        loss = cuda::empty({}, x.dtype, x.device, s, op);
        cuda::cross_entropy_reduce<T>(static_cast<const T*>(per_row.data()), static_cast<const T*>(row_weight.data()),
                                      static_cast<T*>(loss.data()), a.rows, a.reduction, s, op);
      }
    });
    if (a.rows > 0) cuda::to_host(flag, &bad, op);  // waits for the kernels
  }
  if (bad != std::numeric_limits<unsigned long long>::max())
    value_error(op, ": target at flat index ", bad, " is out of range for ", a.c, " classes (expected 0 <= target < ",
                a.c, " or ignore_index=", ignore_index, ")");
  return py::make_tuple(std::move(loss), std::move(lse));
}

py::object ce_backward(const py::object& grad_obj, const py::object& input, const py::object& target,
                       const py::object& lse_obj, const py::object& weight, int64_t ignore_index,
                       const py::object& reduction, double label_smoothing, const py::object& out_obj) {
  const char* op = "cross_entropy_backward";
  const CeArgs a = check_common(input, target, weight, reduction, label_smoothing, op);
  const DeviceArray& x = *a.input;
  const bool none = a.reduction == cuda::CeReduction::none;
  const Shape out_sample = a.unbatched ? Shape{} : a.sample_shape;
  const DeviceArray* grad = nullptr;
  double grad_scalar = 1.0;
  if (!none && (py::isinstance<py::float_>(grad_obj) || py::isinstance<py::int_>(grad_obj)) &&
      !py::isinstance<py::bool_>(grad_obj)) {
    grad_scalar = grad_obj.cast<double>();
  } else {
    grad = &require_device_array(grad_obj, op, "grad_loss");
    require_like(*grad, "grad_loss", x, "input", op);
    if (none && grad->shape != out_sample)
      value_error(op, ": grad_loss has shape ", cuda::shape_str(grad->shape), ", expected ",
                  cuda::shape_str(out_sample), " for reduction='none'");
    if (!none && grad->numel() != 1)
      value_error(op, ": grad_loss has shape ", cuda::shape_str(grad->shape),
                  ", expected a single value for reduction='", py::str(reduction).cast<std::string>(), "'");
  }
  const DeviceArray& lse = require_device_array(lse_obj, op, "lse");
  if (lse.dtype != x.dtype)
    type_error(op, ": lse has dtype ", cuda::dtype_name(lse.dtype), " but input has dtype ", cuda::dtype_name(x.dtype));
  if (lse.shape != out_sample)
    value_error(op, ": lse has shape ", cuda::shape_str(lse.shape), ", expected ", cuda::shape_str(out_sample));
  DeviceArray* out = nullptr;
  if (!out_obj.is_none()) {
    out = &require_device_array(out_obj, op, "out");
    require_match(*out, "out", x.dtype, x.shape, x.device, {"input has", nullptr, "input is"}, op);
  }
  DeviceArray result;
  {
    py::gil_scoped_release nogil;
    cuda::DeviceGuard guard(x.device, op);
    const DeviceArray xc = rows_of(a, op);
    const cudaStream_t s = xc.stream;
    // contiguous_on: a copy is made on the consuming stream (see cuda_common.h).
    const DeviceArray tc = contiguous_on(*a.target, s, op);
    const DeviceArray wc = a.weight ? contiguous_on(*a.weight, s, op) : DeviceArray{};
    const DeviceArray gc = grad ? contiguous_on(*grad, s, op) : DeviceArray{};
    wait_for_inputs(s, {&tc, a.weight ? &wc : nullptr, grad ? &gc : nullptr}, op);
    DeviceArray dx = cuda::empty(xc.shape, x.dtype, x.device, s, op);
    const DeviceArray scratch = cuda::empty({1}, DType::f64, x.device, s, op);
    dispatch_cuda_float(x.dtype, [&](auto zero) {
      using T = decltype(zero);
      cuda::cross_entropy_backward<T>(grad ? static_cast<const T*>(gc.data()) : nullptr, static_cast<T>(grad_scalar),
                                      static_cast<const T*>(xc.data()), static_cast<const int64_t*>(tc.data()),
                                      a.weight ? static_cast<const T*>(wc.data()) : nullptr,
                                      static_cast<T*>(dx.data()), static_cast<double*>(scratch.data()), a.rows, a.c,
                                      ignore_index, a.reduction, static_cast<T>(label_smoothing), s, op);
    });
    const DeviceArray back = a.unbatched ? dx : cuda::move_axis(dx, x.ndim() - 1, 1);
    if (out) {
      cuda::copy_into(*out, back, op);
    } else {
      result = cuda::contiguous(back, op);
    }
  }
  return out ? out_obj : py::cast(std::move(result));
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_loss) {
  m.def("cross_entropy_forward", &ce_forward, py::arg("input"), py::arg("target"), py::arg("weight") = py::none(),
        py::arg("ignore_index") = -100, py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0,
        "-> (loss, lse): PyTorch's cross_entropy with class-index targets on DeviceArrays; lse is the per-sample "
        "log-sum-exp the backward takes. An out-of-range target raises ValueError (after the kernel ran).");
  m.def("cross_entropy_backward", &ce_backward, py::arg("grad_loss"), py::arg("input"), py::arg("target"),
        py::arg("lse"), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
        py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0, py::arg("out") = py::none(),
        "Gradient of cross_entropy with respect to input; grad_loss per sample ('none') or one value (a "
        "DeviceArray or a Python number).");
}

}  // namespace dlkern::bind
