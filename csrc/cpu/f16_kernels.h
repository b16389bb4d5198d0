// float16 (IEEE binary16) kernels of one ISA (cpu/f16.h): the conversions, bit for bit
// NumPy's astype (round to nearest even, subnormals rounded like any other value, past
// 65504 + half an ulp to Inf, NaN payloads kept without forcing the quiet bit, which is
// what NumPy does and F16C does not). Included by cpu/bf16_kernels.h, inside its
// anonymous namespace, before the GEMM fallback that widens f16 panels with widen().

namespace f16 {

// float32 bits -> binary16 bits, the portable reference of every path (generic runs it
// alone; the F16C paths below fall back to it for NaN lanes).
DLKERN_INLINE uint16_t round_one(uint32_t u) {
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN: NumPy keeps the payload's top 10 bits, and a NaN
    const uint32_t r = 0x7c00u + ((a & 0x7fffffu) >> 13);  // whose top bits are all
    return static_cast<uint16_t>(sign | (r == 0x7c00u ? 0x7c01u : r));  // zero stays one
  }
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520, the tie above 65504: Inf
  if (a >= 0x38800000u) {                      // >= 2^-14: a normal half
    uint32_t r = a - (112u << 23);             // rebias the exponent (127 -> 15)
    r += 0xfffu + ((r >> 13) & 1u);            // RNE; a carry bumps the exponent
    return static_cast<uint16_t>(sign | (r >> 13));
  }
  // A subnormal half: round a * 2^24 to an integer (ties to even).
  const int e = static_cast<int>(a >> 23);
  if (e < 102) return sign;  // below 2^-25 (float32 subnormals too): zero
  const uint32_t m = (a & 0x7fffffu) | 0x800000u;
  const int s = 126 - e;  // 14..24
  const uint32_t q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1);
  return static_cast<uint16_t>(sign | (q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u)));
}

// binary16 -> float32 (exact), branch-free so the GEMM's packing loops stay cheap: the
// bits moved into a float32's fields, Inf/NaN given the top exponent (payload as is),
// subnormals renormalised by one float subtraction (exact: the result is a normal float).
DLKERN_INLINE float widen(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t o = uint32_t(h & 0x7fffu) << 13;
  const uint32_t exp = o & 0x0f800000u;
  o += 112u << 23;
  float f;
  if (exp == 0x0f800000u) {
    o += 112u << 23;
    std::memcpy(&f, &o, 4);
  } else if (exp == 0) {
    o += 1u << 23;
    float magic;
    const uint32_t magic_bits = 113u << 23;
    std::memcpy(&f, &o, 4);
    std::memcpy(&magic, &magic_bits, 4);
    f -= magic;
  } else {
    std::memcpy(&f, &o, 4);
  }
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
}

void from_f32_scalar(const float* x, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    dst[i] = round_one(u);
  }
}

void to_f32_scalar(const uint16_t* x, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = widen(x[i]);
}

#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
// F16C (every AVX2 CPU has it; the table checks anyway): 8 lanes per instruction with
// the rounding given explicitly, so MXCSR's mode does not matter. Output subnormals are
// never flushed by vcvtps2ph, and float32 subnormal inputs all round to zero either way.
[[gnu::target("f16c")]] void from_f32_f16c(const float* x, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    if (nan) from_f32_scalar(x + i, dst + i, 8);  // NumPy's NaN payloads (rare)
  }
  from_f32_scalar(x + i, dst + i, n - i);
}

[[gnu::target("f16c")]] void to_f32_f16c(const uint16_t* x, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(dst + i, v);
    // vcvtph2ps sets a signalling NaN's quiet bit; NumPy keeps the bits.
    if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) to_f32_scalar(x + i, dst + i, 8);
  }
  to_f32_scalar(x + i, dst + i, n - i);
}

bool has_f16c() { return __builtin_cpu_supports("f16c"); }
#endif

}  // namespace f16
