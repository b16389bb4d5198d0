#include "bind/common.h"

#include <algorithm>

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

py::array require_array(const py::handle& obj, const char* op, const char* arg) {
  if (!py::isinstance<py::array>(obj)) {
    type_error(op, ": ", arg, " must be a numpy.ndarray, got ",
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  return py::reinterpret_borrow<py::array>(obj);
}

DType float_dtype(const py::array& a, const char* op, const char* arg) {
  const py::dtype dt = a.dtype();
  const char order = dt.byteorder();
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  constexpr char kNativeOrder = '>';
#else
  constexpr char kNativeOrder = '<';
#endif
  const bool native = order == '=' || order == '|' || order == kNativeOrder;
  if (dt.kind() == 'f' && native) {
    if (dt.itemsize() == 4) return DType::f32;
    if (dt.itemsize() == 8) return DType::f64;
  }
  type_error(op, ": ", arg, " has dtype ", dtype_str(a), "; expected float32 or float64");
}

int64_t elem_stride(const py::array& a, int axis, const char* op, const char* arg) {
  const py::ssize_t bytes = a.strides(axis), item = a.itemsize();
  if (bytes % item != 0)
    value_error(op, ": ", arg, " has a stride of ", bytes, " bytes on axis ", axis,
                ", not a multiple of its item size ", item);
  return bytes / item;
}

void require_writeable(const py::array& a, const char* op, const char* arg) {
  if (!a.writeable()) value_error(op, ": ", arg, " is read-only");
}

namespace {
// [lo, hi) byte range an array can touch.
std::pair<std::uintptr_t, std::uintptr_t> byte_range(const py::array& a) {
  auto base = reinterpret_cast<std::uintptr_t>(a.data());
  std::intptr_t lo = 0, hi = 0;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (a.shape(i) == 0) return {base, base};
    const std::intptr_t extent = static_cast<std::intptr_t>(a.strides(i)) * (a.shape(i) - 1);
    if (extent < 0) lo += extent; else hi += extent;
  }
  return {base + lo, base + hi + a.itemsize()};
}
}  // namespace

bool may_overlap(const py::array& a, const py::array& b) {
  auto [alo, ahi] = byte_range(a);
  auto [blo, bhi] = byte_range(b);
  if (alo == ahi || blo == bhi) return false;
  return alo < bhi && blo < ahi;
}

int64_t int64_arg(const py::handle& obj, const char* op, const char* arg) {
  PyObject* index = PyNumber_Index(obj.ptr());
  if (!index) {
    PyErr_Clear();
    type_error(op, ": ", arg, " must be an integer, got ", Py_TYPE(obj.ptr())->tp_name);
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
  Py_DECREF(index);
  if (overflow != 0 || (v == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    value_error(op, ": ", arg, " ", py::str(obj).cast<std::string>(), " does not fit in a 64-bit signed integer");
  }
  return static_cast<int64_t>(v);
}

}  // namespace dlkern::bind
