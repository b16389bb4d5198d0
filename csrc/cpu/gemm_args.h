// The argument check and the no-product path (k == 0 or alpha == 0: C = beta * C) shared
// by the GEMM front ends (cpu/gemm.cpp for float/double, cpu/bf16.cpp for bf16 inputs).
#pragma once
#include <algorithm>
#include <stdexcept>
#include <string>

#include "cpu/gemm.h"

namespace dlkern::cpu::gemm_args {

// `op` names the caller in the message ("gemm", "gemm_bf16").
template <typename T, typename In>
void check(const GemmArgs<T, In>& g, const char* op) {
  if (g.m < 0 || g.n < 0 || g.k < 0)
    throw std::invalid_argument(std::string(op) + ": negative size (m=" + std::to_string(g.m) + ", n=" +
                                std::to_string(g.n) + ", k=" + std::to_string(g.k) + ")");
  // A negative ldc (rows stored bottom-up) is fine; rows that overlap are not.
  if (g.m > 1 && g.n > 1 && g.ldc < g.n && -g.ldc < g.n)
    throw std::invalid_argument(std::string(op) + ": |ldc|=" + std::to_string(g.ldc) + " is smaller than n=" +
                                std::to_string(g.n) + ", so rows of C overlap");
}

// C = beta * C (beta == 0 writes zeros, so NaNs in an uninitialised C do not survive).
template <typename T, typename In>
void scale_c(const GemmArgs<T, In>& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    T* row = g.c + i * g.ldc;
    if (g.beta == T(0))
      std::fill(row, row + g.n, T(0));
    else if (g.beta != T(1))
      for (int64_t j = 0; j < g.n; ++j) row[j] *= g.beta;
  }
}

}  // namespace dlkern::cpu::gemm_args
