// Convolution kernels: shifted windows of a padded channels-last image (split into its
// stride phases for strides > 1), im2col + GEMM otherwise, a direct kernel for depthwise
// (one input channel per group).
// See conv.h for the contracts and when each path runs.
#include "cpu/conv.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/cpu_features.h"
#include "common/parallel.h"
#include "common/runtime.h"
#include "cpu/gemm.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// Column buffer per thread (one for x's columns, one for the gradient's in the
// backward): small enough that the GEMM packs its B blocks from L2, large enough that
// each GEMM has a few hundred columns. A batch of any size needs only this much.
constexpr int64_t kColumnBytes = 1 << 20;
// A thread gets at least this many multiply-adds: about 20-40 us of work.
constexpr int64_t kMinMacsPerThread = 1'000'000;

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }  // b > 0
int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

// Output positions o in [0, out) whose input position o*stride + start lies in [0, size),
// as [lo, hi) with 0 <= lo <= hi <= out: callers zero [0, lo) and [hi, out) and copy
// [lo, hi). Both ends are clamped to [0, out]: when the dilated kernel is wider than the
// input, a tap that starts far left in the padding has its first input position past
// the last output (the unclamped lo exceeded out and [0, lo) ran off the row).
void valid_range(int64_t out, int64_t size, int64_t stride, int64_t start, int64_t& lo, int64_t& hi) {
  lo = std::clamp<int64_t>(ceil_div(-start, stride), 0, out);
  hi = std::clamp<int64_t>(floor_div(size - 1 - start, stride) + 1, lo, out);
}

// Sums and dot products with 16 independent partial sums: vectorised without
// reassociation flags, and not bound by the latency of one add chain.
template <typename T>
T sum_of(const T* a, int64_t n) {
  T acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j];
  T total = 0;
  for (; i < n; ++i) total += a[i];
  for (int j = 0; j < 16; ++j) total += acc[j];
  return total;
}

template <typename T>
T dot_of(const T* a, const T* b, int64_t n) {
  T acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  T total = 0;
  for (; i < n; ++i) total += a[i] * b[i];
  for (int j = 0; j < 16; ++j) total += acc[j];
  return total;
}

// Output channels per group at or above which dY^T is handed to the GEMM as strides;
// narrower ones are transposed into a small buffer first (the GEMM packs a transposed
// B column by column, which costs a full 64-wide panel per column for narrow B).
constexpr int64_t kMinStridedGradChannels = 32;

// Per-thread scratch carved from one buffer of the calling thread, reserved before
// any parallel region: a failed allocation then raises in the caller rather than
// aborting inside OpenMP. Sizes are rounded to 16 elements (64-byte aligned slices).
int64_t round16(int64_t n) { return (n + 15) / 16 * 16; }

template <typename T>
T* reserve_scratch(int nt, int64_t per_thread) {
  static thread_local AlignedBuffer scratch;
  return per_thread > 0 ? scratch.reserve_elements<T>(static_cast<size_t>(nt * per_thread)) : nullptr;
}

// Takes `n` elements (or none when !want) from the thread's slice.
template <typename T>
T* carve(T*& cursor, int64_t n, bool want = true) {
  if (!want) return nullptr;
  T* out = cursor;
  cursor += round16(n);
  return out;
}

struct Plan {
  Conv2dShape s;
  int64_t cg, og, kg;        // channels in / out per group; GEMM depth cg*kh*kw
  int64_t hw_in, hw_out;
  bool pointwise;            // 1x1, stride 1, no padding: x itself is the column matrix
  int64_t rows_per_chunk;    // output rows per im2col chunk
  int64_t group;             // images per GEMM (small images: whole images side by side)
  double macs;               // multiply-adds of the whole convolution

  Plan(const Conv2dShape& shape, int64_t elem_bytes) : s(shape) {
    cg = s.c / s.groups;
    og = s.o / s.groups;
    kg = cg * s.kh * s.kw;
    hw_in = s.h * s.w;
    hw_out = s.out_h * s.out_w;
    pointwise = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                s.pad_w == 0 && s.out_h == s.h && s.out_w == s.w;
    const int64_t per_row = std::max<int64_t>(1, kg * s.out_w * elem_bytes);
    rows_per_chunk = pointwise ? s.out_h : std::clamp<int64_t>(kColumnBytes / per_row, 1, s.out_h);
    macs = double(s.n) * double(s.o) * double(hw_out) * double(cg * s.kh * s.kw);
    // A small image gives a narrow GEMM (few column panels, a ragged last one): put
    // several images' columns side by side, within twice the column budget and leaving
    // every thread images to work on.
    group = 1;
    if (!pointwise && rows_per_chunk == s.out_h && hw_out < 1024 && s.n > 1) {
      const int64_t per_image = std::max<int64_t>(1, kg * hw_out * elem_bytes);
      const int64_t per_thread = std::max<int64_t>(1, s.n / get_num_threads());
      group = std::clamp<int64_t>(2 * kColumnBytes / per_image, 1, std::min<int64_t>(4, per_thread));
    }
  }

  bool depthwise() const { return cg == 1 && s.groups > 1; }

  // Threads for work split over `items`: capped by the items and by the work size.
  int threads(int64_t items) const {
    return threads_for(static_cast<int64_t>(std::min(macs, 9.0e18)), kMinMacsPerThread, items);
  }
};

// Columns of output rows [r0, r1) for one group of one image: row (c, i, j) of `col`
// (row stride ld, (r1 - r0) * out_w entries) holds x[c, oh*sh - ph + i*dh, ow*sw - pw + j*dw], zero
// outside the input. xg points at the group's first channel.
template <typename T>
void im2col(const Plan& p, const T* xg, int64_t r0, int64_t r1, T* col, int64_t ld) {
  const Conv2dShape& s = p.s;
  for (int64_t c = 0; c < p.cg; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        T* dst = col + ((c * s.kh + i) * s.kw + j) * ld;
        const int64_t start = j * s.dil_w - s.pad_w;
        int64_t lo, hi;
        valid_range(s.out_w, s.w, s.stride_w, start, lo, hi);
        for (int64_t oh = r0; oh < r1; ++oh, dst += s.out_w) {
          const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
          if (ih < 0 || ih >= s.h) {
            std::memset(dst, 0, sizeof(T) * s.out_w);
            continue;
          }
          for (int64_t ow = 0; ow < lo; ++ow) dst[ow] = T(0);
          if (hi > lo) {
            // Pointers only to elements inside the row: `start` alone may lie far outside.
            const T* from = xg + (c * s.h + ih) * s.w + (lo * s.stride_w + start);
            T* to = dst + lo;
            const int64_t count = hi - lo;
            if (s.stride_w == 1) {
              std::memcpy(to, from, sizeof(T) * count);
            } else if (s.stride_w == 2) {
              // A constant stride lets the compiler vectorise the gather with shuffles.
              for (int64_t q = 0; q < count; ++q) to[q] = from[2 * q];
            } else {
              for (int64_t q = 0; q < count; ++q) to[q] = from[q * s.stride_w];
            }
          }
          for (int64_t ow = hi; ow < s.out_w; ++ow) dst[ow] = T(0);
        }
      }
}

// The adjoint of im2col: adds each column entry back into dxg (same indexing).
template <typename T>
void col2im_add(const Plan& p, const T* col, int64_t r0, int64_t r1, T* dxg, int64_t ld) {
  const Conv2dShape& s = p.s;
  for (int64_t c = 0; c < p.cg; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const T* src = col + ((c * s.kh + i) * s.kw + j) * ld;
        const int64_t start = j * s.dil_w - s.pad_w;
        int64_t lo, hi;
        valid_range(s.out_w, s.w, s.stride_w, start, lo, hi);
        if (hi <= lo) continue;  // this tap reads only padding
        const int64_t count = hi - lo;
        for (int64_t oh = r0; oh < r1; ++oh, src += s.out_w) {
          const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
          if (ih < 0 || ih >= s.h) continue;
          T* dst = dxg + (c * s.h + ih) * s.w + (lo * s.stride_w + start);
          const T* from = src + lo;
          if (s.stride_w == 1) {
            for (int64_t q = 0; q < count; ++q) dst[q] += from[q];
          } else if (s.stride_w == 2) {
            for (int64_t q = 0; q < count; ++q) dst[2 * q] += from[q];
          } else {
            for (int64_t q = 0; q < count; ++q) dst[q * s.stride_w] += from[q];
          }
        }
      }
}

// C (m, n; row stride ldc) = A B + beta * C with A (m, k) at (a_rs, a_cs) and
// B (k, n) at (b_rs, b_cs). Inside this file's parallel regions (one image per thread)
// gemm() runs on the calling thread, with its single-thread paths.
template <typename T>
void gemm_into(int64_t m, int64_t n, int64_t k, const T* a, int64_t a_rs, int64_t a_cs,
               const T* b, int64_t b_rs, int64_t b_cs, T beta, T* c, int64_t ldc) {
  GemmArgs<T> g;
  g.m = m, g.n = n, g.k = k;
  g.a = a, g.a_rs = a_rs, g.a_cs = a_cs;
  g.b = b, g.b_rs = b_rs, g.b_cs = b_cs;
  g.beta = beta, g.c = c, g.ldc = ldc;
  gemm(g);  // single-threaded when called inside this file's parallel regions
}

// Images (or groups of small images) are split among threads, each running its
// im2col and single-threaded GEMMs on its own buffers; a single image runs its GEMMs
// threaded instead. Forward images are independent, so they are handed out
// dynamically: a thread whose core the host takes away does not hold up the others
// (the backward keeps a static split, so its per-thread sums are reproducible).
template <typename T>
void forward_gemm(const Plan& p, const T* x, const T* w, const T* bias, T* y) {
  const Conv2dShape& s = p.s;
  const int64_t blocks = (s.n + p.group - 1) / p.group;
  const int nt = blocks > 1 ? p.threads(blocks) : 1;
  const int64_t max_cols = p.group * p.rows_per_chunk * s.out_w;
  const int64_t col_elems = p.pointwise ? 0 : round16(p.kg * max_cols);
  const int64_t per_thread = col_elems + (p.group > 1 ? round16(p.og * max_cols) : 0);
  T* scratch = reserve_scratch<T>(nt, per_thread);
  auto run_block = [&](int64_t blk) {
    T* cursor = scratch ? scratch + omp_get_thread_num() * per_thread : nullptr;
    T* col = carve(cursor, p.kg * max_cols, !p.pointwise);
    T* tmp = carve(cursor, p.og * max_cols, p.group > 1);
    const int64_t n0 = blk * p.group, gb = std::min(p.group, s.n - n0);
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* wg = w + g * p.og * p.kg;
      for (int64_t r0 = 0; r0 < s.out_h; r0 += p.rows_per_chunk) {
        const int64_t r1 = std::min(s.out_h, r0 + p.rows_per_chunk);
        const int64_t ncols = (r1 - r0) * s.out_w, ld = gb * ncols;
        const T* b = x + (n0 * s.c + g * p.cg) * p.hw_in + r0 * s.out_w;
        int64_t ldb = p.hw_in;
        if (!p.pointwise) {
          for (int64_t i = 0; i < gb; ++i)
            im2col(p, x + ((n0 + i) * s.c + g * p.cg) * p.hw_in, r0, r1, col + i * ncols, ld);
          b = col, ldb = ld;
        }
        T* yc = y + (n0 * s.o + g * p.og) * p.hw_out + r0 * s.out_w;
        if (gb == 1) {
          gemm_into<T>(p.og, ncols, p.kg, wg, p.kg, 1, b, ldb, 1, T(0), yc, p.hw_out);
          if (bias) {
            // Fused here while the chunk of y is still in cache.
            for (int64_t o = 0; o < p.og; ++o) {
              const T bo = bias[g * p.og + o];
              T* row = yc + o * p.hw_out;
              for (int64_t q = 0; q < ncols; ++q) row[q] += bo;
            }
          }
        } else {
          // Whole images side by side: compute into tmp, then each image's part (+ bias).
          gemm_into<T>(p.og, ld, p.kg, wg, p.kg, 1, b, ldb, 1, T(0), tmp, ld);
          for (int64_t i = 0; i < gb; ++i)
            for (int64_t o = 0; o < p.og; ++o) {
              const T bo = bias ? bias[g * p.og + o] : T(0);
              const T* src = tmp + o * ld + i * ncols;
              T* row = y + ((n0 + i) * s.o + g * p.og + o) * p.hw_out;
              for (int64_t q = 0; q < ncols; ++q) row[q] = src[q] + bo;
            }
        }
      }
    }
  };
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t blk = 0; blk < blocks; ++blk) run_block(blk);
  } else {
    for (int64_t blk = 0; blk < blocks; ++blk) run_block(blk);
  }
}

template <typename T>
void backward_gemm(const Plan& p, const T* dy, const T* x, const T* w, T* dx, T* dw, T* db) {
  const Conv2dShape& s = p.s;
  const int64_t blocks = (s.n + p.group - 1) / p.group;
  const int nt = blocks > 1 ? p.threads(blocks) : 1;
  // Each thread sums its images' dweight (transposed: per group (kg, og)) and dbias
  // into its own slot; the slots are added in thread order afterwards.
  const int64_t wsize = s.o * p.kg;
  const int64_t slot = (wsize + s.o + 15) / 16 * 16;
  static thread_local AlignedBuffer acc_buffer;
  T* acc = nullptr;
  if (dw || db) {
    acc = acc_buffer.reserve_elements<T>(static_cast<size_t>(slot * nt));
    std::memset(acc, 0, sizeof(T) * slot * nt);
  }
  const int64_t max_cols = p.group * p.rows_per_chunk * s.out_w;
  const int64_t chunk_elems = p.kg * max_cols;
  const bool strided_grad = p.og >= kMinStridedGradChannels;

  const bool want_col = dw && !p.pointwise, want_gcol = dx && !p.pointwise, want_dyt = dw && !strided_grad;
  const bool want_dyb = p.group > 1 && (dx || dw);
  const int64_t per_thread = (want_col ? round16(chunk_elems) : 0) + (want_gcol ? round16(chunk_elems) : 0) +
                             (want_dyt ? round16(max_cols * p.og) : 0) + (want_dyb ? round16(max_cols * p.og) : 0);
  T* scratch = reserve_scratch<T>(nt, per_thread);

  auto run_block = [&](int64_t blk, T* acc_w, T* acc_b) {
    T* cursor = scratch ? scratch + omp_get_thread_num() * per_thread : nullptr;
    T* col = carve(cursor, chunk_elems, want_col);
    T* gcol = carve(cursor, chunk_elems, want_gcol);
    T* dyt = carve(cursor, max_cols * p.og, want_dyt);
    T* dyb = carve(cursor, max_cols * p.og, want_dyb);
    const int64_t n0 = blk * p.group, gb = std::min(p.group, s.n - n0);
    if (dx && !p.pointwise) std::memset(dx + n0 * s.c * p.hw_in, 0, sizeof(T) * gb * s.c * p.hw_in);
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* wg = w + g * p.og * p.kg;
      for (int64_t r0 = 0; r0 < s.out_h && (dx || dw); r0 += p.rows_per_chunk) {
        const int64_t r1 = std::min(s.out_h, r0 + p.rows_per_chunk);
        const int64_t ncols = (r1 - r0) * s.out_w, ld = gb * ncols;
        // dY of the block as an (og, ld) matrix: in place for one image, else gathered.
        const T* dyc = dy + (n0 * s.o + g * p.og) * p.hw_out + r0 * s.out_w;
        int64_t lddy = p.hw_out;
        if (gb > 1) {
          for (int64_t o = 0; o < p.og; ++o)
            for (int64_t i = 0; i < gb; ++i)
              std::memcpy(dyb + o * ld + i * ncols, dy + ((n0 + i) * s.o + g * p.og + o) * p.hw_out + r0 * s.out_w,
                          sizeof(T) * ncols);
          dyc = dyb, lddy = ld;
        }
        if (dw) {
          // dW_g^T (kg, og) += cols (kg, ld) @ dY_g^T (ld, og): the columns are read in
          // place (row-major A) and only the small dY block is packed.
          const T* a = x + (n0 * s.c + g * p.cg) * p.hw_in + r0 * s.out_w;
          int64_t lda = p.hw_in;
          if (!p.pointwise) {
            for (int64_t i = 0; i < gb; ++i)
              im2col(p, x + ((n0 + i) * s.c + g * p.cg) * p.hw_in, r0, r1, col + i * ncols, ld);
            a = col, lda = ld;
          }
          const T* b = dyc;
          int64_t b_rs = 1, b_cs = lddy;
          if (!strided_grad) {
            for (int64_t q = 0; q < ld; ++q)
              for (int64_t o = 0; o < p.og; ++o) dyt[q * p.og + o] = dyc[o * lddy + q];
            b = dyt, b_rs = p.og, b_cs = 1;
          }
          gemm_into<T>(p.kg, p.og, ld, a, lda, 1, b, b_rs, b_cs, T(1), acc_w + g * p.og * p.kg, p.og);
        }
        if (dx) {
          // cols_grad (kg, ld) = W_g^T (kg, og) @ dY_g (og, ld), then scattered into dx.
          T* dxg = dx + (n0 * s.c + g * p.cg) * p.hw_in;
          if (p.pointwise) {
            gemm_into<T>(p.kg, ncols, p.og, wg, 1, p.kg, dyc, lddy, 1, T(0), dxg + r0 * s.out_w, p.hw_in);
          } else {
            gemm_into<T>(p.kg, ld, p.og, wg, 1, p.kg, dyc, lddy, 1, T(0), gcol, ld);
            for (int64_t i = 0; i < gb; ++i)
              col2im_add(p, gcol + i * ncols, r0, r1, dx + ((n0 + i) * s.c + g * p.cg) * p.hw_in, ld);
          }
        }
      }
    }
    if (db)
      for (int64_t n = n0; n < n0 + gb; ++n)
        for (int64_t o = 0; o < s.o; ++o) acc_b[o] += sum_of(dy + (n * s.o + o) * p.hw_out, p.hw_out);
  };

  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
      T* acc_w = acc ? acc + tid * slot : nullptr;
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < blocks; ++blk) run_block(blk, acc_w, acc_w ? acc_w + wsize : nullptr);
    }
  } else {
    for (int64_t blk = 0; blk < blocks; ++blk) run_block(blk, acc, acc ? acc + wsize : nullptr);
  }
  if (dw) {
    // Slot layout per group: (kg, og); dweight per group: (og, kg).
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t k = 0; k < p.kg; ++k)
        for (int64_t o = 0; o < p.og; ++o) {
          const int64_t i = g * p.og * p.kg + k * p.og + o;
          T sum = acc[i];
          for (int t = 1; t < nt; ++t) sum += acc[t * slot + i];
          dw[(g * p.og + o) * p.kg + k] = sum;
        }
  }
  for (int64_t o = 0; o < s.o && db; ++o) {
    T sum = acc[wsize + o];
    for (int t = 1; t < nt; ++t) sum += acc[t * slot + wsize + o];
    db[o] = sum;
  }
}

// ---------------------------------------------------------------- shifted windows, no im2col
// For stride 1, tap (i, j) of the kernel reads the zero-padded input (Hp, Wp) at a
// fixed shift. Number output pixels q = oh*Wp + ow (ow < Wp; the last Wp - out_w
// "garbage" pixels of each row are computed and discarded) and keep the padded image
// channels-last, xpad[(pixel), c]; then for each tap
//   yT_g (pixels, og) += xpad[q + i*dh*Wp + j*dw, g's channels] (pixels, cg) @ W_tap^T (cg, og)
// where the first operand is a row-major window of xpad that the GEMM reads in place.
// So no column matrix is built: one padded channels-last copy of the image replaces
// the kh*kw-times larger im2col buffer. Pixels as GEMM rows keep the 64-wide register
// tile full (n = og) and the weights, read in place, small; measured ~12% faster than
// the channels-first orientation on the ResNet shapes.

// dst[j*ld_dst + i] = src[i*ld_src + j] (+ add[j] when given) for i < rows, j < cols,
// in 16 x 16 tiles so both sides stay in L1 (an element-by-element strided copy runs
// several times slower: every store starts a new cache line).
template <typename T>
void transpose_copy(const T* src, int64_t ld_src, int64_t rows, int64_t cols, T* dst, int64_t ld_dst,
                    const T* add = nullptr) {
  if constexpr (std::is_same_v<T, float>) {
    if (const auto vec = active_kernels().conv_transpose_f32) {
      vec(src, ld_src, rows, cols, dst, ld_dst, add);
      return;
    }
  }
  constexpr int64_t B = 16;
  for (int64_t i0 = 0; i0 < rows; i0 += B) {
    const int64_t i1 = std::min(rows, i0 + B);
    for (int64_t j0 = 0; j0 < cols; j0 += B) {
      const int64_t j1 = std::min(cols, j0 + B);
      for (int64_t j = j0; j < j1; ++j) {
        const T a = add ? add[j] : T(0);
        T* d = dst + j * ld_dst;
        for (int64_t i = i0; i < i1; ++i) d[i] = src[i * ld_src + j] + a;
      }
    }
  }
}

// dst[col_off[j] + i] = src[i*ld_src + j] for i < rows, j < cols, skipping columns with
// col_off[j] < 0: channels-first rows into channels-last pixels at arbitrary places (the
// polyphase split sends each input column to its phase).
template <typename T>
void scatter_rows(const T* src, int64_t ld_src, int64_t rows, int64_t cols, T* dst, const int64_t* col_off) {
  if constexpr (std::is_same_v<T, float>) {
    if (const auto vec = active_kernels().conv_scatter_rows_f32) {
      vec(src, ld_src, rows, cols, dst, col_off);
      return;
    }
  }
  for (int64_t j = 0; j < cols; ++j)
    if (col_off[j] >= 0)
      for (int64_t i = 0; i < rows; ++i) dst[col_off[j] + i] = src[i * ld_src + j];
}

// The reverse: dst[i*ld_dst + j] = src[col_off[j] + i], or 0 where col_off[j] < 0.
template <typename T>
void gather_rows(const T* src, const int64_t* col_off, int64_t rows, int64_t cols, T* dst, int64_t ld_dst) {
  if constexpr (std::is_same_v<T, float>) {
    if (const auto vec = active_kernels().conv_gather_rows_f32) {
      vec(src, col_off, rows, cols, dst, ld_dst);
      return;
    }
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[i * ld_dst + j] = col_off[j] >= 0 ? src[col_off[j] + i] : T(0);
}

// Strides other than 1 use the same scheme on the polyphase split of the padded image:
// phase (a, b) holds xpad[r*sh + a, q*sw + b] at (r, q), and tap (i, j) reads phase
// ((i*dh) % sh, (j*dw) % sw) at the fixed shift ((i*dh) / sh, (j*dw) / sw) -- again a
// stride-1 window, so a stride-2 3x3 is four stride-1 convolutions (2x2, 2x1, 1x2, 1x1
// sub-kernels) summed into one output, with no extra FLOPs. Only the phases some tap
// reads are stored (a 1x1 stride-2 conv keeps one); together they are at most the size
// of the padded image. Stride 1 is the one-phase case.
struct Shifted {
  int64_t sh_, sw_;            // strides
  int64_t hq, wq;              // rows and columns of one phase (those the taps reach)
  int64_t plane;               // elements of one phase: hq * wq * c
  int64_t image;               // elements of all stored phases
  int64_t taps;                // kh * kw
  int64_t bwd_rows;            // output rows per backward chunk
  // Index of row phase a (column phase b) among the stored ones, -1 when no tap reads it.
  std::vector<int64_t> phase_h, phase_w;
  int64_t phases_w = 0;        // stored column phases
  // Input column iw lands at col_off[iw] within a phase row block (phase column and
  // pixel, in elements), -1 when no tap reads it.
  std::vector<int64_t> col_off;

  // Rows per chunk so a chunk has about `cols` pixels (at least one row).
  static int64_t rows_for(const Plan& p, int64_t wq, int64_t cols) {
    return std::clamp<int64_t>((cols + wq - p.s.out_w) / wq, 1, p.s.out_h);
  }

  explicit Shifted(const Plan& p) {
    const Conv2dShape& s = p.s;
    sh_ = s.stride_h, sw_ = s.stride_w;
    hq = s.out_h + s.dil_h * (s.kh - 1) / sh_;
    wq = s.out_w + s.dil_w * (s.kw - 1) / sw_;
    phase_h.assign(sh_, -1), phase_w.assign(sw_, -1);
    for (int64_t i = 0; i < s.kh; ++i) phase_h[(i * s.dil_h) % sh_] = 0;
    for (int64_t j = 0; j < s.kw; ++j) phase_w[(j * s.dil_w) % sw_] = 0;
    int64_t phases_h = 0;
    for (auto& v : phase_h) v = v < 0 ? -1 : phases_h++;
    for (auto& v : phase_w) v = v < 0 ? -1 : phases_w++;
    plane = hq * wq * s.c;
    image = phases_h * phases_w * plane;
    col_off.assign(s.w, -1);
    for (int64_t iw = 0; iw < s.w; ++iw) {
      const int64_t b = (iw + s.pad_w) % sw_, q = (iw + s.pad_w) / sw_;
      if (phase_w[b] >= 0 && q < wq) col_off[iw] = phase_w[b] * plane + q * s.c;
    }
    taps = s.kh * s.kw;
    // The GEMM's single-thread small path (operands read in place) needs m*n*k <= 2^22
    // and k <= 512; in the dweight product the depth is the chunk's pixels.
    const int64_t per_pixel = std::max<int64_t>(1, p.og * p.cg);
    bwd_rows = rows_for(p, wq, std::min<int64_t>(512, (int64_t(1) << 22) / per_pixel));
  }

  // Worth it when the garbage pixels are a small part of the work and each tap's GEMM
  // has a real depth: its k is the channels per group, and with a handful of channels
  // (LeNet's first layer has one) im2col's single deep GEMM is far faster. Garbage up to
  // an eighth pays at stride 1; strided layers have 4x fewer output pixels per input
  // pixel to spread the copies over, and at 1/8 (a stride-2 3x3 with a 7x7 output,
  // 55-pixel GEMMs) measured 2-7% slower than im2col, so they get 1/12 (a 14x14 output,
  // 1/15, is 20% faster).
  static constexpr int64_t kMinChannels = 16;
  static bool applies(const Plan& p) {
    const Conv2dShape& s = p.s;
    if (p.pointwise || p.depthwise() || p.cg < kMinChannels) return false;
    const int64_t extra = s.dil_w * (s.kw - 1) / s.stride_w;
    const int64_t max_share = s.stride_h == 1 && s.stride_w == 1 ? 8 : 12;
    return extra * max_share <= s.out_w + extra;
  }

  // First element of stored phase (a, b); both must be stored.
  int64_t phase_offset(int64_t a, int64_t b) const { return (phase_h[a] * phases_w + phase_w[b]) * plane; }

  // Where input row ih lands (phase row block and row, in elements), -1 when no tap reads it.
  int64_t row_offset(const Plan& p, int64_t ih) const {
    const int64_t a = (ih + p.s.pad_h) % sh_, r = (ih + p.s.pad_h) / sh_;
    return phase_h[a] >= 0 && r < hq ? phase_h[a] * phases_w * plane + r * wq * p.s.c : -1;
  }

  // Blocks of 16 channels (the last one overlapping the previous, so every transposed
  // tile is full) and the input rows within each: 16 sequential streams through x.
  static constexpr int64_t kChannelBlock = 16;

  // Zero-padded, channels-last, phase-split copy of one image.
  template <typename T>
  void pad_image(const Plan& p, const T* xn, T* xpad) const {
    const Conv2dShape& s = p.s;
    // Zero only the padding: phase rows outside the input, then each row's margins.
    for (int64_t a = 0; a < sh_; ++a)
      for (int64_t b = 0; b < sw_ && phase_h[a] >= 0; ++b) {
        if (phase_w[b] < 0) continue;
        int64_t lo, hi;
        valid_range(wq, s.w, sw_, b - s.pad_w, lo, hi);
        for (int64_t r = 0; r < hq; ++r) {
          T* dst = xpad + phase_offset(a, b) + r * wq * s.c;
          const int64_t ih = r * sh_ + a - s.pad_h;
          if (ih < 0 || ih >= s.h) {
            std::memset(dst, 0, sizeof(T) * wq * s.c);
          } else {
            std::memset(dst, 0, sizeof(T) * lo * s.c);
            std::memset(dst + hi * s.c, 0, sizeof(T) * (wq - hi) * s.c);
          }
        }
      }
    const int64_t cb = std::min(kChannelBlock, s.c);
    for (int64_t c0 = 0; c0 < s.c; c0 += cb) {
      const int64_t c = std::min(c0, s.c - cb);
      for (int64_t ih = 0; ih < s.h; ++ih) {
        const int64_t off = row_offset(p, ih);
        if (off >= 0) scatter_rows(xn + c * p.hw_in + ih * s.w, p.hw_in, cb, s.w, xpad + off + c, col_off.data());
      }
    }
  }

  // The inverse for gradients: dx[c, ih, iw] from the phase-split dxpad (zero where no
  // tap reaches).
  template <typename T>
  void unpad_image(const Plan& p, const T* dxpad, T* dxn) const {
    const Conv2dShape& s = p.s;
    const int64_t cb = std::min(kChannelBlock, s.c);
    for (int64_t c0 = 0; c0 < s.c; c0 += cb) {
      const int64_t c = std::min(c0, s.c - cb);
      for (int64_t ih = 0; ih < s.h; ++ih) {
        const int64_t off = row_offset(p, ih);
        T* dst = dxn + c * p.hw_in + ih * s.w;
        if (off >= 0) {
          gather_rows(dxpad + off + c, col_off.data(), cb, s.w, dst, p.hw_in);
        } else {
          for (int64_t k = 0; k < cb; ++k) std::memset(dst + k * p.hw_in, 0, sizeof(T) * s.w);
        }
      }
    }
  }

  // Where tap `tap` reads, in elements of the phase-split image (before the chunk's
  // row offset and the group's channel offset).
  int64_t tap_offset(const Plan& p, int64_t tap) const {
    const int64_t i = (tap / p.s.kw) * p.s.dil_h, j = (tap % p.s.kw) * p.s.dil_w;
    return phase_offset(i % sh_, j % sw_) + ((i / sh_) * wq + j / sw_) * p.s.c;
  }
};

// Weight taps as row-major matrices, [g][tap][o][c] (og, cg) or, with `transpose`,
// [g][tap][c][o] (cg, og). Small (the weight's size); built once per call.
template <typename T>
void gather_taps(const Plan& p, const Shifted& sh, const T* w, T* out, bool transpose,
                 const int64_t* slot = nullptr) {
  // Output channels in blocks of 16: the transposed writes then fill whole cache lines
  // and the block's weight rows stay in cache (o innermost alone wrote one element per
  // line, ~0.3 ms of a ResNet stride-2 forward call).
  constexpr int64_t B = 16;
  for (int64_t g = 0; g < p.s.groups; ++g)
    for (int64_t o0 = 0; o0 < p.og; o0 += B) {
      const int64_t o1 = std::min(p.og, o0 + B);
      for (int64_t c = 0; c < p.cg; ++c)
        for (int64_t tap = 0; tap < sh.taps; ++tap) {
          T* dst = out + (g * sh.taps + (slot ? slot[tap] : tap)) * p.og * p.cg;
          const T* src = w + (g * p.og) * p.kg + c * sh.taps + tap;
          for (int64_t o = o0; o < o1; ++o) {
            if (transpose)
              dst[c * p.og + o] = src[o * p.kg];
            else
              dst[o * p.cg + c] = src[o * p.kg];
          }
        }
    }
}

template <typename T>
void forward_shifted(const Plan& p, const T* x, const T* w, const T* bias, T* y) {
  const Conv2dShape& s = p.s;
  const Shifted sh(p);
  // Taps of one kernel row that read the same phase at consecutive column shifts read
  // consecutive pixels, so (one group) their windows side by side are one window of
  // depth count*c: one GEMM instead of count, with their weights stacked (a stride-2 3x3
  // runs 6 GEMMs, a stride-1 3x3 3). Runs: (first tap, count), weights in run order.
  std::vector<int64_t> run_first, run_count, slot(sh.taps);
  int64_t max_count = 1;
  for (int64_t i = 0, next = 0; i < s.kh; ++i)
    for (int64_t b = 0; b < sh.sw_; ++b)
      for (int64_t j = b; j < s.kw; j += sh.sw_) {
        const bool extend = s.groups == 1 && s.dil_w == 1 && j != b && (run_count.back() + 1) * p.cg <= 512;
        if (extend) {
          ++run_count.back();
        } else {
          run_first.push_back(i * s.kw + j);
          run_count.push_back(1);
        }
        max_count = std::max(max_count, run_count.back());
        slot[i * s.kw + j] = next++;
      }
  // Each slot's weights and each run's first slot, in the order above.
  std::vector<int64_t> run_slot(run_first.size());
  for (size_t r = 0; r < run_first.size(); ++r) run_slot[r] = slot[run_first[r]];
  static thread_local AlignedBuffer taps_buffer;
  T* wt = taps_buffer.reserve_elements<T>(static_cast<size_t>(s.o * p.kg));
  gather_taps(p, sh, w, wt, true, slot.data());
  const int64_t fwd_rows = Shifted::rows_for(
      p, sh.wq, std::min<int64_t>(768, (int64_t(1) << 22) / std::max<int64_t>(1, p.og * p.cg * max_count)));
  const int64_t max_pixels = fwd_rows * sh.wq;
  const int nt = s.n > 1 ? p.threads(s.n) : 1;
  const int64_t per_thread = round16(sh.image) + round16(p.og * max_pixels);
  T* scratch = reserve_scratch<T>(nt, per_thread);

  auto run_image = [&](int64_t n) {
    T* cursor = scratch + omp_get_thread_num() * per_thread;
    T* xpad = carve(cursor, sh.image);
    T* tmp = carve(cursor, p.og * max_pixels);
    sh.pad_image(p, x + n * s.c * p.hw_in, xpad);
    for (int64_t g = 0; g < s.groups; ++g) {
      for (int64_t r0 = 0; r0 < s.out_h; r0 += fwd_rows) {
        const int64_t r1 = std::min(s.out_h, r0 + fwd_rows);
        const int64_t nq = (r1 - r0 - 1) * sh.wq + s.out_w;
        for (size_t r = 0; r < run_first.size(); ++r)
          gemm_into<T>(nq, p.og, run_count[r] * p.cg,
                       xpad + sh.tap_offset(p, run_first[r]) + r0 * sh.wq * s.c + g * p.cg, s.c, 1,
                       wt + (g * sh.taps + run_slot[r]) * p.og * p.cg, p.og, 1, r ? T(1) : T(0), tmp, p.og);
        // Back to channels-first without the garbage pixels, plus the bias, while the
        // chunk is in cache.
        for (int64_t oh = r0; oh < r1; ++oh)
          transpose_copy(tmp + (oh - r0) * sh.wq * p.og, p.og, s.out_w, p.og,
                         y + ((n * s.o + g * p.og) * s.out_h + oh) * s.out_w, p.hw_out,
                         bias ? bias + g * p.og : nullptr);
      }
    }
  };
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t n = 0; n < s.n; ++n) run_image(n);
  } else {
    for (int64_t n = 0; n < s.n; ++n) run_image(n);
  }
}

template <typename T>
void backward_shifted(const Plan& p, const T* dy, const T* x, const T* w, T* dx, T* dw, T* db) {
  const Conv2dShape& s = p.s;
  const Shifted sh(p);
  const int nt = s.n > 1 ? p.threads(s.n) : 1;
  static thread_local AlignedBuffer taps_buffer, acc_buffer;
  T* wt = nullptr;
  if (dx) {
    wt = taps_buffer.reserve_elements<T>(static_cast<size_t>(s.o * p.kg));
    gather_taps(p, sh, w, wt, false);
  }
  // Per-thread dweight ([g][tap][o][c]) and dbias, added in thread order afterwards.
  const int64_t wsize = s.o * p.kg;
  const int64_t slot = (wsize + s.o + 15) / 16 * 16;
  T* acc = nullptr;
  if (dw || db) {
    acc = acc_buffer.reserve_elements<T>(static_cast<size_t>(slot * nt));
    std::memset(acc, 0, sizeof(T) * slot * nt);
  }
  const int64_t image = sh.image;
  const int64_t max_pixels = sh.bwd_rows * sh.wq;

  const int64_t per_thread = (dw ? round16(image) + round16(p.og * max_pixels) : 0) +
                             (dx ? round16(image) + round16(p.og * max_pixels) : 0);
  T* scratch = reserve_scratch<T>(nt, per_thread);

  auto run_image = [&](int64_t n, T* acc_w, T* acc_b) {
    T* cursor = scratch ? scratch + omp_get_thread_num() * per_thread : nullptr;
    T* xpad = carve(cursor, image, dw != nullptr);
    T* dxpad = carve(cursor, image, dx != nullptr);
    T* dyv = carve(cursor, p.og * max_pixels, dw != nullptr);
    T* dyt = carve(cursor, p.og * max_pixels, dx != nullptr);
    if (dw) sh.pad_image(p, x + n * s.c * p.hw_in, xpad);
    if (dx) std::memset(dxpad, 0, sizeof(T) * image);
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* dyg = dy + (n * s.o + g * p.og) * p.hw_out;
      for (int64_t r0 = 0; r0 < s.out_h && (dx || dw); r0 += sh.bwd_rows) {
        const int64_t r1 = std::min(s.out_h, r0 + sh.bwd_rows);
        const int64_t nq = (r1 - r0 - 1) * sh.wq + s.out_w;
        // dY chunk on the padded pixel grid, garbage pixels zero: (og, nq) for the
        // dweight products and channels-last (nq, og) for the dx products.
        for (int64_t o = 0; o < p.og; ++o)
          for (int64_t oh = r0; oh < r1; ++oh) {
            const T* src = dyg + o * p.hw_out + oh * s.out_w;
            const int64_t q0 = (oh - r0) * sh.wq;
            const int64_t width = oh + 1 < r1 ? sh.wq : s.out_w;
            if (dyv) {
              T* dst = dyv + o * nq + q0;
              for (int64_t ow = 0; ow < s.out_w; ++ow) dst[ow] = src[ow];
              for (int64_t ow = s.out_w; ow < width; ++ow) dst[ow] = T(0);
            }
          }
        if (dyt)
          for (int64_t oh = r0; oh < r1; ++oh) {
            const int64_t q0 = (oh - r0) * sh.wq;
            const int64_t width = oh + 1 < r1 ? sh.wq : s.out_w;
            transpose_copy(dyg + oh * s.out_w, p.hw_out, p.og, s.out_w, dyt + q0 * p.og, p.og);
            std::memset(dyt + (q0 + s.out_w) * p.og, 0, sizeof(T) * (width - s.out_w) * p.og);
          }
        for (int64_t tap = 0; tap < sh.taps; ++tap) {
          const int64_t shift = sh.tap_offset(p, tap) + r0 * sh.wq * s.c + g * p.cg;
          // dW_tap (og, cg) += dY (og, nq) @ xpad window (nq, cg)
          if (dw)
            gemm_into<T>(p.og, p.cg, nq, dyv, nq, 1, xpad + shift, s.c, 1, T(1),
                         acc_w + (g * sh.taps + tap) * p.og * p.cg, p.cg);
          // dxpad window (nq, cg) += dY^T (nq, og) @ W_tap (og, cg)
          if (dx)
            gemm_into<T>(nq, p.cg, p.og, dyt, p.og, 1, wt + (g * sh.taps + tap) * p.og * p.cg, p.cg, 1, T(1),
                         dxpad + shift, s.c);
        }
      }
    }
    if (dx) sh.unpad_image(p, dxpad, dx + n * s.c * p.hw_in);
    if (db)
      for (int64_t o = 0; o < s.o; ++o) acc_b[o] += sum_of(dy + (n * s.o + o) * p.hw_out, p.hw_out);
  };

  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
      T* acc_w = acc ? acc + tid * slot : nullptr;
#pragma omp for schedule(static)
      for (int64_t n = 0; n < s.n; ++n) run_image(n, acc_w, acc_w ? acc_w + wsize : nullptr);
    }
  } else {
    for (int64_t n = 0; n < s.n; ++n) run_image(n, acc, acc ? acc + wsize : nullptr);
  }
  if (dw) {
    // In dweight's order (taps innermost), so the writes are sequential.
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t o = 0; o < p.og; ++o)
        for (int64_t c = 0; c < p.cg; ++c)
          for (int64_t tap = 0; tap < sh.taps; ++tap) {
            const int64_t i = ((g * sh.taps + tap) * p.og + o) * p.cg + c;
            T sum = acc[i];
            for (int t = 1; t < nt; ++t) sum += acc[t * slot + i];
            dw[(g * p.og + o) * p.kg + c * sh.taps + tap] = sum;
          }
  }
  for (int64_t o = 0; o < s.o && db; ++o) {
    T sum = acc[wsize + o];
    for (int t = 1; t < nt; ++t) sum += acc[t * slot + wsize + o];
    db[o] = sum;
  }
}

// ---------------------------------------------------------------- depthwise (cg == 1)
// Output channel oc reads input channel oc / og. Loops run along output rows so the
// compiler vectorises the unit-stride case.

template <typename T>
void forward_depthwise(const Plan& p, const T* x, const T* w, const T* bias, T* y) {
  const Conv2dShape& s = p.s;
  const int64_t planes = s.n * s.o;
  const int nt = p.threads(planes);
  parallel_for(planes, nt, [&](int64_t plane) {
    const int64_t n = plane / s.o, oc = plane % s.o;
    const T* xp = x + (n * s.c + oc / p.og) * p.hw_in;
    const T* wk = w + oc * s.kh * s.kw;
    T* yp = y + plane * p.hw_out;
    const T b = bias ? bias[oc] : T(0);
    for (int64_t oh = 0; oh < s.out_h; ++oh) {
      T* yr = yp + oh * s.out_w;
      for (int64_t ow = 0; ow < s.out_w; ++ow) yr[ow] = b;
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
        if (ih < 0 || ih >= s.h) continue;
        const T* xr = xp + ih * s.w;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t start = j * s.dil_w - s.pad_w;
          int64_t lo, hi;
          valid_range(s.out_w, s.w, s.stride_w, start, lo, hi);
          if (hi <= lo) continue;  // this tap reads only padding
          const T wv = wk[i * s.kw + j];
          const T* xs = xr + (lo * s.stride_w + start);
          T* yo = yr + lo;
          const int64_t count = hi - lo;
          if (s.stride_w == 1) {
            for (int64_t q = 0; q < count; ++q) yo[q] += wv * xs[q];
          } else {
            for (int64_t q = 0; q < count; ++q) yo[q] += wv * xs[q * s.stride_w];
          }
        }
      }
    }
  });
}

template <typename T>
void backward_depthwise(const Plan& p, const T* dy, const T* x, const T* w, T* dx, T* dw, T* db) {
  const Conv2dShape& s = p.s;
  if (dx) {
    const int64_t planes = s.n * s.c;
    const int nt = p.threads(planes);
    parallel_for(planes, nt, [&](int64_t plane) {
      const int64_t n = plane / s.c, c = plane % s.c;
      T* dxp = dx + plane * p.hw_in;
      for (int64_t q = 0; q < p.hw_in; ++q) dxp[q] = T(0);
      for (int64_t oc = c * p.og; oc < (c + 1) * p.og; ++oc) {
        const T* dyp = dy + (n * s.o + oc) * p.hw_out;
        const T* wk = w + oc * s.kh * s.kw;
        for (int64_t oh = 0; oh < s.out_h; ++oh) {
          const T* dyr = dyp + oh * s.out_w;
          for (int64_t i = 0; i < s.kh; ++i) {
            const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
            if (ih < 0 || ih >= s.h) continue;
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t start = j * s.dil_w - s.pad_w;
              int64_t lo, hi;
              valid_range(s.out_w, s.w, s.stride_w, start, lo, hi);
              if (hi <= lo) continue;  // this tap reads only padding
              const T wv = wk[i * s.kw + j];
              T* dxs = dxp + ih * s.w + (lo * s.stride_w + start);
              const T* dyo = dyr + lo;
              const int64_t count = hi - lo;
              if (s.stride_w == 1) {
                for (int64_t q = 0; q < count; ++q) dxs[q] += wv * dyo[q];
              } else {
                for (int64_t q = 0; q < count; ++q) dxs[q * s.stride_w] += wv * dyo[q];
              }
            }
          }
        }
      }
    });
  }
  if (dw || db) {
    // One thread owns each output channel: no reduction across threads.
    const int nt = p.threads(s.o);
    parallel_for(s.o, nt, [&](int64_t oc) {
      if (db) {
        T sum = 0;
        for (int64_t n = 0; n < s.n; ++n) {
          const T* dyp = dy + (n * s.o + oc) * p.hw_out;
          sum += sum_of(dyp, p.hw_out);
        }
        db[oc] = sum;
      }
      if (!dw) return;
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t start = j * s.dil_w - s.pad_w;
          int64_t lo, hi;
          valid_range(s.out_w, s.w, s.stride_w, start, lo, hi);
          T sum = 0;
          const int64_t count = hi - lo;
          for (int64_t n = 0; n < s.n && count > 0; ++n) {
            const T* dyp = dy + (n * s.o + oc) * p.hw_out;
            const T* xp = x + (n * s.c + oc / p.og) * p.hw_in;
            for (int64_t oh = 0; oh < s.out_h; ++oh) {
              const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
              if (ih < 0 || ih >= s.h) continue;
              const T* dyo = dyp + oh * s.out_w + lo;
              // Only in-row pointers: `start` alone may lie far outside the row.
              const T* xs = xp + ih * s.w + (lo * s.stride_w + start);
              if (s.stride_w == 1) {
                sum += dot_of(dyo, xs, count);
              } else {
                T part = 0;
                for (int64_t q = 0; q < count; ++q) part += dyo[q] * xs[q * s.stride_w];
                sum += part;
              }
            }
          }
          dw[oc * s.kh * s.kw + i * s.kw + j] = sum;
        }
    });
  }
}

}  // namespace

template <typename T>
void conv2d_forward(const Conv2dShape& s, const T* x, const T* weight, const T* bias, T* y) {
  if (s.n == 0 || s.o == 0 || s.out_h == 0 || s.out_w == 0) return;
  const Plan p(s, sizeof(T));
  if (p.depthwise())
    forward_depthwise(p, x, weight, bias, y);
  else if (Shifted::applies(p))
    forward_shifted(p, x, weight, bias, y);
  else
    forward_gemm(p, x, weight, bias, y);
}

template <typename T>
void conv2d_backward(const Conv2dShape& s, const T* dy, const T* x, const T* weight, T* dx,
                     T* dweight, T* dbias) {
  const Plan p(s, sizeof(T));
  if (s.n == 0 || p.hw_out == 0 || s.o == 0) {
    // Nothing flows back: every gradient is zero.
    if (dx) std::memset(dx, 0, sizeof(T) * s.n * s.c * p.hw_in);
    if (dweight) std::memset(dweight, 0, sizeof(T) * s.o * p.kg);
    if (dbias) std::memset(dbias, 0, sizeof(T) * s.o);
    return;
  }
  if (p.depthwise())
    backward_depthwise(p, dy, x, weight, dx, dweight, dbias);
  else if (Shifted::applies(p))
    backward_shifted(p, dy, x, weight, dx, dweight, dbias);
  else
    backward_gemm(p, dy, x, weight, dx, dweight, dbias);
}

template void conv2d_forward<float>(const Conv2dShape&, const float*, const float*, const float*, float*);
template void conv2d_forward<double>(const Conv2dShape&, const double*, const double*, const double*, double*);
template void conv2d_backward<float>(const Conv2dShape&, const float*, const float*, const float*, float*,
                                     float*, float*);
template void conv2d_backward<double>(const Conv2dShape&, const double*, const double*, const double*,
                                      double*, double*, double*);

}  // namespace dlkern::cpu
