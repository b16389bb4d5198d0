// The blocked GEMM algorithm, written once over simd.h's vector types and instantiated
// per ISA by cpu/isa_kernels.h (each ISA's register tile and blocking are at the end).
//
// Traits S provide: T (float/double), V (vector), L (lanes), zero(), load(p), store(p, v),
// bcast(x), fma(a, b, c) = a*b + c, mul(a, b).
//
// Loop nest (BLIS order): jc over NC columns -> pc over KC depth -> pack B block
// (shared by the threads, sized for L3) -> ic over MC rows -> pack A block (per thread,
// sized for L2) -> jr over NR panels -> ir over MR panels -> MR x NR micro-kernel whose
// accumulators live in registers while the B micro-panel stays in L1.
//
// Only trivially inlined std helpers (std::min) are used here (see cpu/isa.h).

// AS_: the depth stride of a packed A panel, MR_ except for the tail kernels (fewer rows
// than the main tile) that read the main tile's zero-padded panels.
template <class S, int MR_, int NV_, int AS_ = MR_>
struct GemmKernel {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int MR = MR_;
  static constexpr int NR = NV_ * S::L;
  // Cache lines of one C tile row and of the whole tile (a row at a 64-byte boundary).
  static constexpr int kLine = 64 / sizeof(T);
  static constexpr int kRowLines = (NR + kLine - 1) / kLine;
  static constexpr int kTileLines = MR * kRowLines;
  // Whether micro() fetches the next C tile spread over its depth loop (see micro) rather
  // than all at once before the call. Measured on Zen 4: spreading the AVX-512 tiles'
  // 16-24 lines took float32 from 90-92% to 94-96% of the FMA peak at n = 1024-2048
  // (bench/results/issue16_f32_gemm_peak.md); AVX2's 6-line tile measured 2-3% slower
  // spread (the per-step check weighs more in its 12-FMA depth step), so it keeps the
  // burst.
  static constexpr bool kSpreadPrefetch = kTileLines > 8;

  // C[0:MR, 0:NR] = alpha * (A_panel * B_panel) + beta * C. B_panel is (kc, NR) with
  // row stride b_rs (NR when packed). A_panel is packed (kc, MR) when A_PACKED, else
  // read in place from MR rows at stride a_rs with unit column stride (small path).
  // Never inlined: inlined into run_small, GCC 12 spilled an accumulator of AVX2's
  // 15-register tile to the stack (a store-to-load chain through every depth step: half
  // speed); alone, the tile and the row pointers have the registers to themselves. A
  // call lasts thousands of cycles, so the call costs nothing.
  // next_c: the C tile (same ldc) the next call will update, or nullptr; with
  // kSpreadPrefetch its cache lines are prefetched one at a time, every few depth steps,
  // instead of all at once before the call: a burst of prefetches that miss to L3/DRAM
  // holds the L1 miss buffers that the B panel's stream from L2 needs, stalling the
  // first hundreds of cycles of every call.
  template <bool A_PACKED = true>
  [[gnu::noinline]] static void micro(int64_t kc, const T* __restrict a, int64_t a_rs, const T* __restrict b,
                    int64_t b_rs, T* __restrict c, int64_t ldc, T alpha, T beta,
                    const T* next_c = nullptr) {
    V acc[MR][NV_];
    // One line every 2^shift depth steps, 8 at most (all lines issued within the first
    // 8 * kTileLines steps), fewer when kc is short so that every line is still issued.
    int shift = 3;
    while (shift > 0 && (int64_t(kTileLines) << shift) > kc) --shift;
    const int64_t mask = (int64_t(1) << shift) - 1;
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NV_; ++j) acc[i][j] = S::zero();

#pragma GCC unroll 4
    for (int64_t p = 0; p < kc; ++p) {
      if (kSpreadPrefetch && next_c && (p & mask) == 0 && (p >> shift) < kTileLines) {
        const int l = static_cast<int>(p >> shift);
        __builtin_prefetch(next_c + (l / kRowLines) * ldc + (l % kRowLines) * kLine, 1, 3);
      }
      V bv[NV_];
#pragma GCC unroll 8
      for (int j = 0; j < NV_; ++j) bv[j] = S::load(b + j * S::L);
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) {
        const V av = S::bcast(A_PACKED ? a[i] : a[i * a_rs]);
#pragma GCC unroll 8
        for (int j = 0; j < NV_; ++j) acc[i][j] = S::fma(av, bv[j], acc[i][j]);
      }
      a += A_PACKED ? AS_ : 1;
      b += b_rs;
    }

    const V valpha = S::bcast(alpha);
    if (beta == T(0)) {
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV_; ++j) S::store(c + i * ldc + j * S::L, S::mul(valpha, acc[i][j]));
    } else {
      const V vbeta = S::bcast(beta);
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV_; ++j) {
          T* cp = c + i * ldc + j * S::L;
          S::store(cp, S::fma(vbeta, S::load(cp), S::mul(valpha, acc[i][j])));
        }
    }
  }

  // A tile that does not fill MR x NR (operands zero-padded to a full tile): compute
  // the full tile into a scratch tile, then merge only the valid part into C. A tile
  // at most half as wide runs the half-width kernel on the same B panel (it reads only
  // the first columns of each row), so thin right edges do not cost a full tile.
  template <bool A_PACKED = true>
  static void micro_edge(int64_t kc, const T* a, int64_t a_rs, const T* b, int64_t b_rs, T* c,
                         int64_t ldc, T alpha, T beta, int rows, int cols) {
    using Half = GemmKernel<S, MR, (NV_ + 1) / 2, AS_>;
    if constexpr (NV_ > 1) {
      if (cols <= Half::NR) {
        Half::template micro_edge<A_PACKED>(kc, a, a_rs, b, b_rs, c, ldc, alpha, beta, rows, cols);
        return;
      }
    }
    alignas(64) T tile[MR * NR];
    micro<A_PACKED>(kc, a, a_rs, b, b_rs, tile, NR, T(1), T(0));
    for (int i = 0; i < rows; ++i) {
      T* cr = c + i * ldc;
      const T* tr = tile + i * NR;
      if (beta == T(0)) {
        for (int j = 0; j < cols; ++j) cr[j] = alpha * tr[j];
      } else {
        for (int j = 0; j < cols; ++j) cr[j] = alpha * tr[j] + beta * cr[j];
      }
    }
  }

  // Tiles of fewer than MR rows (the last row panel: M = 32 leaves 2 rows of a 6-row
  // tile) run a kernel with exactly that many rows, straight into C when the tile is
  // full width: no FMAs on padding rows, no scratch tile to merge. Rows read in place
  // need no padding at all, so the last panel of a row-major A is never packed.
  template <bool A_PACKED, int R = 1>
  static void tail(int64_t kc, const T* a, int64_t a_rs, const T* b, int64_t b_rs, T* c, int64_t ldc,
                   T alpha, T beta, int rows, int cols) {
    if constexpr (R < MR) {
      if (rows != R) {
        tail<A_PACKED, R + 1>(kc, a, a_rs, b, b_rs, c, ldc, alpha, beta, rows, cols);
        return;
      }
      using Tail = GemmKernel<S, R, NV_, AS_>;
      if (cols == NR)
        Tail::template micro<A_PACKED>(kc, a, a_rs, b, b_rs, c, ldc, alpha, beta);
      else
        Tail::template micro_edge<A_PACKED>(kc, a, a_rs, b, b_rs, c, ldc, alpha, beta, rows, cols);
    } else {
      micro_edge<A_PACKED>(kc, a, a_rs, b, b_rs, c, ldc, alpha, beta, rows, cols);
    }
  }

  // Pack rows [0, mc) x depth [0, kc) of A into MR-row panels laid out (kc, MR),
  // zero-padding the last panel.
  static void pack_a(const T* a, int64_t a_rs, int64_t a_cs, int64_t mc, int64_t kc, T* dst) {
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
      const int rows = static_cast<int>(std::min<int64_t>(MR, mc - i0));
      const T* src = a + i0 * a_rs;
      if (rows == MR && a_cs == 1) {
        // Row-major A: MR row streams interleaved into the panel.
        const T* r[MR];
        for (int i = 0; i < MR; ++i) r[i] = src + i * a_rs;
        for (int64_t p = 0; p < kc; ++p) {
#pragma GCC unroll 32
          for (int i = 0; i < MR; ++i) dst[p * MR + i] = r[i][p];
        }
      } else if (rows == MR && a_rs == 1) {
        // Transposed A: each depth step is MR contiguous elements.
        for (int64_t p = 0; p < kc; ++p) std::memcpy(dst + p * MR, src + p * a_cs, MR * sizeof(T));
      } else {
        for (int64_t p = 0; p < kc; ++p)
          for (int i = 0; i < MR; ++i) dst[p * MR + i] = i < rows ? src[i * a_rs + p * a_cs] : T(0);
      }
      dst += MR * kc;
    }
  }

  // Pack NR-column panels [panel0, panel1) of a (kc, nc) block of B, laid out (kc, NR),
  // zero-padding the last panel.
  static void pack_b(const T* b, int64_t b_rs, int64_t b_cs, int64_t kc, int64_t nc,
                     int64_t panel0, int64_t panel1, T* dst) {
    for (int64_t jp = panel0; jp < panel1; ++jp) {
      const int64_t j0 = jp * NR;
      const int cols = static_cast<int>(std::min<int64_t>(NR, nc - j0));
      const T* src = b + j0 * b_cs;
      T* out = dst + jp * NR * kc;
      if (cols == NR && b_cs == 1) {
        for (int64_t p = 0; p < kc; ++p) std::memcpy(out + p * NR, src + p * b_rs, NR * sizeof(T));
      } else if (b_rs == 1) {
        // Transposed B: each stored row is a column of op(B), read contiguously. The
        // panel is filled 16 depth steps at a time so the panel rows being written stay
        // in L1 while every column passes through them; padding columns are zeroed
        // along the rows.
        constexpr int64_t kDepthBlock = 16;
        for (int64_t p0 = 0; p0 < kc; p0 += kDepthBlock) {
          const int64_t p1 = std::min(kc, p0 + kDepthBlock);
          for (int j = 0; j < cols; ++j) {
            const T* col = src + j * b_cs;
            for (int64_t p = p0; p < p1; ++p) out[p * NR + j] = col[p];
          }
          for (int64_t p = p0; p < p1; ++p)
            for (int j = cols; j < NR; ++j) out[p * NR + j] = T(0);
        }
      } else {
        for (int64_t p = 0; p < kc; ++p)
          for (int j = 0; j < NR; ++j) out[p * NR + j] = j < cols ? src[p * b_rs + j * b_cs] : T(0);
      }
    }
  }

  // Where the micro-kernel reads a block's rows of A: the first `direct_rows` in place
  // (row-major A: rows at stride `rs`, unit column stride), the rest from MR-row
  // panels packed at `packed`. Reading in place saves the packing pass, which for
  // small or short-and-wide products costs as much as a fifth of the time.
  struct ABlock {
    const T* direct;
    int64_t rs;
    int64_t direct_rows;
    const T* packed;
  };

  // Rows [0, mc) of A (at most MR*k packed elements per panel) starting at `a`.
  // Packs what cannot be read in place into `buf`.
  static ABlock prepare_a(const T* a, int64_t a_rs, int64_t a_cs, int64_t mc, int64_t kc, T* buf) {
    ABlock blk{a, a_rs, a_cs == 1 ? mc : 0, buf};
    if (blk.direct_rows < mc)
      pack_a(a + blk.direct_rows * a_rs, a_rs, a_cs, mc - blk.direct_rows, kc, buf);
    return blk;
  }

  // One MR x NR tile of C at row i0 of the block: full tiles straight into C, short
  // ones through tail, narrow ones through micro_edge. next_c (or nullptr): the tile the
  // following call updates, fetched during this one (spread over a full tile's depth
  // loop, at once before the smaller kernels, which do not take it).
  static void tile(int64_t kc, const ABlock& A, int64_t i0, int rows, const T* bpanel,
                   int64_t b_rs, int cols, T* ct, int64_t ldc, T alpha, T beta, const T* next_c) {
    const bool full = rows == MR && cols == NR;
    if (next_c && !(full && kSpreadPrefetch)) prefetch_tile(next_c, ldc);
    if (i0 < A.direct_rows) {
      const T* arows = A.direct + i0 * A.rs;
      if (rows < MR)
        tail<false>(kc, arows, A.rs, bpanel, b_rs, ct, ldc, alpha, beta, rows, cols);
      else if (full)
        micro<false>(kc, arows, A.rs, bpanel, b_rs, ct, ldc, alpha, beta, next_c);
      else
        micro_edge<false>(kc, arows, A.rs, bpanel, b_rs, ct, ldc, alpha, beta, rows, cols);
    } else {
      const T* apanel = A.packed + (i0 - A.direct_rows) * kc;
      if (rows < MR)
        tail<true>(kc, apanel, 0, bpanel, b_rs, ct, ldc, alpha, beta, rows, cols);
      else if (full)
        micro(kc, apanel, 0, bpanel, b_rs, ct, ldc, alpha, beta, next_c);
      else
        micro_edge(kc, apanel, 0, bpanel, b_rs, ct, ldc, alpha, beta, rows, cols);
    }
  }

  static void prefetch_tile(const T* c, int64_t ldc) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; j += kLine) __builtin_prefetch(c + i * ldc + j, 1, 3);
  }

  // All MR x NR tiles of one (mc, kc) block of A against panels [panel0, panel1) of a
  // packed (kc, nc) block of B.
  static void macro(int64_t mc, int64_t nc, int64_t kc, const ABlock& A, const T* bp,
                    int64_t panel0, int64_t panel1, T* c, int64_t ldc, T alpha, T beta) {
    for (int64_t jp = panel0; jp < panel1; ++jp) {
      const int64_t j0 = jp * NR;
      const int cols = static_cast<int>(std::min<int64_t>(NR, nc - j0));
      const T* bpanel = bp + jp * NR * kc;
      for (int64_t i0 = 0; i0 < mc; i0 += MR) {
        const int rows = static_cast<int>(std::min<int64_t>(MR, mc - i0));
        T* ct = c + i0 * ldc + j0;
        // C tiles are touched once per KC pass and usually sit in L3 or DRAM: fetch the
        // next tile while this one computes (a micro-kernel call lasts thousands of cycles).
        const T* next = i0 + MR < mc ? ct + MR * ldc : (jp + 1 < panel1 ? c + j0 + NR : nullptr);
        tile(kc, A, i0, rows, bpanel, NR, cols, ct, ldc, alpha, beta, next);
      }
    }
  }

  // Small products, one thread: no blocking, and B too is read in place where it can
  // be (full panels with unit column stride); other panels are packed one at a time.
  static void run_small(const dlkern::cpu::GemmArgs<T>& g) {
    const int64_t m = g.m, n = g.n, k = g.k;
    static thread_local dlkern::AlignedBuffer a_buffer, b_buffer;
    T* ap = a_buffer.reserve_elements<T>(static_cast<size_t>((m + MR - 1) / MR * MR * k));
    T* bp = b_buffer.reserve_elements<T>(static_cast<size_t>(k * NR));
    const ABlock A = prepare_a(g.a, g.a_rs, g.a_cs, m, k, ap);
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
      const int cols = static_cast<int>(std::min<int64_t>(NR, n - j0));
      const T* bpanel = g.b + j0 * g.b_cs;
      int64_t b_rs = g.b_rs;
      if (cols != NR || g.b_cs != 1) {
        pack_b(bpanel, g.b_rs, g.b_cs, k, cols, 0, 1, bp);
        bpanel = bp;
        b_rs = NR;
      }
      for (int64_t i0 = 0; i0 < m; i0 += MR) {
        const int rows = static_cast<int>(std::min<int64_t>(MR, m - i0));
        tile(k, A, i0, rows, bpanel, b_rs, cols, g.c + i0 * g.ldc + j0, g.ldc, g.alpha, g.beta, nullptr);
      }
    }
  }

  struct Blocking {
    int64_t kc, mc, nc;
  };

  // Even split of [0, total) units among `parts`, for part `idx`.
  static void split(int64_t total, int parts, int idx, int64_t& lo, int64_t& hi) {
    const int64_t base = total / parts, extra = total % parts;
    lo = idx * base + std::min<int64_t>(idx, extra);
    hi = lo + base + (idx < extra ? 1 : 0);
  }

  // Round a blocking size so the blocks come out nearly equal (no thin last block),
  // keeping it a multiple of `unit`.
  static int64_t balanced(int64_t total, int64_t target, int64_t unit) {
    if (total <= target) return (total + unit - 1) / unit * unit;
    const int64_t nblocks = (total + target - 1) / target;
    const int64_t per = (total + nblocks - 1) / nblocks;
    return (per + unit - 1) / unit * unit;
  }

  // The blocked algorithm on one thread, with that thread's own packing buffers.
  static void run_serial(const dlkern::cpu::GemmArgs<T>& g, Blocking blk) {
    const int64_t m = g.m, n = g.n, k = g.k;
    const int64_t KC = balanced(k, blk.kc, 4);
    const int64_t MC = balanced(m, blk.mc, MR);
    const int64_t NC = balanced(n, blk.nc, NR);
    static thread_local dlkern::AlignedBuffer a_buffer, b_buffer;
    T* ap = a_buffer.reserve_elements<T>(static_cast<size_t>(MC * KC));
    T* bp = b_buffer.reserve_elements<T>(static_cast<size_t>(KC * NC));
    for (int64_t jc = 0; jc < n; jc += NC) {
      const int64_t nc = std::min(NC, n - jc);
      const int64_t n_panels = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < k; pc += KC) {
        const int64_t kc = std::min(KC, k - pc);
        pack_b(g.b + pc * g.b_rs + jc * g.b_cs, g.b_rs, g.b_cs, kc, nc, 0, n_panels, bp);
        const T beta = pc == 0 ? g.beta : T(1);
        for (int64_t ic = 0; ic < m; ic += MC) {
          const int64_t mc = std::min(MC, m - ic);
          const ABlock A = prepare_a(g.a + ic * g.a_rs + pc * g.a_cs, g.a_rs, g.a_cs, mc, kc, ap);
          macro(mc, nc, kc, A, bp, 0, n_panels, g.c + ic * g.ldc + jc, g.ldc, g.alpha, beta);
        }
      }
    }
  }

  // Threads take disjoint blocks of C and run the serial algorithm on them, each
  // packing what it needs: no barriers and no shared buffers. Columns are split when
  // there are enough column panels (A, read in place or packed per thread, is shared
  // through L3), else rows (tall, narrow products: each thread packs the small B).
  static void run(const dlkern::cpu::GemmArgs<T>& g, int nthreads, Blocking blk) {
    if (nthreads <= 1) {
      run_serial(g, blk);
      return;
    }
    const int64_t n_panels = (g.n + NR - 1) / NR, m_panels = (g.m + MR - 1) / MR;
    const bool split_cols = n_panels >= 2 * int64_t(nthreads) || n_panels >= m_panels;
    // The threads' B blocks share the L3: keep their sum near one block's budget.
    blk.nc = std::max<int64_t>(NR, blk.nc / nthreads);
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      int64_t lo, hi;
      split(split_cols ? n_panels : m_panels, nt, tid, lo, hi);
      dlkern::cpu::GemmArgs<T> part = g;
      if (split_cols) {
        lo *= NR;
        hi = std::min(hi * NR, g.n);
        part.n = hi - lo;
        part.b = g.b + lo * g.b_cs;
        part.c = g.c + lo;
      } else {
        lo *= MR;
        hi = std::min(hi * MR, g.m);
        part.m = hi - lo;
        part.a = g.a + lo * g.a_rs;
        part.c = g.c + lo * g.ldc;
      }
      if (part.m > 0 && part.n > 0) run_serial(part, blk);
    }
  }
};

// Matrix-vector products, memory bound: stream the matrix once, contiguously.
template <class S>
struct Gemv {
  using T = typename S::T;
  using V = typename S::V;
  static constexpr int L = S::L;

  // y[j] = alpha * sum_p x[p] * mat[p*mat_rs + j] + beta * y[j] for j in [0, n);
  // the matrix rows are contiguous along the output.
  static void axpy_form(int64_t n, int64_t k, const T* mat, int64_t mat_rs, const T* x,
                        int64_t x_stride, T* y, T alpha, T beta, int nthreads) {
    // Columns split in cache-line multiples; each thread streams its slice of every row.
    const int64_t chunks = (n + 4 * L - 1) / (4 * L);
    const int nt = static_cast<int>(std::min<int64_t>(nthreads, chunks));
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int tid = omp_get_thread_num();
      const int64_t per = (chunks + nt - 1) / nt;
      const int64_t j_lo = std::min(n, tid * per * 4 * L), j_hi = std::min(n, (tid + 1) * per * 4 * L);
      if (j_lo < j_hi) {
        T* yy = y + j_lo;
        const int64_t len = j_hi - j_lo;
        if (beta == T(0))
          for (int64_t j = 0; j < len; ++j) yy[j] = T(0);
        else if (beta != T(1))
          for (int64_t j = 0; j < len; ++j) yy[j] *= beta;
        int64_t p = 0;
        for (; p + 4 <= k; p += 4) {
          const T* r0 = mat + p * mat_rs + j_lo;
          const T* r1 = r0 + mat_rs;
          const T* r2 = r1 + mat_rs;
          const T* r3 = r2 + mat_rs;
          const V x0 = S::bcast(alpha * x[p * x_stride]), x1 = S::bcast(alpha * x[(p + 1) * x_stride]);
          const V x2 = S::bcast(alpha * x[(p + 2) * x_stride]), x3 = S::bcast(alpha * x[(p + 3) * x_stride]);
          // The next four rows, fetched into L2 at the same column: the hardware
          // prefetcher would otherwise restart cold at the head of every row.
          const bool ahead = p + 8 <= k;
          const int64_t step = 4 * mat_rs;
          int64_t j = 0;
          for (; j + L <= len; j += L) {
            if (ahead && (j % (64 / sizeof(T))) == 0) {
              __builtin_prefetch(r0 + step + j, 0, 2);
              __builtin_prefetch(r1 + step + j, 0, 2);
              __builtin_prefetch(r2 + step + j, 0, 2);
              __builtin_prefetch(r3 + step + j, 0, 2);
            }
            V acc = S::load(yy + j);
            acc = S::fma(x0, S::load(r0 + j), acc);
            acc = S::fma(x1, S::load(r1 + j), acc);
            acc = S::fma(x2, S::load(r2 + j), acc);
            acc = S::fma(x3, S::load(r3 + j), acc);
            S::store(yy + j, acc);
          }
          const T s0 = alpha * x[p * x_stride], s1 = alpha * x[(p + 1) * x_stride];
          const T s2 = alpha * x[(p + 2) * x_stride], s3 = alpha * x[(p + 3) * x_stride];
          for (; j < len; ++j) yy[j] += s0 * r0[j] + s1 * r1[j] + s2 * r2[j] + s3 * r3[j];
        }
        for (; p < k; ++p) {
          const T* r0 = mat + p * mat_rs + j_lo;
          const T s0 = alpha * x[p * x_stride];
          for (int64_t j = 0; j < len; ++j) yy[j] += s0 * r0[j];
        }
      }
    }
  }

  // y[r*y_stride] = alpha * dot(mat[r*mat_rs + 0:k], x) + beta * y[r*y_stride];
  // the matrix rows are contiguous along the reduction. x must be contiguous.
  static void dot_form(int64_t rows, int64_t k, const T* mat, int64_t mat_rs, const T* x,
                       T* y, int64_t y_stride, T alpha, T beta, int nthreads) {
    const int nt = static_cast<int>(std::min<int64_t>(nthreads, (rows + 3) / 4));
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = mat + r * mat_rs;
      V acc0 = S::zero(), acc1 = S::zero(), acc2 = S::zero(), acc3 = S::zero();
      int64_t p = 0;
      for (; p + 4 * L <= k; p += 4 * L) {
        acc0 = S::fma(S::load(row + p), S::load(x + p), acc0);
        acc1 = S::fma(S::load(row + p + L), S::load(x + p + L), acc1);
        acc2 = S::fma(S::load(row + p + 2 * L), S::load(x + p + 2 * L), acc2);
        acc3 = S::fma(S::load(row + p + 3 * L), S::load(x + p + 3 * L), acc3);
      }
      for (; p + L <= k; p += L) acc0 = S::fma(S::load(row + p), S::load(x + p), acc0);
      alignas(64) T lanes[L];
      S::store(lanes, S::add(S::add(acc0, acc1), S::add(acc2, acc3)));
      T sum = 0;
      for (int l = 0; l < L; ++l) sum += lanes[l];
      for (; p < k; ++p) sum += row[p] * x[p];
      T* out = y + r * y_stride;
      *out = beta == T(0) ? alpha * sum : alpha * sum + beta * *out;
    }
  }
};

// Entry point of one ISA: GEMV shapes go to Gemv, everything else to the blocked kernel.
// Trivial cases (empty, k == 0, alpha == 0) are handled by the caller.
template <class Kernel, class S>
void gemm_dispatch(const dlkern::cpu::GemmArgs<typename S::T>& g, int nthreads,
              typename Kernel::Blocking blk) {
  using T = typename S::T;
  if (g.m == 1 && g.b_cs == 1) {
    Gemv<S>::axpy_form(g.n, g.k, g.b, g.b_rs, g.a, g.a_cs, g.c, g.alpha, g.beta, nthreads);
    return;
  }
  const bool row_gemv = g.m == 1 && g.b_rs == 1;   // C row j = dot(stored B row j, a)
  const bool col_gemv = g.n == 1 && g.a_cs == 1;   // C row i = dot(A row i, b)
  if (row_gemv || col_gemv) {
    const T* x = row_gemv ? g.a : g.b;
    const int64_t x_stride = row_gemv ? g.a_cs : g.b_rs;
    if (x_stride != 1) {
      static thread_local dlkern::AlignedBuffer x_buffer;
      T* xc = x_buffer.reserve_elements<T>(static_cast<size_t>(g.k));
      for (int64_t p = 0; p < g.k; ++p) xc[p] = x[p * x_stride];
      x = xc;
    }
    if (row_gemv)
      Gemv<S>::dot_form(g.n, g.k, g.b, g.b_cs, x, g.c, 1, g.alpha, g.beta, nthreads);
    else
      Gemv<S>::dot_form(g.m, g.k, g.a, g.a_rs, x, g.c, g.ldc, g.alpha, g.beta, nthreads);
    return;
  }
  // In-place operands pay off while they stay in L1/L2: bound k and the total size.
  if (nthreads == 1 && g.k <= 512 && double(g.m) * double(g.n) * double(g.k) <= double(1 << 22)) {
    Kernel::run_small(g);
    return;
  }
  Kernel::run(g, nthreads, blk);
}

// Register tiles (MR rows x NV vectors) and blocking {KC, MC, NC} per ISA.
#if defined(DLKERN_SIMD_AVX512)
// On Zen 4 a 512-bit FMA occupies both 256-bit pipes, so peak FLOPs equal AVX2's; the
// gain is 32 registers (a larger register tile, fewer loads per FMA) and 4 rather than
// 8 accumulator chains to hide FMA latency.
// 6 x 64 float tile: 24 accumulators + 4 B vectors + 1 broadcast in 32 registers;
// 10 loads per 24 FMAs (an 8 x 32 tile needs 10 per 16), measured a few % faster on
// the large DL shapes.
// Blocking: KC = 384 measured best on Zen 4 (fewer passes over C, whose tiles come
// from L3/DRAM); the packed A block (MC x KC, 192 KiB) sits in the 1 MiB L2; the packed
// B block (KC x NC, 6 MiB) in the ~8 MiB of L3 that behaves like L3.
using GemmF32 = GemmKernel<VecF32, 6, 4>;
using GemmF64 = GemmKernel<VecF64, 8, 2>;
constexpr GemmF32::Blocking kGemmBlockingF32{384, 128, 4096};
constexpr GemmF64::Blocking kGemmBlockingF64{256, 128, 2048};
#elif defined(DLKERN_SIMD_AVX2)
// 16 vector registers: a 6 x 16 float tile keeps 12 accumulators (enough independent
// chains to cover FMA latency on two pipes) + 2 B vectors + 1 broadcast.
using GemmF32 = GemmKernel<VecF32, 6, 2>;
using GemmF64 = GemmKernel<VecF64, 6, 2>;
constexpr GemmF32::Blocking kGemmBlockingF32{256, 192, 4096};
constexpr GemmF64::Blocking kGemmBlockingF64{256, 96, 2048};
#else
// Portable (SSE2 on x86-64, NEON on Arm): 16 registers, a 4 x 8 float tile = 8
// accumulators + 2 B vectors + 1 broadcast.
using GemmF32 = GemmKernel<VecF32, 4, 2>;
using GemmF64 = GemmKernel<VecF64, 4, 2>;
constexpr GemmF32::Blocking kGemmBlockingF32{256, 128, 2048};
constexpr GemmF64::Blocking kGemmBlockingF64{256, 64, 2048};
#endif

// The table's entry (cpu/isa.h).
template <typename T>
void gemm_run(const dlkern::cpu::GemmArgs<T>& g, int nthreads) {
  if constexpr (sizeof(T) == sizeof(float))
    gemm_dispatch<GemmF32, VecF32>(g, nthreads, kGemmBlockingF32);
  else
    gemm_dispatch<GemmF64, VecF64>(g, nthreads, kGemmBlockingF64);
}
