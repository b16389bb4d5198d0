// Portable pooling path: the same driver over a one-lane "vector" (plain scalars),
// so every output takes the per-output loop. Runs on any CPU.
#include <omp.h>

#include <cstdint>

#include "common/runtime.h"
#include "cpu/pool_isa.h"

namespace dlkern::cpu::generic {
namespace {

template <typename Scalar>
struct SimdScalar {
  using T = Scalar;
  using V = Scalar;
  using M = bool;
  static constexpr int L = 1;
  static V load(const T* p) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static V bcast(T x) { return x; }
  static V zero() { return T(0); }
  static V add(V a, V b) { return a + b; }
  static V div(V a, V b) { return a / b; }
  static T hsum(V v) { return v; }
  static V evens(const T* p) { return *p; }
  static V load_fill(const T* p, int64_t skip, T fill) { return skip > 0 ? fill : *p; }
  static V evens_fill(const T* p, int64_t skip, T fill) { return skip > 0 ? fill : *p; }
  static M better(V v, V cur) { return v > cur || v != v; }
  static V select(M m, V a, V b) { return m ? a : b; }
  static V max_plain(V v, V cur) { return v > cur ? v : cur; }
  static M nan_lanes(V v) { return v != v; }
  static M mask_or(M a, M b) { return a || b; }
  static M mask_none() { return false; }
  static void store_interleaved(T* p, V e, V o) {
    p[0] = e;
    p[1] = o;
  }
};

using SimdF32 = SimdScalar<float>;
using SimdF64 = SimdScalar<double>;

#include "cpu/pool_driver.h"

}  // namespace

DLKERN_DEFINE_POOL_ENTRY_POINTS(SimdF32, SimdF64)

}  // namespace dlkern::cpu::generic
