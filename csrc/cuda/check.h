// CUDA failures as C++ exceptions that name the op and the step, so the bindings can
// turn them into Python errors (MemoryError for out-of-memory, RuntimeError else).
// Plain C++ header: host-only translation units include it.
#pragma once
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace dlkern::cuda {

class Error : public std::runtime_error {
 public:
  Error(const std::string& op, const std::string& step, cudaError_t code);
  cudaError_t code() const noexcept { return code_; }
  bool out_of_memory() const noexcept { return code_ == cudaErrorMemoryAllocation; }

 private:
  cudaError_t code_;
};

// Throws Error("<op>: CUDA failed to <step>: <name>: <text>") unless err is cudaSuccess,
// after clearing the runtime's last-error slot so the next call starts clean.
void check(cudaError_t err, const char* op, const char* step);

// cudaGetLastError() after a kernel launch, through check().
void check_launch(const char* op);

// Throws Error(op, "find a usable device", ...) unless a device is present; every entry
// that touches a device calls it first, so a machine without a GPU gets one clear message.
void require_device(const char* op);

}  // namespace dlkern::cuda
