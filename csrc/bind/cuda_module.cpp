// dlkern._C_cuda: the CUDA extension module. Runtime queries, build facts, a
// host-array gemm that stages NumPy operands through device memory, and every binding
// family registered by csrc/bind/cuda_*.cpp (device arrays, elementwise ops, ...).
// Every CUDA failure becomes a RuntimeError naming the op (MemoryError when the device
// is out of memory); nothing here may abort the interpreter, with or without a GPU.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind/common.h"
#include "bind/cuda_common.h"
#include "bind/gemm_args.h"
#include "cuda/check.h"
#include "cuda/gemm.h"
#include "dlkern_build_config.h"

namespace dlkern::bind {
namespace {

[[noreturn]] void cuda_error(const char* op, const char* step, cudaError_t err) {
  throw std::runtime_error(cat(op, ": CUDA failed to ", step, ": ", cuda::error_message(err)));
}

// The device path copies whole buffers, so it needs the plain row-major layout; a
// strided view must be made contiguous by the caller (an explicit copy).
void require_c_contiguous(const py::array& x, const char* op, const char* arg) {
  if (!(x.flags() & py::array::c_style)) {
    std::string strides = "(";
    for (py::ssize_t i = 0; i < x.ndim(); ++i) strides += cat(i ? ", " : "", x.strides(i));
    value_error(op, ": ", arg, " of shape ", shape_str(x), " is not C-contiguous (strides ",
                strides, ") bytes); the CUDA host-array entry copies whole buffers, so pass "
                "numpy.ascontiguousarray(", arg, ")");
  }
}

// Same contract and error messages as dlkern._C.gemm, plus C-contiguous operands.
// DeviceArray operands go to the device-array gemm (cuda_matmul.cpp).
py::object gemm(const py::object& a_obj, const py::object& b_obj, const py::object& c_obj,
                double alpha, double beta, bool trans_a, bool trans_b, const py::object& allow_tf32) {
  const char* op = "gemm";
  if (py::isinstance<cuda::DeviceArray>(a_obj) || py::isinstance<cuda::DeviceArray>(b_obj))
    return gemm_device_arrays(a_obj, b_obj, c_obj, alpha, beta, trans_a, trans_b, allow_tf32);
  GemmCall call = check_gemm_call(a_obj, b_obj, c_obj, beta, trans_a, trans_b);
  const py::array &a = call.a, &b = call.b;
  py::array &c = call.c;
  const int64_t m = call.m, n = call.n, k = call.k;
  const DType dt = call.dtype;
  // The host-array entry copies whole buffers to the device.
  require_c_contiguous(a, op, "a");
  require_c_contiguous(b, op, "b");
  if (!c_obj.is_none()) require_c_contiguous(c, op, "c");

  const void* a_data = a.data();
  const void* b_data = b.data();
  void* c_data = c.mutable_data();
  cuda::Status status;
  {
    py::gil_scoped_release nogil;
    dispatch_float(dt, [&](auto zero) {
      using T = decltype(zero);
      status = cuda::gemm_host<T>(trans_a, trans_b, m, n, k, static_cast<T>(alpha),
                                  static_cast<const T*>(a_data), static_cast<const T*>(b_data),
                                  static_cast<T>(beta), static_cast<T*>(c_data));
    });
  }
  if (!status.ok()) cuda_error(op, status.step, status.code);
  return c;
}

bool is_available() {
  int count = 0;
  return cuda::query_device_count(&count) == cudaSuccess && count > 0;
}

void synchronize() {
  cudaError_t err;
  {
    py::gil_scoped_release nogil;
    err = cuda::synchronize();
  }
  if (err != cudaSuccess) cuda_error("synchronize", "synchronize the device", err);
}

// 13000 -> "13.0"; None when the runtime reports 0 (no driver installed).
py::object version_string(int v) {
  if (v <= 0) return py::none();
  return py::str(cat(v / 1000, ".", (v % 1000) / 10));
}

py::dict build_info() {
  py::dict info;
  info["version"] = DLKERN_VERSION;
  info["cuda_version"] = DLKERN_CUDA_VERSION;  // nvcc that compiled the kernels
  py::list archs;
  std::string arch_list = DLKERN_CUDA_ARCHS;
  for (size_t start = 0; start < arch_list.size();) {
    const size_t comma = std::min(arch_list.find(',', start), arch_list.size());
    if (comma > start) archs.append(arch_list.substr(start, comma - start));
    start = comma + 1;
  }
  info["cuda_architectures"] = archs;
  info["cuda_runtime_version"] = version_string(cuda::runtime_version());
  info["cuda_driver_version"] = version_string(cuda::driver_version());
  return info;
}

}  // namespace
}  // namespace dlkern::bind

PYBIND11_MODULE(_C_cuda, m) {
  namespace py = pybind11;
  namespace bind = dlkern::bind;
  m.doc() = "dlkern CUDA kernels";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dlkern::cuda::Error& e) {
      PyErr_SetString(e.out_of_memory() ? PyExc_MemoryError : PyExc_RuntimeError, e.what());
    }
  });

  m.def("is_available", &bind::is_available,
        "True when a CUDA device is present and the driver works; never raises.");
  m.def("device_count", &dlkern::cuda::device_count,
        "Number of visible CUDA devices; 0 when there is no device or driver.");
  m.def("synchronize", &bind::synchronize,
        "Wait for all work on the current device (RuntimeError if CUDA is unusable).");
  m.def("build_info", &bind::build_info,
        "Version, the nvcc version and architectures compiled, CUDA runtime and driver versions.");
  m.def("gemm", &bind::gemm, py::arg("a"), py::arg("b"), py::arg("c") = py::none(),
        py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("trans_a") = false,
        py::arg("trans_b") = false, py::arg("allow_tf32") = py::none(),
        R"doc(gemm(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, allow_tf32=None)

DeviceArray operands: the product runs on their device, without copies for views with
unit stride along either axis; c (if given) is a (m, n) DeviceArray with unit last-axis
stride, updated in place and returned. float32 uses TF32 tensor cores when allow_tf32
(None: the set_matmul_allow_tf32 flag) and the device is sm_80+.

NumPy operands:

BLAS-style product C = alpha * op(a) @ op(b) + beta * c computed on the current CUDA
device, where op(x) is x.T when the matching trans flag is set. Takes 2-D, C-contiguous
float32/float64 NumPy arrays, copies them to the device, runs the tiled kernel and copies
the result back. With c=None a new array is returned (beta must then be 0); else c
(shape (m, n), same dtype, writeable, C-contiguous, not sharing memory with a or b) is
updated in place and returned. beta=0 ignores c's contents. CUDA failures (no device,
out of memory, a failed launch) raise RuntimeError.)doc");

  // cuda_array defines the types (DeviceArray, Stream) the other families take and
  // return; registering it first makes their signatures name the Python types.
  const auto& families = bind::registered_bindings();
  for (bool types_pass : {true, false})
    for (const auto& [family, register_family] : families)
      if ((std::string(family) == "cuda_array") == types_pass) register_family(m);
  bind::export_kernels(m, false);
}
