// Helpers shared by the _C_cuda binding files (cuda_*.cpp): dtype and stream
// arguments, and the Stream handle type. pybind11 only; the device logic is in csrc/cuda.
#pragma once
#include <initializer_list>
#include <utility>

#include "bind/common.h"
#include "cuda/device_array.h"

namespace dlkern::bind {

// Named by every CUDA binding file. (DType is not: bind's own DType is the CPU one, which
// dispatch_float takes; files that want cuda::DType say so themselves.)
using cuda::DeviceArray;
using cuda::Shape;

// A CUDA stream as Python sees it. handle 0 is the legacy default stream. Streams made
// by Stream() live until the process exits (the allocator keys cached blocks by stream
// handle, so a handle must never be reused by a different stream).
struct CudaStream {
  cudaStream_t handle = nullptr;
  int device = 0;
};

// float32, float64, int64 or bool (anything numpy.dtype() accepts, native byte order);
// TypeError naming op and the dtype otherwise.
cuda::DType parse_dtype(const py::handle& obj, const char* op);
py::dtype numpy_dtype(cuda::DType dt);

// None -> the legacy default stream; else a Stream.
cudaStream_t parse_stream(const py::handle& obj, const char* op);

// The object as a DeviceArray, or TypeError naming op, arg and what was passed (a
// numpy.ndarray gets a hint about from_numpy: devices are never mixed silently).
cuda::DeviceArray& require_device_array(const py::handle& obj, const char* op, const char* arg);

// require_device_array, and a float32/float64 dtype: otherwise a TypeError "<op>: <arg>
// has dtype <d>; expected float32 or float64" (the CPU ops' wording).
const cuda::DeviceArray& require_float_device_array(const py::handle& obj, const char* op, const char* arg);

// a matches the reference array ref, checked in this order: the same dtype (else TypeError
// "<op>: <arg> has dtype d but <ref_arg> has dtype e<dtype_tail>"), the same device (else
// ValueError "<op>: <arg> is on cuda:i but <ref_arg> is on cuda:j") and, when shape is
// given, that shape (else ValueError "<op>: <arg> has shape s, expected t").
inline void require_like(const cuda::DeviceArray& a, const char* arg, const cuda::DeviceArray& ref,
                         const char* ref_arg, const char* op, const cuda::Shape* shape = nullptr,
                         const char* dtype_tail = "") {
  if (a.dtype != ref.dtype)
    type_error(op, ": ", arg, " has dtype ", cuda::dtype_name(a.dtype), " but ", ref_arg, " has dtype ",
               cuda::dtype_name(ref.dtype), dtype_tail);
  if (a.device != ref.device)
    value_error(op, ": ", arg, " is on cuda:", a.device, " but ", ref_arg, " is on cuda:", ref.device);
  if (shape && a.shape != *shape)
    value_error(op, ": ", arg, " has shape ", cuda::shape_str(a.shape), ", expected ", cuda::shape_str(*shape));
}

// How require_match's errors name the reference an argument must match; each phrase
// ends in its verb ("input has", "a and b have", "the operands are"). shape nullptr: the
// shape error says ", expected t" instead of " but <shape> shape t".
struct MatchRef {
  const char* dtype;
  const char* shape;
  const char* device;
};

// a has the given dtype, shape and device, checked in this order (one order for every out=
// and state argument): TypeError "<op>: <arg> has dtype d but <ref.dtype> dtype e", ValueError
// "<op>: <arg> has shape s but <ref.shape> shape t" (or "..., expected t"), ValueError
// "<op>: <arg> is on cuda:i but <ref.device> on cuda:j".
inline void require_match(const cuda::DeviceArray& a, const char* arg, cuda::DType dtype, const cuda::Shape& shape,
                          int device, const MatchRef& ref, const char* op) {
  if (a.dtype != dtype)
    type_error(op, ": ", arg, " has dtype ", cuda::dtype_name(a.dtype), " but ", ref.dtype, " dtype ",
               cuda::dtype_name(dtype));
  if (a.shape != shape && ref.shape)
    value_error(op, ": ", arg, " has shape ", cuda::shape_str(a.shape), " but ", ref.shape, " shape ",
                cuda::shape_str(shape));
  if (a.shape != shape)
    value_error(op, ": ", arg, " has shape ", cuda::shape_str(a.shape), ", expected ", cuda::shape_str(shape));
  if (a.device != device) value_error(op, ": ", arg, " is on cuda:", a.device, " but ", ref.device, " on cuda:", device);
}

// A dict of named integers, in the order given: the launch-plan testing aids
// (_attention_plan, _decode_plan) report their plan structs this way.
inline py::dict int_dict(std::initializer_list<std::pair<const char*, int64_t>> fields) {
  py::dict d;
  for (const auto& [name, value] : fields) d[name] = value;
  return d;
}

// Python tuple of a shape/strides vector and back.
py::tuple to_tuple(const cuda::Shape& v);
cuda::Shape to_shape(const py::handle& obj, const char* op, const char* arg);

// Calls f(float{}) or f(double{}) for a float32/float64 array dtype. Any other dtype
// (int64, bool) is a TypeError: a safety net behind the bindings' own dtype checks, so
// a bool or int64 array never reaches a float kernel as if it held doubles.
template <typename F>
decltype(auto) dispatch_cuda_float(cuda::DType dt, F&& f) {
  if (!cuda::is_float(dt))
    throw py::type_error(cat("dtype ", cuda::dtype_name(dt), " reached a float32/float64-only CUDA kernel"));
  return dispatch_float(dt == cuda::DType::f32 ? DType::f32 : DType::f64, std::forward<F>(f));
}

// Calls f(T{}) with the kernel element type of dt (uint8_t for bool).
template <typename F>
decltype(auto) dispatch_cuda_any(cuda::DType dt, F&& f) {
  switch (dt) {
    case cuda::DType::f32: return f(float{});
    case cuda::DType::f64: return f(double{});
    case cuda::DType::i64: return f(int64_t{});
    case cuda::DType::b8: break;
  }
  return f(uint8_t{});
}

// The array's data as T* (T may be const): nullptr for a default-constructed (absent)
// optional array, which has no storage (DeviceArray::data()).
template <typename T>
T* data_of(const DeviceArray& a) {
  return static_cast<T*>(a.data());
}

// cuda::contiguous(src), but a copy (when one is needed) is made on `consumer`, the stream
// of the kernel that reads it. Why: cuda::contiguous allocates the copy on src.stream, and
// when that temporary is dropped at the end of the binding its block goes back to
// src.stream's free list, where the next allocation on src.stream can reuse it while the
// kernel on `consumer` is still reading it (the caching allocator only orders reuse within
// one stream). copy_into makes the copy wait for src.stream's work first.
inline cuda::DeviceArray contiguous_on(const cuda::DeviceArray& src, cudaStream_t consumer, const char* op) {
  if (src.is_contiguous()) return src;
  cuda::DeviceArray out = cuda::empty(src.shape, src.dtype, src.device, consumer, op);
  cuda::copy_into(out, src, op);
  return out;
}

// Before a kernel on `consumer` reads `inputs` in place (nullptr entries skipped): wait
// for the streams that produced them.
inline void wait_for_inputs(cudaStream_t consumer, std::initializer_list<const cuda::DeviceArray*> inputs,
                            const char* op) {
  for (const cuda::DeviceArray* a : inputs)
    if (a != nullptr) cuda::stream_wait(consumer, a->stream, op);
}

// After a kernel on `consumer` read `inputs` in place: their own streams wait for it, so
// a block freed later on an input's stream is not reused while the kernel still reads it.
inline void release_after(cudaStream_t consumer, std::initializer_list<const cuda::DeviceArray*> inputs,
                          const char* op) {
  for (const cuda::DeviceArray* a : inputs)
    if (a != nullptr) cuda::stream_wait(a->stream, consumer, op);
}

// gemm(a, b, c, alpha, beta, trans_a, trans_b) on DeviceArrays (cuda_matmul.cpp);
// dlkern._C_cuda.gemm sends DeviceArray operands here. allow_tf32 None follows the
// module-wide flag.
py::object gemm_device_arrays(const py::object& a, const py::object& b, const py::object& c, double alpha,
                              double beta, bool trans_a, bool trans_b, const py::object& allow_tf32);

}  // namespace dlkern::bind
