// Portable path of the normalisation segment loops (norm_segments.h): GCC/Clang
// vector extensions (SSE2 on any x86-64, NEON on Arm).
#include <cstdint>
#include <cstring>

#include "cpu/norm_isa.h"

namespace dlkern::cpu::generic {
namespace {

template <typename Scalar, int Lanes>
struct SimdVecExt {
  using T = Scalar;
  typedef Scalar V __attribute__((vector_size(sizeof(Scalar) * Lanes)));
  static constexpr int L = Lanes;
  static V zero() { return V{}; }
  static V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static V bcast(T x) { return V{} + x; }
  static V add(V a, V b) { return a + b; }
  static V sub(V a, V b) { return a - b; }
  static V mul(V a, V b) { return a * b; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static T hsum(V v) {
    T s = 0;
    for (int i = 0; i < L; ++i) s += v[i];
    return s;
  }
  // No portable non-temporal store: plain stores.
  static void stream(T* p, V v) { store(p, v); }
  static void fence() {}
};

using SimdF32 = SimdVecExt<float, 4>;
using SimdF64 = SimdVecExt<double, 2>;

#include "cpu/norm_segments.h"

}  // namespace

const NormSegmentKernels<float>& norm_kernels(float) { return NormSegments<SimdF32>::table(); }
const NormSegmentKernels<double>& norm_kernels(double) { return NormSegments<SimdF64>::table(); }

}  // namespace dlkern::cpu::generic
