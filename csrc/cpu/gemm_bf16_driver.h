// The bf16 GEMM's blocked loop nest (cpu/bf16.h), written once over a panel policy P:
// included inside an anonymous namespace by cpu/bf16_kernels.h (every ISA: the float32
// fallback policy) and by gemm_bf16_avx512bf16.cpp (the vdpbf16ps policy).
//
// K is split into pairs (elements 2q, 2q + 1; an odd K's last pair has a zero odd
// element), the unit vdpbf16ps works in. Packed panels are laid out per pair:
// an A panel of MR rows is kcp pair-steps of MR * P::kPerPair elements of P::E, a B panel
// of NR columns kcp steps of NR * P::kPerPair. P provides
//   E, MR, NR, kPerPair;
//   put(E* step, int stride, int idx, uint16_t even, uint16_t odd): write one pair of
//     row/column idx into a pair-step whose rows are `stride` (MR or NR) wide;
//   put_zip(E* step, int n, even_row, odd_row): an n-wide pair-step from two rows
//     (unit stride), as n put(step, n, ...) calls would write it;
//   put_cols(E* out, const uint16_t* col0, int64_t cs, int cols, int64_t pairs): pair-steps
//     [0, pairs) of an NR-column B panel whose column j (< cols; the rest zero) holds its
//     pairs contiguously at col0 + j * cs (a transposed B: B = W^T, W row-major);
//   kDirectA: whether macro can read rows of a row-major A in place (the pairs of a row
//     are contiguous, which is all vdpbf16ps' broadcast needs);
//   macro(mc, nc, kcp, A, bp, n_panels, c, ldc, alpha, beta): every tile of an (mc, kcp)
//     A block (ABlock: its first direct_rows rows in place, the rest packed) against
//     n_panels packed B panels (beta as gemm_driver.h).
// The depth blocking is the same for every policy (gemm_bf16_depth_block), so every
// path sums in the same order.

// Where a block's rows of A are read: the first direct_rows (a multiple of MR) in place
// at `direct` (row stride rs, unit column stride, every pair whole), the rest from
// MR-row panels at `packed`.
template <class E>
struct Bf16ABlock {
  const uint16_t* direct;
  int64_t rs;
  int64_t direct_rows;
  const E* packed;
};

template <class P>
struct GemmBf16Driver {
  using E = typename P::E;
  static constexpr int MR = P::MR, NR = P::NR, KP = P::kPerPair;

  static int64_t round_up(int64_t x, int64_t u) { return (x + u - 1) / u * u; }

  // A block size near `target`, a multiple of `unit`, that splits `total` into nearly
  // equal blocks (no thin last block: m = 1024 in 192-row blocks would leave 64).
  static int64_t balanced(int64_t total, int64_t target, int64_t unit) {
    const int64_t blocks = std::max<int64_t>(1, (total + target - 1) / target);
    return round_up((total + blocks - 1) / blocks, unit);
  }

  // Pack rows [0, mc) (pairs [0, kcp), elements past `kvalid` read as 0) into MR-row
  // panels. Rows with unit column stride one at a time: its elements are read in order (a
  // row-major A streams) and scattered over a panel small enough for L1. A column-major A
  // (a transposed operand, a_rs == 1) two columns at a time, zipped into one mc-wide
  // pair-step then cut into the panels: walking it row by row read one element per cache
  // line (1024 x 256 x 784, A = G^T: 40% of the product's time; at m = 10 the row walk
  // was 5% faster, the block being in L1 either way).
  static void pack_a(const uint16_t* a, int64_t a_rs, int64_t a_cs, int64_t mc, int64_t kcp, int64_t kvalid,
                     E* dst) {
    const int64_t full = std::min(kcp, kvalid / 2);  // pairs with both elements
    if (a_rs == 1 && a_cs != 1 && mc >= 32) {  // fewer rows: the whole block sits in L1 either way
      pack_a_columns(a, a_cs, mc, kcp, full, dst);
      return;
    }
    for (int64_t i0 = 0; i0 < mc; i0 += MR) {
      const int rows = static_cast<int>(std::min<int64_t>(MR, mc - i0));
      for (int i = 0; i < MR; ++i) {
        const uint16_t* src = a + (i0 + i) * a_rs;
        if (i >= rows) {
          for (int64_t q = 0; q < kcp; ++q) P::put(dst + q * MR * KP, MR, i, 0, 0);
        } else if (a_cs == 1) {
          for (int64_t q = 0; q < full; ++q) P::put(dst + q * MR * KP, MR, i, src[2 * q], src[2 * q + 1]);
        } else {
          for (int64_t q = 0; q < full; ++q)
            P::put(dst + q * MR * KP, MR, i, src[2 * q * a_cs], src[(2 * q + 1) * a_cs]);
        }
        if (i < rows && full < kcp) P::put(dst + full * MR * KP, MR, i, src[2 * full * a_cs], 0);
      }
      dst += MR * KP * kcp;
    }
  }

  // pack_a's column-major case: row i of the block is element i of every column.
  static void pack_a_columns(const uint16_t* a, int64_t a_cs, int64_t mc, int64_t kcp, int64_t full, E* dst) {
    static thread_local dlkern::AlignedBuffer zip_buffer, zero_buffer;
    E* zip = zip_buffer.reserve_elements<E>(static_cast<size_t>(mc * KP));
    uint16_t* zeros = zero_buffer.reserve_elements<uint16_t>(static_cast<size_t>(mc));  // a padded pair's odd half
    std::fill(zeros, zeros + mc, uint16_t(0));
    const int64_t panels = (mc + MR - 1) / MR;
    for (int64_t q = 0; q < kcp; ++q) {
      const uint16_t* even = a + 2 * q * a_cs;
      P::put_zip(zip, static_cast<int>(mc), even, q < full ? even + a_cs : zeros);
      for (int64_t p = 0; p < panels; ++p) {
        const int rows = static_cast<int>(std::min<int64_t>(MR, mc - p * MR));
        E* step = dst + p * MR * KP * kcp + q * MR * KP;
        for (int h = 0; h < KP; ++h) {  // each half of a step: MR values (put_zip's layout)
          const E* src = zip + h * mc + p * MR;
          if (rows == MR) {
            for (int i = 0; i < MR; ++i) step[h * MR + i] = src[i];  // a fixed-size copy, not a call
          } else {
            std::copy(src, src + rows, step + h * MR);
            std::fill(step + h * MR + rows, step + (h + 1) * MR, E(0));
          }
        }
      }
    }
  }

  // Pack NR-column panels [0, n_panels) of a (2 kcp, nc) block of B.
  static void pack_b(const uint16_t* b, int64_t b_rs, int64_t b_cs, int64_t nc, int64_t kcp, int64_t kvalid,
                     E* dst) {
    const int64_t n_panels = (nc + NR - 1) / NR;
    for (int64_t jp = 0; jp < n_panels; ++jp) {
      const int cols = static_cast<int>(std::min<int64_t>(NR, nc - jp * NR));
      E* out = dst + jp * NR * KP * kcp;
      int64_t q = 0;
      if (b_rs == 1 && b_cs != 1) {
        // Each column's pairs are adjacent (B = W^T): the policy transposes 32-bit pairs,
        // reading each column in order. Walking B row by row instead read 4 bytes per
        // column and row, 64 columns 2 KiB apart at k = 1024 (the same few L1 sets): 30%
        // of 256 x 1024 x 1024's time.
        q = std::min(kcp, kvalid / 2);
        P::put_cols(out, b + jp * NR * b_cs, b_cs, cols, q);
      }
      for (; q < kcp; ++q) {
        E* step = out + q * NR * KP;
        const uint16_t* re = b + 2 * q * b_rs + jp * NR * b_cs;
        const uint16_t* ro = re + b_rs;
        const bool has_odd = 2 * q + 1 < kvalid;
        if (cols == NR && b_cs == 1 && has_odd) {
          P::put_zip(step, NR, re, ro);  // row-major B, the common case: NR whole columns
        } else {
          for (int j = 0; j < NR; ++j) {
            const uint16_t e = j < cols ? re[j * b_cs] : uint16_t(0);
            const uint16_t o = j < cols && has_odd ? ro[j * b_cs] : uint16_t(0);
            P::put(step, NR, j, e, o);
          }
        }
      }
    }
  }

  // The blocked algorithm on one thread: jc over NC columns -> pc over depth blocks
  // (pack B) -> ic over MC rows (pack A) -> P::macro.
  static void run_serial(const dlkern::cpu::GemmBf16Args& g, int64_t mc_target, int64_t nc_target) {
    const int64_t kp = (g.k + 1) / 2;
    const int64_t KCP = dlkern::cpu::gemm_bf16_depth_block(g.k);
    const int64_t MC = balanced(g.m, mc_target, MR), NC = balanced(g.n, nc_target, NR);
    static thread_local dlkern::AlignedBuffer a_buffer, b_buffer;
    E* ap = a_buffer.reserve_elements<E>(static_cast<size_t>(MC * KCP * KP));
    E* bp = b_buffer.reserve_elements<E>(static_cast<size_t>(NC * KCP * KP));
    for (int64_t jc = 0; jc < g.n; jc += NC) {
      const int64_t nc = std::min(NC, g.n - jc);
      for (int64_t pc = 0; pc < kp; pc += KCP) {
        const int64_t kcp = std::min(KCP, kp - pc);
        const int64_t kvalid = g.k - 2 * pc;
        pack_b(g.b + 2 * pc * g.b_rs + jc * g.b_cs, g.b_rs, g.b_cs, nc, kcp, kvalid, bp);
        const float beta = pc == 0 ? g.beta : 1.0f;
        for (int64_t ic = 0; ic < g.m; ic += MC) {
          const int64_t mc = std::min(MC, g.m - ic);
          const uint16_t* ablk = g.a + ic * g.a_rs + 2 * pc * g.a_cs;
          // Rows read in place skip the packing pass, which costs most where B is narrow.
          const int64_t direct = P::kDirectA && g.a_cs == 1 && kvalid >= 2 * kcp ? mc / MR * MR : 0;
          if (direct < mc) pack_a(ablk + direct * g.a_rs, g.a_rs, g.a_cs, mc - direct, kcp, kvalid, ap);
          const Bf16ABlock<E> A{ablk, g.a_rs, direct, ap};
          P::macro(mc, nc, kcp, A, bp, (nc + NR - 1) / NR, g.c + ic * g.ldc + jc, g.ldc, g.alpha, beta);
        }
      }
    }
  }

  // Threads take disjoint column (or, for narrow products, row) ranges of C, as
  // gemm_driver.h's GemmKernel::run.
  static void run(const dlkern::cpu::GemmBf16Args& g, int nthreads, int64_t mc_target, int64_t nc_target) {
    if (nthreads <= 1) {
      run_serial(g, mc_target, nc_target);
      return;
    }
    const int64_t n_panels = (g.n + NR - 1) / NR, m_panels = (g.m + MR - 1) / MR;
    const bool split_cols = n_panels >= 2 * int64_t(nthreads) || n_panels >= m_panels;
    const int64_t nc_part = std::max<int64_t>(NR, nc_target / nthreads);
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t units = split_cols ? n_panels : m_panels;
      const int64_t lo = units * tid / nt, hi = units * (tid + 1) / nt;
      dlkern::cpu::GemmBf16Args part = g;
      if (split_cols) {
        part.n = std::min(hi * NR, g.n) - lo * NR;
        part.b = g.b + lo * NR * g.b_cs;
        part.c = g.c + lo * NR;
      } else {
        part.m = std::min(hi * MR, g.m) - lo * MR;
        part.a = g.a + lo * MR * g.a_rs;
        part.c = g.c + lo * MR * g.ldc;
      }
      if (part.m > 0 && part.n > 0) run_serial(part, mc_target, nc_part);
    }
  }
};
