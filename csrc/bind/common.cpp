#include "bind/common.h"

#include "bind/kernels.h"
#include "common/errors.h"

#include <algorithm>
#include <cstdint>

namespace dlkern::bind {

namespace {
std::vector<std::pair<const char*, BindingRegistrar>>& registry() {
  static std::vector<std::pair<const char*, BindingRegistrar>> entries;  // built at load time
  return entries;
}
}  // namespace

RegisterBindings::RegisterBindings(const char* family, BindingRegistrar fn) {
  registry().emplace_back(family, fn);
}

const std::vector<std::pair<const char*, BindingRegistrar>>& registered_bindings() {
  return registry();
}

// The framework-free checks (common/errors.h) throw dlkern::TypeError for Python's
// TypeError; dlkern::ValueError needs nothing (pybind11 maps std::invalid_argument).
// Registered by both extension modules, which link this file.
DLKERN_REGISTER_BINDINGS(errors) {
  (void)m;
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const dlkern::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
}

void export_kernels(py::module_& m, bool require_shared) {
  py::list names;
  for (const char* name : kSharedKernels) {
    if (py::hasattr(m, name))
      names.append(name);
    else if (require_shared)
      throw py::import_error(cat("dlkern: kernel ", name, " is in bind/kernels.h but not in ",
                                 py::str(m.attr("__name__")).cast<std::string>()));
  }
  for (const char* name : kArrayKernels)
    if (py::hasattr(m, name)) names.append(name);
  m.attr("KERNELS") = py::tuple(names);
  // Every name of the list, so a stand-in module (the tests' CUDA host twin) builds its
  // KERNELS from the same list.
  py::list all;
  for (const char* name : kSharedKernels) all.append(name);
  for (const char* name : kArrayKernels) all.append(name);
  m.attr("KERNEL_NAMES") = py::tuple(all);
}

int reduction_arg(const py::handle& obj, const char* op) {
  if (py::isinstance<py::str>(obj)) {
    const std::string r = obj.cast<std::string>();
    if (r == "none") return 0;
    if (r == "mean") return 1;
    if (r == "sum") return 2;
  }
  value_error(op, ": reduction must be 'none', 'mean' or 'sum', got ", py_repr(obj));
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Capsule name of the owner of an aligned copy made by require_array.
constexpr const char* kAlignedCopy = "dlkern.aligned_copy";

py::array require_array(const py::handle& obj, const char* op, const char* arg) {
  if (!py::isinstance<py::array>(obj)) {
    type_error(op, ": ", arg, " must be a numpy.ndarray, got ",
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  py::array a = py::reinterpret_borrow<py::array>(obj);
  // NumPy allows buffers misaligned for their dtype (np.frombuffer at an odd offset), but
  // reading a double through one is undefined behaviour in C++ (UBSan reports it). Such
  // an array is read through an aligned copy, made read-only so that an argument the op
  // writes in place is refused (require_writeable) instead of silently written to a copy.
  if (!(py::detail::array_proxy(a.ptr())->flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) {
    py::array copy = py::module_::import("numpy").attr("array")(a, py::arg("copy") = true);
    // Owned through a named capsule, so require_writeable can say why it is read-only.
    py::capsule owner(new py::object(copy), kAlignedCopy, [](PyObject* cap) {
      delete static_cast<py::object*>(PyCapsule_GetPointer(cap, kAlignedCopy));
    });
    py::array view(copy.dtype(), std::vector<py::ssize_t>(copy.shape(), copy.shape() + copy.ndim()),
                   std::vector<py::ssize_t>(copy.strides(), copy.strides() + copy.ndim()), copy.data(), owner);
    view.attr("setflags")(py::arg("write") = false);
    return view;
  }
  return a;
}

namespace {
bool native_order(const py::dtype& dt) {
  const char order = dt.byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  constexpr char kNativeOrder = '>';
#else
  constexpr char kNativeOrder = '<';
#endif
  return order == '=' || order == '|' || order == kNativeOrder;
}

// ml_dtypes.bfloat16's dtype, imported on first use (only a 2-byte 'V' dtype or a bf16
// result asks) and kept for the process; nullptr where ml_dtypes is not installed.
const py::dtype* bf16_dtype_or_null() {
  static const py::dtype* dt = []() -> const py::dtype* {
    try {
      return new py::dtype(py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16")));
    } catch (const py::error_already_set&) {
      return nullptr;
    }
  }();
  return dt;
}

// The four float dtypes, or false.
bool float_kind(const py::dtype& dt, DType* out) {
  if (dt.kind() == 'f' && native_order(dt)) {
    if (dt.itemsize() == 4) return *out = DType::f32, true;
    if (dt.itemsize() == 8) return *out = DType::f64, true;
    if (dt.itemsize() == 2) return *out = DType::f16, true;
  }
  if (dt.kind() == 'V' && dt.itemsize() == 2) {
    const py::dtype* bf = bf16_dtype_or_null();
    if (bf && (dt.is(*bf) || dt.equal(*bf))) return *out = DType::bf16, true;
  }
  return false;
}
}  // namespace

DType float_dtype(const py::array& a, const char* op, const char* arg) {
  DType dt;
  if (float_kind(a.dtype(), &dt) && (dt == DType::f32 || dt == DType::f64)) return dt;
  type_error(op, ": ", arg, " has dtype ", dtype_str(a), "; expected float32 or float64");
}

DType any_float_dtype(const py::array& a, const char* op, const char* arg) {
  DType dt;
  if (float_kind(a.dtype(), &dt)) return dt;
  type_error(op, ": ", arg, " has dtype ", dtype_str(a), "; expected float32, float64, bfloat16 or float16");
}

py::dtype numpy_dtype(DType dt) {
  switch (dt) {
    case DType::f32: return py::dtype::of<float>();
    case DType::f64: return py::dtype::of<double>();
    case DType::f16: return py::dtype("float16");
    case DType::bf16: break;
  }
  const py::dtype* bf = bf16_dtype_or_null();
  if (!bf) throw py::import_error("dlkern: bfloat16 needs the ml_dtypes package");
  return *bf;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
  }
  return "?";
}

DType dtype_arg(const py::handle& obj, const char* op, const char* arg) {
  DType dt;
  // NumPy knows the name only once ml_dtypes is imported.
  if (py::isinstance<py::str>(obj) && obj.cast<std::string>() == "bfloat16") return DType::bf16;
  // np.dtype(None) is float64; a dtype argument must name its type.
  if (!obj.is_none()) try {
    if (float_kind(py::dtype::from_args(py::reinterpret_borrow<py::object>(obj)), &dt)) return dt;
  } catch (const py::error_already_set&) {
    // not a dtype at all: the TypeError below
  }
  type_error(op, ": ", arg, " must be a float dtype (float32, float64, bfloat16 or float16), got ",
             py_repr(obj));
}

int64_t elem_stride(const py::array& a, int axis, const char* op, const char* arg) {
  const py::ssize_t bytes = a.strides(axis), item = a.itemsize();
  if (bytes % item != 0)
    value_error(op, ": ", arg, " has a stride of ", bytes, " bytes on axis ", axis,
                ", not a multiple of its item size ", item);
  return bytes / item;
}

namespace {
std::string type_name(const py::handle& obj) {
  return py::str(py::type::of(obj).attr("__name__")).cast<std::string>();
}
}  // namespace

std::string py_repr(const py::handle& obj) { return py::repr(obj).cast<std::string>(); }

std::vector<int64_t> dims_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

int64_t int64_arg(const py::handle& obj, const char* op, const char* arg) {
  if (py::isinstance<py::bool_>(obj) || !PyIndex_Check(obj.ptr()))
    type_error(op, ": ", arg, " must be an int, got ", type_name(obj));
  PyObject* index = PyNumber_Index(obj.ptr());
  if (!index) throw py::error_already_set();
  const py::int_ value = py::reinterpret_steal<py::int_>(index);
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
  if (overflow != 0)
    value_error(op, ": ", arg, "=", py::str(value).cast<std::string>(), " does not fit in int64");
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return static_cast<int64_t>(v);
}

double double_arg(const py::handle& obj, const char* op, const char* arg) {
  const bool number = PyFloat_Check(obj.ptr()) || PyLong_Check(obj.ptr()) ||
                      (Py_TYPE(obj.ptr())->tp_as_number && (Py_TYPE(obj.ptr())->tp_as_number->nb_float ||
                                                            Py_TYPE(obj.ptr())->tp_as_number->nb_index));
  if (py::isinstance<py::bool_>(obj) || !number)
    type_error(op, ": ", arg, " must be a real number, got ", type_name(obj));
  if (py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).ndim() != 0)
    type_error(op, ": ", arg, " must be a real number, got an array of shape ",
               shape_str(py::reinterpret_borrow<py::array>(obj)));
  const double v = PyFloat_AsDouble(obj.ptr());
  if (v == -1.0 && PyErr_Occurred()) {
    if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
      PyErr_Clear();
      value_error(op, ": ", arg, " is too large for a float (an int of ",
                  py::str(obj).cast<std::string>().size(), " digits)");
    }
    throw py::error_already_set();
  }
  return v;
}

void require_writeable(const py::array& a, const char* op, const char* arg) {
  if (!a.writeable()) {
    const py::handle base = py::detail::array_proxy(a.ptr())->base;
    if (base && PyCapsule_CheckExact(base.ptr()) && PyCapsule_IsValid(base.ptr(), kAlignedCopy))
      value_error(op, ": ", arg, " is not aligned for its dtype, so it cannot be written in place; "
                  "pass an aligned array (np.require(", arg, ", requirements='A'))");
    value_error(op, ": ", arg, " is read-only");
  }
}

namespace {
// [lo, hi) byte range an array can touch; the whole address space when its strides
// reach past it (as_strided views), so that the overlap checks stay conservative and
// nothing here overflows.
std::pair<std::uintptr_t, std::uintptr_t> byte_range(const py::array& a) {
  const auto base = reinterpret_cast<std::uintptr_t>(a.data());
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.shape(i) == 0) return {base, base};
  const std::pair<std::uintptr_t, std::uintptr_t> everything{0, UINTPTR_MAX};
  std::intptr_t lo = 0, hi = 0;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    std::intptr_t extent;
    if (__builtin_mul_overflow(static_cast<std::intptr_t>(a.strides(i)),
                               static_cast<std::intptr_t>(a.shape(i) - 1), &extent) ||
        (extent < 0 ? __builtin_add_overflow(lo, extent, &lo) : __builtin_add_overflow(hi, extent, &hi)))
      return everything;
  }
  std::uintptr_t first, last;
  if (__builtin_sub_overflow(base, 0 - static_cast<std::uintptr_t>(lo), &first) ||
      __builtin_add_overflow(base, static_cast<std::uintptr_t>(hi) + static_cast<std::uintptr_t>(a.itemsize()),
                             &last))
    return everything;
  return {first, last};
}
}  // namespace

bool may_overlap(const py::array& a, const py::array& b) {
  auto [alo, ahi] = byte_range(a);
  auto [blo, bhi] = byte_range(b);
  if (alo == ahi || blo == bhi) return false;
  return alo < bhi && blo < ahi;
}

bool may_self_overlap(const py::array& a) {
  // Axes of size > 1 by increasing |stride|: each stride must step past everything the
  // smaller ones span, else two index tuples can reach one address.
  std::vector<std::pair<uint64_t, uint64_t>> axes;  // (|stride|, size - 1)
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) == 0) return false;
    if (a.shape(i) > 1) {
      const py::ssize_t st = a.strides(i);
      axes.emplace_back(st < 0 ? 0 - static_cast<uint64_t>(st) : static_cast<uint64_t>(st),
                        static_cast<uint64_t>(a.shape(i) - 1));
    }
  }
  std::sort(axes.begin(), axes.end());
  uint64_t span = static_cast<uint64_t>(a.itemsize());  // bytes covered by the smaller axes
  for (const auto& [stride, last] : axes) {
    if (stride < span) return true;
    uint64_t extent;
    if (__builtin_mul_overflow(stride, last, &extent) || __builtin_add_overflow(span, extent, &span)) return true;
  }
  return false;
}

}  // namespace dlkern::bind
