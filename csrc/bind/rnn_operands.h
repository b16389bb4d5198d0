// The operand checks of the recurrent bindings (bind/rnn.cpp: the cells, bind/rnn_layer.cpp:
// the layer loops): each array an ndarray of one float dtype with the expected shape, read
// C-contiguous (copied once when it is not) or, when written in place, required to be.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "bind/common.h"

namespace dlkern::bind {

class Operands {
 public:
  explicit Operands(const char* op) : op_(op) {}

  // A read-only input: ndarray, float dtype (the first operand's), `ndim` dimensions;
  // a non-C-contiguous one is copied.
  py::array take(const py::object& obj, const char* arg, int ndim = 2) {
    py::array a = checked(obj, arg, ndim);
    if (!(a.flags() & py::array::c_style)) a = py::module_::import("numpy").attr("ascontiguousarray")(a);
    return a;
  }

  // An array the op writes in place: as take, but C-contiguous and writeable as given.
  py::array take_inout(const py::object& obj, const char* arg, int ndim = 2) {
    py::array a = checked(obj, arg, ndim);
    require_writeable(a, op_, arg);
    if (!(a.flags() & py::array::c_style))
      value_error(op_, ": ", arg, " is written in place and must be C-contiguous (np.ascontiguousarray)");
    written_.push_back({a, arg});
    return a;
  }

  // ValueError unless a is (rows, cols); `how` says where those numbers come from.
  void expect(const py::array& a, const char* arg, int64_t rows, int64_t cols, const char* how) const {
    if (a.shape(0) != rows || a.shape(1) != cols)
      value_error(op_, ": ", arg, " has shape ", shape_str(a), ", expected (", rows, ", ", cols, ") ", how);
  }

  // The hidden size of a (B, k * H) gate array.
  int64_t hidden(const py::array& a, const char* arg, int k, const char* blocks) const {
    if (a.shape(1) % k != 0)
      value_error(op_, ": ", arg, " has shape ", shape_str(a), "; its second dimension must be ", k,
                  " * hidden_size (the ", blocks, " blocks)");
    return a.shape(1) / k;
  }

  // ValueError when an array written in place shares memory with another operand (the
  // kernels read rows after writing others).
  void require_disjoint(const std::vector<std::pair<py::array, const char*>>& read) const {
    for (size_t i = 0; i < written_.size(); ++i) {
      for (size_t j = i + 1; j < written_.size(); ++j) disjoint(written_[i], written_[j]);
      for (const auto& r : read) disjoint(written_[i], r);
    }
  }

  DType dtype() const { return dt_; }
  const char* op() const { return op_; }

 private:
  py::array checked(const py::object& obj, const char* arg, int ndim) {
    py::array a = require_array(obj, op_, arg);
    const DType dt = float_dtype(a, op_, arg);
    if (first_ == nullptr) {
      dt_ = dt;
      first_ = arg;
      first_array_ = a;  // its dtype is formatted only for an error message
    } else if (dt != dt_) {
      type_error(op_, ": ", arg, " has dtype ", dtype_str(a), " but ", first_, " has dtype ", dtype_str(first_array_),
                 "; all inputs must be the same float type");
    }
    if (a.ndim() != ndim)
      value_error(op_, ": ", arg, " must be ", ndim, "-D", ndim == 2 ? " (rows, features)" : "", ", got shape ",
                  shape_str(a));
    return a;
  }

  void disjoint(const std::pair<py::array, const char*>& a, const std::pair<py::array, const char*>& b) const {
    if (may_overlap(a.first, b.first))
      value_error(op_, ": ", a.second, " and ", b.second, " share memory; ", a.second, " is written in place");
  }

  const char* op_;
  const char* first_ = nullptr;
  py::array first_array_;
  DType dt_ = DType::f32;
  std::vector<std::pair<py::array, const char*>> written_;
};

inline py::array new_like(const py::array& like, int64_t rows, int64_t cols) {
  return py::array(like.dtype(), std::vector<py::ssize_t>{rows, cols});
}

// body(T{}) with the GIL released, T the operands' element type.
template <class F>
void run(DType dt, F&& body) {
  py::gil_scoped_release nogil;
  dispatch_float(dt, std::forward<F>(body));
}

template <typename T>
const T* in(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <typename T>
T* out(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

}  // namespace dlkern::bind
