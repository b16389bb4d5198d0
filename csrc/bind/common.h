// Helpers shared by the bindings: argument checks that raise clear Python errors
// naming the op, the argument and what was seen. Bindings validate everything
// before releasing the GIL and calling a kernel.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/errors.h"

namespace dlkern::bind {

namespace py = pybind11;

// bf16 and f16 (16-bit floats, stored as uint16_t bits) only where a binding asks for
// them through any_float_dtype; dispatch_float never sees them.
enum class DType { f32, f64, bf16, f16 };

// The message builder of the framework-free checks (common/errors.h).
template <typename... Args>
std::string cat(Args&&... args) {
  return str_cat(std::forward<Args>(args)...);
}

template <typename... Args>
[[noreturn]] void type_error(Args&&... args) {
  throw py::type_error(cat(std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void value_error(Args&&... args) {
  throw py::value_error(cat(std::forward<Args>(args)...));
}

// "(3, 4)" for an array's shape.
std::string shape_str(const py::array& a);
// Python's str() of the array's dtype, e.g. "int64".
std::string dtype_str(const py::array& a);

// The object as an ndarray, or TypeError "<op>: <arg> must be a numpy.ndarray, got <type>".
py::array require_array(const py::handle& obj, const char* op, const char* arg);

// float32 or float64 in native byte order, or TypeError naming the dtype seen.
DType float_dtype(const py::array& a, const char* op, const char* arg);

// float32, float64, bfloat16 (ml_dtypes.bfloat16) or float16 in native byte order, or
// TypeError "<op>: <arg> has dtype <d>; expected float32, float64, bfloat16 or float16".
DType any_float_dtype(const py::array& a, const char* op, const char* arg);

// The NumPy dtype of dt (bfloat16: ml_dtypes', imported once, on first use).
py::dtype numpy_dtype(DType dt);
// "float32", "float64", "bfloat16", "float16".
const char* dtype_name(DType dt);
// A dtype argument (anything np.dtype() accepts: np.float16, "float32", dlkern.bfloat16)
// as one of the four, or TypeError "<op>: <arg> must be a float dtype (float32, float64,
// bfloat16 or float16), got <repr>".
DType dtype_arg(const py::handle& obj, const char* op, const char* arg);

// Element stride of axis `axis`; ValueError if the byte stride is not a whole
// number of elements (possible with some record views).
int64_t elem_stride(const py::array& a, int axis, const char* op, const char* arg);

// An int argument from the caller: a Python int or anything with __index__ (NumPy
// integers), not bool. TypeError "<op>: <arg> must be an int, got <type>" otherwise;
// ValueError "<op>: <arg>=<v> does not fit in int64" when it is out of range.
int64_t int64_arg(const py::handle& obj, const char* op, const char* arg);

// A real-number argument: int, float or anything with __float__ (NumPy scalars), not
// bool or str. TypeError "<op>: <arg> must be a real number, got <type>" otherwise;
// ValueError when an int is too large for a double.
double double_arg(const py::handle& obj, const char* op, const char* arg);

// A loss's reduction: 'none', 'mean' or 'sum', as the index 0, 1, 2 (the order of the
// kernels' enums); ValueError "<op>: reduction must be 'none', 'mean' or 'sum', got <repr>".
int reduction_arg(const py::handle& obj, const char* op);

// ValueError unless the array may be written to.
void require_writeable(const py::array& a, const char* op, const char* arg);

// True when the byte ranges spanned by the two arrays intersect (conservative).
bool may_overlap(const py::array& a, const py::array& b);

// repr(obj), for error messages that show the value a caller passed.
std::string py_repr(const py::handle& obj);

// An array's shape as the framework-free checks take it (common/geometry.h's Dims).
std::vector<int64_t> dims_of(const py::array& a);

// True when two elements of the array may share memory (a zero or interleaved stride,
// as np.lib.stride_tricks.as_strided can make); conservative: false means they don't.
bool may_self_overlap(const py::array& a);

// Each op family's binding file registers its functions with
//   DLKERN_REGISTER_BINDINGS(softmax) { m.def(...); }
// and module.cpp calls every registered function when dlkern._C is imported, so an
// op family is added without editing shared files.
using BindingRegistrar = void (*)(py::module_&);
struct RegisterBindings {
  RegisterBindings(const char* family, BindingRegistrar fn);
};
// (family, function) pairs in registration order.
const std::vector<std::pair<const char*, BindingRegistrar>>& registered_bindings();

// A binding file keeps its helpers in `namespace { namespace DLKERN_TU_LOCAL {`. dlkern._C
// is a unity build (CMakeLists.txt: its binding files compile a batch at a time, so
// pybind11's templates are instantiated once per batch, not once per file), and there
// CMake defines DLKERN_TU_LOCAL to a different name in each file, so two files' helpers
// of the same name (forward, backward, ...) do not collide. The registered function is
// defined inside that namespace, so its body sees its own file's helpers unqualified.
#ifndef DLKERN_TU_LOCAL
#define DLKERN_TU_LOCAL tu_local
#endif

#define DLKERN_REGISTER_BINDINGS(family)                                                  \
  namespace {                                                                             \
  namespace DLKERN_TU_LOCAL {                                                             \
  void dlkern_register_##family(::pybind11::module_& m);                                  \
  const ::dlkern::bind::RegisterBindings dlkern_registrar_##family(                       \
      #family, dlkern_register_##family);                                                 \
  }                                                                                       \
  }                                                                                       \
  void DLKERN_TU_LOCAL::dlkern_register_##family(::pybind11::module_& m)

// Sets m.KERNELS to the names of bind/kernels.h that m defines, after every family has
// registered, and m.KERNEL_NAMES to the whole list. With require_shared (dlkern._C, which has every shared kernel), a missing
// one is an ImportError: the list and the module disagree.
void export_kernels(py::module_& m, bool require_shared);

// Calls f(float{}) or f(double{}) for the dtype.
template <typename F>
decltype(auto) dispatch_float(DType dt, F&& f) {
  if (dt == DType::f32) return f(float{});
  return f(double{});
}

}  // namespace dlkern::bind
