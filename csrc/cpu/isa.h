// The CPU kernels' one dispatch table: every op family's per-ISA entry points as
// function pointers, one table per ISA. Each table is filled by one translation unit,
// isa_<name>.cpp (generic, avx2, avx512), compiled with that ISA's flags: it includes
// cpu/isa_kernels.h, which instantiates every family's kernels (written once over the
// vector types of cpu/simd.h) inside that TU's own namespace. The family front ends
// (softmax.cpp, norm.cpp, ...) do the checks and the threading decisions and call
// through kernels<T>(); a pointer is followed once per call or per segment, never per
// element, so the loops stay inlined within their ISA's TU.
//
// ODR safety: the ISA headers use plain loops and only trivially inlined std helpers
// (std::min). An out-of-line template instantiated with AVX-512 flags (std::sort, a
// std::vector member) could be the copy the linker keeps for every TU, and then run on
// a CPU without AVX-512; the anonymous namespace around the kernels keeps their own
// templates apart per ISA.
#pragma once
#include <cstdint>

#include "common/cpu_features.h"
#include "common/optim_checks.h"
#include "cpu/activation.h"
#include "cpu/attention.h"
#include "cpu/bf16.h"
#include "cpu/gemm.h"
#include "cpu/pool.h"

namespace dlkern::cpu {

// The normalisation kernels' building blocks: loops over one contiguous segment (a row,
// a channel plane, a group). norm.cpp combines them per row / group / channel.
template <typename T>
struct NormSegmentKernels {
  // sum(x - k): the mean's pass, shifted by a sample k so large means do not cancel.
  T (*sum_shifted)(const T* x, int64_t n, T k);
  // *sq = sum((x - m)^2), *s = sum(x - m) (the correction term of the two-pass variance).
  void (*dev_stats)(const T* x, int64_t n, T m, T* sq, T* s);
  // sum(x^2).
  T (*sum_sq)(const T* x, int64_t n);
  // Writers take `stream`: write the output with non-temporal stores (outputs too big
  // for the caches; saves reading each output line before writing it). Call
  // stream_fence() once per thread after streaming writes.
  // y = (x - m) * r * w + b; w and b may be nullptr (then 1 and 0).
  void (*normalize_wb)(const T* x, const T* w, const T* b, T* y, int64_t n, T m, T r, bool stream);
  // y = (x - m) * s + t.
  void (*normalize_st)(const T* x, T* y, int64_t n, T m, T s, T t, bool stream);
  // *s1 = sum(dy * w), *s2 = sum(dy * w * (x - m)); w may be nullptr.
  void (*grad_sums)(const T* dy, const T* x, const T* w, int64_t n, T m, T* s1, T* s2);
  // dx = a * w * dy + b * (x - m) + c; dw_acc += dy * (x - m) * r; db_acc += dy.
  // w, dw_acc, db_acc may be nullptr.
  void (*grad_apply)(const T* dy, const T* x, const T* w, T* dx, T* dw_acc, T* db_acc, int64_t n,
                     T m, T r, T a, T b, T c, bool stream);
  void (*stream_fence)();
};

// One ISA's kernels for element type T. `nthreads` is the front end's decision
// (threads_for); the kernels fork at most that many threads.
template <typename T>
struct TypedKernels {
  // C = alpha * A B + beta * C; trivial cases (empty, k == 0, alpha == 0) are the caller's.
  void (*gemm)(const GemmArgs<T>& args, int nthreads);
  // Packed B (cpu/gemm.h): this ISA's layout for k rows, the packing of a (k, n) B into
  // k * ceil(n / nr) * nr elements at dst, and the product against it, where args.b is
  // the packed copy (args.b_rs / b_cs unused) and `kc` its depth block. m, n, k > 0.
  PackedBLayout (*gemm_packed_layout)(int64_t k);
  void (*gemm_pack_b)(const T* b, int64_t b_rs, int64_t b_cs, int64_t k, int64_t n, int64_t kc, T* dst);
  void (*gemm_packed)(const GemmArgs<T>& args, int64_t kc, int nthreads);

  // softmax / log_softmax over the middle axis of an (outer, dim, inner) array.
  void (*softmax_fwd)(const T* x, T* y, int64_t outer, int64_t dim, int64_t inner, bool log, int nthreads);
  void (*softmax_bwd)(const T* dy, const T* y, T* dx, int64_t outer, int64_t dim, int64_t inner, bool log,
                      int nthreads);

  // Fused cross-entropy over n contiguous rows of c logits (cross_entropy.cpp).
  void (*cross_entropy_fwd)(const T* x, const int64_t* target, const T* weight, T w_all, T* loss, T* lse,
                            int64_t n, int64_t c, int64_t ignore_index, T eps, int nthreads);
  void (*cross_entropy_bwd)(const T* grad, int64_t grad_stride, T grad_scale, const T* x,
                            const int64_t* target, const T* lse, const T* weight, T w_all, T* dx, int64_t n,
                            int64_t c, int64_t ignore_index, T eps, int nthreads);

  // Fused (flash) attention.
  void (*attention_fwd)(const AttentionProblem<T>& pr, T* out, T* lse, int nthreads);
  void (*attention_bwd)(const AttentionProblem<T>& pr, HeadView<T> dout, HeadView<T> o, const T* lse, T* dq,
                        T* dk, T* dv, int nthreads);

  // The activations of cpu/activation.h, indexed by Activation, over one contiguous
  // block; activation.cpp threads over blocks.
  void (*activation_fwd[kActivations])(const T* x, T* y, int64_t n);
  void (*activation_bwd[kActivations])(const T* dy, const T* x, T* dx, int64_t n);
  // The forward-only elementwise kernels of cpu/activation.h, indexed by Unary.
  void (*unary[kUnaryKernels])(const T* x, T* y, int64_t n);

  NormSegmentKernels<T> norm;

  // 2-D pooling over planes (pool.cpp has the checks and geometry).
  void (*max_pool2d_fwd)(const T* x, T* y, int64_t* indices, const Pool2dGeometry& g, int nthreads);
  void (*avg_pool2d_fwd)(const T* x, T* y, const Pool2dGeometry& g, bool count_include_pad,
                         int64_t divisor_override, int nthreads);
  void (*avg_pool2d_bwd)(const T* dy, T* dx, const Pool2dGeometry& g, bool count_include_pad,
                         int64_t divisor_override, int nthreads);
  void (*adaptive_avg_pool2d_fwd)(const T* x, T* y, const Pool2dGeometry& g, int nthreads);

  // The recurrent cells' pointwise steps (cpu/rnn.h has the contract), over B rows.
  void (*lstm_fwd)(const T* gates, const T* c_prev, T* h, T* c, T* act, int64_t B, int64_t H, int nthreads);
  void (*lstm_bwd)(const T* dh, const T* dc, const T* act, const T* c_prev, const T* c, T* dgates, T* dc_prev,
                   int64_t B, int64_t H, int nthreads);
  void (*gru_fwd)(const T* gi, const T* gh, const T* h_prev, T* h, T* saved, int64_t B, int64_t H, int nthreads);
  void (*gru_bwd)(const T* dh, const T* saved, const T* h_prev, T* dgi, T* dgh, T* dh_prev, int64_t B, int64_t H,
                  int nthreads);
  void (*rnn_fwd)(const T* pre, T* h, int64_t B, int64_t H, bool relu, int nthreads);
  void (*rnn_bwd)(const T* dh, const T* h, T* dpre, int64_t B, int64_t H, bool relu, int nthreads);

  // The fused optimizer steps (cpu/optim.h has the contract) over one contiguous block;
  // optim.cpp threads over blocks.
  void (*adam_step)(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t n,
                    const AdamFactors& f);
  void (*sgd_step)(T* param, const T* grad, T* momentum_buffer, int64_t n, const SgdFactors& f);
};

// The bfloat16 kernels (cpu/bf16.h, cpu/bf16_kernels.h): conversions over n elements,
// one thread; the GEMM (trivial cases are the caller's) on converted float32 panels,
// and with vdpbf16ps where this ISA has it on this CPU (else nullptr).
struct Bf16Kernels {
  void (*from_f32)(const float* x, uint16_t* dst, int64_t n);
  void (*to_f32)(const uint16_t* x, float* dst, int64_t n);
  void (*gemm_fallback)(const GemmBf16Args& args, int nthreads);
  void (*gemm_dpbf16)(const GemmBf16Args& args, int nthreads);
  // float16 (cpu/f16.h, cpu/f16_kernels.h): conversions as NumPy's astype, and the
  // GEMM on f16 panels widened while packing (the bf16 fallback's loop nest).
  void (*f16_from_f32)(const float* x, uint16_t* dst, int64_t n);
  void (*f16_to_f32)(const uint16_t* x, float* dst, int64_t n);
  void (*gemm_f16)(const GemmBf16Args& args, int nthreads);
};

struct IsaKernels {
  TypedKernels<float> f32;
  TypedKernels<double> f64;
  Bf16Kernels bf16;

  // Convolution's layout copies as 8 x 8 register transposes; nullptr where the ISA has
  // none (generic: conv.cpp's scalar loops).
  // dst[j*ld_dst + i] = src[i*ld_src + j] (+ add[j] when add is not null), i < rows, j < cols.
  void (*conv_transpose_f32)(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                             int64_t ld_dst, const float* add);
  // dst[col_off[j] + i] = src[i*ld_src + j], i < rows, j < cols; columns with col_off[j] < 0
  // are skipped. Channels-first rows scattered into channels-last pixels anywhere.
  void (*conv_scatter_rows_f32)(const float* src, int64_t ld_src, int64_t rows, int64_t cols, float* dst,
                                const int64_t* col_off);
  // The reverse: dst[i*ld_dst + j] = src[col_off[j] + i], or 0 where col_off[j] < 0.
  void (*conv_gather_rows_f32)(const float* src, const int64_t* col_off, int64_t rows, int64_t cols,
                               float* dst, int64_t ld_dst);

  template <typename T>
  const TypedKernels<T>& typed() const {
    if constexpr (sizeof(T) == sizeof(float))
      return f32;
    else
      return f64;
  }
};

// The table of one ISA; `isa` must be compiled in (isa_compiled()).
const IsaKernels& isa_kernels(Isa isa);

// The table of the active ISA: resolved once (DLKERN_ISA or the best this CPU runs) by
// active_isa(), then one atomic load per call; set_isa() switches it.
inline const IsaKernels& active_kernels() { return isa_kernels(active_isa()); }

template <typename T>
const TypedKernels<T>& kernels() {
  return active_kernels().typed<T>();
}

// Each isa_<name>.cpp defines its namespace's table.
namespace generic {
const IsaKernels& table();
}
#if defined(DLKERN_X86)
namespace avx2 {
const IsaKernels& table();
}
namespace avx512 {
const IsaKernels& table();
}
// Not an ISA of its own: the one kernel that needs AVX-512 BF16 (vdpbf16ps), in its own
// TU (gemm_bf16_avx512bf16.cpp, the avx512 flags plus -mavx512bf16), which the avx512
// table points at only when the CPU has the instruction (cpu_features().avx512bf16).
#if defined(DLKERN_HAVE_AVX512BF16)
namespace avx512bf16 {
void gemm_bf16(const GemmBf16Args& args, int nthreads);
}
#endif
#endif

}  // namespace dlkern::cpu
