// The kernel names, one list for both extension modules. Every name in kSharedKernels is
// a function of dlkern._C and, where a CUDA kernel exists, of dlkern._C_cuda, with the
// same arguments (tests/test_kernel_names.py compares the signatures); kArrayKernels are
// the CUDA module's array primitives (on the CPU, NumPy supplies them). A primitive NumPy
// lacks (erf) is a shared kernel instead: cpu/activation.h's DLKERN_UNARY_KERNELS, each
// bound by both modules as <name>(x, out=None), so no name is in both lists. Each module
// exports the names it defines as KERNELS, so a device namespace maps a name to
// module.<name> exactly when it is in module.KERNELS: no allowlist elsewhere.
#pragma once

#include "cpu/activation.h"  // DLKERN_ACTIVATIONS

namespace dlkern::bind {

inline constexpr const char* kSharedKernels[] = {
    "matmul", "gemm", "convert",
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "causal_conv1d", "causal_conv1d_backward",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
    "layer_norm_forward", "layer_norm_backward", "rms_norm_forward", "rms_norm_backward",
    "group_norm_forward", "group_norm_backward", "batch_norm_forward", "batch_norm_backward",
    "cross_entropy_forward", "cross_entropy_backward",
    "attention_forward", "attention_backward", "kv_cache_append", "decode_attention", "rope", "rope_backward",
#define DLKERN_ACTIVATION_NAMES(name, Kernel) #name, #name "_backward",
    DLKERN_ACTIVATIONS(DLKERN_ACTIVATION_NAMES)
#undef DLKERN_ACTIVATION_NAMES
#define DLKERN_UNARY_NAMES(name, Kernel) #name,
    DLKERN_UNARY_KERNELS(DLKERN_UNARY_NAMES)
#undef DLKERN_UNARY_NAMES
    "max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward",
    "lstm_layer_forward", "lstm_layer_backward", "gru_layer_forward", "gru_layer_backward",
    "rnn_layer_forward", "rnn_layer_backward",
    "adam_step", "sgd_step",
};

inline constexpr const char* kArrayKernels[] = {
    "add", "subtract", "multiply", "divide", "negative", "power", "maximum", "minimum", "logaddexp",
    "exp", "expm1", "log", "log1p", "sqrt", "abs", "sign", "tanh", "sin", "cos", "sigmoid", "relu",
    "square", "reciprocal", "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
    "logical_not", "logical_and", "logical_or", "clip", "argmax", "argmin",
    "take", "take_along_axis", "put_along_axis",
};

}  // namespace dlkern::bind
