// Caching device-memory allocator; see allocator.h.
#include "cuda/allocator.h"

#include "cuda/check.h"

namespace dlkern::cuda {

size_t allocation_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = size_t(2) << 20, kSmallLimit = size_t(1) << 20;
  if (bytes == 0) return 0;
  const size_t unit = bytes < kSmallLimit ? kSmall : kLarge;
  return (bytes + unit - 1) / unit * unit;
}

CachingAllocator::CachingAllocator(Backend backend) : backend_(std::move(backend)) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

void* CachingAllocator::allocate(size_t bytes, int device, cudaStream_t stream, const char* op) {
  const size_t size = allocation_size(bytes);
  if (size == 0) return nullptr;
  std::unique_lock<std::mutex> lock(mutex_);
  AllocatorStats& st = stats_[device];
  auto it = free_.find(FreeKey{device, stream, size});
  if (it != free_.end() && !it->second.empty()) {
    void* ptr = it->second.back();
    it->second.pop_back();
    --st.cached_blocks;
    st.allocated += size;
    live_.emplace(ptr, Block{size, device, stream});
    return ptr;
  }
  // The backend call runs under the lock: cudaMalloc synchronises anyway, and the
  // out-of-memory retry must see a consistent cache.
  void* ptr = nullptr;
  cudaError_t err = backend_.allocate(&ptr, size, device);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    free_cached_locked(device);
    err = backend_.allocate(&ptr, size, device);
  }
  if (err != cudaSuccess) {
    const std::string step = "allocate " + std::to_string(bytes) + " bytes on device " +
                             std::to_string(device) + " (" + std::to_string(st.allocated) +
                             " bytes allocated, " + std::to_string(st.reserved) + " reserved)";
    lock.unlock();
    check(err, op, step.c_str());
  }
  ++st.backend_allocs;
  st.allocated += size;
  st.reserved += size;
  live_.emplace(ptr, Block{size, device, stream});
  return ptr;
}

void CachingAllocator::release(void* ptr) noexcept {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;  // not ours: nothing sensible to do in a destructor path
  const Block b = it->second;
  live_.erase(it);
  AllocatorStats& st = stats_[b.device];
  st.allocated -= b.size;
  ++st.cached_blocks;
  free_[FreeKey{b.device, b.stream, b.size}].push_back(ptr);
}

cudaError_t CachingAllocator::free_cached_locked(int device) noexcept {
  cudaError_t first = cudaSuccess;
  for (auto it = free_.begin(); it != free_.end();) {
    const auto& [dev, stream, size] = it->first;
    if (device >= 0 && dev != device) {
      ++it;
      continue;
    }
    AllocatorStats& st = stats_[dev];
    for (void* ptr : it->second) {
      const cudaError_t err = backend_.release(ptr, dev);
      if (err != cudaSuccess && first == cudaSuccess) first = err;
      st.reserved -= size;
      --st.cached_blocks;
    }
    it = free_.erase(it);
  }
  if (first != cudaSuccess) cudaGetLastError();
  return first;
}

cudaError_t CachingAllocator::empty_cache(int device) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  return free_cached_locked(device);
}

AllocatorStats CachingAllocator::stats(int device) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = stats_.find(device);
  return it == stats_.end() ? AllocatorStats{} : it->second;
}

namespace {

// Runs f with `device` current, restoring the caller's device afterwards.
template <typename F>
cudaError_t on_device(int device, F&& f) {
  int previous = 0;
  if (cudaError_t err = cudaGetDevice(&previous); err != cudaSuccess) return err;
  if (previous != device) {
    if (cudaError_t err = cudaSetDevice(device); err != cudaSuccess) return err;
  }
  const cudaError_t result = f();
  if (previous != device) cudaSetDevice(previous);
  return result;
}

}  // namespace

CachingAllocator& CachingAllocator::device_allocator() {
  static CachingAllocator* allocator = new CachingAllocator(Backend{
      [](void** ptr, size_t bytes, int device) {
        return on_device(device, [&] { return cudaMalloc(ptr, bytes); });
      },
      [](void* ptr, int device) { return on_device(device, [&] { return cudaFree(ptr); }); },
  });
  return *allocator;
}

}  // namespace dlkern::cuda
