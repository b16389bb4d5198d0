// General matrix multiply on a CUDA device: C = alpha * op(A) * op(B) + beta * C.
// float and double; shared-memory tiles with register blocking, no cuBLAS. Plain C++
// header (no CUDA syntax), so host-only translation units such as the bindings can
// include it. Nothing here knows about Python.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace dlkern::cuda {

// ---------------------------------------------------------------------------
// Kernels on device pointers. Row-major, BLAS-style, same argument shapes as
// dlkern::cpu::gemm plus a stream:
//   op(A) is (m, k): A is stored (m, lda) or, when trans_a, (k, lda); likewise B.
//   C is (m, n) with row stride ldc.
// beta == 0 makes C write-only (NaN/Inf in C are not propagated); alpha == 0 or
// k == 0 reads neither A nor B, as in BLAS. The work is queued on `stream` and the
// call returns without waiting.
// Argument errors (negative sizes, a leading dimension too small, a null pointer with
// non-empty sizes) throw std::invalid_argument naming the op; CUDA failures (launch,
// no device) are returned as the cudaError_t, with the runtime's last-error state
// cleared so the next call starts clean. Never aborts.
// ---------------------------------------------------------------------------
template <typename T>
cudaError_t gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                 const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc,
                 cudaStream_t stream = nullptr);

// Strided batch: item i uses a + i*stride_a, b + i*stride_b, c + i*stride_c (strides
// in elements). A stride of 0 broadcasts that operand; stride_c must not be 0 when
// batch > 1 (every item would write the same C). Each item is one slice of the grid.
template <typename T>
cudaError_t gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                 T alpha, const T* a, int64_t lda, int64_t stride_a,
                                 const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                                 int64_t ldc, int64_t stride_c, int64_t batch,
                                 cudaStream_t stream = nullptr);

// The same product for float on TF32 tensor cores (sm_80 and newer): A and B are
// rounded to TF32 (10-bit mantissa, as PyTorch's allow_tf32), products are summed in
// float. Same arguments, checks and contract as gemm_strided_batched<float>; on a device
// older than sm_80 it returns cudaErrorNotSupported without launching (callers check
// tf32_supported first). Lives in gemm_tf32.cu.
cudaError_t gemm_tf32_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                      float alpha, const float* a, int64_t lda, int64_t stride_a,
                                      const float* b, int64_t ldb, int64_t stride_b, float beta,
                                      float* c, int64_t ldc, int64_t stride_c, int64_t batch,
                                      cudaStream_t stream = nullptr);

// The argument checks every gemm entry runs first (std::invalid_argument naming the
// op); reads_ab says whether A and B are read (k > 0 and alpha != 0).
void check_gemm_args(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, bool reads_ab,
                     const void* a, int64_t lda, const void* b, int64_t ldb, const void* c,
                     int64_t ldc, int64_t stride_c, int64_t batch);

// True when `device` has TF32 tensor cores (compute capability 8.0 or newer); false on
// any runtime failure. Never throws.
bool tf32_supported(int device) noexcept;

// ---------------------------------------------------------------------------
// Host-array entry: copies contiguous host operands to the current device, runs
// gemm, copies C back and waits. A is (m, k) or (k, m) when trans_a, B is (k, n) or
// (n, k) when trans_b, C is (m, n), all row-major and contiguous; C is read only when
// beta != 0. Exists so the CUDA path can be tested from NumPy before a device-array
// type does the staging.
// ---------------------------------------------------------------------------
struct Status {
  cudaError_t code = cudaSuccess;
  const char* step = "";  // what failed, e.g. "copy a to the device"
  bool ok() const { return code == cudaSuccess; }
};

template <typename T>
Status gemm_host(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                 const T* a_host, const T* b_host, T beta, T* c_host);

// ---------------------------------------------------------------------------
// Runtime helpers. None of them throws or aborts, with or without a driver.
// ---------------------------------------------------------------------------

// Number of visible devices in *count (0 on failure) and the runtime's answer:
// cudaErrorNoDevice or cudaErrorInsufficientDriver on a machine without a GPU.
cudaError_t query_device_count(int* count) noexcept;

// Visible devices; 0 when there is no device or no working driver.
int device_count() noexcept;

// Waits for all work on the current device.
cudaError_t synchronize() noexcept;

// "cudaErrorNoDevice: no CUDA-capable device is detected".
std::string error_message(cudaError_t err);

// CUDA runtime version linked in, and the driver's (0 when no driver is installed),
// both encoded as 1000*major + 10*minor.
int runtime_version() noexcept;
int driver_version() noexcept;

}  // namespace dlkern::cuda
