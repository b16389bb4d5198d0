// Shared by the elementwise binding files (cuda_ops.cpp, cuda_logic.cpp,
// cuda_fill.cpp): operands that are DeviceArrays or Python numbers, the dtype rules,
// numpy's out= argument, and one runner that queues a launch with the right stream
// order and output aliasing. Everything that can fail on the arguments runs before
// any device work.
#pragma once
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bind/cuda_common.h"

namespace dlkern::bind {

// An elementwise operand: a DeviceArray, or a Python number (bool, int, float, or a
// NumPy scalar of those kinds) standing for a scalar in every position.
struct Operand {
  const cuda::DeviceArray* array = nullptr;
  enum class Kind { array, boolean, integer, real } kind = Kind::array;
  double real = 0;      // the number as a double (any kind)
  int64_t integer = 0;  // bool/int numbers that fit in int64
  bool fits_int64 = false;
  const char* arg = "";

  bool is_number() const { return array == nullptr; }
};

// TypeError naming op and arg unless obj is a DeviceArray or a number.
Operand parse_operand(const py::handle& obj, const char* op, const char* arg);
// A number only (fill values, arange bounds, clip bounds): TypeError otherwise.
Operand parse_number(const py::handle& obj, const char* op, const char* arg);

// Requires every array operand to have one dtype and to sit on one device, and each
// number to suit that dtype: any number for float arrays, bool/int numbers (fitting
// int64) for int64 arrays (a float is a TypeError: cast the array first), Python bools
// for bool arrays. At least one operand must be an array. Returns that dtype.
cuda::DType common_dtype(const char* op, const std::vector<Operand>& in);

// The first array operand (there is one after common_dtype passed).
const cuda::DeviceArray& first_array(const std::vector<Operand>& in);

// NumPy broadcast of the operands' shapes (numbers count as 0-d); ValueError naming op.
cuda::Shape broadcast_operands(const char* op, const std::vector<Operand>& in);

// The out= argument: None (nullptr) or a DeviceArray of exactly the result's shape,
// dtype and device; TypeError (not a DeviceArray, wrong dtype) or ValueError (shape,
// device) naming op and 'out' otherwise.
cuda::DeviceArray* parse_out(const py::object& out, const char* op, const cuda::Shape& shape,
                             cuda::DType dtype, int device);

// A number as element type T (checked by common_dtype beforehand). uint8_t is bool.
template <typename T>
T scalar_as(const Operand& o) {
  if constexpr (std::is_same_v<T, int64_t>) return o.integer;
  else if constexpr (std::is_same_v<T, uint8_t>) return o.real != 0;
  else return static_cast<T>(o.real);
}

// The operand's data as T*, or nullptr for a number.
template <typename T>
const T* data_as(const Operand& o) {
  return o.array ? static_cast<const T*>(o.array->data()) : nullptr;
}

// Queues one elementwise launch and returns its result. Call without the GIL.
// The result goes to `out` when given (its stream runs the work, after every input's
// stream), else to a new contiguous array on the first array operand's device and
// stream. When out overlaps an input other than element for element, the launch
// writes a temporary that is then copied into out. launch(result, loop) queues the
// kernel; loop has operands (result, inputs in order), numbers with stride 0.
template <typename Launch>
cuda::DeviceArray run_elementwise(const char* op, const std::vector<Operand>& in, const cuda::Shape& shape,
                                  cuda::DType dtype, cuda::DeviceArray* out, Launch&& launch) {
  const cuda::DeviceArray& first = first_array(in);
  cuda::DeviceGuard guard(first.device, op);
  const cudaStream_t stream = out ? out->stream : first.stream;
  std::vector<cuda::Shape> strides(1 + in.size());
  bool through_temp = false;
  for (size_t k = 0; k < in.size(); ++k) {
    if (!in[k].array) {
      strides[1 + k] = cuda::Shape(shape.size(), 0);
      continue;
    }
    const cuda::DeviceArray& a = *in[k].array;
    strides[1 + k] = cuda::broadcast_strides(a.shape, a.strides, shape);
    cuda::stream_wait(stream, a.stream, op);
    if (out)
      through_temp |= cuda::classify_alias(shape, reinterpret_cast<uintptr_t>(out->data()), out->strides,
                                           cuda::itemsize(out->dtype), reinterpret_cast<uintptr_t>(a.data()),
                                           strides[1 + k], cuda::itemsize(a.dtype)) == cuda::Alias::partial;
  }
  cuda::DeviceArray result =
      out && !through_temp ? *out : cuda::empty(shape, dtype, first.device, stream, op);
  strides[0] = result.strides;
  launch(result, cuda::make_loop(shape, strides));
  if (through_temp) cuda::copy_into(*out, result, op);
  // An input produced on another stream is read by work queued on `stream`. When it is
  // freed, the caching allocator hands its block out again on the input's own stream
  // (allocator.h), with nothing ordering that reuse after this kernel: a later
  // allocation there could overwrite it while the kernel still reads. Ordering the
  // input's stream after this work closes that (no-op when the streams are equal).
  for (const Operand& o : in)
    if (o.array) cuda::stream_wait(o.array->stream, stream, op);
  if (!out) return result;
  return *out;
}

// An elementwise binding after its own operand checks: out= checked against the result's
// shape, dtype and device (parse_out), then run_elementwise without the GIL. Returns out's
// own object when out= was given (as NumPy), else the new array.
template <typename Launch>
py::object elementwise(const char* op, const std::vector<Operand>& in, const cuda::Shape& shape, cuda::DType dtype,
                       int device, const py::object& out_obj, Launch&& launch) {
  cuda::DeviceArray* out = parse_out(out_obj, op, shape, dtype, device);
  cuda::DeviceArray result;
  {
    py::gil_scoped_release nogil;
    result = run_elementwise(op, in, shape, dtype, out, std::forward<Launch>(launch));
  }
  return out_obj.is_none() ? py::cast(std::move(result)) : out_obj;
}

}  // namespace dlkern::bind
