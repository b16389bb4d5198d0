// dlkern._C_cuda random numbers: rand (uniform [0, 1)) and randn (standard normal) from
// the counter-based hash of cuda/random.h, so a result depends on (seed, shape) only.
// _rand_host / _randn_host compute the same formula on the CPU (the same inline
// functions), for tests that check the formula without a GPU and device == host with one.
#include <limits>

#include "bind/cuda_common.h"
#include "cuda/check.h"
#include "cuda/random.h"

namespace dlkern::bind {
namespace {

using cuda::DType;

// A Python int in [0, 2**64); bools and floats are refused so a seed is never rounded.
uint64_t parse_seed(const py::handle& obj, const char* op) {
  if (!py::isinstance<py::int_>(obj) || py::isinstance<py::bool_>(obj))
    type_error(op, ": seed must be an int, got ", py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  const py::int_ zero(0), limit(py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(
                              std::numeric_limits<unsigned long long>::max())));
  if (obj < zero || obj > limit)
    value_error(op, ": seed must be in [0, 2**64), got ", py::str(obj).cast<std::string>());
  return obj.cast<uint64_t>();
}

Shape parse_size(const py::handle& obj, const char* op) {
  const Shape s = to_shape(obj, op, "shape");
  for (int64_t d : s)
    if (d < 0) value_error(op, ": negative dimension in shape ", cuda::shape_str(s));
  return s;
}

DType parse_float_dtype(const py::handle& obj, const char* op) {
  const DType dt = parse_dtype(obj, op);
  if (dt == DType::i64) type_error(op, ": dtype int64 is not supported (float32 or float64)");
  return dt;
}

DeviceArray random_array(bool normal, const char* op, const py::object& shape_obj, const py::object& seed_obj,
                         const py::object& dtype_obj, const py::object& device_obj, const py::object& stream_obj) {
  const Shape shape = parse_size(shape_obj, op);
  const uint64_t seed = parse_seed(seed_obj, op);
  const DType dt = parse_float_dtype(dtype_obj, op);
  const int device = device_obj.is_none() ? -1 : device_obj.cast<int>();
  const cudaStream_t stream = parse_stream(stream_obj, op);
  py::gil_scoped_release nogil;
  DeviceArray out = cuda::empty(shape, dt, device, stream, op);
  cuda::DeviceGuard guard(out.device, op);
  dispatch_cuda_float(dt, [&](auto zero) {
    using T = decltype(zero);
    if (normal)
      cuda::rand_normal<T>(static_cast<T*>(out.data()), out.numel(), seed, out.stream, op);
    else
      cuda::rand_uniform<T>(static_cast<T*>(out.data()), out.numel(), seed, out.stream, op);
  });
  return out;
}

// The host twin: the formula of random.h evaluated on the CPU.
py::array random_host(bool normal, const char* op, const py::object& shape_obj, const py::object& seed_obj,
                      const py::object& dtype_obj) {
  const Shape shape = parse_size(shape_obj, op);
  const uint64_t seed = parse_seed(seed_obj, op);
  const DType dt = parse_float_dtype(dtype_obj, op);
  py::array out(numpy_dtype(dt), std::vector<py::ssize_t>(shape.begin(), shape.end()));
  void* data = out.mutable_data();
  const int64_t n = cuda::numel(shape);
  py::gil_scoped_release nogil;
  dispatch_cuda_float(dt, [&](auto zero) {
    using T = decltype(zero);
    T* o = static_cast<T*>(data);
    if (!normal) {
      const uint64_t key = cuda::rng::key(seed, cuda::rng::kUniformStream);
      for (int64_t i = 0; i < n; ++i) o[i] = cuda::rng::uniform_at<T>(key, static_cast<uint64_t>(i));
      return;
    }
    const uint64_t key = cuda::rng::key(seed, cuda::rng::kNormalStream);
    for (int64_t p = 0; 2 * p < n; ++p) {
      double even, odd;
      cuda::rng::normal_pair(key, static_cast<uint64_t>(p), &even, &odd);
      o[2 * p] = static_cast<T>(even);
      if (2 * p + 1 < n) o[2 * p + 1] = static_cast<T>(odd);
    }
  });
  return out;
}

}  // namespace

DLKERN_REGISTER_BINDINGS(cuda_random) {
  // rand and randn (and their host twins) differ only in `normal` and the docstrings.
  struct Row {
    const char *name, *doc, *host_name, *host_doc;
  };
  const Row rows[2] = {
      {"rand",
       "rand(shape, seed, dtype='float32', device=None, stream=None): uniform [0, 1) from a counter-based hash "
       "of (seed, flat index) (see csrc/cuda/random.h); the same (seed, shape) always gives the same array.",
       "_rand_host", "Testing aid: rand's formula computed on the CPU (a numpy.ndarray); bit-equal to rand()."},
      {"randn",
       "randn(shape, seed, dtype='float32', device=None, stream=None): standard normal, Box-Muller on pairs of "
       "counters of the same hash (see csrc/cuda/random.h).",
       "_randn_host",
       "Testing aid: randn's formula computed on the CPU; equal to randn() up to the last bit of log/cos/sin."},
  };
  const char* f32 = "float32";
  for (const bool normal : {false, true}) {
    const Row& r = rows[normal];
    m.def(r.name, [normal, name = r.name](const py::object& shape, const py::object& seed, const py::object& dtype,
                                          const py::object& device, const py::object& stream) {
          return random_array(normal, name, shape, seed, dtype, device, stream);
        },
        py::arg("shape"), py::arg("seed"), py::arg("dtype") = f32, py::arg("device") = py::none(),
        py::arg("stream") = py::none(), r.doc);
    m.def(r.host_name, [normal, name = r.host_name](const py::object& shape, const py::object& seed,
                                                    const py::object& dtype) {
          return random_host(normal, name, shape, seed, dtype);
        }, py::arg("shape"), py::arg("seed"), py::arg("dtype") = f32, r.host_doc);
  }
}

}  // namespace dlkern::bind
