// GEMM front end: argument checks, trivial cases, thread-count choice, batching and
// the run-time choice of ISA path.
#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>

#include "common/cpu_features.h"
#include "common/runtime.h"
#include "cpu/gemm_args.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A thread gets at least this many FLOPs, about 20 us at 100 GFLOP/s (a 128^3
// product, 4.2 MFLOP, is worth two threads; 96^3 is not).
constexpr int64_t kMinFlopsPerThread = 2'000'000;

int64_t flops_of(int64_t m, int64_t n, int64_t k, int64_t batch = 1) {
  const double f = 2.0 * double(m) * double(n) * double(k) * double(batch);
  return f > 9.0e18 ? INT64_MAX : static_cast<int64_t>(f);
}

template <typename T>
void check_args(const GemmArgs<T>& g) {
  gemm_args::check(g, "gemm");
}

using gemm_args::scale_c;

template <typename T>
void run_one(const GemmArgs<T>& g, int nthreads) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0 || g.alpha == T(0)) {
    scale_c(g);
    return;
  }
  kernels<T>().gemm(g, nthreads);
}

}  // namespace

template <typename T>
void gemm(const GemmArgs<T>& args) {
  check_args(args);
  run_one(args, threads_for(flops_of(args.m, args.n, args.k), kMinFlopsPerThread));
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
          int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  GemmArgs<T> g;
  g.m = m, g.n = n, g.k = k, g.alpha = alpha, g.beta = beta;
  g.a = a, g.b = b, g.c = c, g.ldc = ldc;
  g.a_rs = trans_a ? 1 : lda;
  g.a_cs = trans_a ? lda : 1;
  g.b_rs = trans_b ? 1 : ldb;
  g.b_cs = trans_b ? ldb : 1;
  gemm(g);
}

template <typename T>
void gemm_strided_batched(const GemmArgs<T>& args, int64_t batch, int64_t stride_a,
                          int64_t stride_b, int64_t stride_c) {
  check_args(args);
  if (batch < 0) throw std::invalid_argument("gemm_strided_batched: negative batch " + std::to_string(batch));
  if (batch > 1 && stride_c == 0 && args.m > 0 && args.n > 0)
    throw std::invalid_argument("gemm_strided_batched: stride_c is 0, so every item would write the same C");
  auto item = [&](int64_t i) {
    GemmArgs<T> g = args;
    g.a += i * stride_a;
    g.b += i * stride_b;
    g.c += i * stride_c;
    return g;
  };
  const int per_item = threads_for(flops_of(args.m, args.n, args.k), kMinFlopsPerThread);
  const int nt = per_item < get_num_threads() && batch > 1
                     ? threads_for(flops_of(args.m, args.n, args.k, batch), kMinFlopsPerThread, batch)
                     : 1;
  if (nt > 1) {
    // Items too small to share: whole items handed out as threads come free.
    const int64_t chunk = dynamic_chunk(batch, nt);
#pragma omp parallel for num_threads(nt) schedule(dynamic, chunk)
    for (int64_t i = 0; i < batch; ++i) run_one(item(i), 1);
  } else {
    for (int64_t i = 0; i < batch; ++i) run_one(item(i), per_item);
  }
}

// ---- Packed B -------------------------------------------------------------------------
// The special members live here, compiled with baseline flags (see cpu/isa.h's ODR note).

template <typename T>
PackedB<T>::PackedB(PackedB&& other) noexcept
    : data_(other.data_), k_(other.k_), n_(other.n_), isa_(other.isa_), layout_(other.layout_) {
  other.data_ = nullptr;
  other.k_ = other.n_ = 0;
}

template <typename T>
PackedB<T>& PackedB<T>::operator=(PackedB&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = other.data_, k_ = other.k_, n_ = other.n_, isa_ = other.isa_, layout_ = other.layout_;
    other.data_ = nullptr;
    other.k_ = other.n_ = 0;
  }
  return *this;
}

template <typename T>
PackedB<T>::~PackedB() {
  std::free(data_);
}

template <typename T>
PackedB<T> gemm_pack_b(const T* b, int64_t b_rs, int64_t b_cs, int64_t k, int64_t n) {
  if (k < 0 || n < 0)
    throw std::invalid_argument("gemm_pack_b: negative size (k=" + std::to_string(k) + ", n=" +
                                std::to_string(n) + ")");
  PackedB<T> out;
  out.k_ = k, out.n_ = n, out.isa_ = active_isa();
  const TypedKernels<T>& kern = isa_kernels(out.isa_).template typed<T>();
  out.layout_ = kern.gemm_packed_layout(k);
  if (k == 0 || n == 0) return out;
  const int nr = out.layout_.nr;
  const double elems = double(k) * double((n + nr - 1) / nr) * nr;
  if (elems * sizeof(T) > 0.5 * double(SIZE_MAX))
    throw std::length_error("gemm_pack_b: a (" + std::to_string(k) + ", " + std::to_string(n) +
                            ") operand is too large to pack");
  const size_t bytes = (static_cast<size_t>(elems) * sizeof(T) + 63) / 64 * 64;
  out.data_ = static_cast<T*>(std::aligned_alloc(64, bytes));
  if (!out.data_) throw std::bad_alloc();
  kern.gemm_pack_b(b, b_rs, b_cs, k, n, out.layout_.kc, out.data_);
  return out;
}

template <typename T>
void gemm_packed(int64_t m, T alpha, const T* a, int64_t a_rs, int64_t a_cs, const PackedB<T>& b, T beta,
                 T* c, int64_t ldc) {
  GemmArgs<T> g;
  g.m = m, g.n = b.n(), g.k = b.k(), g.alpha = alpha, g.beta = beta;
  g.a = a, g.a_rs = a_rs, g.a_cs = a_cs, g.b = b.data(), g.c = c, g.ldc = ldc;
  check_args(g);
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0 || g.alpha == T(0)) {
    scale_c(g);
    return;
  }
  // The ISA that packed it reads it, whatever is active now (cpu/gemm.h).
  isa_kernels(b.isa()).template typed<T>().gemm_packed(
      g, b.layout().kc, threads_for(flops_of(g.m, g.n, g.k), kMinFlopsPerThread));
}

#define DLKERN_INSTANTIATE_GEMM(T)                                                          \
  template void gemm<T>(const GemmArgs<T>&);                                                \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t,        \
                        const T*, int64_t, T, T*, int64_t);                                 \
  template void gemm_strided_batched<T>(const GemmArgs<T>&, int64_t, int64_t, int64_t, int64_t); \
  template class PackedB<T>;                                                                \
  template PackedB<T> gemm_pack_b<T>(const T*, int64_t, int64_t, int64_t, int64_t);         \
  template void gemm_packed<T>(int64_t, T, const T*, int64_t, int64_t, const PackedB<T>&, T, T*, int64_t);
DLKERN_INSTANTIATE_GEMM(float)
DLKERN_INSTANTIATE_GEMM(double)
#undef DLKERN_INSTANTIATE_GEMM

}  // namespace dlkern::cpu
