// One ISA's dispatch table (cpu/isa.h): instantiates every op family's kernels over this
// ISA's vector types and defines dlkern::cpu::<isa>::table(). Included once, by
// isa_<isa>.cpp, which first defines DLKERN_ISA_NAMESPACE (generic, avx2, avx512) and,
// for a vector ISA, DLKERN_SIMD_AVX2 or DLKERN_SIMD_AVX512, and is compiled with that
// ISA's flags (CMakeLists.txt). The kernels live in an anonymous namespace, so no
// template instantiated here can be merged with another ISA's (see cpu/isa.h).
//
// Adding a kernel: its loops in the family's *_kernels.h (written over S), a pointer in
// TypedKernels, one line below.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
#include <immintrin.h>
#endif

#include "common/parallel.h"
#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu::DLKERN_ISA_NAMESPACE {
namespace {

#include "cpu/simd.h"

#include "cpu/erf_poly.h"

#include "cpu/activation_kernels.h"
#include "cpu/attention_kernels.h"
#include "cpu/conv_kernels.h"
#include "cpu/cross_entropy_kernels.h"
#include "cpu/gemm_driver.h"
#include "cpu/gemm_packed_driver.h"
#include "cpu/bf16_kernels.h"
#include "cpu/norm_segments.h"
#include "cpu/optim_kernels.h"
#include "cpu/pool_lanes.h"
#include "cpu/pool_driver.h"
#include "cpu/rnn_kernels.h"
#include "cpu/softmax_kernels.h"

// S: simd.h's vector type for T; P: pool_lanes.h's.
template <class S, class P>
TypedKernels<typename S::T> typed_kernels() {
  using T = typename S::T;
  TypedKernels<T> k{};
  k.gemm = &gemm_run<T>;
  k.gemm_packed_layout = &gemm_packed_layout<T>;
  k.gemm_pack_b = &gemm_pack_b_run<T>;
  k.gemm_packed = &gemm_packed_run<T>;
  k.softmax_fwd = &SoftmaxKernels<S>::forward;
  k.softmax_bwd = &SoftmaxKernels<S>::backward;
  k.cross_entropy_fwd = &CrossEntropyKernels<S>::forward;
  k.cross_entropy_bwd = &CrossEntropyKernels<S>::backward;
  k.attention_fwd = &AttentionKernels<S>::forward;
  k.attention_bwd = &AttentionKernels<S>::backward;
#define DLKERN_FILL_ACTIVATION(name, Kernel)                                \
  k.activation_fwd[static_cast<int>(Activation::name)] = &Kernel<S>::forward; \
  k.activation_bwd[static_cast<int>(Activation::name)] = &Kernel<S>::backward;
  DLKERN_ACTIVATIONS(DLKERN_FILL_ACTIVATION)
#undef DLKERN_FILL_ACTIVATION
#define DLKERN_FILL_UNARY(name, Kernel) k.unary[static_cast<int>(Unary::name)] = &Kernel<S>::forward;
  DLKERN_UNARY_KERNELS(DLKERN_FILL_UNARY)
#undef DLKERN_FILL_UNARY
  k.norm = NormSegments<S>::table();
  k.max_pool2d_fwd = &max_forward_entry<P>;
  k.avg_pool2d_fwd = &avg_forward<P>;
  k.avg_pool2d_bwd = &avg_backward<P>;
  k.adaptive_avg_pool2d_fwd = &adaptive_forward<P>;
  k.lstm_fwd = &RnnKernels<S>::lstm_forward;
  k.lstm_bwd = &RnnKernels<S>::lstm_backward;
  k.gru_fwd = &RnnKernels<S>::gru_forward;
  k.gru_bwd = &RnnKernels<S>::gru_backward;
  k.rnn_fwd = &RnnKernels<S>::rnn_forward;
  k.rnn_bwd = &RnnKernels<S>::rnn_backward;
  k.adam_step = &OptimKernels<S>::adam;
  k.sgd_step = &OptimKernels<S>::sgd;
  return k;
}

IsaKernels make_table() {
  IsaKernels k{};
  k.f32 = typed_kernels<VecF32, PoolF32>();
  k.f64 = typed_kernels<VecF64, PoolF64>();
  k.bf16 = bf16_kernels();
#if defined(DLKERN_CONV_TRANSPOSES)
  k.conv_transpose_f32 = &conv_transpose_f32;
  k.conv_scatter_rows_f32 = &conv_scatter_rows_f32;
  k.conv_gather_rows_f32 = &conv_gather_rows_f32;
#endif
  return k;
}

}  // namespace

const IsaKernels& table() {
  static const IsaKernels k = make_table();
  return k;
}

}  // namespace dlkern::cpu::DLKERN_ISA_NAMESPACE
