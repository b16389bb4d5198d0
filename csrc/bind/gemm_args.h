// Argument checks of gemm(a, b, c=None, alpha, beta, trans_a, trans_b), shared by the
// CPU (dlkern._C) and CUDA (dlkern._C_cuda) bindings so both accept and refuse the
// same calls with the same messages.
#pragma once
#include "bind/common.h"

namespace dlkern::bind {

struct GemmCall {
  py::array a, b, c;  // c is a new (m, n) array when none was given
  DType dtype;
  int64_t m, n, k;
};

// a, b: 2-D, same float dtype, inner dimensions of op(a) and op(b) equal; c: None
// (then beta must be 0) or (m, n), same dtype, writeable, not sharing memory with a/b.
GemmCall check_gemm_call(const py::object& a, const py::object& b, const py::object& c,
                         double beta, bool trans_a, bool trans_b);

}  // namespace dlkern::bind
