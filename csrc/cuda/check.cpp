// CUDA error checks; see check.h.
#include "cuda/check.h"

#include "cuda/gemm.h"

namespace dlkern::cuda {

Error::Error(const std::string& op, const std::string& step, cudaError_t code)
    : std::runtime_error(op + ": CUDA failed to " + step + ": " + error_message(code)), code_(code) {}

void check(cudaError_t err, const char* op, const char* step) {
  if (err == cudaSuccess) return;
  cudaGetLastError();
  throw Error(op, step, err);
}

void check_launch(const char* op) { check(cudaGetLastError(), op, "launch a kernel"); }

void require_device(const char* op) {
  int count = 0;
  const cudaError_t err = query_device_count(&count);
  check(err == cudaSuccess && count == 0 ? cudaErrorNoDevice : err, op, "find a usable device");
}

}  // namespace dlkern::cuda
