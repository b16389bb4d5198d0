// softmax and log_softmax over one axis, forward and backward, on the CPU.
// float and double; vectorised per ISA (softmax_<isa>.cpp), OpenMP over rows.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

// x, y: (outer, dim, inner) contiguous; the softmax runs over dim (inner == 1: the
// last axis, rows contiguous; inner > 1: a strided walk, no transposed copies).
// Numerically stable (the max over dim is subtracted). A slice whose entries are all
// -inf gives 0 (softmax) or -inf (log_softmax); a slice holding a NaN gives NaN in
// every entry (as PyTorch), whatever the layout. y may not alias x.
template <typename T>
void softmax_forward(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log);

// dy, y, dx: (outer, dim, inner) contiguous; y is the forward's output (softmax, or
// log_softmax when log). softmax: dx = y * (dy - sum(dy * y));
// log_softmax: dx = dy - exp(y) * sum(dy), sums over dim.
template <typename T>
void softmax_backward(const T* dy, const T* y, T* dx, int64_t outer, int64_t dim, int64_t inner, bool log);

}  // namespace dlkern::cpu
