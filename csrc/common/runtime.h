// Thread count and aligned scratch buffers shared by all CPU kernels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

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
  ~AlignedBuffer() { std::free(data_); }

  // At least `bytes` bytes; the contents are not preserved when it grows.
  void* reserve(std::size_t bytes) {
    if (bytes > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      std::size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
      data_ = std::aligned_alloc(kAlign, rounded);
      if (!data_) throw std::bad_alloc();
      capacity_ = rounded;
    }
    return data_;
  }
  template <typename T>
  T* reserve_elements(std::size_t n) {
    return static_cast<T*>(reserve(n * sizeof(T)));
  }

 private:
  static constexpr std::size_t kAlign = 64;
  void* data_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace dlkern
