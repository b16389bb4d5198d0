// Shape and bound checks of the attention family, shared by the CPU and CUDA bindings
// and free of Python: q / k / v agreement with grouped-query heads, decode_attention's
// length, the KV-cache append bounds and RoPE positions. Each throws dlkern::ValueError
// (common/errors.h) naming the op and the argument; dtype checks stay in the bindings.
#pragma once
#include <cstdint>
#include <utility>

#include "common/geometry.h"

namespace dlkern {

struct AttentionDims {
  int64_t B, Hq, Hkv, Tq, Tk, D, Dv;
};

// q (B, Hq, Tq, D), k (B, Hkv, Tk, D), v (B, Hkv, Tk, Dv), named kname / vname in
// messages: 4-D, agreeing, Hq a multiple of Hkv (query head h reads KV head
// h / (Hq / Hkv)), D >= 1.
AttentionDims attention_dims(const char* op, const Dims& q, const Dims& k, const Dims& v, const char* kname,
                             const char* vname);

// decode_attention: the first `length` cache positions, Tq <= length <= the capacity
// (k_cache's Tk); d.Tk becomes length.
void decode_length(const char* op, int64_t length, AttentionDims& d, const Dims& q, const Dims& k_cache);

// kv_cache_append: cache (B, H, S, D) and new (B, H, T, D) agree on (B, H, D), and
// positions offset .. offset + T - 1 lie in [0, S) (checked without forming offset + T).
void kv_cache_bounds(const char* op, const Dims& cache, const Dims& added, int64_t offset);

// rope / rope_backward of `arg` (..., T, D): D even, base > 0, positions offset ..
// offset + T - 1 valid int64. Returns (T, D).
std::pair<int64_t, int64_t> rope_dims(const char* op, const char* arg, const Dims& x, double base, int64_t offset);

}  // namespace dlkern
