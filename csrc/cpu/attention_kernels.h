// Attention kernels written once over a vector type S (simd.h), instantiated per ISA
// by cpu/isa_kernels.h. Plain loops only (no std templates in ISA code: cpu/isa.h).
//
// Layout. A tile's scores are kept transposed, S^T (keys x query rows), with query rows
// along the vector lanes. Every product of the forward and backward is then one shape,
// C[m, lanes] += sum_k A[m, k] * B[k, lanes] with A read as broadcast scalars through
// any strides: K and V are used in place (never packed or repeated), the row max / sum /
// exp of the online softmax are lane-wise (no horizontal reductions), and one tile can
// hold the rows of all query heads sharing a kv head, so each K/V row is read once per
// tile (GQA). A forward tile of few rows (a decode step: g query heads x a few positions)
// would leave most lanes empty; it uses rows x keys with lanes along D instead
// (forward_tile_rows), still reading each K/V row once for the whole group.
//
// Forward: one task per (b, kv head, tile of rows), online softmax over key tiles; when
// there are fewer tasks than threads the keys are split too and the partial (max, sum,
// output) merged (flash-decoding). Backward (FlashAttention-2): one task per (b, kv head),
// key tiles outer and row tiles inner, recomputing P from the saved lse; the task owns
// that group's dQ, dK and dV, so threads never write the same gradient.
//
// Rows. For batch b and kv head hk, the g = Hq/Hkv query heads give R = g*Tq rows,
// ordered r = i*g + (h - hk*g) so that a tile of consecutive rows spans few query
// positions (causal tiles stay triangular) and all heads of the group.
#pragma once

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t round_up(int64_t a, int64_t m) { return (a + m - 1) / m * m; }

// splitmix64's finaliser: the counter hash behind attention dropout.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
inline uint64_t dropout_row_key(uint64_t seed, int64_t b, int64_t h, int64_t i) {
  uint64_t x = mix64(seed + 0x9e3779b97f4a7c15ULL);
  x = mix64(x ^ static_cast<uint64_t>(b));
  x = mix64(x ^ static_cast<uint64_t>(h));
  return mix64(x ^ static_cast<uint64_t>(i));
}
// Uniform in [0, 1) for key j of the row: 53 bits of splitmix64's next value.
inline double dropout_uniform(uint64_t row_key, int64_t j) {
  return static_cast<double>(mix64(row_key + static_cast<uint64_t>(j) * 0x9e3779b97f4a7c15ULL) >> 11) *
         1.1102230246251565e-16;
}

// Sum of a vector's lanes; a shuffle tree where the ISA has one (the row tiles reduce
// one dot product per key and row).
template <typename S>
DLKERN_INLINE typename S::T lane_sum(typename S::V v) {
#if defined(DLKERN_SIMD_AVX512)
  if constexpr (S::L == 16) return _mm512_reduce_add_ps(v);
  else return _mm512_reduce_add_pd(v);
#elif defined(DLKERN_SIMD_AVX2)
  if constexpr (S::L == 8) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
  } else {
    const __m128d x = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(x, _mm_unpackhi_pd(x, x)));
  }
#else
  return S::hsum(v);
#endif
}

// out[k] = lane_sum(a[k]) for NK vectors; four float vectors share one shuffle tree.
template <typename S, int NK>
DLKERN_INLINE void lane_sums(const typename S::V* a, typename S::T* out) {
#if defined(DLKERN_SIMD_AVX512) || defined(DLKERN_SIMD_AVX2)
  if constexpr (NK == 4 && sizeof(typename S::T) == 4) {
    __m256 b[4];
    for (int k = 0; k < 4; ++k) {
#if defined(DLKERN_SIMD_AVX512)
      b[k] = _mm256_add_ps(_mm512_castps512_ps256(a[k]), _mm512_extractf32x8_ps(a[k], 1));
#else
      b[k] = a[k];
#endif
    }
    // hadd(hadd(b0, b1), hadd(b2, b3)): each 128-bit half holds the four partial sums.
    const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(b[0], b[1]), _mm256_hadd_ps(b[2], b[3]));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)));
    return;
  }
#endif
  for (int k = 0; k < NK; ++k) out[k] = lane_sum<S>(a[k]);
}

// exp(x) with results below the smallest normal float flushed to exactly 0 (float lanes),
// so masked scores (-inf) never take the microcode assist an underflowing scalef or
// multiply costs on x86 (it made causal tiles 2-3x slower). Such x are clamped before
// the exp and their results zeroed after; NaN passes through. float64 lanes: plain exp.
template <typename S>
DLKERN_INLINE typename S::V exp_flush(typename S::V x) {
  if constexpr (sizeof(typename S::T) == 8) {
    return S::exp(x);
  } else {
    constexpr float kLow = -87.33f;  // exp(kLow) ~ FLT_MIN
#if defined(DLKERN_SIMD_AVX512)
    const __m512 low = _mm512_set1_ps(kLow);
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, low, _CMP_LT_OQ);
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~tiny), S::exp(_mm512_mask_blend_ps(tiny, x, low)));
#elif defined(DLKERN_SIMD_AVX2)
    const __m256 low = _mm256_set1_ps(kLow);
    const __m256 tiny = _mm256_cmp_ps(x, low, _CMP_LT_OQ);
    return _mm256_andnot_ps(tiny, S::exp(_mm256_blendv_ps(x, low, tiny)));
#else
    const auto tiny = x < S::bcast(kLow);
    return S::select(tiny, S::bcast(0.0f), S::exp(S::select(tiny, S::bcast(kLow), x)));
#endif
  }
}

// Lane-wise choices by blend (never arithmetic, so a NaN or Inf in the lane not chosen
// cannot leak): if_pos(s, a, b) = s > 0 ? a : b; if_neg_inf(x, a, b) = x == -inf ? a : b.
template <typename S>
DLKERN_INLINE typename S::V if_pos(typename S::V s, typename S::V a, typename S::V b) {
  using T = typename S::T;
#if defined(DLKERN_SIMD_AVX512)
  if constexpr (sizeof(T) == 4)
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_GT_OQ), b, a);
  else
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(s, _mm512_setzero_pd(), _CMP_GT_OQ), b, a);
#elif defined(DLKERN_SIMD_AVX2)
  if constexpr (sizeof(T) == 4) return _mm256_blendv_ps(b, a, _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_GT_OQ));
  else return _mm256_blendv_pd(b, a, _mm256_cmp_pd(s, _mm256_setzero_pd(), _CMP_GT_OQ));
#else
  return S::select(s > S::bcast(T(0)), a, b);
#endif
}

template <typename S>
DLKERN_INLINE typename S::V if_neg_inf(typename S::V x, typename S::V a, typename S::V b) {
  using T = typename S::T;
  const typename S::V ninf = S::bcast(-__builtin_inf());
#if defined(DLKERN_SIMD_AVX512)
  if constexpr (sizeof(T) == 4) return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, ninf, _CMP_EQ_OQ), b, a);
  else return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, ninf, _CMP_EQ_OQ), b, a);
#elif defined(DLKERN_SIMD_AVX2)
  if constexpr (sizeof(T) == 4) return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, ninf, _CMP_EQ_OQ));
  else return _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, ninf, _CMP_EQ_OQ));
#else
  return S::select(x == ninf, a, b);
#endif
}

template <typename S>
struct AttentionKernels {
  using T = typename S::T;
  using V = typename S::V;
  using Problem = dlkern::cpu::AttentionProblem<T>;
  using View = dlkern::cpu::HeadView<T>;
  static constexpr int L = S::L;
  static constexpr int kMR = 4;               // micro-tile rows (broadcast scalars)
  static constexpr int kNV = L == 16 ? 4 : 2;  // micro-tile vectors: 16 (AVX-512) or 8 accumulators
  static constexpr int64_t kBr = 64;          // query rows per tile (a multiple of every L)
  static constexpr int64_t kBc = 64;          // keys per tile


  // An MR x NV-vector register tile:
  // C[m*ldc + v*L + lane] (+)= sum_k A[m*am + k*ak] * B[k*ldb + v*L + lane].
  template <int MR, int NV>
  static void micro(int64_t K, const T* A, int64_t am, int64_t ak, const T* B, int64_t ldb, T* C, int64_t ldc,
                    bool accumulate) {
    V c[MR][NV];
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[m][v] = accumulate ? S::load(C + m * ldc + v * L) : S::bcast(T(0));
    for (int64_t k = 0; k < K; ++k) {
      V b[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) b[v] = S::load(B + k * ldb + v * L);
#pragma GCC unroll 4
      for (int m = 0; m < MR; ++m) {
        const V a = S::bcast(A[m * am + k * ak]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) c[m][v] = S::fma(a, b[v], c[m][v]);
      }
    }
#pragma GCC unroll 4
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) S::store(C + m * ldc + v * L, c[m][v]);
  }

  // C (M x nvec*L, row stride ldc) (+)= A (M x K, strides am, ak) * B (K x nvec*L, row stride ldb).
  static void gemm(int64_t M, int64_t nvec, int64_t K, const T* A, int64_t am, int64_t ak, const T* B, int64_t ldb,
                   T* C, int64_t ldc, bool accumulate) {
    if (M <= 0) return;
    int64_t n = 0;
    for (; n + kNV <= nvec; n += kNV) gemm_columns<kNV>(M, K, A, am, ak, B + n * L, ldb, C + n * L, ldc, accumulate);
    if constexpr (kNV == 4) {
      if (nvec - n == 3) return gemm_columns<3>(M, K, A, am, ak, B + n * L, ldb, C + n * L, ldc, accumulate);
      if (nvec - n == 2) return gemm_columns<2>(M, K, A, am, ak, B + n * L, ldb, C + n * L, ldc, accumulate);
    }
    for (; n < nvec; ++n) gemm_columns<1>(M, K, A, am, ak, B + n * L, ldb, C + n * L, ldc, accumulate);
  }

  // All M rows of NV vector columns: whole kMR-row tiles, then the 1-3 leftover rows as
  // one tile (a decode step's few rows keep independent accumulator chains).
  template <int NV>
  static void gemm_columns(int64_t M, int64_t K, const T* A, int64_t am, int64_t ak, const T* B, int64_t ldb, T* C,
                           int64_t ldc, bool accumulate) {
    int64_t m = 0;
    for (; m + kMR <= M; m += kMR) micro<kMR, NV>(K, A + m * am, am, ak, B, ldb, C + m * ldc, ldc, accumulate);
    switch (M - m) {
      case 3: micro<3, NV>(K, A + m * am, am, ak, B, ldb, C + m * ldc, ldc, accumulate); break;
      case 2: micro<2, NV>(K, A + m * am, am, ak, B, ldb, C + m * ldc, ldc, accumulate); break;
      case 1: micro<1, NV>(K, A + m * am, am, ak, B, ldb, C + m * ldc, ldc, accumulate); break;
      default: break;
    }
  }

  // The rows r0 .. r0+nr-1 of the (b, hk) group: position, head and what masks them.
  struct Rows {
    int64_t nr = 0, padded = 0;  // padded: nr rounded up to whole vectors
    int64_t i[kBr], head[kBr], kend[kBr], moff[kBr];
    uint64_t dkey[kBr];
    int64_t kend_min = 0, kend_max = 0;  // keys j < kend[r] may take part in row r

    Rows(const Problem& pr, int64_t b, int64_t hk, int64_t r0, int64_t n) : nr(n), padded(round_up(n, L)) {
      const int64_t g = pr.Hq / pr.Hkv;
      kend_min = pr.Tk;
      kend_max = 0;
      for (int64_t rr = 0; rr < nr; ++rr) {
        const int64_t r = r0 + rr;
        i[rr] = r / g;
        head[rr] = hk * g + r % g;
        kend[rr] = pr.causal ? imax(0, imin(pr.Tk, i[rr] + pr.causal_offset + 1)) : pr.Tk;
        moff[rr] = b * pr.m_sb + head[rr] * pr.m_sh + i[rr] * pr.m_sq;
        dkey[rr] = pr.dropout_p > 0 ? dropout_row_key(pr.seed, b, head[rr], i[rr]) : 0;
        kend_min = imin(kend_min, kend[rr]);
        kend_max = imax(kend_max, kend[rr]);
      }
    }
  };

  // Causal limit and attn_mask on a tile of scores: key j0 + j of row rr at
  // ST[j * sj + rr * sr] (transposed tiles: sj = ld, sr = 1; row tiles: sj = 1, sr = ld).
  static void apply_masks(const Problem& pr, const Rows& rw, T* ST, int64_t sj, int64_t sr, int64_t j0, int64_t n) {
    if (pr.causal && j0 + n > rw.kend_min) {
      if (sr == 1) {
        // Vector form (scalar stores here would stall the vector loads that follow):
        // the score where kend - j - 1/2 > 0 (key j < kend), else -inf. A blend, not an
        // added -inf bias: a NaN or +inf score of a masked key must not survive.
        alignas(64) T lim[kBr];
        for (int64_t rr = 0; rr < rw.padded; ++rr) lim[rr] = rr < rw.nr ? T(rw.kend[rr] - j0) - T(0.5) : T(1e9);
        const V ninf = S::bcast(neg_inf<T>());
        for (int64_t j = imax(rw.kend_min - j0, 0); j < n; ++j) {
          const V jv = S::bcast(T(j));
          for (int64_t c = 0; c < rw.padded; c += L)
            S::store(ST + j * sj + c, if_pos<S>(S::sub(S::load(lim + c), jv), S::load(ST + j * sj + c), ninf));
        }
      } else {
        for (int64_t rr = 0; rr < rw.nr; ++rr)
          for (int64_t j = imax(rw.kend[rr] - j0, 0); j < n; ++j) ST[j * sj + rr * sr] = neg_inf<T>();
      }
    }
    if (pr.mask_kind == dlkern::cpu::MaskKind::boolean) {
      const unsigned char* mb = static_cast<const unsigned char*>(pr.mask);
      for (int64_t rr = 0; rr < rw.nr; ++rr) {
        const unsigned char* m = mb + rw.moff[rr] + j0 * pr.m_sk;
        for (int64_t j = 0; j < n; ++j)
          if (!m[j * pr.m_sk]) ST[j * sj + rr * sr] = neg_inf<T>();
      }
    } else if (pr.mask_kind == dlkern::cpu::MaskKind::additive) {
      const T* mf = static_cast<const T*>(pr.mask);
      for (int64_t rr = 0; rr < rw.nr; ++rr) {
        const T* m = mf + rw.moff[rr] + j0 * pr.m_sk;
        for (int64_t j = 0; j < n; ++j) {
          // -inf masks the key out: the score becomes -inf whatever it was (NaN included)
          const T a = m[j * pr.m_sk];
          T& x = ST[j * sj + rr * sr];
          x = a == neg_inf<T>() ? a : x + a;
        }
      }
    }
  }

  // Whether key j (absolute) is masked for row rr of rw: past its causal limit, false in a
  // bool mask or -inf in a float mask (padding rows count as masked).
  static bool key_masked(const Problem& pr, const Rows& rw, int64_t rr, int64_t j) {
    if (rr >= rw.nr || j >= rw.kend[rr]) return true;
    if (pr.mask_kind == dlkern::cpu::MaskKind::boolean)
      return !static_cast<const unsigned char*>(pr.mask)[rw.moff[rr] + j * pr.m_sk];
    if (pr.mask_kind == dlkern::cpu::MaskKind::additive)
      return static_cast<const T*>(pr.mask)[rw.moff[rr] + j * pr.m_sk] == neg_inf<T>();
    return false;
  }

  // Masked keys must contribute nothing, but a product with a zero weight still turns a
  // NaN or Inf in K or V into NaN (0 * Inf). Keys [first_masked, n) of the tile at j0 may
  // be masked for some row of rw; none before.
  static int64_t first_masked(const Problem& pr, const Rows& rw, int64_t j0, int64_t n) {
    if (pr.mask_kind != dlkern::cpu::MaskKind::none) return 0;
    if (pr.causal) return imin(n, imax(rw.kend_min - j0, 0));
    return n;
  }

  // bad[j] = whether row j of X (keys of a tile, row stride st, len values) holds a NaN
  // or Inf, for j in [lo, n); 0 below lo. Returns whether any does.
  static bool flag_nonfinite(const T* X, int64_t st, int64_t len, int64_t lo, int64_t n, unsigned char* bad) {
    bool any = false;
    const V zero = S::bcast(T(0));
    for (int64_t j = 0; j < n; ++j) {
      bad[j] = 0;
      if (j < lo) continue;
      V acc = zero;  // x * 0 is 0 for finite x, NaN for NaN or Inf
      for (int64_t d = 0; d < len; d += L) acc = S::add(acc, S::mul(load_n<S>(X + j * st + d, len - d, T(0)), zero));
      if (lane_sum<S>(acc) != T(0)) bad[j] = 1, any = true;
    }
    return any;
  }

  // Keys [lo, hi) in runs: run(ja, jb) for each maximal run of keys not flagged in bad,
  // one(j) for each flagged key (bad == nullptr: one run).
  template <class Run, class One>
  static void key_runs(const unsigned char* bad, int64_t lo, int64_t hi, Run&& run, One&& one) {
    if (!bad) {
      if (hi > lo) run(lo, hi);
      return;
    }
    for (int64_t j = lo; j < hi;) {
      if (bad[j]) {
        one(j++);
        continue;
      }
      int64_t e = j + 1;
      while (e < hi && !bad[e]) ++e;
      run(j, e);
      j = e;
    }
  }

  // X[j, rr] *= keep(j0 + j, rr) / (1 - p) (0 when dropped); Y, when given, gets P * that.
  // (Strides as apply_masks.)
  static void apply_dropout(const Problem& pr, const Rows& rw, T* X, T* Y, const T* P, int64_t sj, int64_t sr,
                            int64_t j0, int64_t n) {
    const T inv_keep = T(1.0 / (1.0 - pr.dropout_p));
    for (int64_t rr = 0; rr < rw.nr; ++rr)
      for (int64_t j = 0; j < n; ++j) {
        const T z = dropout_uniform(rw.dkey[rr], j0 + j) >= pr.dropout_p ? inv_keep : T(0);
        X[j * sj + rr * sr] *= z;
        if (Y) Y[j * sj + rr * sr] = P[j * sj + rr * sr] * z;
      }
  }

  // ---- forward ----

  // Online softmax over keys [k_lo, k_hi) for the rows rw of group (b, hk): OT (Dv x
  // padded) gets the unnormalised sum of p * v, m the row max, l the row sum of p.
  static void forward_tile(const Problem& pr, const Rows& rw, int64_t b, int64_t hk, int64_t k_lo, int64_t k_hi,
                           T* OT, T* m, T* l, T* ws) {
    const int64_t ld = rw.padded, nv = ld / L;
    T* QT = ws;                // D x ld, scaled queries, transposed
    T* ST = QT + pr.D * ld;    // kBc x ld
    T* alpha = ST + kBc * ld;  // ld
    const T* qrow[kBr];
    for (int64_t rr = 0; rr < ld; ++rr) {
      qrow[rr] = rr < rw.nr ? pr.q.row(b, rw.head[rr], rw.i[rr]) : nullptr;
      m[rr] = neg_inf<T>();
      l[rr] = T(0);
    }
    // Transposed in blocks of 8 columns, so each QT line is written in one burst.
    for (int64_t d0 = 0; d0 < pr.D; d0 += 8) {
      const int64_t d1 = imin(d0 + 8, pr.D);
      for (int64_t rr = 0; rr < ld; ++rr)
        for (int64_t d = d0; d < d1; ++d) QT[d * ld + rr] = rr < rw.nr ? qrow[rr][d] * pr.scale : T(0);
    }
    for (int64_t x = 0; x < pr.Dv * ld; ++x) OT[x] = T(0);
    k_hi = imin(k_hi, rw.kend_max);
    const V vbig = S::bcast(-max_finite<T>());
    for (int64_t j0 = k_lo; j0 < k_hi; j0 += kBc) {
      const int64_t n = imin(kBc, k_hi - j0);
      // Lane vector c needs keys [0, lim[c]) of this tile; below the causal diagonal
      // that is all n, on it the products stop at each vector's last row (lim rises with c).
      int64_t lim[kBr / L];
      const bool diagonal = causal_limits(rw, j0, n, lim);
      if (!diagonal) {
        gemm(n, nv, pr.D, pr.k.row(b, hk, j0), pr.k.st, 1, QT, ld, ST, ld, false);
      } else {
        for (int64_t c = 0, lo = 0; c < nv; lo = lim[c++]) {
          gemm(lim[c] - lo, nv - c, pr.D, pr.k.row(b, hk, j0 + lo), pr.k.st, 1, QT + c * L, ld, ST + lo * ld + c * L,
               ld, false);
          for (int64_t j = lim[c]; j < n; ++j) S::store(ST + j * ld + c * L, S::bcast(neg_inf<T>()));
        }
      }
      apply_masks(pr, rw, ST, ld, 1, j0, n);
      bool max_moved = false;  // alpha == 1 everywhere otherwise: skip rescaling OT
      for (int64_t c = 0; c < ld; c += L) {
        V mx = S::bcast(neg_inf<T>());
        for (int64_t j = 0; j < n; ++j) mx = S::max(mx, S::load(ST + j * ld + c));
        const V mold = S::load(m + c);
        const V mnew = S::max(mold, mx);
        const V muse = S::max(mnew, vbig);  // a row still all -inf subtracts a finite value
        V sum = S::bcast(T(0));
        for (int64_t j = 0; j < n; ++j) {
          const V e = exp_flush<S>(S::sub(S::load(ST + j * ld + c), muse));
          S::store(ST + j * ld + c, e);
          sum = S::add(sum, e);
        }
        const V a = exp_flush<S>(S::sub(mold, muse));
        S::store(alpha + c, a);
        if (S::hmax(S::sub(mnew, mold)) != T(0)) max_moved = true;
        S::store(l + c, S::fma(S::load(l + c), a, sum));
        S::store(m + c, mnew);
      }
      if (pr.dropout_p > 0) apply_dropout(pr, rw, ST, nullptr, nullptr, ld, 1, j0, n);
      if (max_moved && j0 != k_lo)  // (the first tile's OT is still 0)
        for (int64_t e = 0; e < pr.Dv; ++e)
          for (int64_t c = 0; c < ld; c += L)
            S::store(OT + e * ld + c, S::mul(S::load(OT + e * ld + c), S::load(alpha + c)));
      // P @ V. A masked key has p = 0, but 0 * (NaN or Inf in its V row) is NaN: such keys
      // (rare) are added lane by lane, skipping the rows that mask them.
      unsigned char bad[kBc];
      const int64_t fm = first_masked(pr, rw, j0, n);
      const bool any_bad = fm < n && flag_nonfinite(pr.v.row(b, hk, j0), pr.v.st, pr.Dv, fm, n, bad);
      auto pv = [&](int64_t lo, int64_t hi, int64_t c) {  // keys [lo, hi) into lane vectors c..
        key_runs(
            any_bad ? bad : nullptr, lo, hi,
            [&](int64_t ja, int64_t jb) {
              gemm(pr.Dv, nv - c, jb - ja, pr.v.row(b, hk, j0 + ja), 1, pr.v.st, ST + ja * ld + c * L, ld,
                   OT + c * L, ld, true);
            },
            [&](int64_t j) {
              const T* vr = pr.v.row(b, hk, j0 + j);
              for (int64_t rr = c * L; rr < rw.nr; ++rr) {
                if (key_masked(pr, rw, rr, j0 + j)) continue;
                const T p = ST[j * ld + rr];
                for (int64_t e = 0; e < pr.Dv; ++e) OT[e * ld + rr] += vr[e] * p;
              }
            });
      };
      if (!diagonal) {
        pv(0, n, 0);
      } else {
        for (int64_t c = 0, lo = 0; c < nv; lo = lim[c++]) pv(lo, lim[c], c);
      }
    }
  }

  // For a causal tile that crosses the diagonal: lim[c] = keys of the tile (from j0, at
  // most n) that lane vector c's rows may see; false when every row sees all n.
  static bool causal_limits(const Rows& rw, int64_t j0, int64_t n, int64_t* lim) {
    if (j0 + n <= rw.kend_min) return false;
    const int64_t nv = rw.padded / L;
    for (int64_t c = 0; c < nv; ++c) {
      int64_t hi = 0;
      for (int64_t rr = c * L; rr < imin((c + 1) * L, rw.nr); ++rr) hi = imax(hi, rw.kend[rr] - j0);
      lim[c] = imax(imin(hi, n), c > 0 ? lim[c - 1] : 0);  // rows are in position order: lim never falls
    }
    return true;
  }


  // Tiles of few rows (a decode step) use rows x keys layout with lanes along D instead,
  // so no lane is spent on absent rows: each K row is dotted with every query row of the
  // tile and each V row added to every output row, both read once per tile.
  static constexpr int64_t kMaxRowTile = L > 8 ? L / 2 : 4;
  static int64_t row_tile_ws(const Problem& pr) {
    return kMaxRowTile * (round_up(pr.D, L) + kBc + round_up(pr.Dv, L));
  }

  // out[r * kBc + k] = dot(row r of qs, K row k) for NR query rows (zero-padded to whole
  // vectors) and NK keys; the K rows' tails are loaded masked.
  template <int NR, int NK>
  static void dots_block(const T* K, int64_t kst, int64_t D, const T* qs, int64_t ldq, T* out) {
    const int64_t dfull = D / L * L;
    V acc[NR][NK];
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
      for (int k = 0; k < NK; ++k) acc[r][k] = S::bcast(T(0));
    for (int64_t d = 0; d < D; d += L) {
      V kv[NK];
#pragma GCC unroll 4
      for (int k = 0; k < NK; ++k)
        kv[k] = d < dfull ? S::load(K + k * kst + d) : S::load_tail(K + k * kst + d, D - d, T(0));
#pragma GCC unroll 4
      for (int r = 0; r < NR; ++r) {
        const V q = S::load(qs + r * ldq + d);
#pragma GCC unroll 4
        for (int k = 0; k < NK; ++k) acc[r][k] = S::fma(q, kv[k], acc[r][k]);
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; ++r) lane_sums<S, NK>(acc[r], out + r * kBc);
  }

  // Scores of NR query rows against n keys: 4 keys at a time where the registers allow
  // (their four horizontal sums share one shuffle tree), then one at a time.
  template <int NR>
  static void dots(const T* K, int64_t kst, int64_t n, int64_t D, const T* qs, int64_t ldq, T* out) {
    constexpr int NK = (L == 16 && sizeof(T) == 4) || NR <= 2 ? 4 : 1;
    int64_t j = 0;
    if constexpr (NK > 1)
      for (; j + NK <= n; j += NK) dots_block<NR, NK>(K + j * kst, kst, D, qs, ldq, out + j);
    for (; j < n; ++j) dots_block<NR, 1>(K + j * kst, kst, D, qs, ldq, out + j);
  }

  // Same contract as forward_tile (OT, m, l in the transposed layout finish_rows reads).
  static void forward_tile_rows(const Problem& pr, const Rows& rw, int64_t b, int64_t hk, int64_t k_lo,
                                int64_t k_hi, T* OT, T* m, T* l, T* ws) {
    const int64_t nr = rw.nr, ld = rw.padded, D = pr.D, Dv = pr.Dv;
    const int64_t Dp = round_up(D, L), Dvp = round_up(Dv, L), vfull = Dv / L;
    T* Qs = ws;               // nr x Dp, scaled queries
    T* Sr = Qs + nr * Dp;     // nr x kBc, scores then weights
    T* O = Sr + nr * kBc;     // nr x Dvp
    for (int64_t r = 0; r < nr; ++r) {
      const T* qr = pr.q.row(b, rw.head[r], rw.i[r]);
      for (int64_t d = 0; d < Dp; ++d) Qs[r * Dp + d] = d < D ? qr[d] * pr.scale : T(0);
      for (int64_t e = 0; e < Dvp; ++e) O[r * Dvp + e] = T(0);
      m[r] = neg_inf<T>();
      l[r] = T(0);
    }
    k_hi = imin(k_hi, rw.kend_max);
    for (int64_t j0 = k_lo; j0 < k_hi; j0 += kBc) {
      const int64_t n = imin(kBc, k_hi - j0);
      const T* Kb = pr.k.row(b, hk, j0);
      const T* Vb = pr.v.row(b, hk, j0);
      for (int64_t r = 0; r < nr; r += 4) {
        T* out = Sr + r * kBc;
        const T* qs = Qs + r * Dp;
        switch (imin(4, nr - r)) {
          case 1: dots<1>(Kb, pr.k.st, n, D, qs, Dp, out); break;
          case 2: dots<2>(Kb, pr.k.st, n, D, qs, Dp, out); break;
          case 3: dots<3>(Kb, pr.k.st, n, D, qs, Dp, out); break;
          default: dots<4>(Kb, pr.k.st, n, D, qs, Dp, out); break;
        }
      }
      apply_masks(pr, rw, Sr, 1, kBc, j0, n);
      for (int64_t r = 0; r < nr; ++r) {
        T* sr = Sr + r * kBc;
        V mx = S::bcast(neg_inf<T>());
        for (int64_t j = 0; j < n; j += L) mx = S::max(mx, load_n<S>(sr + j, n - j, neg_inf<T>()));
        const T mb = S::hmax(mx), mold = m[r], mnew = mb > mold ? mb : mold;
        const T muse = mnew > -max_finite<T>() ? mnew : -max_finite<T>();
        const V mu = S::bcast(muse);
        V sum = S::bcast(T(0));
        for (int64_t j = 0; j < n; j += L) {
          const V e = exp_flush<S>(S::sub(load_n<S>(sr + j, n - j, neg_inf<T>()), mu));
          store_n<S>(sr + j, e, n - j);
          sum = S::add(sum, e);
        }
        const T alpha = std::exp(mold - muse);
        l[r] = l[r] * alpha + lane_sum<S>(sum);
        m[r] = mnew;
        const V av = S::bcast(alpha);
        for (int64_t e = 0; e < Dvp; e += L) S::store(O + r * Dvp + e, S::mul(S::load(O + r * Dvp + e), av));
      }
      if (pr.dropout_p > 0) apply_dropout(pr, rw, Sr, nullptr, nullptr, 1, kBc, j0, n);
      // P @ V; masked keys whose V row holds a NaN or Inf are added row by row, skipping
      // the rows that mask them (as forward_tile).
      unsigned char bad[kBc];
      const int64_t fm = first_masked(pr, rw, j0, n);
      const bool any_bad = fm < n && flag_nonfinite(Vb, pr.v.st, Dv, fm, n, bad);
      if (vfull > 0)
        key_runs(
            any_bad ? bad : nullptr, 0, n,
            [&](int64_t ja, int64_t jb) {
              gemm(nr, vfull, jb - ja, Sr + ja, kBc, 1, Vb + ja * pr.v.st, pr.v.st, O, Dvp, true);
            },
            [&](int64_t j) {
              for (int64_t r = 0; r < nr; ++r) {
                if (key_masked(pr, rw, r, j0 + j)) continue;
                const T p = Sr[r * kBc + j];
                for (int64_t e = 0; e < vfull * L; ++e) O[r * Dvp + e] += p * Vb[j * pr.v.st + e];
              }
            });
      for (int64_t e = vfull * L; e < Dv; ++e)
        for (int64_t r = 0; r < nr; ++r) {
          T acc = T(0);
          for (int64_t j = 0; j < n; ++j) {
            if (any_bad && bad[j] && key_masked(pr, rw, r, j0 + j)) continue;
            acc += Sr[r * kBc + j] * Vb[j * pr.v.st + e];
          }
          O[r * Dvp + e] += acc;
        }
    }
    for (int64_t e = 0; e < Dv; ++e)
      for (int64_t r = 0; r < nr; ++r) OT[e * ld + r] = O[r * Dvp + e];
  }

  // Merges nsplit partial tiles (OT, m, l, each part `part` elements apart) of rows rw
  // into out and lse.
  static void finish_rows(const Problem& pr, const Rows& rw, int64_t b, const T* parts, int64_t part, int64_t nsplit,
                          T* out, T* lse) {
    const int64_t ld = rw.padded;
    for (int64_t rr = 0; rr < rw.nr; ++rr) {
      T mx = neg_inf<T>();
      for (int64_t s = 0; s < nsplit; ++s) {
        const T ms = parts[s * part + pr.Dv * ld + rr];
        mx = ms > mx ? ms : mx;
      }
      T* o = out + ((b * pr.Hq + rw.head[rr]) * pr.Tq + rw.i[rr]) * pr.Dv;
      T* ls = lse + (b * pr.Hq + rw.head[rr]) * pr.Tq + rw.i[rr];
      T w[64];
      T tot = T(0);
      for (int64_t s = 0; s < nsplit; ++s) {
        const T* p = parts + s * part;
        w[s] = mx == neg_inf<T>() ? T(0) : std::exp(p[pr.Dv * ld + rr] - mx);
        tot += w[s] * p[pr.Dv * ld + ld + rr];
      }
      if (tot == T(0)) {  // no key left (a NaN total falls through and propagates)
        for (int64_t e = 0; e < pr.Dv; ++e) o[e] = T(0);
        *ls = neg_inf<T>();
        continue;
      }
      for (int64_t s = 0; s < nsplit; ++s) w[s] /= tot;
      for (int64_t e = 0; e < pr.Dv; ++e) {
        T acc = T(0);
        for (int64_t s = 0; s < nsplit; ++s) acc += w[s] * parts[s * part + e * ld + rr];
        o[e] = acc;
      }
      *ls = mx + std::log(tot);
    }
  }

  // This thread's scratch, or nullptr (and `failed` set) when it cannot be allocated: an
  // exception may not leave an OpenMP region, so callers throw after it.
  static T* thread_workspace(int64_t elems, bool& failed) {
    static thread_local dlkern::AlignedBuffer buf;
    try {
      return buf.reserve_elements<T>(static_cast<size_t>(elems));
    } catch (...) {
#pragma omp atomic write
      failed = true;
      return nullptr;
    }
  }

  static void forward(const Problem& pr, T* out, T* lse, int nthreads) {
    const int64_t g = pr.Hq / pr.Hkv, R = g * pr.Tq;
    const int64_t nqb = (R + kBr - 1) / kBr, groups = pr.B * pr.Hkv, tasks = groups * nqb;
    const int64_t nkb = (pr.Tk + kBc - 1) / kBc;
    // Too few tiles for the threads (a decode step): split the keys too and merge the
    // partial max / sum / output afterwards (flash-decoding).
    int64_t nsplit = 1;
    if (tasks < nthreads && nkb > 1) nsplit = imin(imin(nkb, nthreads / tasks), 64);
    const int64_t kb_per_split = (nkb + nsplit - 1) / nsplit;
    const int64_t part = (pr.Dv + 2) * kBr;  // OT, m, l of one tile
    const int64_t ws_elems = imax((pr.D + kBc + 1) * kBr, row_tile_ws(pr));
    dlkern::AlignedBuffer split_buf;
    T* parts = nsplit > 1 ? split_buf.reserve_elements<T>(static_cast<size_t>(tasks * nsplit * part)) : nullptr;
    bool out_of_memory = false;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic) if (nthreads > 1)
    for (int64_t t = 0; t < tasks * nsplit; ++t) {
      const int64_t s = t % nsplit, task = t / nsplit, qb = task % nqb, grp = task / nqb;
      const int64_t b = grp / pr.Hkv, hk = grp % pr.Hkv, r0 = qb * kBr;
      const Rows rw(pr, b, hk, r0, imin(kBr, R - r0));
      T* ws = thread_workspace(ws_elems + (nsplit > 1 ? 0 : part), out_of_memory);
      if (!ws) continue;
      T* tile = nsplit > 1 ? parts + t * part : ws + ws_elems;
      const int64_t ld = rw.padded;
      const int64_t k_lo = s * kb_per_split * kBc, k_hi = imin(pr.Tk, (s + 1) * kb_per_split * kBc);
      if (rw.nr <= kMaxRowTile)
        forward_tile_rows(pr, rw, b, hk, k_lo, k_hi, tile, tile + pr.Dv * ld, tile + pr.Dv * ld + ld, ws);
      else
        forward_tile(pr, rw, b, hk, k_lo, k_hi, tile, tile + pr.Dv * ld, tile + pr.Dv * ld + ld, ws);
      if (nsplit == 1) finish_rows(pr, rw, b, tile, part, 1, out, lse);
    }
    if (out_of_memory) throw std::bad_alloc();
    if (nsplit == 1) return;
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t qb = task % nqb, grp = task / nqb, b = grp / pr.Hkv, hk = grp % pr.Hkv, r0 = qb * kBr;
      const Rows rw(pr, b, hk, r0, imin(kBr, R - r0));
      finish_rows(pr, rw, b, parts + task * nsplit * part, part, nsplit, out, lse);
    }
  }

  // ---- backward (FlashAttention-2 style) ----

  // One task per (b, kv head): it owns dK/dV of its keys and dQ of its g*Tq rows, so no
  // two threads write the same gradient. Keys in tiles (outer), query rows inner.
  // Key tiles kb0, kb0 + step, ... of group (b, hk): writes their dK / dV rows, and dQ^T
  // (D x Rp, summed over these keys only) into dQT_part when given, else dQ itself.
  static void backward_group(const Problem& pr, const View& dout, const View& o, const T* lse, int64_t b, int64_t hk,
                             int64_t kb0, int64_t step, T* dq, T* dk, T* dv, T* dQT_part, bool& out_of_memory) {
    const int64_t g = pr.Hq / pr.Hkv, R = g * pr.Tq, Rp = round_up(R, L);
    const int64_t D = pr.D, Dv = pr.Dv, Dp = round_up(D, L), Dvp = round_up(Dv, L);
    T* QT = thread_workspace(D * Rp * 2 + Dv * Rp + Rp * Dp + Rp * Dvp + 2 * Rp + 4 * kBc * kBr + kBc * (Dp + Dvp),
                             out_of_memory);
    if (!QT) return;
    T* dQT = dQT_part ? dQT_part : QT + D * Rp;  // D x Rp
    T* dOT = QT + 2 * D * Rp;  // Dv x Rp
    T* Qr = dOT + Dv * Rp;    // Rp x Dp
    T* dOr = Qr + Rp * Dp;    // Rp x Dvp
    T* lse_r = dOr + Rp * Dvp;
    T* delta = lse_r + Rp;
    T* ST = delta + Rp;       // kBc x kBr each
    T* dPT = ST + kBc * kBr;
    T* PdT = dPT + kBc * kBr;
    T* KeepT = PdT + kBc * kBr;  // 1 where the score was not masked (-inf), else 0
    T* dKb = KeepT + kBc * kBr;  // kBc x Dp
    T* dVb = dKb + kBc * Dp;  // kBc x Dvp
    // Rows padded to whole vectors (and columns to whole vectors in Qr / dOr) are zero;
    // padding lanes get lse = +inf so their p is 0. A fully masked row's lse = -inf is
    // made finite: its scores are all -inf, so its p is 0 too. A NaN lse (a row that saw a
    // NaN) stays NaN.
    for (int64_t x = 0; x < Rp * Dp; ++x) Qr[x] = T(0);
    for (int64_t x = 0; x < Rp * Dvp; ++x) dOr[x] = T(0);
    for (int64_t x = 0; x < D * Rp; ++x) QT[x] = dQT[x] = T(0);
    for (int64_t x = 0; x < Dv * Rp; ++x) dOT[x] = T(0);
    for (int64_t r = 0; r < Rp; ++r) {
      delta[r] = T(0);
      lse_r[r] = __builtin_inf();
    }
    for (int64_t r = 0; r < R; ++r) {
      const int64_t i = r / g, h = hk * g + r % g;
      const T* qr = pr.q.row(b, h, i);
      const T* gr = dout.row(b, h, i);
      const T* orow = o.row(b, h, i);
      T* qd = Qr + r * Dp;
      T* gd = dOr + r * Dvp;
      for (int64_t d = 0; d < D; ++d) qd[d] = qr[d];
      for (int64_t e = 0; e < Dv; ++e) gd[e] = gr[e];
      double dot = 0;
      for (int64_t e = 0; e < Dv; ++e) dot += static_cast<double>(gr[e]) * orow[e];
      delta[r] = T(dot);
      const T ls = lse[(b * pr.Hq + h) * pr.Tq + i];
      lse_r[r] = ls < -max_finite<T>() ? -max_finite<T>() : ls;
    }
    transpose(Qr, Dp, R, D, pr.scale, QT, Rp);
    transpose(dOr, Dvp, R, Dv, T(1), dOT, Rp);
    const V vscale = S::bcast(pr.scale);
    for (int64_t j0 = kb0 * kBc; j0 < pr.Tk; j0 += step * kBc) {
      const int64_t n = imin(kBc, pr.Tk - j0);
      const T* Kb = pr.k.row(b, hk, j0);
      const T* Vb = pr.v.row(b, hk, j0);
      for (int64_t x = 0; x < n * Dp; ++x) dKb[x] = T(0);
      for (int64_t x = 0; x < n * Dvp; ++x) dVb[x] = T(0);
      for (int64_t r0 = 0; r0 < R; r0 += kBr) {
        const Rows rw(pr, b, hk, r0, imin(kBr, R - r0));
        if (rw.kend_max <= j0) continue;  // every row of the tile ends before these keys
        const int64_t ld = rw.padded, nv = ld / L;
        // On the causal diagonal, lane vector c only pairs with keys [0, lim[c]) (as in
        // the forward): products skip the rest, whose P is 0.
        int64_t lim[kBr / L];
        const bool diagonal = causal_limits(rw, j0, n, lim);
        if (!diagonal) {
          gemm(n, nv, D, Kb, pr.k.st, 1, QT + r0, Rp, ST, ld, false);
          gemm(n, nv, Dv, Vb, pr.v.st, 1, dOT + r0, Rp, dPT, ld, false);
        } else {
          for (int64_t c = 0, lo = 0; c < nv; lo = lim[c++]) {
            gemm(lim[c] - lo, nv - c, D, Kb + lo * pr.k.st, pr.k.st, 1, QT + r0 + c * L, Rp, ST + lo * ld + c * L, ld,
                 false);
            gemm(lim[c] - lo, nv - c, Dv, Vb + lo * pr.v.st, pr.v.st, 1, dOT + r0 + c * L, Rp, dPT + lo * ld + c * L,
                 ld, false);
            for (int64_t j = lim[c]; j < n; ++j) {
              S::store(ST + j * ld + c * L, S::bcast(neg_inf<T>()));
              S::store(dPT + j * ld + c * L, S::bcast(T(0)));
            }
          }
        }
        apply_masks(pr, rw, ST, ld, 1, j0, n);
        // Tiles with masked scores (-inf after apply_masks): p and dS there are set to
        // exactly 0, whatever the V row (dP) or the row's lse and delta hold.
        const int64_t fm = first_masked(pr, rw, j0, n);
        const bool masked = fm < n;
        const V zero = S::bcast(T(0)), one = S::bcast(T(1));
        for (int64_t c = 0; c < ld; c += L) {
          const V ls = S::load(lse_r + r0 + c);
          if (!masked) {
            for (int64_t j = 0; j < n; ++j)
              S::store(ST + j * ld + c, exp_flush<S>(S::sub(S::load(ST + j * ld + c), ls)));
            continue;
          }
          for (int64_t j = 0; j < n; ++j) {
            const V x = S::load(ST + j * ld + c);
            S::store(ST + j * ld + c, if_neg_inf<S>(x, zero, exp_flush<S>(S::sub(x, ls))));
            S::store(KeepT + j * ld + c, if_neg_inf<S>(x, zero, one));
          }
        }
        const T* Pd = ST;
        if (pr.dropout_p > 0) {
          apply_dropout(pr, rw, dPT, PdT, ST, ld, 1, j0, n);
          Pd = PdT;
        }
        for (int64_t c = 0; c < ld; c += L) {
          const V dl = S::load(delta + r0 + c);
          for (int64_t j = 0; j < n; ++j) {
            V ds = S::mul(S::mul(S::load(ST + j * ld + c), S::sub(S::load(dPT + j * ld + c), dl)), vscale);
            if (masked) ds = if_pos<S>(S::load(KeepT + j * ld + c), ds, zero);
            S::store(dPT + j * ld + c, ds);
          }
        }
        // dQ += dS K: dS is 0 for a masked key, but 0 * (NaN or Inf in its K row) is NaN, so
        // such keys (rare) are added lane by lane, skipping the rows that mask them.
        unsigned char bad[kBc];
        const bool any_bad = masked && flag_nonfinite(Kb, pr.k.st, D, fm, n, bad);
        auto dq_keys = [&](int64_t lo, int64_t hi, int64_t c) {  // keys [lo, hi) into lane vectors c..
          key_runs(
              any_bad ? bad : nullptr, lo, hi,
              [&](int64_t ja, int64_t jb) {
                gemm(D, nv - c, jb - ja, Kb + ja * pr.k.st, 1, pr.k.st, dPT + ja * ld + c * L, ld, dQT + r0 + c * L,
                     Rp, true);
              },
              [&](int64_t j) {
                const T* kr = Kb + j * pr.k.st;
                for (int64_t rr = c * L; rr < rw.nr; ++rr) {
                  if (key_masked(pr, rw, rr, j0 + j)) continue;
                  const T ds = dPT[j * ld + rr];
                  for (int64_t d = 0; d < D; ++d) dQT[d * Rp + r0 + rr] += kr[d] * ds;
                }
              });
        };
        if (!diagonal) {
          gemm(n, Dvp / L, rw.nr, Pd, ld, 1, dOr + r0 * Dvp, Dvp, dVb, Dvp, true);
          gemm(n, Dp / L, rw.nr, dPT, ld, 1, Qr + r0 * Dp, Dp, dKb, Dp, true);
          dq_keys(0, n, 0);
        } else {
          for (int64_t c = 0, lo = 0; c < nv; lo = lim[c++]) {
            // keys [lo, lim[c]) pair with the rows of vectors c.. only
            const int64_t m = lim[c] - lo, rows = rw.nr - c * L, x = c * L;
            if (m <= 0) continue;
            gemm(m, Dvp / L, rows, Pd + lo * ld + x, ld, 1, dOr + (r0 + x) * Dvp, Dvp, dVb + lo * Dvp, Dvp, true);
            gemm(m, Dp / L, rows, dPT + lo * ld + x, ld, 1, Qr + (r0 + x) * Dp, Dp, dKb + lo * Dp, Dp, true);
            dq_keys(lo, lim[c], c);
          }
        }
      }
      T* dkr = dk + ((b * pr.Hkv + hk) * pr.Tk + j0) * D;
      T* dvr = dv + ((b * pr.Hkv + hk) * pr.Tk + j0) * Dv;
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t d = 0; d < D; ++d) dkr[j * D + d] = dKb[j * Dp + d];
        for (int64_t e = 0; e < Dv; ++e) dvr[j * Dv + e] = dVb[j * Dvp + e];
      }
    }
    if (!dQT_part) write_dq(pr, b, hk, &dQT, 1, dq);
  }

  // dq rows of group (b, hk) = the sum of the nparts dQ^T blocks (D x Rp) parts[s].
  static void write_dq(const Problem& pr, int64_t b, int64_t hk, T* const* parts, int64_t nparts, T* dq) {
    const int64_t g = pr.Hq / pr.Hkv, R = g * pr.Tq, Rp = round_up(R, L), D = pr.D;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t i = r / g, h = hk * g + r % g;
      T* dqr = dq + ((b * pr.Hq + h) * pr.Tq + i) * D;
      for (int64_t d = 0; d < D; ++d) {
        T acc = parts[0][d * Rp + r];
        for (int64_t s = 1; s < nparts; ++s) acc += parts[s][d * Rp + r];
        dqr[d] = acc;
      }
    }
  }

  // dst[c * ldd + r] = src[r * lds + c] * mul for r < rows, c < cols, in 8 x 8 blocks
  // (each source line and destination line touched once per block).
  static void transpose(const T* src, int64_t lds, int64_t rows, int64_t cols, T mul, T* dst, int64_t ldd) {
    for (int64_t r0 = 0; r0 < rows; r0 += 8)
      for (int64_t c0 = 0; c0 < cols; c0 += 8)
        for (int64_t c = c0; c < imin(c0 + 8, cols); ++c)
          for (int64_t r = r0; r < imin(r0 + 8, rows); ++r) dst[c * ldd + r] = src[r * lds + c] * mul;
  }

  static void backward(const Problem& pr, View dout, View o, const T* lse, T* dq, T* dk, T* dv, int nthreads) {
    const int64_t groups = pr.B * pr.Hkv, nkb = (pr.Tk + kBc - 1) / kBc;
    // Fewer groups than threads (batch 1 with few kv heads): split the key tiles too,
    // round robin (causal work shrinks along the keys); each split owns its dK/dV rows and
    // leaves a partial dQ^T, summed afterwards.
    const int64_t nsplit = groups < nthreads && nkb > 1 ? imin(imin(nkb, nthreads / groups), 64) : 1;
    const int64_t part = pr.D * round_up((pr.Hq / pr.Hkv) * pr.Tq, L);
    dlkern::AlignedBuffer split_buf;
    T* parts = nsplit > 1 ? split_buf.reserve_elements<T>(static_cast<size_t>(groups * nsplit * part)) : nullptr;
    bool out_of_memory = false;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic) if (nthreads > 1)
    for (int64_t t = 0; t < groups * nsplit; ++t) {
      const int64_t grp = t / nsplit, s = t % nsplit;
      backward_group(pr, dout, o, lse, grp / pr.Hkv, grp % pr.Hkv, s, nsplit, dq, dk, dv,
                     parts ? parts + t * part : nullptr, out_of_memory);
    }
    if (out_of_memory) throw std::bad_alloc();
    if (nsplit == 1) return;
    T* split_parts[64];
    for (int64_t grp = 0; grp < groups; ++grp) {
      for (int64_t s = 0; s < nsplit; ++s) split_parts[s] = parts + (grp * nsplit + s) * part;
      write_dq(pr, grp / pr.Hkv, grp % pr.Hkv, split_parts, nsplit, dq);
    }
  }
};
