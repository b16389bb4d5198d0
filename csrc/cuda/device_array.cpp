// Device arrays: allocation, host copies, strided copies; see device_array.h.
#include "cuda/device_array.h"

#include <stdexcept>

#include "cuda/allocator.h"
#include "cuda/check.h"
#include "cuda/elementwise.h"

namespace dlkern::cuda {

size_t itemsize(DType dt) {
  switch (dt) {
    case DType::f32: return 4;
    case DType::b8: return 1;
    default: return 8;
  }
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i64: return "int64";
    case DType::b8: return "bool";
  }
  return "?";
}

DeviceGuard::DeviceGuard(int device, const char* op) {
  int current = 0;
  check(cudaGetDevice(&current), op, "query the current device");
  if (current != device) {
    check(cudaSetDevice(device), op, ("make device " + std::to_string(device) + " current").c_str());
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0 && cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
}

namespace {

int resolve_device(int device, const char* op) {
  require_device(op);
  if (device >= 0) {
    int count = 0;
    check(cudaGetDeviceCount(&count), op, "count devices");
    if (device >= count)
      throw std::out_of_range(std::string(op) + ": device " + std::to_string(device) +
                              " does not exist (" + std::to_string(count) + " visible)");
    return device;
  }
  int current = 0;
  check(cudaGetDevice(&current), op, "query the current device");
  return current;
}

}  // namespace

DeviceArray empty(const Shape& shape, DType dtype, int device, cudaStream_t stream, const char* op) {
  for (int64_t d : shape)
    if (d < 0) throw std::invalid_argument(std::string(op) + ": negative size in shape " + shape_str(shape));
  DeviceArray a;
  a.device = resolve_device(device, op);
  a.shape = shape;
  a.strides = contiguous_strides(shape);
  a.dtype = dtype;
  a.stream = stream;
  auto storage = std::make_shared<Storage>();
  storage->bytes = static_cast<size_t>(numel(shape)) * itemsize(dtype);
  storage->device = a.device;
  CachingAllocator& alloc = CachingAllocator::device_allocator();
  storage->data = alloc.allocate(storage->bytes, a.device, stream, op);
  void* ptr = storage->data;
  storage->release = [&alloc, ptr] { alloc.release(ptr); };
  a.storage = std::move(storage);
  return a;
}

DeviceArray zeros(const Shape& shape, DType dtype, int device, cudaStream_t stream, const char* op) {
  DeviceArray a = empty(shape, dtype, device, stream, op);
  if (a.storage->bytes) {
    DeviceGuard guard(a.device, op);
    check(cudaMemsetAsync(a.storage->data, 0, a.storage->bytes, stream), op, "zero device memory");
  }
  return a;
}

DeviceArray from_host(const void* host, const Shape& shape, DType dtype, int device,
                      cudaStream_t stream, const char* op) {
  DeviceArray a = empty(shape, dtype, device, stream, op);
  if (a.storage->bytes) {
    DeviceGuard guard(a.device, op);
    check(cudaMemcpyAsync(a.data(), host, a.storage->bytes, cudaMemcpyHostToDevice, stream), op,
          "copy host memory to the device");
    // Pageable host memory: wait, so the caller may reuse or free its buffer.
    check(cudaStreamSynchronize(stream), op, "wait for the copy to the device");
  }
  return a;
}

void to_host(const DeviceArray& src, void* host, const char* op) {
  if (src.numel() == 0) return;
  DeviceGuard guard(src.device, op);
  DeviceArray c = contiguous(src, op);
  const size_t bytes = static_cast<size_t>(c.numel()) * itemsize(c.dtype);
  check(cudaMemcpyAsync(host, c.data(), bytes, cudaMemcpyDeviceToHost, c.stream), op,
        "copy device memory to the host");
  check(cudaStreamSynchronize(c.stream), op, "wait for the copy to the host");
}

void stream_wait(cudaStream_t consumer, cudaStream_t producer, const char* op) {
  if (consumer == producer) return;
  cudaEvent_t event;
  check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), op, "create an event");
  cudaError_t err = cudaEventRecord(event, producer);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(consumer, event, 0);
  // The wait is enqueued; destroying the event now is allowed and frees it once done.
  cudaEventDestroy(event);
  check(err, op, "order one stream after another");
}

void copy_into(DeviceArray& dst, const DeviceArray& src, const char* op) {
  if (dst.dtype != src.dtype)
    throw std::invalid_argument(std::string(op) + ": dtype " + dtype_name(src.dtype) +
                                " cannot be copied into " + dtype_name(dst.dtype));
  if (dst.device != src.device)
    throw std::invalid_argument(std::string(op) + ": arrays are on devices " +
                                std::to_string(src.device) + " and " + std::to_string(dst.device) +
                                "; cross-device copies are not supported");
  bool fits = true;
  try {
    fits = broadcast_shapes(dst.shape, src.shape) == dst.shape;
  } catch (const std::invalid_argument&) {
    fits = false;
  }
  if (!fits)
    throw std::invalid_argument(std::string(op) + ": source of shape " + shape_str(src.shape) +
                                " cannot be broadcast to " + shape_str(dst.shape));
  if (dst.numel() == 0) return;
  DeviceGuard guard(dst.device, op);
  // Overlapping storage: go through a temporary so no element is read after it is written.
  if (src.storage == dst.storage) {
    DeviceArray tmp = empty(src.shape, src.dtype, src.device, dst.stream, op);
    copy_into(tmp, src, op);
    copy_into(dst, tmp, op);
    return;
  }
  stream_wait(dst.stream, src.stream, op);
  const StridedLoop loop =
      make_loop(dst.shape, {dst.strides, broadcast_strides(src.shape, src.strides, dst.shape)});
  copy_strided(loop, dst.data(), src.data(), static_cast<int>(itemsize(dst.dtype)), dst.stream, op);
  // src's block goes back to src.stream's free list when src is freed: order that stream
  // after this copy so a reuse there cannot overwrite src while the copy still reads it.
  stream_wait(src.stream, dst.stream, op);
}

DeviceArray contiguous(const DeviceArray& src, const char* op) {
  if (src.is_contiguous()) return src;
  DeviceArray out = empty(src.shape, src.dtype, src.device, src.stream, op);
  copy_into(out, src, op);
  return out;
}

DeviceArray move_axis(const DeviceArray& x, int from, int to) {
  DeviceArray v = x;
  v.shape.erase(v.shape.begin() + from);
  v.strides.erase(v.strides.begin() + from);
  v.shape.insert(v.shape.begin() + to, x.shape[from]);
  v.strides.insert(v.strides.begin() + to, x.strides[from]);
  return v;
}

}  // namespace dlkern::cuda
