// Argument checks of gemm(a, b, c=None, alpha, beta, trans_a, trans_b), shared by the
// CPU (dlkern._C) and CUDA (dlkern._C_cuda) bindings so both accept and refuse the
// same calls with the same messages.
#pragma once
#include "bind/common.h"
#include "cpu/f16.h"

namespace dlkern::bind {

struct GemmCall {
  py::array a, b, c;  // c is a new (m, n) array when none was given
  DType dtype;        // a's and b's
  DType c_dtype;      // c's: dtype, or float32 for 16-bit inputs that keep the accumulator
  int64_t m, n, k;
};

// a, b: 2-D, same float dtype, inner dimensions of op(a) and op(b) equal; c: None
// (then beta must be 0) or (m, n), same dtype, writeable, not sharing memory with a/b.
// With out_dtype (the CPU binding; nullptr: float32/float64 only, as CUDA) a and b may
// also be bfloat16 or float16, and c's dtype is the input dtype or float32: c's when c
// is given (out_dtype, unless None, must agree), else out_dtype's (None: the input's).
GemmCall check_gemm_call(const py::object& a, const py::object& b, const py::object& c,
                         double beta, bool trans_a, bool trans_b, const py::object* out_dtype = nullptr);

// The result dtype of a product of `in` operands for an out_dtype argument: None -> in;
// else in itself, or float32 when in is bfloat16/float16 (the float32 accumulator kept);
// TypeError naming op otherwise.
DType product_dtype(DType in, const py::object& out_dtype, const char* op);

// The kernels' name of a float dtype (cpu/f16.h's convert).
inline cpu::FloatFormat format_of(DType dt) {
  switch (dt) {
    case DType::f32: return cpu::FloatFormat::f32;
    case DType::f64: return cpu::FloatFormat::f64;
    case DType::bf16: return cpu::FloatFormat::bf16;
    case DType::f16: break;
  }
  return cpu::FloatFormat::f16;
}

}  // namespace dlkern::bind
