// dlkern._C_cuda creation and conversion: full (and ones, full_like, zeros_like,
// ones_like), arange, fill_ (in place on any view) and astype. Arguments are checked before any device work.
#include <cmath>
#include <limits>

#include "bind/cuda_elementwise.h"
#include "cuda/elementwise.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

int device_arg(const py::object& device) { return device.is_none() ? -1 : device.cast<int>(); }

// A fill value: a Python number converted to dtype as numpy's astype would (float to
// int64 truncates toward zero, anything to bool is `!= 0`). TypeError for non-numbers,
// ValueError for values int64 cannot hold.
Operand fill_value(const py::object& obj, DType dt, const char* op) {
  Operand v = parse_number(obj, op, "value");
  if (dt == DType::i64 && v.kind == Operand::Kind::real) {
    // Representable doubles that truncate into int64: |t| < 2^63.
    const double t = std::trunc(v.real);
    if (!(t >= -9223372036854775808.0 && t < 9223372036854775808.0))
      value_error(op, ": value ", v.real, " cannot be converted to int64");
    v.integer = static_cast<int64_t>(t);
    v.fits_int64 = true;
  }
  if (dt == DType::i64 && !v.fits_int64) value_error(op, ": value ", v.real, " does not fit in int64");
  return v;
}

// Queues value into every element of x (any strides).
void fill_array(DeviceArray& x, const Operand& v, const char* op) {
  if (x.numel() == 0) return;
  cuda::DeviceGuard guard(x.device, op);
  const cuda::StridedLoop loop = cuda::make_loop(x.shape, {x.strides});
  dispatch_cuda_any(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    cuda::fill<T>(loop, static_cast<T*>(x.data()), scalar_as<T>(v), x.stream, op);
  });
}

// full(shape, value, ...) and ones(shape, ...), which is full with 1 under its own name.
DeviceArray full(const char* op, const py::object& shape_obj, const py::object& value, const py::object& dtype,
                 const py::object& device, const py::object& stream) {
  const Shape shape = to_shape(shape_obj, op, "shape");
  const DType dt = parse_dtype(dtype, op);
  const Operand v = fill_value(value, dt, op);
  const cudaStream_t st = parse_stream(stream, op);
  py::gil_scoped_release nogil;
  DeviceArray x = cuda::empty(shape, dt, device_arg(device), st, op);
  fill_array(x, v, op);
  return x;
}

// zeros_like / ones_like / full_like: x's shape, device and stream; x's dtype unless given.
DeviceArray full_like(const char* op, const py::object& x_obj, const py::object& value, const py::object& dtype) {
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  const DType dt = dtype.is_none() ? x.dtype : parse_dtype(dtype, op);
  const Operand v = fill_value(value, dt, op);
  py::gil_scoped_release nogil;
  DeviceArray out = cuda::empty(x.shape, dt, x.device, x.stream, op);
  fill_array(out, v, op);
  return out;
}

py::object fill_(const py::object& x_obj, const py::object& value) {
  const char* op = "fill_";
  DeviceArray& x = require_device_array(x_obj, op, "x");
  const Operand v = fill_value(value, x.dtype, op);
  {
    py::gil_scoped_release nogil;
    fill_array(x, v, op);
  }
  return x_obj;
}

// numpy.arange's length rule, ceil((stop - start) / step) clamped at 0, exactly for ints.
int64_t arange_length_int(int64_t start, int64_t stop, int64_t step) {
  // In 128 bits: stop - start can overflow int64.
  const __int128 span = static_cast<__int128>(stop) - start;
  __int128 n = span / step;
  // Round the quotient up only when it is positive (C++ division truncates toward zero).
  if (n * step != span && (span > 0) == (step > 0)) n += 1;
  return n > 0 ? static_cast<int64_t>(n) : 0;
}

DeviceArray arange(const py::object& start_obj, const py::object& stop_obj, const py::object& step_obj,
                   const py::object& dtype, const py::object& device, const py::object& stream) {
  const char* op = "arange";
  auto number = [&](const py::object& obj, const char* arg) {
    Operand o = parse_number(obj, op, arg);
    if (o.kind != Operand::Kind::real && !o.fits_int64) value_error(op, ": ", arg, " does not fit in int64");
    return o;
  };
  // arange(stop) counts from 0, as numpy.
  const Operand start = stop_obj.is_none() ? number(py::int_(0), "start") : number(start_obj, "start");
  const Operand stop = stop_obj.is_none() ? number(start_obj, "stop") : number(stop_obj, "stop");
  const Operand step = number(step_obj, "step");
  const bool any_float = start.kind == Operand::Kind::real || stop.kind == Operand::Kind::real ||
                         step.kind == Operand::Kind::real;
  // Ints give int64; any float gives float32 (PyTorch's default, not NumPy's float64).
  const DType dt = dtype.is_none() ? (any_float ? DType::f32 : DType::i64) : parse_dtype(dtype, op);
  if (dt == DType::b8) type_error(op, ": dtype bool is not supported (use int64 and compare)");
  if (dt == DType::i64 && any_float)
    type_error(op, ": float start/stop/step with dtype int64; pass ints or a float dtype");
  if (step.real == 0) value_error(op, ": step must not be zero");
  int64_t n = 0;
  if (any_float) {
    const double len = std::ceil((stop.real - start.real) / step.real);
    if (!std::isfinite(len)) value_error(op, ": the length of arange(", start.real, ", ", stop.real, ", ",
                                         step.real, ") is not finite");
    if (len > static_cast<double>(std::numeric_limits<int64_t>::max() / 16))
      value_error(op, ": arange(", start.real, ", ", stop.real, ", ", step.real, ") is too long");
    n = len > 0 ? static_cast<int64_t>(len) : 0;
  } else {
    n = arange_length_int(start.integer, stop.integer, step.integer);
  }
  const cudaStream_t st = parse_stream(stream, op);
  py::gil_scoped_release nogil;
  DeviceArray x = cuda::empty({n}, dt, device_arg(device), st, op);
  if (n) {
    cuda::DeviceGuard guard(x.device, op);
    cuda::arange(n, x.data(), dt, start.real, step.real, start.integer, step.integer, x.stream, op);
  }
  return x;
}

DeviceArray astype(const py::object& x_obj, const py::object& dtype) {
  const char* op = "astype";
  const DeviceArray& x = require_device_array(x_obj, op, "x");
  const DType dt = parse_dtype(dtype, op);
  py::gil_scoped_release nogil;
  cuda::DeviceGuard guard(x.device, op);
  DeviceArray out = cuda::empty(x.shape, dt, x.device, x.stream, op);
  if (out.numel())
    cuda::convert(cuda::make_loop(x.shape, {out.strides, x.strides}), out.data(), dt, x.data(), x.dtype,
                  out.stream, op);
  return out;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_fill) {
  m.def("full", [](const py::object& shape, const py::object& value, const py::object& dtype,
                   const py::object& device, const py::object& stream) {
          return full("full", shape, value, dtype, device, stream);
        }, py::arg("shape"), py::arg("value"), py::arg("dtype") = "float32",
        py::arg("device") = py::none(), py::arg("stream") = py::none(),
        "full(shape, value, dtype='float32', device=None, stream=None): a contiguous array filled "
        "with value (converted as numpy's astype: float to int64 truncates, to bool is != 0).");
  m.def("ones", [](const py::object& shape, const py::object& dtype, const py::object& device,
                   const py::object& stream) { return full("ones", shape, py::int_(1), dtype, device, stream); },
        py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = py::none(),
        py::arg("stream") = py::none(), "ones(shape, dtype='float32', device=None, stream=None).");
  m.def("full_like", [](const py::object& x, const py::object& value, const py::object& dtype) {
          return full_like("full_like", x, value, dtype);
        }, py::arg("x"), py::arg("value"), py::arg("dtype") = py::none(),
        "full_like(x, value, dtype=None): a new contiguous array of x's shape, device and stream.");
  m.def("zeros_like", [](const py::object& x, const py::object& dtype) {
          return full_like("zeros_like", x, py::int_(0), dtype);
        }, py::arg("x"), py::arg("dtype") = py::none(), "zeros_like(x, dtype=None).");
  m.def("ones_like", [](const py::object& x, const py::object& dtype) {
          return full_like("ones_like", x, py::int_(1), dtype);
        }, py::arg("x"), py::arg("dtype") = py::none(), "ones_like(x, dtype=None).");
  m.def("fill_", &fill_, py::arg("x"), py::arg("value"),
        "fill_(x, value): writes value into every element of x (any strided view) in place; returns x.");
  m.def("arange", &arange, py::arg("start"), py::arg("stop") = py::none(), py::arg("step") = 1,
        py::arg("dtype") = py::none(), py::arg("device") = py::none(), py::arg("stream") = py::none(),
        "arange(start, stop=None, step=1, dtype=None, device=None, stream=None): numpy.arange's values "
        "and length; dtype int64 when all arguments are ints, else float32 (as PyTorch). Floats are "
        "computed as start + i * step in double and rounded once.");
  m.def("astype", &astype, py::arg("x"), py::arg("dtype"),
        "astype(x, dtype): a new contiguous array converted to float32/float64/int64/bool as numpy's "
        "astype (float to int64 truncates toward zero, to bool is x != 0).");
  m.def("_arange_length", [](const py::object& start, const py::object& stop, const py::object& step) {
          const Operand a = parse_number(start, "arange", "start"), b = parse_number(stop, "arange", "stop"),
                        c = parse_number(step, "arange", "step");
          if (c.real == 0) value_error("arange: step must not be zero");
          return arange_length_int(a.integer, b.integer, c.integer);
        }, py::arg("start"), py::arg("stop"), py::arg("step"),
        "Testing aid: arange's length for int arguments (exact, in 128-bit arithmetic).");
}

}  // namespace dlkern::bind
