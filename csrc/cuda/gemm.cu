// Tiled CUDA GEMM: each thread block computes a BM x BN tile of C, walking K in
// steps of BK. The matching slices of op(A) and op(B) are staged in shared memory
// (double-buffered: the next slice is fetched from global memory into registers while
// the current one is multiplied), and each thread accumulates a TM x TN block of C in
// registers, so every shared-memory read feeds TM or TN fused multiply-adds.
#include "cuda/gemm.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/gemm_launch.cuh"

namespace dlkern::cuda {
namespace {

using gemm_detail::ceil_div;
using gemm_detail::GemmParams;

// Block tile BM x BN x BK, per-thread register tile TM x TN, and the resident blocks
// per SM the register allocation must allow (__launch_bounds__).
template <int BM_, int BN_, int BK_, int TM_, int TN_, int MIN_BLOCKS_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kMinBlocksPerSM = MIN_BLOCKS_;
  static constexpr int kThreadsM = BM / TM;  // threads along a tile's rows
  static constexpr int kThreadsN = BN / TN;  // threads along a tile's columns
  static constexpr int kThreads = kThreadsM * kThreadsN;
  static_assert(BM % TM == 0 && BN % TN == 0, "register tile must divide the block tile");
};

// 128x128 tiles, 8x8 per thread: 64 accumulators keep the FMA units busy relative to
// shared-memory traffic. Used for float when there are enough tiles to fill the GPU.
// Two resident blocks cap registers at 128 per thread (left alone, sm_80 takes 162 and
// fits one block), so one block's barrier wait can be covered by the other's math.
using LargeTile = TileConfig<128, 128, 8, 8, 8, 2>;
// 64x64 tiles, 4x4 per thread: four times as many blocks for small or skinny products,
// and few enough registers for double accumulators.
using SmallTile = TileConfig<64, 64, 16, 4, 4, 1>;

// Moves one operand's BK-deep slice between global memory, registers and shared
// memory. The slice covers EXTENT positions along m (for op(A)) or n (for op(B)) and BK
// along k; in shared memory it is stored [k][EXTENT + 1]. KContiguous says which axis is
// contiguous in the operand's stored layout (k for a plain A or a transposed B).
// Consecutive threads take consecutive addresses of that axis so global loads coalesce;
// each thread then keeps one fixed position on it and steps along the other.
template <typename T, int EXTENT, int BK, int kThreads, bool KContiguous>
struct SliceLoader {
  static_assert(kThreads % BK == 0 && kThreads % EXTENT == 0, "threads must tile the slice");
  static constexpr int kLoads = EXTENT * BK / kThreads;  // elements each thread stages
  static constexpr int kStep = KContiguous ? kThreads / BK : kThreads / EXTENT;

  int first_x, first_k;  // this thread's element 0 within the slice
  int x_count;           // positions of the slice inside the matrix (less at an edge)
  int64_t x0, k_size, ld;

  __device__ SliceLoader(int tid, int64_t x0_, int64_t x_size, int64_t k_size_, int64_t ld_)
      : first_x(KContiguous ? tid / BK : tid % EXTENT),
        first_k(KContiguous ? tid % BK : tid / EXTENT),
        x_count(static_cast<int>(x_size - x0_ < EXTENT ? x_size - x0_ : EXTENT)),
        x0(x0_), k_size(k_size_), ld(ld_) {}

  __device__ int x_of(int l) const { return first_x + (KContiguous ? l * kStep : 0); }
  __device__ int k_of(int l) const { return first_k + (KContiguous ? 0 : l * kStep); }

  __device__ void fetch(const T* __restrict__ src, int64_t k0, T (&stage)[kLoads]) const {
#pragma unroll
    for (int l = 0; l < kLoads; ++l) {
      const int x = x_of(l);
      const int64_t gk = k0 + k_of(l);
      const int64_t offset = KContiguous ? (x0 + x) * ld + gk : gk * ld + (x0 + x);
      stage[l] = (x < x_count && gk < k_size) ? src[offset] : T(0);
    }
  }

  __device__ void stash(const T (&stage)[kLoads], T (*tile)[EXTENT + 1]) const {
#pragma unroll
    for (int l = 0; l < kLoads; ++l) tile[k_of(l)][x_of(l)] = stage[l];
  }
};

// One block per BM x BN tile of C; grid = (column tiles, row tiles, batch items).
// Thread (ty, tx) owns rows ty + r*kThreadsM and columns tx + s*kThreadsN of the tile:
// interleaved rather than contiguous, so that a warp's shared-memory reads of op(B) hit
// consecutive banks and its stores to C are consecutive addresses.
template <typename T, class Cfg, bool TransA, bool TransB>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocksPerSM) gemm_tiled_kernel(const GemmParams<T> p) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  constexpr int kThreads = Cfg::kThreads, kThreadsM = Cfg::kThreadsM, kThreadsN = Cfg::kThreadsN;

  // Both slices are stored k-major ([kk][row], [kk][col]) so the inner loop reads one
  // row of each. The +1 column of padding spreads a column of stores over distinct
  // banks (it matters when the global layout makes consecutive threads walk k).
  __shared__ T a_tile[2][BK][BM + 1];
  __shared__ T b_tile[2][BK][BN + 1];

  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % kThreadsN, ty = tid / kThreadsN;
  const int64_t item = p.first_item + blockIdx.z;
  const int64_t row0 = (p.first_tile_row + blockIdx.y) * BM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * BN;
  const T* __restrict__ a = p.a + item * p.stride_a;
  const T* __restrict__ b = p.b + item * p.stride_b;
  T* __restrict__ c = p.c + item * p.stride_c;

  // Out-of-range elements (edge tiles, the K tail) are staged as zeros, so the
  // multiply loop needs no bounds checks and adds nothing for them.
  const SliceLoader<T, BM, BK, kThreads, !TransA> a_loader(tid, row0, p.m, p.k, p.lda);
  const SliceLoader<T, BN, BK, kThreads, TransB> b_loader(tid, col0, p.n, p.k, p.ldb);
  T a_stage[decltype(a_loader)::kLoads], b_stage[decltype(b_loader)::kLoads];
  auto fetch = [&](int64_t k0) {
    a_loader.fetch(a, k0, a_stage);
    b_loader.fetch(b, k0, b_stage);
  };
  auto stash = [&](int buf) {
    a_loader.stash(a_stage, a_tile[buf]);
    b_loader.stash(b_stage, b_tile[buf]);
  };

  T acc[TM][TN];
#pragma unroll
  for (int r = 0; r < TM; ++r)
#pragma unroll
    for (int s = 0; s < TN; ++s) acc[r][s] = T(0);

  fetch(0);
  stash(0);
  __syncthreads();
  int buf = 0;
  for (int64_t k0 = 0; k0 < p.k; k0 += BK) {
    const bool has_next = k0 + BK < p.k;
    // Issue the next slice's global loads now; their latency hides behind the FMAs.
    if (has_next) fetch(k0 + BK);
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      T a_frag[TM], b_frag[TN];
#pragma unroll
      for (int r = 0; r < TM; ++r) a_frag[r] = a_tile[buf][kk][ty + r * kThreadsM];
#pragma unroll
      for (int s = 0; s < TN; ++s) b_frag[s] = b_tile[buf][kk][tx + s * kThreadsN];
#pragma unroll
      for (int r = 0; r < TM; ++r)
#pragma unroll
        for (int s = 0; s < TN; ++s) acc[r][s] += a_frag[r] * b_frag[s];
    }
    // The other buffer was last read in the previous step, before the barrier that
    // ended it, so it can be overwritten now; one barrier per step suffices.
    if (has_next) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }

#pragma unroll
  for (int r = 0; r < TM; ++r) {
    const int64_t gi = row0 + ty + r * kThreadsM;
    if (gi >= p.m) continue;
#pragma unroll
    for (int s = 0; s < TN; ++s) {
      const int64_t gj = col0 + tx + s * kThreadsN;
      if (gj >= p.n) continue;
      T* dst = c + gi * p.ldc + gj;
      const T v = p.alpha * acc[r][s];
      // beta == 0: C is write-only, so garbage (NaN) in it cannot leak into the result.
      *dst = p.beta == T(0) ? v : v + p.beta * *dst;
    }
  }
}

// C = beta * C for every item, when there is no product to add (k == 0 or alpha == 0).
template <typename T>
__global__ void scale_kernel(int64_t m, int64_t n, T beta, T* c, int64_t ldc, int64_t stride_c,
                             int64_t total) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += step) {
    const int64_t j = idx % n, rest = idx / n;
    T* dst = c + (rest / m) * stride_c + (rest % m) * ldc + j;
    *dst = beta == T(0) ? T(0) : beta * *dst;
  }
}

// ---------------------------------------------------------------------------
// Host side: argument checks, tile choice, launches.
// ---------------------------------------------------------------------------

// Returns err after clearing the runtime's last-error slot, so a failure reported here
// is not reported again by the next, unrelated cudaGetLastError().
cudaError_t clear_and_return(cudaError_t err) {
  if (err != cudaSuccess) cudaGetLastError();
  return err;
}

[[noreturn]] void invalid(const std::string& what) {
  throw std::invalid_argument("cuda gemm: " + what);
}

void check_args(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, bool reads_ab,
                const void* a, int64_t lda, const void* b, int64_t ldb, const void* c,
                int64_t ldc, int64_t stride_c, int64_t batch) {
  if (m < 0 || n < 0 || k < 0)
    invalid("negative size (m=" + std::to_string(m) + ", n=" + std::to_string(n) +
            ", k=" + std::to_string(k) + ")");
  if (batch < 0) invalid("negative batch " + std::to_string(batch));
  if (m == 0 || n == 0 || batch == 0) return;  // nothing is read or written
  if (!c) invalid("c is null");
  if (m > 1 && ldc < n)
    invalid("ldc=" + std::to_string(ldc) + " is smaller than n=" + std::to_string(n));
  if (batch > 1 && stride_c == 0) invalid("stride_c is 0, so every item would write the same C");
  if (!reads_ab) return;
  if (!a || !b) invalid(std::string(a ? "b" : "a") + " is null");
  // Stored A is (m, k), or (k, m) when transposed; the leading dimension must cover a row.
  const int64_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
  const int64_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
  if (a_rows > 1 && lda < a_cols)
    invalid("lda=" + std::to_string(lda) + " is smaller than " + std::to_string(a_cols) +
            " (a is stored " + std::to_string(a_rows) + " x " + std::to_string(a_cols) + ")");
  if (b_rows > 1 && ldb < b_cols)
    invalid("ldb=" + std::to_string(ldb) + " is smaller than " + std::to_string(b_cols) +
            " (b is stored " + std::to_string(b_rows) + " x " + std::to_string(b_cols) + ")");
}

template <typename T, class Cfg, bool TransA, bool TransB>
cudaError_t launch_tiled(const GemmParams<T>& p, int64_t batch, cudaStream_t stream) {
  return gemm_detail::launch_tile_grid(p, Cfg::BM, Cfg::BN, batch, [&](dim3 grid, const GemmParams<T>& q) {
    gemm_tiled_kernel<T, Cfg, TransA, TransB><<<grid, Cfg::kThreads, 0, stream>>>(q);
  });
}

template <typename T, class Cfg>
cudaError_t launch_tiled(bool trans_a, bool trans_b, const GemmParams<T>& p, int64_t batch,
                         cudaStream_t stream) {
  // Transposes are template parameters so the index arithmetic in the loads is fixed
  // at compile time.
  if (trans_a)
    return trans_b ? launch_tiled<T, Cfg, true, true>(p, batch, stream)
                   : launch_tiled<T, Cfg, true, false>(p, batch, stream);
  return trans_b ? launch_tiled<T, Cfg, false, true>(p, batch, stream)
                 : launch_tiled<T, Cfg, false, false>(p, batch, stream);
}

// Large tiles only pay off when there are enough of them to occupy every SM;
// otherwise small tiles give more blocks.
bool use_large_tiles(int64_t m, int64_t n, int64_t batch, int sm_count) {
  const int64_t tiles = ceil_div(m, LargeTile::BM) * ceil_div(n, LargeTile::BN) * batch;
  return tiles >= 2 * static_cast<int64_t>(sm_count);
}

template <typename T>
cudaError_t run_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                     const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
                     int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c,
                     int64_t batch, cudaStream_t stream) {
  const bool reads_ab = k > 0 && alpha != T(0);
  check_args(trans_a, trans_b, m, n, k, reads_ab, a, lda, b, ldb, c, ldc, stride_c, batch);
  if (m == 0 || n == 0 || batch == 0) return cudaSuccess;

  // Failures of other code that the caller already saw as return values may linger in
  // the last-error slot; drop them so the post-launch check reports only this launch.
  cudaGetLastError();
  int device = 0, sm_count = 0;
  if (cudaError_t err = cudaGetDevice(&device); err != cudaSuccess) return clear_and_return(err);
  if (cudaError_t err = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device);
      err != cudaSuccess)
    return clear_and_return(err);

  if (!reads_ab) {
    if (beta == T(1)) return cudaSuccess;  // C stays as it is
    const int64_t total = m * n * batch;
    const int threads = 256;
    const int64_t blocks = std::min<int64_t>(ceil_div(total, threads), 32LL * sm_count);
    scale_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, stream>>>(m, n, beta, c, ldc,
                                                                             stride_c, total);
    return clear_and_return(cudaGetLastError());
  }

  const GemmParams<T> p =
      gemm_detail::make_params(m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc, stride_c);
  // double always uses small tiles: 64 double accumulators would exhaust the registers.
  if constexpr (sizeof(T) == sizeof(float)) {
    if (use_large_tiles(m, n, batch, sm_count))
      return clear_and_return(launch_tiled<T, LargeTile>(trans_a, trans_b, p, batch, stream));
  }
  return clear_and_return(launch_tiled<T, SmallTile>(trans_a, trans_b, p, batch, stream));
}

// Owns one cudaMalloc allocation.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    // A failed free (after a sticky kernel fault) has no one to report to.
    if (ptr_ && cudaFree(ptr_) != cudaSuccess) cudaGetLastError();
  }
  cudaError_t allocate(size_t bytes) { return bytes ? cudaMalloc(&ptr_, bytes) : cudaSuccess; }
  template <typename T>
  T* get() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

}  // namespace

void check_gemm_args(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, bool reads_ab,
                     const void* a, int64_t lda, const void* b, int64_t ldb, const void* c,
                     int64_t ldc, int64_t stride_c, int64_t batch) {
  check_args(trans_a, trans_b, m, n, k, reads_ab, a, lda, b, ldb, c, ldc, stride_c, batch);
}

template <typename T>
cudaError_t gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                 const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc,
                 cudaStream_t stream) {
  return run_gemm<T>(trans_a, trans_b, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1,
                     stream);
}

template <typename T>
cudaError_t gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                                 T alpha, const T* a, int64_t lda, int64_t stride_a,
                                 const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                                 int64_t ldc, int64_t stride_c, int64_t batch,
                                 cudaStream_t stream) {
  return run_gemm<T>(trans_a, trans_b, m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta,
                     c, ldc, stride_c, batch, stream);
}

template <typename T>
Status gemm_host(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
                 const T* a_host, const T* b_host, T beta, T* c_host) {
  int count = 0;
  if (cudaError_t err = query_device_count(&count); err != cudaSuccess)
    return {err, "find a usable device"};
  if (count == 0) return {cudaErrorNoDevice, "find a usable device"};
  if (m == 0 || n == 0) return {};

  // Mirrors run_gemm: when no product is added, A and B are never read or copied.
  const bool reads_ab = k > 0 && alpha != T(0);
  const bool reads_c = beta != T(0);
  const size_t a_bytes = reads_ab ? sizeof(T) * size_t(m) * size_t(k) : 0;
  const size_t b_bytes = reads_ab ? sizeof(T) * size_t(k) * size_t(n) : 0;
  const size_t c_bytes = sizeof(T) * size_t(m) * size_t(n);

  DeviceBuffer a_dev, b_dev, c_dev;
  auto fail = [](cudaError_t err, const char* step) { return Status{clear_and_return(err), step}; };
  if (cudaError_t err = a_dev.allocate(a_bytes); err != cudaSuccess) return fail(err, "allocate a on the device");
  if (cudaError_t err = b_dev.allocate(b_bytes); err != cudaSuccess) return fail(err, "allocate b on the device");
  if (cudaError_t err = c_dev.allocate(c_bytes); err != cudaSuccess) return fail(err, "allocate c on the device");
  if (a_bytes) {
    if (cudaError_t err = cudaMemcpy(a_dev.get<T>(), a_host, a_bytes, cudaMemcpyHostToDevice); err != cudaSuccess)
      return fail(err, "copy a to the device");
  }
  if (b_bytes) {
    if (cudaError_t err = cudaMemcpy(b_dev.get<T>(), b_host, b_bytes, cudaMemcpyHostToDevice); err != cudaSuccess)
      return fail(err, "copy b to the device");
  }
  if (reads_c) {
    if (cudaError_t err = cudaMemcpy(c_dev.get<T>(), c_host, c_bytes, cudaMemcpyHostToDevice); err != cudaSuccess)
      return fail(err, "copy c to the device");
  }

  // Contiguous operands: the leading dimension is the stored row length.
  const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n;
  if (cudaError_t err = gemm<T>(trans_a, trans_b, m, n, k, alpha, a_dev.get<T>(), lda,
                                b_dev.get<T>(), ldb, beta, c_dev.get<T>(), n, nullptr);
      err != cudaSuccess)
    return fail(err, "launch the gemm kernel");
  // Wait here so a fault inside the kernel is reported as such, not as a failed copy.
  if (cudaError_t err = cudaStreamSynchronize(nullptr); err != cudaSuccess)
    return fail(err, "run the gemm kernel");
  if (cudaError_t err = cudaMemcpy(c_host, c_dev.get<T>(), c_bytes, cudaMemcpyDeviceToHost); err != cudaSuccess)
    return fail(err, "copy c back to the host");
  return {};
}

cudaError_t query_device_count(int* count) noexcept {
  *count = 0;
  const cudaError_t err = cudaGetDeviceCount(count);
  if (err != cudaSuccess) *count = 0;
  return clear_and_return(err);
}

int device_count() noexcept {
  int count = 0;
  query_device_count(&count);
  return count;
}

cudaError_t synchronize() noexcept { return clear_and_return(cudaDeviceSynchronize()); }

std::string error_message(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

int runtime_version() noexcept {
  int v = 0;
  return clear_and_return(cudaRuntimeGetVersion(&v)) == cudaSuccess ? v : 0;
}

int driver_version() noexcept {
  int v = 0;
  return clear_and_return(cudaDriverGetVersion(&v)) == cudaSuccess ? v : 0;
}

#define DLKERN_INSTANTIATE_CUDA_GEMM(T)                                                         \
  template cudaError_t gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t,    \
                               const T*, int64_t, T, T*, int64_t, cudaStream_t);               \
  template cudaError_t gemm_strided_batched<T>(bool, bool, int64_t, int64_t, int64_t, T,       \
                                               const T*, int64_t, int64_t, const T*, int64_t,  \
                                               int64_t, T, T*, int64_t, int64_t, int64_t,      \
                                               cudaStream_t);                                  \
  template Status gemm_host<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, const T*, T, T*);

DLKERN_INSTANTIATE_CUDA_GEMM(float)
DLKERN_INSTANTIATE_CUDA_GEMM(double)
#undef DLKERN_INSTANTIATE_CUDA_GEMM

}  // namespace dlkern::cuda
