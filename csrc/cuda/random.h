// Counter-based random numbers: element i of rand/randn(shape, seed) is a pure function
// of (seed, i), so a result depends on the seed and the shape only, never on the grid,
// the block size or the device, and a host twin (the same inline functions, compiled
// by the host compiler) reproduces it. Plain C++ header: the functions below are marked
// __host__ __device__ only when nvcc compiles them.
//
// The hash (written for dlkern):
//   mix(z)        = the 64-bit finaliser z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
//                   z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31  (a bijection)
//   key(seed, s)  = mix(mix(seed + 0x6A09E667F3BCC909) ^ s)   s: 0 uniform, 1 normal stream
//   bits(k, c)    = mix(mix(c + 0x9E3779B97F4A7C15) ^ k)
// For one key, bits is a bijection of the counter c, so a stream never repeats a word;
// the double mix decorrelates neighbouring counters and neighbouring seeds.
//   uniform float32: (bits >> 40) * 2^-24, float64: (bits >> 11) * 2^-53, in [0, 1).
//   normal (Box-Muller on the pair p = i / 2, counters 2p and 2p + 1 of the normal
//   stream, in double): u1 = ((bits(2p) >> 11) + 1) * 2^-53 in (0, 1] (log(u1) finite),
//   u2 = (bits(2p + 1) >> 11) * 2^-53, r = sqrt(-2 log u1), t = 2 pi u2;
//   element 2p = r cos t, element 2p + 1 = r sin t, rounded to the dtype.
// Uniform values are exact integer arithmetic (device == host bit for bit); normal ones
// go through log/cos/sin, whose last bit may differ between the CUDA and C libraries.
#pragma once
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define DLKERN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define DLKERN_HOST_DEVICE inline
#endif

namespace dlkern::cuda {

namespace rng {

DLKERN_HOST_DEVICE uint64_t mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

constexpr uint64_t kUniformStream = 0, kNormalStream = 1;

DLKERN_HOST_DEVICE uint64_t key(uint64_t seed, uint64_t stream) {
  return mix(mix(seed + 0x6A09E667F3BCC909ull) ^ stream);
}

DLKERN_HOST_DEVICE uint64_t bits(uint64_t key, uint64_t counter) {
  return mix(mix(counter + 0x9E3779B97F4A7C15ull) ^ key);
}

DLKERN_HOST_DEVICE float uniform_f32(uint64_t b) { return static_cast<float>(b >> 40) * 0x1p-24f; }
DLKERN_HOST_DEVICE double uniform_f64(uint64_t b) { return static_cast<double>(b >> 11) * 0x1p-53; }

template <typename T>
DLKERN_HOST_DEVICE T uniform_at(uint64_t uniform_key, uint64_t i) {
  if constexpr (sizeof(T) == 4)
    return uniform_f32(bits(uniform_key, i));
  else
    return uniform_f64(bits(uniform_key, i));
}

// Elements 2p and 2p + 1 of the normal stream (see the header comment), in double.
DLKERN_HOST_DEVICE void normal_pair(uint64_t normal_key, uint64_t p, double* even, double* odd) {
  const double u1 = static_cast<double>((bits(normal_key, 2 * p) >> 11) + 1) * 0x1p-53;
  const double u2 = static_cast<double>(bits(normal_key, 2 * p + 1) >> 11) * 0x1p-53;
  const double r = sqrt(-2.0 * log(u1));
  const double t = 6.283185307179586 * u2;  // 2 pi, rounded to double
  *even = r * cos(t);
  *odd = r * sin(t);
}

}  // namespace rng

// out: n contiguous elements, element i = rng::uniform_at<T>(key(seed, 0), i) (rand) or
// element i of the normal stream (randn). T float or double; queued on `stream`.
template <typename T>
void rand_uniform(T* out, int64_t n, uint64_t seed, cudaStream_t stream, const char* op);
template <typename T>
void rand_normal(T* out, int64_t n, uint64_t seed, cudaStream_t stream, const char* op);

}  // namespace dlkern::cuda
