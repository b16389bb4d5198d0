// Caching allocator for device memory. Freed blocks are kept in free lists keyed by
// (device, stream, size class) and handed out again without cudaMalloc/cudaFree (both
// synchronise the device). A block is reused only on the stream it was freed from, so
// stream order makes the reuse safe without events; an array used on another stream
// must be synchronised by the caller, as in PyTorch. When the device runs out of
// memory, the cached blocks of that device are released and the allocation retried
// once before reporting out-of-memory.
// Plain C++ (no CUDA syntax). The memory source is a pluggable Backend, so the
// bookkeeping is tested on the host with malloc (dlkern._C_cuda._HostCachingAllocator).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace dlkern::cuda {

// Size classes: at least 512 bytes, multiples of 512 below 1 MiB, multiples of 2 MiB
// above (large blocks are few, so the rounding waste stays small relative to them).
size_t allocation_size(size_t bytes);

struct AllocatorStats {
  size_t allocated = 0;      // bytes in live blocks (rounded to their size class)
  size_t reserved = 0;       // allocated + cached
  size_t cached_blocks = 0;  // blocks in the free lists
  size_t backend_allocs = 0; // calls to the backend's allocate (cache misses)
};

class CachingAllocator {
 public:
  struct Backend {
    std::function<cudaError_t(void** ptr, size_t bytes, int device)> allocate;
    std::function<cudaError_t(void* ptr, int device)> release;
  };
  explicit CachingAllocator(Backend backend);
  ~CachingAllocator();  // frees the cache; live blocks are the owners' to return
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Throws Error(op, ...) (out_of_memory() true for cudaErrorMemoryAllocation). A
  // zero-byte request returns nullptr without touching the backend.
  void* allocate(size_t bytes, int device, cudaStream_t stream, const char* op);
  // Returns a block from allocate() to its free list. Never throws.
  void release(void* ptr) noexcept;
  // Frees every cached block (of `device`, or of all devices when device < 0).
  // Returns the first backend error (the rest are still attempted).
  cudaError_t empty_cache(int device = -1) noexcept;
  AllocatorStats stats(int device) const;

  // The process-wide allocator for CUDA device memory (cudaMalloc/cudaFree on the
  // block's device). Never destroyed: freeing at interpreter exit would race with the
  // CUDA runtime's own teardown.
  static CachingAllocator& device_allocator();

 private:
  struct Block {
    size_t size;
    int device;
    cudaStream_t stream;
  };
  using FreeKey = std::tuple<int, cudaStream_t, size_t>;
  cudaError_t free_cached_locked(int device) noexcept;

  Backend backend_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, Block> live_;
  std::map<FreeKey, std::vector<void*>> free_;
  std::map<int, AllocatorStats> stats_;
};

}  // namespace dlkern::cuda
