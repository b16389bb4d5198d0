// A strided array in device memory: shared storage (from the caching allocator, or
// borrowed from another library through DLPack), an element offset, shape, strides in
// elements, dtype (float32, float64, int64 or bool), device index and the stream its
// producer ran on. Views share the storage. Plain C++ (no CUDA syntax); errors throw
// cuda::Error or std exceptions.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cuda/layout.h"

namespace dlkern::cuda {

// b8 is numpy's bool_: one byte holding 0 or 1 (kernels read any nonzero byte as true).
enum class DType { f32, f64, i64, b8 };

size_t itemsize(DType dt);
const char* dtype_name(DType dt);  // "float32", "float64", "int64", "bool"
inline bool is_float(DType dt) { return dt == DType::f32 || dt == DType::f64; }

// Owns (or borrows) one device allocation; `release` returns it when the last
// array using it goes away.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  int device = 0;
  std::function<void()> release;
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release) release();
  }
};

struct DeviceArray {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape, strides;
  DType dtype = DType::f32;
  int device = 0;
  cudaStream_t stream = nullptr;  // where the contents were last produced

  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t numel() const { return cuda::numel(shape); }
  bool is_contiguous() const { return cuda::is_contiguous(shape, strides); }
  void* data() const {
    return storage ? static_cast<char*>(storage->data) + offset * static_cast<int64_t>(itemsize(dtype))
                   : nullptr;
  }
  // Elements of storage from offset 0, for view bounds checks.
  int64_t storage_numel() const {
    return storage ? static_cast<int64_t>(storage->bytes / itemsize(dtype)) : 0;
  }
};

// Makes `device` current for the lifetime of the guard (Error naming op on failure).
class DeviceGuard {
 public:
  DeviceGuard(int device, const char* op);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Uninitialised contiguous array from the caching allocator; device < 0 means the
// current device.
DeviceArray empty(const Shape& shape, DType dtype, int device, cudaStream_t stream, const char* op);
DeviceArray zeros(const Shape& shape, DType dtype, int device, cudaStream_t stream, const char* op);

// Host (contiguous) -> new device array, and device array -> host (contiguous buffer
// of numel * itemsize bytes). Both wait for the copy before returning.
DeviceArray from_host(const void* host, const Shape& shape, DType dtype, int device,
                      cudaStream_t stream, const char* op);
void to_host(const DeviceArray& src, void* host, const char* op);

// dst[...] = src[...] for equal dtypes; src is broadcast to dst's shape. Runs on
// dst.stream (after src.stream's work when they differ).
void copy_into(DeviceArray& dst, const DeviceArray& src, const char* op);
// src itself when contiguous, else a contiguous copy.
DeviceArray contiguous(const DeviceArray& src, const char* op);

// A view of x with axis `from` moved to position `to` (the others keep their order).
DeviceArray move_axis(const DeviceArray& x, int from, int to);

// Makes `consumer` wait for the work queued on `producer` so far (no-op if equal).
void stream_wait(cudaStream_t consumer, cudaStream_t producer, const char* op);

}  // namespace dlkern::cuda
