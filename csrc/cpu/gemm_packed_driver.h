// Products against a B packed once (cpu/gemm.h's PackedB), over gemm_driver.h's blocked
// kernel: the same loop nest as GemmKernel::run_serial without the B packing, so a
// recurrence that multiplies the same weight T times packs it once. Included by
// cpu/isa_kernels.h after gemm_driver.h (GemmF32/GemmF64 and their blocking).
//
// Layout (PackedBLayout): depth blocks of kc rows, the ISA's KC balanced over k;
// block d at element d * kc * n_panels * NR, its panels one after another, each
// (rows of the block) x NR as pack_b writes them, so the panels of any column range of
// a block are contiguous and macro() reads them exactly as a freshly packed block.

template <class Kernel>
struct GemmPackedKernel {
  using T = typename Kernel::T;
  using Blocking = typename Kernel::Blocking;
  static constexpr int NR = Kernel::NR;

  static PackedBLayout layout(int64_t k, Blocking blk) {
    return PackedBLayout{NR, Kernel::balanced(k, blk.kc, 4)};
  }

  static void pack(const T* b, int64_t b_rs, int64_t b_cs, int64_t k, int64_t n, int64_t kc, T* dst) {
    const int64_t n_panels = (n + NR - 1) / NR;
    for (int64_t pc = 0; pc < k; pc += kc)
      Kernel::pack_b(b + pc * b_rs, b_rs, b_cs, std::min(kc, k - pc), n, 0, n_panels, dst + pc * n_panels * NR);
  }

  // Column panels [panel0, panel1) and all rows of C, on one thread: jc over NC columns
  // -> pc over the packed depth blocks -> ic over MC rows (A read in place or packed
  // per block) -> macro, as run_serial.
  static void run_serial(const dlkern::cpu::GemmArgs<T>& g, int64_t KC, int64_t panel0, int64_t panel1,
                         Blocking blk) {
    const int64_t m = g.m, n = g.n, k = g.k;
    const int64_t n_panels = (n + NR - 1) / NR;
    const int64_t MC = Kernel::balanced(m, blk.mc, Kernel::MR);
    const int64_t NCP = std::max<int64_t>(1, blk.nc / NR);  // panels per column block
    static thread_local dlkern::AlignedBuffer a_buffer;
    T* ap = a_buffer.reserve_elements<T>(static_cast<size_t>(MC * KC));
    for (int64_t jp = panel0; jp < panel1; jp += NCP) {
      const int64_t jp1 = std::min(panel1, jp + NCP);
      const int64_t j0 = jp * NR, nc = std::min(n, jp1 * NR) - j0;
      for (int64_t pc = 0; pc < k; pc += KC) {
        const int64_t kc = std::min(KC, k - pc);
        const T* bp = g.b + pc * n_panels * NR + jp * NR * kc;
        const T beta = pc == 0 ? g.beta : T(1);
        for (int64_t ic = 0; ic < m; ic += MC) {
          const int64_t mc = std::min(MC, m - ic);
          const typename Kernel::ABlock A =
              Kernel::prepare_a(g.a + ic * g.a_rs + pc * g.a_cs, g.a_rs, g.a_cs, mc, kc, ap);
          Kernel::macro(mc, nc, kc, A, bp, 0, jp1 - jp, g.c + ic * g.ldc + j0, g.ldc, g.alpha, beta);
        }
      }
    }
  }

  // Threads take disjoint blocks of C as GemmKernel::run does; B is already packed, so
  // a row split costs each thread nothing but reading the shared panels.
  static void run(const dlkern::cpu::GemmArgs<T>& g, int64_t kc, int nthreads, Blocking blk) {
    const int64_t n_panels = (g.n + NR - 1) / NR;
    if (nthreads <= 1) {
      run_serial(g, kc, 0, n_panels, blk);
      return;
    }
    const int64_t m_panels = (g.m + Kernel::MR - 1) / Kernel::MR;
    const bool split_cols = n_panels >= 2 * int64_t(nthreads) || n_panels >= m_panels;
    blk.nc = std::max<int64_t>(NR, blk.nc / nthreads);
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      int64_t lo, hi;
      Kernel::split(split_cols ? n_panels : m_panels, nt, tid, lo, hi);
      if (split_cols) {
        if (lo < hi) run_serial(g, kc, lo, hi, blk);
      } else {
        dlkern::cpu::GemmArgs<T> part = g;
        lo *= Kernel::MR;
        hi = std::min(hi * Kernel::MR, g.m);
        part.m = hi - lo;
        part.a = g.a + lo * g.a_rs;
        part.c = g.c + lo * g.ldc;
        if (part.m > 0) run_serial(part, kc, 0, n_panels, blk);
      }
    }
  }
};

// The table's entries (cpu/isa.h).
template <typename T>
PackedBLayout gemm_packed_layout(int64_t k) {
  if constexpr (sizeof(T) == sizeof(float))
    return GemmPackedKernel<GemmF32>::layout(k, kGemmBlockingF32);
  else
    return GemmPackedKernel<GemmF64>::layout(k, kGemmBlockingF64);
}

template <typename T>
void gemm_pack_b_run(const T* b, int64_t b_rs, int64_t b_cs, int64_t k, int64_t n, int64_t kc, T* dst) {
  if constexpr (sizeof(T) == sizeof(float))
    GemmPackedKernel<GemmF32>::pack(b, b_rs, b_cs, k, n, kc, dst);
  else
    GemmPackedKernel<GemmF64>::pack(b, b_rs, b_cs, k, n, kc, dst);
}

template <typename T>
void gemm_packed_run(const dlkern::cpu::GemmArgs<T>& g, int64_t kc, int nthreads) {
  if constexpr (sizeof(T) == sizeof(float))
    GemmPackedKernel<GemmF32>::run(g, kc, nthreads, kGemmBlockingF32);
  else
    GemmPackedKernel<GemmF64>::run(g, kc, nthreads, kGemmBlockingF64);
}
