// General matrix multiply on the CPU: C = alpha * op(A) * op(B) + beta * C.
// float and double; packed, cache-blocked, register-blocked per ISA, OpenMP-parallel.
#pragma once
#include <cstdint>

// Relative includes in the public headers (cmake/dlkernInstall.cmake installs them under
// include/dlkern/): a consumer has only include/ on its path, never csrc/.
#include "../common/cpu_features.h"

namespace dlkern::cpu {

// One product in element strides. A is (m, k): element (i, p) at a[i*a_rs + p*a_cs];
// B is (k, n): element (p, j) at b[p*b_rs + j*b_cs]; a transpose just swaps the two
// strides, so no operand is ever copied to transpose it. C is (m, n) with row stride
// ldc and unit column stride. beta == 0 makes C write-only (NaN/Inf in C are not
// propagated), as in BLAS. Strides may be any value, including 0 (broadcast rows/cols).
// In: the element type of A and B when it is not C's (cpu/bf16.h: uint16_t bf16 bits).
template <typename T, typename In = T>
struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  T alpha = 1;
  const In* a = nullptr;
  int64_t a_rs = 0, a_cs = 0;
  const In* b = nullptr;
  int64_t b_rs = 0, b_cs = 0;
  T beta = 0;
  T* c = nullptr;
  int64_t ldc = 0;
};

// Single product, using up to get_num_threads() threads; called from inside an
// OpenMP parallel region it runs on the calling thread only.
template <typename T>
void gemm(const GemmArgs<T>& args);

// BLAS-style row-major interface: op(A) is (m, k), op(B) is (k, n);
// A is stored (m, lda) or, when trans_a, (k, lda); likewise B.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Strided batch: item i uses args.a + i*stride_a, args.b + i*stride_b, args.c + i*stride_c.
// A stride of 0 broadcasts that operand (stride_c must not be 0 when batch > 1).
// Small products run one per thread; large ones run one after another, each threaded.
template <typename T>
void gemm_strided_batched(const GemmArgs<T>& args, int64_t batch, int64_t stride_a,
                          int64_t stride_b, int64_t stride_c);

// ---- Packed B: one operand packed once, multiplied many times ----------------------
// A recurrence multiplies the same weight by a new A at every step; `gemm` packs B into
// the micro-kernel's panel layout on every call, which at the per-step shapes (M = 32,
// K = 256, N = 1024) costs a fifth of the product. gemm_pack_b does that once:
//
//   PackedB<float> w = gemm_pack_b(w_hh, 1, ldw, k, n);   // op(B) = W_hh^T, (k, n)
//   for (t...) gemm_packed(m, 1.f, h_prev, ldh, 1, w, 1.f, gates_t, ldg);
//
// The packed copy is laid out for the ISA active when it was packed (isa()): NR-column
// panels of every depth block (all of K, however large). gemm_packed always runs that
// ISA's kernels, even after set_isa() switched the active one, so a layout is never
// read as another's; repack (compare isa() with active_isa()) to follow a switch.
// gemm_packed only reads the PackedB: several threads may use one at the same time.

// The ISA kernel's view of a layout: panels NR columns wide, depth blocks of kc rows
// (the last one shorter); block d starts at element d * kc * n_panels * NR and holds
// the n_panels panels one after another, each (rows of the block) x NR, zero-padded
// to NR columns.
struct PackedBLayout {
  int nr = 0;
  int64_t kc = 0;
};

// Owns the packed copy (64-byte aligned); move-only. Independent of the B it was
// packed from, which may be freed or changed afterwards.
template <typename T>
class PackedB {
 public:
  PackedB() = default;
  PackedB(PackedB&& other) noexcept;
  PackedB& operator=(PackedB&& other) noexcept;
  PackedB(const PackedB&) = delete;
  PackedB& operator=(const PackedB&) = delete;
  ~PackedB();

  int64_t k() const { return k_; }  // rows of op(B)
  int64_t n() const { return n_; }  // columns of op(B)
  Isa isa() const { return isa_; }  // the ISA whose kernels packed and will read it
  PackedBLayout layout() const { return layout_; }
  const T* data() const { return data_; }  // nullptr when k or n is 0

 private:
  template <typename U>
  friend PackedB<U> gemm_pack_b(const U*, int64_t, int64_t, int64_t, int64_t);
  T* data_ = nullptr;
  int64_t k_ = 0, n_ = 0;
  Isa isa_ = Isa::generic;
  PackedBLayout layout_{};
};

// Packs the (k, n) operand B, element (p, j) at b[p*b_rs + j*b_cs] (any strides: pass
// W as stored, or W^T by swapping the strides), for the active ISA. One thread.
// Throws std::invalid_argument for a negative size.
template <typename T>
PackedB<T> gemm_pack_b(const T* b, int64_t b_rs, int64_t b_cs, int64_t k, int64_t n);

// C = alpha * op(A) * B + beta * C with op(A) (m, b.k()) at a[i*a_rs + p*a_cs] and C
// (m, b.n()) with row stride ldc, unit column stride. Same contract as `gemm`: beta == 0
// makes C write-only, NaN/Inf propagate, threads as `gemm` (the caller thread only
// inside an OpenMP region), m == 0 / n == 0 / k == 0 handled.
template <typename T>
void gemm_packed(int64_t m, T alpha, const T* a, int64_t a_rs, int64_t a_cs, const PackedB<T>& b, T beta,
                 T* c, int64_t ldc);

}  // namespace dlkern::cpu
