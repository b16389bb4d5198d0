// Argument checks shared by the CUDA attention bindings (cuda_attention.cpp: RoPE, KV
// cache, decode attention; cuda_flash_attention.cpp: flash attention forward/backward).
// Header-only; each raises TypeError/ValueError naming the op and the argument.
#pragma once
#include <stdexcept>

#include "bind/cuda_common.h"
#include "cuda/device_array.h"

namespace dlkern::bind {

// Same dtype and device as the reference array and, when given, that shape (the attention
// ops' wording).
inline void require_same(const cuda::DeviceArray& a, const char* arg, const cuda::DeviceArray& ref,
                         const char* ref_arg, const char* op, const cuda::Shape* shape = nullptr) {
  require_like(a, arg, ref, ref_arg, op, shape, "; all must be the same float type");
}

// a itself when its last axis has unit stride (or at most one element, or a is empty),
// else a contiguous copy made on `consumer`, the stream of the kernel that reads it (so
// the copy's memory returns to that stream's free list when it is dropped): the kernels
// read rows of the last axis as vectors.
inline cuda::DeviceArray unit_last(const cuda::DeviceArray& a, cudaStream_t consumer, const char* op) {
  if (a.ndim() == 0 || a.numel() == 0 || a.shape.back() <= 1 || a.strides.back() == 1) return a;
  return contiguous_on(a, consumer, op);
}

// The additive float mask (or nullptr for None) read through broadcast element strides
// over `scores` = (B, Hq, Tq, Tk): one of q's dtype on q's device, broadcastable to it.
inline const cuda::DeviceArray* float_mask(const py::object& mask_obj, const cuda::DeviceArray& q,
                                           const cuda::Shape& scores, cuda::Shape& strides, const char* op) {
  strides.assign(4, 0);
  if (mask_obj.is_none()) return nullptr;
  const cuda::DeviceArray* mask = &require_device_array(mask_obj, op, "attn_mask");
  if (mask->dtype != q.dtype)
    type_error(op, ": attn_mask has dtype ", cuda::dtype_name(mask->dtype), "; on CUDA it must be a float mask of q's "
               "dtype ", cuda::dtype_name(q.dtype), " (0 to attend, -inf to mask out)");
  if (mask->device != q.device) value_error(op, ": attn_mask is on cuda:", mask->device, " but q is on cuda:", q.device);
  bool ok = mask->ndim() <= 4;
  try {
    ok = ok && cuda::broadcast_shapes(mask->shape, scores) == scores;
  } catch (const std::invalid_argument&) {
    ok = false;
  }
  if (!ok)
    value_error(op, ": attn_mask of shape ", cuda::shape_str(mask->shape),
                " does not broadcast to the scores' shape (B, Hq, Tq, Tk) = ", cuda::shape_str(scores));
  strides = cuda::broadcast_strides(mask->shape, mask->strides, scores);
  return mask;
}

}  // namespace dlkern::bind
