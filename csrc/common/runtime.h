// Thread count and aligned scratch buffers shared by all CPU kernels.
#pragma once
#include <cstddef>
#include <cstdint>

namespace dlkern {

// Threads a kernel may use. Starts at OpenMP's default (OMP_NUM_THREADS or the
// core count); set_num_threads(n) requires n >= 1 (std::invalid_argument otherwise).
int get_num_threads();
void set_num_threads(int n);

// A growable, 64-byte aligned scratch buffer. Kept per thread (thread_local) by the
// kernels so packing space is allocated once and reused, never per call.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  // At least `bytes` bytes; the contents are not preserved when it grows.
  // Defined out of line (runtime.cpp, baseline flags): an inline body compiled inside
  // an AVX-512 translation unit could be the copy the linker keeps for every caller.
  void* reserve(std::size_t bytes);
  template <typename T>
  T* reserve_elements(std::size_t n) {
    return static_cast<T*>(reserve(n * sizeof(T)));
  }

 private:
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace dlkern
