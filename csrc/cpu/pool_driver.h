// Pooling kernels written once over a SIMD trait S (pool_lanes.h's PoolF32 / PoolF64)
// and instantiated per ISA by cpu/isa_kernels.h. Plain loops only (no std algorithms:
// see cpu/isa.h).
//
// The trait S provides: T, V (L lanes of T), M (a lane mask), load/store (unaligned),
// bcast, zero, add, div, hsum; evens(p) = {p[0], p[2], ..., p[2L-2]} reading nothing
// past p[2L-2]; better(v, cur) = lanes where v > cur or v is NaN (PyTorch's max-pool update rule);
// select(m, a, b) = m ? a : b; max_plain(v, cur) = v > cur ? v : cur (cur on NaN);
// nan_lanes(v), mask_or, mask_none; store_interleaved(p, e, o): p[2j] = e[j],
// p[2j+1] = o[j]; load_fill / evens_fill(p, skip, fill): load / evens with the raw
// elements p[i], i < skip, replaced by `fill` and never read (masked loads).
//
// Layout of the work: one (n, c) plane per OpenMP iteration; within a plane, output
// rows one at a time. Output columns whose window lies wholly inside the row (the
// interior) run L at a time, each lane one output column; for stride 2 the window's
// column kw of L outputs is evens(row + 2*o - pad + kw*dilation). Blocks go in pairs
// (two independent dependency chains). The left border is one masked block; the few
// right border columns, and strides other than 1 and 2, take the scalar per-output path.

template <int N>
struct IntTag {
  static constexpr int value = N;
};

// Valid rows of one window: ih = first + r*dilation for r < count.
struct WindowRows {
  int64_t first, count;
};

inline WindowRows window_rows(int64_t o, int64_t stride, int64_t pad, int64_t kernel,
                              int64_t dilation, int64_t in) {
  const int64_t start = o * stride - pad;
  int64_t end = start + (kernel - 1) * dilation + 1;
  if (end > in) end = in;
  int64_t first = start;
  if (first < 0) first += ((-first + dilation - 1) / dilation) * dilation;
  const int64_t count = first < end ? (end - first + dilation - 1) / dilation : 0;
  return {first, count};
}

// Output columns [lo, hi) whose whole window lies inside the input row.
inline void interior_columns(const Pool2dGeometry& g, int64_t& lo, int64_t& hi) {
  lo = (g.pad_w + g.stride_w - 1) / g.stride_w;
  const int64_t last_start = g.in_w - 1 - (g.kernel_w - 1) * g.dilation_w + g.pad_w;
  hi = last_start < 0 ? 0 : last_start / g.stride_w + 1;
  if (hi > g.out_w) hi = g.out_w;
  if (lo > hi) lo = hi;
}

// Asks for the input rows that output row oh + kAhead will start using, so the
// plane streams in from DRAM ahead of the loads that need it.
template <typename T>
inline void prefetch_rows_ahead(const T* plane, const Pool2dGeometry& g, int64_t oh) {
  constexpr int64_t kAhead = 3;
  int64_t first = (oh + kAhead) * g.stride_h - g.pad_h + (g.kernel_h - 1) * g.dilation_h;
  int64_t last = first + g.stride_h;
  if (first < 0) first = 0;
  if (last > g.in_h) last = g.in_h;
  if (first >= last) return;
  const char* begin = reinterpret_cast<const char*>(plane + first * g.in_w);
  const char* end = reinterpret_cast<const char*>(plane + last * g.in_w);
  for (const char* p = begin; p < end; p += 64) __builtin_prefetch(p, 0, 3);
}

// ----------------------------------------------------------------------------- max

// Calls f(IntTag<stride>) for the strides with vector paths (1, 2), else IntTag<0>.
template <class S, typename F>
void by_stride(const Pool2dGeometry& g, F&& f) {
  if (S::L > 1 && g.stride_w == 1)
    f(IntTag<1>{});
  else if (S::L > 1 && g.stride_w == 2)
    f(IntTag<2>{});
  else
    f(IntTag<0>{});
}


template <typename T>
constexpr T negative_infinity() {
  return -static_cast<T>(__builtin_inf());
}

// One output by the definition: scan rows then columns; the first valid position is
// the index of a window of -inf.
template <typename T, bool kIndices>
inline void max_one(const T* plane, const Pool2dGeometry& g, WindowRows rows, int64_t ow,
                    T* y, int64_t* index) {
  const int64_t w0 = ow * g.stride_w - g.pad_w;
  T best = negative_infinity<T>();
  int64_t best_at = -1;
  bool any_nan = false;
  for (int64_t r = 0; r < rows.count; ++r) {
    const int64_t ih = rows.first + r * g.dilation_h;
    const T* row = plane + ih * g.in_w;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t iw = w0 + kw * g.dilation_w;
      if (iw < 0 || iw >= g.in_w) continue;
      const T v = row[iw];
      if (kIndices) {
        // Branch-free: the first valid position starts the scan, then PyTorch's rule.
        const int64_t at = ih * g.in_w + iw;
        const bool take = (best_at < 0) | (v > best) | (v != v);
        const int64_t keep = static_cast<int64_t>(take) - 1;  // 0 to take, all ones to keep
        best_at = (best_at & keep) | (at & ~keep);
        best = take ? v : best;
      } else {
        // Branch-free (a max plus a NaN flag): on random data the comparison is
        // unpredictable, and these border outputs are a large share of small planes.
        best = v > best ? v : best;
        any_nan |= v != v;
      }
    }
  }
  if (kIndices) {
    *y = best;
    *index = best_at;
  } else {
    *y = any_nan ? static_cast<T>(__builtin_nan("")) : best;
  }
}

// Interior outputs [a, a+L) and [b, b+L) (b may equal a): two independent update
// chains per call, so the comparison latency of one hides behind the other. The
// winner's offset from the window's first position is tracked as a T (exact: the
// caller checks it stays below 2^digits). Without indices, a plain max (which keeps
// the earlier value on ties) plus a separate NaN mask gives the same values.
//
// kLeft: block a is outputs [0, L) whose first windows start in the left padding
// (dilation 1): padding columns load as -inf through masks, and each lane's offset
// starts at its first real column, so the index of a window of -inf is still right.
template <class S, int kStride, bool kIndices, bool kLeft = false>
inline void max_blocks(const typename S::T* plane, const Pool2dGeometry& g, WindowRows rows,
                       int64_t a, int64_t b, typename S::T* y, int64_t* index) {
  using T = typename S::T;
  using V = typename S::V;
  using M = typename S::M;
  const T lowest = negative_infinity<T>();
  const int64_t col_a = a * kStride - g.pad_w, col_b = b * kStride - g.pad_w;
  const T* origin_a = plane + rows.first * g.in_w + col_a;
  const T* origin_b = plane + rows.first * g.in_w + col_b;
  V best_a = S::bcast(lowest), best_b = best_a;
  V offset_a = S::zero(), offset_b = S::zero();
  if (kLeft && kIndices) {
    T first[S::L];
    for (int j = 0; j < S::L; ++j) first[j] = static_cast<T>(g.pad_w > j * kStride ? g.pad_w - j * kStride : 0);
    offset_a = S::load(first);
  }
  M nan_a = S::mask_none(), nan_b = S::mask_none();
  for (int64_t r = 0; r < rows.count; ++r) {
    const int64_t row_offset = r * g.dilation_h * g.in_w;
    for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
      const int64_t at = row_offset + kw * g.dilation_w;
      const int64_t skip = kLeft && g.pad_w > kw ? g.pad_w - kw : 0;
      const V va = kLeft ? (kStride == 1 ? S::load_fill(origin_a + at, skip, lowest)
                                         : S::evens_fill(origin_a + at, skip, lowest))
                         : (kStride == 1 ? S::load(origin_a + at) : S::evens(origin_a + at));
      const V vb = kStride == 1 ? S::load(origin_b + at) : S::evens(origin_b + at);
      if (kIndices) {
        const V code = S::bcast(static_cast<T>(at));
        const M ma = S::better(va, best_a), mb = S::better(vb, best_b);
        best_a = S::select(ma, va, best_a);
        best_b = S::select(mb, vb, best_b);
        offset_a = S::select(ma, code, offset_a);
        offset_b = S::select(mb, code, offset_b);
      } else {
        best_a = S::max_plain(va, best_a);
        best_b = S::max_plain(vb, best_b);
        nan_a = S::mask_or(nan_a, S::nan_lanes(va));
        nan_b = S::mask_or(nan_b, S::nan_lanes(vb));
      }
    }
  }
  if (kIndices) {
    S::store(y + a, best_a);
    S::store(y + b, best_b);
    T off[2][S::L];
    S::store(off[0], offset_a);
    S::store(off[1], offset_b);
    const int64_t base_a = rows.first * g.in_w + col_a, base_b = rows.first * g.in_w + col_b;
    for (int j = 0; j < S::L; ++j) index[a + j] = base_a + j * kStride + static_cast<int64_t>(off[0][j]);
    for (int j = 0; j < S::L; ++j) index[b + j] = base_b + j * kStride + static_cast<int64_t>(off[1][j]);
  } else {
    const V nan = S::bcast(static_cast<T>(__builtin_nan("")));
    S::store(y + a, S::select(nan_a, nan, best_a));
    S::store(y + b, S::select(nan_b, nan, best_b));
  }
}

// Calls blocks(a, b) over [lo, hi) (hi - lo >= L) in pairs of L-wide blocks; the last
// block is moved back to end at hi (it recomputes a few outputs), and a lone block
// is paired with itself.
template <int L, typename F>
inline void for_block_pairs(int64_t lo, int64_t hi, F&& blocks) {
  for (int64_t o = lo; o < hi;) {
    int64_t a = o, b = o + L;
    if (b > hi - L) b = hi - L;
    if (a > b) a = b;
    blocks(a, b);
    o = b + L;
  }
}

// One call per plane, kept out of line (as before the ISA units merged; inlined into the
// plane loop it measured ~6% slower on AVX2).
template <class S, int kStride, bool kIndices>
__attribute__((noinline)) void max_plane(const typename S::T* plane, typename S::T* y, int64_t* index,
               const Pool2dGeometry& g, bool vector_ok) {
  int64_t lo, hi;
  interior_columns(g, lo, hi);
  if (!vector_ok || hi - lo < S::L) hi = lo;
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const WindowRows rows = window_rows(oh, g.stride_h, g.pad_h, g.kernel_h, g.dilation_h, g.in_h);
    prefetch_rows_ahead(plane, g, oh);
    typename S::T* yr = y + oh * g.out_w;
    int64_t* ir = kIndices ? index + oh * g.out_w : nullptr;
    const int64_t vhi = rows.count > 0 ? hi : lo;
    int64_t from = lo;
    if (vhi > lo && lo > 0 && lo <= S::L && g.dilation_w == 1) {
      // Outputs [0, L) as a masked block, paired with the next interior block.
      const int64_t b = S::L < vhi - S::L ? S::L : vhi - S::L;
      max_blocks<S, kStride, kIndices, true>(plane, g, rows, 0, b, yr, ir);
      from = b + S::L;
    } else {
      for (int64_t ow = 0; ow < lo; ++ow)
        max_one<typename S::T, kIndices>(plane, g, rows, ow, yr + ow, kIndices ? ir + ow : nullptr);
    }
    if (vhi > from)
      for_block_pairs<S::L>(from, vhi, [&](int64_t a, int64_t b) {
        max_blocks<S, kStride, kIndices>(plane, g, rows, a, b, yr, ir);
      });
    for (int64_t ow = vhi; ow < g.out_w; ++ow)
      max_one<typename S::T, kIndices>(plane, g, rows, ow, yr + ow, kIndices ? ir + ow : nullptr);
  }
}

// Offsets inside a window must be exact in T to be tracked in a vector of T.
template <typename T>
bool window_offsets_exact(const Pool2dGeometry& g) {
  const double span = double((g.kernel_h - 1) * g.dilation_h) * double(g.in_w) +
                      double((g.kernel_w - 1) * g.dilation_w);
  return span < (sizeof(T) == 4 ? 16777216.0 : 9.0e15);
}

template <class S, bool kIndices>
void max_forward(const typename S::T* x, typename S::T* y, int64_t* indices,
                 const Pool2dGeometry& g, int nthreads) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  const bool exact = window_offsets_exact<typename S::T>(g);
  by_stride<S>(g, [&](auto tag) {
    constexpr int kStride = decltype(tag)::value;
    dlkern::parallel_for(g.planes, nthreads, [&](int64_t p) {
      max_plane<S, kStride, kIndices>(x + p * in_plane, y + p * out_plane,
                                      kIndices ? indices + p * out_plane : nullptr, g,
                                      kStride > 0 && exact);
    });
  });
}

// ----------------------------------------------------------------------------- avg

// Divisor and clipped rows of one output row (PyTorch's avg_pool2d rule).
struct AvgRows {
  int64_t pool_start, pool_end;  // window rows clipped to the padded plane
  int64_t first, end;            // clipped to the plane
};

inline AvgRows avg_rows(int64_t oh, const Pool2dGeometry& g) {
  AvgRows a;
  a.pool_start = oh * g.stride_h - g.pad_h;
  a.pool_end = a.pool_start + g.kernel_h;
  if (a.pool_end > g.in_h + g.pad_h) a.pool_end = g.in_h + g.pad_h;
  a.first = a.pool_start < 0 ? 0 : a.pool_start;
  a.end = a.pool_end > g.in_h ? g.in_h : a.pool_end;
  return a;
}

// Column extent and divisor of output (oh, ow); false when the window holds no input.
inline bool avg_window(const Pool2dGeometry& g, const AvgRows& rows, int64_t ow,
                       bool count_include_pad, int64_t divisor_override, int64_t& w_first,
                       int64_t& w_end, int64_t& divisor) {
  const int64_t w_start = ow * g.stride_w - g.pad_w;
  int64_t w_stop = w_start + g.kernel_w;
  if (w_stop > g.in_w + g.pad_w) w_stop = g.in_w + g.pad_w;
  const int64_t pool_size = (rows.pool_end - rows.pool_start) * (w_stop - w_start);
  w_first = w_start < 0 ? 0 : w_start;
  w_end = w_stop > g.in_w ? g.in_w : w_stop;
  if (rows.first >= rows.end || w_first >= w_end) return false;
  divisor = divisor_override != 0 ? divisor_override
            : count_include_pad   ? pool_size
                                  : (rows.end - rows.first) * (w_end - w_first);
  return true;
}

template <typename T>
inline T avg_one(const T* plane, const Pool2dGeometry& g, const AvgRows& rows, int64_t ow,
                 bool count_include_pad, int64_t divisor_override) {
  int64_t wf, we, divisor;
  if (!avg_window(g, rows, ow, count_include_pad, divisor_override, wf, we, divisor)) return T(0);
  T sum = 0;
  for (int64_t ih = rows.first; ih < rows.end; ++ih)
    for (int64_t iw = wf; iw < we; ++iw) sum += plane[ih * g.in_w + iw];
  return sum / static_cast<T>(divisor);
}

// Interior columns share one divisor per output row.
inline int64_t interior_divisor(const Pool2dGeometry& g, const AvgRows& rows,
                                bool count_include_pad, int64_t divisor_override) {
  if (divisor_override != 0) return divisor_override;
  return (count_include_pad ? rows.pool_end - rows.pool_start : rows.end - rows.first) * g.kernel_w;
}

template <class S, int kStride>
void avg_plane(const typename S::T* plane, typename S::T* y, const Pool2dGeometry& g,
               bool count_include_pad, int64_t divisor_override) {
  using T = typename S::T;
  using V = typename S::V;
  int64_t lo, hi;
  interior_columns(g, lo, hi);
  if (kStride == 0 || hi - lo < S::L) hi = lo;
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const AvgRows rows = avg_rows(oh, g);
    prefetch_rows_ahead(plane, g, oh);
    T* yr = y + oh * g.out_w;
    const int64_t vhi = rows.first < rows.end ? hi : lo;
    const T inner = static_cast<T>(interior_divisor(g, rows, count_include_pad, divisor_override));
    const V divisor = S::bcast(inner);
    // Sums of blocks a and b; with kLeft, block a is outputs [0, L), whose padding
    // columns load as 0 through masks and whose first lanes have their own divisors.
    auto blocks = [&](int64_t a, int64_t b, auto left_tag) {
      constexpr bool kLeft = decltype(left_tag)::value != 0;
      const T* origin_a = plane + a * kStride - g.pad_w;
      const T* origin_b = plane + b * kStride - g.pad_w;
      V sum_a = S::zero(), sum_b = S::zero();
      for (int64_t ih = rows.first; ih < rows.end; ++ih) {
        const T* row_a = origin_a + ih * g.in_w;
        const T* row_b = origin_b + ih * g.in_w;
        for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
          const int64_t skip = kLeft && g.pad_w > kw ? g.pad_w - kw : 0;
          sum_a = S::add(sum_a, kLeft ? (kStride == 1 ? S::load_fill(row_a + kw, skip, T(0))
                                                      : S::evens_fill(row_a + kw, skip, T(0)))
                                      : (kStride == 1 ? S::load(row_a + kw) : S::evens(row_a + kw)));
          sum_b = S::add(sum_b, kStride == 1 ? S::load(row_b + kw) : S::evens(row_b + kw));
        }
      }
      V divisor_a = divisor;
      if (kLeft) {
        T divisors[S::L];
        for (int j = 0; j < S::L; ++j) {
          int64_t wf, we, d = 1;
          if (j < lo) avg_window(g, rows, j, count_include_pad, divisor_override, wf, we, d);
          divisors[j] = j < lo ? static_cast<T>(d) : inner;
        }
        divisor_a = S::load(divisors);
      }
      S::store(yr + a, S::div(sum_a, divisor_a));
      S::store(yr + b, S::div(sum_b, divisor));
    };
    int64_t from = lo;
    if (vhi > lo && lo > 0 && lo <= S::L) {
      // Outputs [0, L) as a masked block, paired with the next interior block.
      const int64_t b = S::L < vhi - S::L ? S::L : vhi - S::L;
      blocks(0, b, IntTag<1>{});
      from = b + S::L;
    } else {
      for (int64_t ow = 0; ow < lo; ++ow)
        yr[ow] = avg_one(plane, g, rows, ow, count_include_pad, divisor_override);
    }
    if (vhi > from)
      for_block_pairs<S::L>(from, vhi, [&](int64_t a, int64_t b) { blocks(a, b, IntTag<0>{}); });
    for (int64_t ow = vhi; ow < g.out_w; ++ow)
      yr[ow] = avg_one(plane, g, rows, ow, count_include_pad, divisor_override);
  }
}

// Backward of one plane. Scalar path (any stride): each output adds its share to
// its window. Vector path (stride 1 or 2): per output row, the shares
// share[ow] = dy[ow] / divisor(ow) are spread into one contribution row in padded
// coordinates, built as a gather (column i receives share[(i - kw) / stride] for each
// kw that divides evenly), then added once to each input row of the window. Every
// store covers fresh addresses, so no load waits on an overlapping earlier store.
template <class S, int kStride>
void avg_plane_backward(const typename S::T* dy, typename S::T* dx, const Pool2dGeometry& g,
                        bool count_include_pad, int64_t divisor_override) {
  using T = typename S::T;
  using V = typename S::V;
  if (kStride == 0) {
    for (int64_t i = 0; i < g.in_h * g.in_w; ++i) dx[i] = T(0);
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const AvgRows rows = avg_rows(oh, g);
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        int64_t wf, we, divisor;
        if (!avg_window(g, rows, ow, count_include_pad, divisor_override, wf, we, divisor)) continue;
        const T share = dy[oh * g.out_w + ow] / static_cast<T>(divisor);
        for (int64_t ih = rows.first; ih < rows.end; ++ih)
          for (int64_t iw = wf; iw < we; ++iw) dx[ih * g.in_w + iw] += share;
      }
    }
    return;
  }
  // share: kernel_w zeros, out_w shares, zeros up to a whole number of vectors past
  // what the gather reads. contrib: padded columns [0, pad_w + in_w) rounded up.
  const int64_t kw_pad = g.kernel_w;
  const int64_t used = g.pad_w + g.in_w;                        // contribution columns needed
  const int64_t blocks = (used + kStride * S::L - 1) / (kStride * S::L);
  const int64_t share_len = kw_pad + blocks * S::L + g.kernel_w + S::L;
  static thread_local dlkern::AlignedBuffer share_buffer, contrib_buffer;
  T* share = share_buffer.reserve_elements<T>(share_len);
  T* contrib = contrib_buffer.reserve_elements<T>(blocks * kStride * S::L);
  for (int64_t i = 0; i < share_len; ++i) share[i] = T(0);
  T* shares = share + kw_pad;
  int64_t lo, hi;
  interior_columns(g, lo, hi);
  // Input rows below `ready` hold their sum so far; a row reached for the first time is
  // stored rather than added to, so dx needs no zeroing pass (rows no window reaches
  // are zeroed as they are passed).
  int64_t ready = 0;
  auto zero_rows = [&](int64_t from, int64_t to) {
    for (int64_t i = from * g.in_w; i < to * g.in_w; ++i) dx[i] = T(0);
  };
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const AvgRows rows = avg_rows(oh, g);
    if (rows.first >= rows.end) continue;
    const T* gr = dy + oh * g.out_w;
    auto share_at = [&](int64_t ow) {
      int64_t wf, we, divisor;
      shares[ow] = avg_window(g, rows, ow, count_include_pad, divisor_override, wf, we, divisor)
                       ? gr[ow] / static_cast<T>(divisor)
                       : T(0);
    };
    for (int64_t ow = 0; ow < lo; ++ow) share_at(ow);
    const V divisor = S::bcast(static_cast<T>(interior_divisor(g, rows, count_include_pad, divisor_override)));
    int64_t o = lo;
    for (; o + S::L <= hi; o += S::L) S::store(shares + o, S::div(S::load(gr + o), divisor));
    for (; o < g.out_w; ++o) share_at(o);
    for (int64_t m = 0; m < blocks * S::L; m += S::L) {
      if (kStride == 1) {
        V sum = S::zero();
        for (int64_t kw = 0; kw < g.kernel_w; ++kw) sum = S::add(sum, S::load(shares + m - kw));
        S::store(contrib + m, sum);
      } else {
        // Column 2m' takes share[m' - kw/2] for even kw; column 2m'+1 share[m' - (kw-1)/2] for odd kw.
        V even = S::zero(), odd = S::zero();
        for (int64_t kw = 0; kw < g.kernel_w; kw += 2) even = S::add(even, S::load(shares + m - kw / 2));
        for (int64_t kw = 1; kw < g.kernel_w; kw += 2) odd = S::add(odd, S::load(shares + m - kw / 2));
        S::store_interleaved(contrib + 2 * m, even, odd);
      }
    }
    const T* c = contrib + g.pad_w;
    if (rows.first > ready) {
      zero_rows(ready, rows.first);
      ready = rows.first;
    }
    for (int64_t ih = rows.first; ih < rows.end; ++ih) {
      T* row = dx + ih * g.in_w;
      int64_t i = 0;
      if (ih < ready) {
        for (; i + S::L <= g.in_w; i += S::L) S::store(row + i, S::add(S::load(row + i), S::load(c + i)));
        for (; i < g.in_w; ++i) row[i] += c[i];
      } else {
        for (; i + S::L <= g.in_w; i += S::L) S::store(row + i, S::load(c + i));
        for (; i < g.in_w; ++i) row[i] = c[i];
      }
    }
    if (rows.end > ready) ready = rows.end;
  }
  zero_rows(ready, g.in_h);
}

template <class S>
void avg_forward(const typename S::T* x, typename S::T* y, const Pool2dGeometry& g,
                 bool count_include_pad, int64_t divisor_override, int nthreads) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  by_stride<S>(g, [&](auto tag) {
    constexpr int kStride = decltype(tag)::value;
    dlkern::parallel_for(g.planes, nthreads, [&](int64_t p) {
      avg_plane<S, kStride>(x + p * in_plane, y + p * out_plane, g, count_include_pad, divisor_override);
    });
  });
}

template <class S>
void avg_backward(const typename S::T* dy, typename S::T* dx, const Pool2dGeometry& g,
                  bool count_include_pad, int64_t divisor_override, int nthreads) {
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  by_stride<S>(g, [&](auto tag) {
    constexpr int kStride = decltype(tag)::value;
    dlkern::parallel_for(g.planes, nthreads, [&](int64_t p) {
      avg_plane_backward<S, kStride>(dy + p * out_plane, dx + p * in_plane, g, count_include_pad,
                                     divisor_override);
    });
  });
}

// ----------------------------------------------------------------------------- adaptive

// Sum of n contiguous elements, four vector accumulators for throughput.
template <class S>
typename S::T contiguous_sum(const typename S::T* p, int64_t n) {
  using V = typename S::V;
  V a0 = S::zero(), a1 = S::zero(), a2 = S::zero(), a3 = S::zero();
  int64_t i = 0;
  for (; i + 4 * S::L <= n; i += 4 * S::L) {
    a0 = S::add(a0, S::load(p + i));
    a1 = S::add(a1, S::load(p + i + S::L));
    a2 = S::add(a2, S::load(p + i + 2 * S::L));
    a3 = S::add(a3, S::load(p + i + 3 * S::L));
  }
  for (; i + S::L <= n; i += S::L) a0 = S::add(a0, S::load(p + i));
  typename S::T sum = S::hsum(S::add(S::add(a0, a1), S::add(a2, a3)));
  for (; i < n; ++i) sum += p[i];
  return sum;
}

template <class S>
void adaptive_forward(const typename S::T* x, typename S::T* y, const Pool2dGeometry& g,
                      int nthreads) {
  using T = typename S::T;
  const int64_t in_plane = g.in_h * g.in_w, out_plane = g.out_h * g.out_w;
  dlkern::parallel_for(g.planes, nthreads, [&](int64_t p) {
    const T* plane = x + p * in_plane;
    T* out = y + p * out_plane;
    if (out_plane == 1) {  // global average pooling
      out[0] = contiguous_sum<S>(plane, in_plane) / static_cast<T>(in_plane);
      return;
    }
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      const int64_t h0 = oh * g.in_h / g.out_h, h1 = ((oh + 1) * g.in_h + g.out_h - 1) / g.out_h;
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        const int64_t w0 = ow * g.in_w / g.out_w, w1 = ((ow + 1) * g.in_w + g.out_w - 1) / g.out_w;
        T sum = 0;
        for (int64_t ih = h0; ih < h1; ++ih) sum += contiguous_sum<S>(plane + ih * g.in_w + w0, w1 - w0);
        out[oh * g.out_w + ow] = sum / static_cast<T>((h1 - h0) * (w1 - w0));
      }
    }
  });
}

// The table's max-pool entry: the index-writing variant is a separate instantiation.
template <class S>
void max_forward_entry(const typename S::T* x, typename S::T* y, int64_t* indices, const Pool2dGeometry& g,
                       int nthreads) {
  if (indices)
    max_forward<S, true>(x, y, indices, g, nthreads);
  else
    max_forward<S, false>(x, y, nullptr, g, nthreads);
}
