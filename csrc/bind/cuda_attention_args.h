// Argument checks shared by the CUDA attention bindings (cuda_attention.cpp: RoPE, KV
// cache, decode attention; cuda_flash_attention.cpp: flash attention forward/backward).
// Header-only; each raises TypeError/ValueError naming the op and the argument.
#pragma once
#include <initializer_list>

#include "bind/cuda_common.h"
#include "cuda/device_array.h"

namespace dlkern::bind {

// Same dtype and device as the reference array.
inline void require_same(const cuda::DeviceArray& a, const char* arg, const cuda::DeviceArray& ref,
                         const char* ref_arg, const char* op) {
  if (a.dtype != ref.dtype)
    type_error(op, ": ", arg, " has dtype ", cuda::dtype_name(a.dtype), " but ", ref_arg, " has dtype ",
               cuda::dtype_name(ref.dtype), "; all must be the same float type");
  if (a.device != ref.device)
    value_error(op, ": ", arg, " is on cuda:", a.device, " but ", ref_arg, " is on cuda:", ref.device);
}

inline void require_4d(const cuda::DeviceArray& a, const char* op, const char* arg, const char* layout) {
  if (a.ndim() != 4) value_error(op, ": ", arg, " must be 4-D ", layout, ", got shape ", cuda::shape_str(a.shape));
}

// a itself when its last axis has unit stride (or at most one element, or a is empty),
// else a contiguous copy made on `consumer`, the stream of the kernel that reads it (so
// the copy's memory returns to that stream's free list when it is dropped): the kernels
// read rows of the last axis as vectors.
inline cuda::DeviceArray unit_last(const cuda::DeviceArray& a, cudaStream_t consumer, const char* op) {
  if (a.ndim() == 0 || a.numel() == 0 || a.shape.back() <= 1 || a.strides.back() == 1) return a;
  return contiguous_on(a, consumer, op);
}

// After a kernel on `consumer` read `inputs` in place: their own streams wait for it, so
// a block freed later on an input's stream is not reused while the kernel still reads it.
inline void release_after(cudaStream_t consumer, std::initializer_list<const cuda::DeviceArray*> inputs,
                          const char* op) {
  for (const cuda::DeviceArray* a : inputs)
    if (a != nullptr) cuda::stream_wait(a->stream, consumer, op);
}

}  // namespace dlkern::bind
