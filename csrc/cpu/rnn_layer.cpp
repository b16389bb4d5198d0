// The recurrent layers' time loops (cpu/rnn_layer.h). Each step is one recurrent product
// (RecurrentWeight, the one place those products are made) and one cell kernel of
// cpu/rnn.h; the rest is row copies of the state into the save arrays.
#include "cpu/rnn_layer.h"

#include <cstring>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/rnn.h"

namespace dlkern::cpu {
namespace {

// The recurrent weight as the right operand of every step's product C = A B + beta C
// (A the m active rows): B is W_hh^T (forward: h W_hh^T) or W_hh itself (backward:
// dgates W_hh). B is packed once per call into the GEMM's panel layout (gemm_pack_b,
// either orientation read in place), so the T per-step products skip the packing a
// plain gemm call repeats each time: at B = 32 that packing is ~20 % of the step.
template <typename T>
class RecurrentWeight {
 public:
  // w: (rows, cols) C-contiguous; B = w^T (cols, rows) when transpose, else w.
  RecurrentWeight(const T* w, int64_t rows, int64_t cols, bool transpose)
      : packed_(transpose ? gemm_pack_b(w, 1, cols, cols, rows) : gemm_pack_b(w, cols, 1, rows, cols)) {}

  // c (m, n) = a (m, k) B + beta c, all C-contiguous.
  void multiply(const T* a, int64_t m, T* c, T beta) const {
    if (m <= 0 || packed_.n() <= 0) return;
    gemm_packed(m, T(1), a, packed_.k(), 1, packed_, beta, c, packed_.n());
  }

 private:
  PackedB<T> packed_;
};

// body(first row, rows) for each step in processing order: the forward's order
// (last to first when reverse) or, with backward, the opposite one.
template <typename F>
void for_each_step(const RnnSteps& s, bool backward, F&& body) {
  std::vector<int64_t> start(static_cast<size_t>(s.steps) + 1, 0);
  for (int64_t t = 0; t < s.steps; ++t) start[t + 1] = start[t] + s.batch_sizes[t];
  const bool last_first = s.reverse != backward;
  for (int64_t i = 0; i < s.steps; ++i) {
    const int64_t t = last_first ? s.steps - 1 - i : i;
    body(start[t], s.batch_sizes[t]);
  }
}

template <typename T>
void copy(T* dst, const T* src, int64_t n) {
  if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
}

// dh += dout (the output's gradient of this step joins the one from the later steps).
template <typename T>
void add_into(T* dh, const T* dout, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dh[i] += dout[i];
}

}  // namespace

template <typename T>
void lstm_layer_forward(const RnnSteps& s, T* gates, const T* w_hh, T* h, T* c, T* out, T* c_all, T* c_prev,
                        T* h_prev) {
  const int64_t H = s.hidden;
  if (H == 0) return;
  const RecurrentWeight<T> w(w_hh, 4 * H, H, true);
  for_each_step(s, false, [&](int64_t r, int64_t b) {
    T* g = gates + r * 4 * H;
    T* o = out + r * H;
    if (h_prev) copy(h_prev + r * H, h, b * H);
    if (c_prev) copy(c_prev + r * H, c, b * H);
    w.multiply(h, b, g, T(1));
    // act over the gates and the new c over the state (or its save): the cell kernel reads
    // each element before writing it.
    T* c_new = c_all ? c_all + r * H : c;
    lstm_cell_forward(g, c, o, c_new, g, b, H);
    if (c_all) copy(c, c_new, b * H);
    copy(h, o, b * H);
  });
}

template <typename T>
void lstm_layer_backward(const RnnSteps& s, const T* dout, T* dh, T* dc, const T* act, const T* c_all,
                         const T* c_prev, const T* w_hh, T* dgates) {
  const int64_t H = s.hidden;
  if (H == 0) return;
  const RecurrentWeight<T> w(w_hh, 4 * H, H, false);
  for_each_step(s, true, [&](int64_t r, int64_t b) {
    T* dg = dgates + r * 4 * H;
    add_into(dh, dout + r * H, b * H);
    lstm_cell_backward(dh, dc, act + r * 4 * H, c_prev + r * H, c_all + r * H, dg, dc, b, H);
    w.multiply(dg, b, dh, T(0));
  });
}

template <typename T>
void gru_layer_forward(const RnnSteps& s, const T* gi, const T* w_hh, const T* b_hh, T* h, T* out, T* saved,
                       T* h_prev) {
  const int64_t H = s.hidden;
  if (H == 0 || s.steps == 0) return;
  const RecurrentWeight<T> w(w_hh, 3 * H, H, true);
  const int64_t rows = s.batch_sizes[0];
  std::vector<T> gh(static_cast<size_t>(rows * 3 * H));
  std::vector<T> scratch(saved ? 0 : static_cast<size_t>(rows * 4 * H));
  for_each_step(s, false, [&](int64_t r, int64_t b) {
    if (h_prev) copy(h_prev + r * H, h, b * H);
    // h W_hh^T + b_hh: the GEMM accumulates into the broadcast bias.
    if (b_hh)
      for (int64_t i = 0; i < b; ++i) copy(gh.data() + i * 3 * H, b_hh, 3 * H);
    w.multiply(h, b, gh.data(), b_hh ? T(1) : T(0));
    gru_cell_forward(gi + r * 3 * H, gh.data(), h, h, saved ? saved + r * 4 * H : scratch.data(), b, H);
    copy(out + r * H, h, b * H);
  });
}

template <typename T>
void gru_layer_backward(const RnnSteps& s, const T* dout, T* dh, const T* saved, const T* h_prev, const T* w_hh,
                        T* dgi, T* dgh) {
  const int64_t H = s.hidden;
  if (H == 0) return;
  const RecurrentWeight<T> w(w_hh, 3 * H, H, false);
  for_each_step(s, true, [&](int64_t r, int64_t b) {
    add_into(dh, dout + r * H, b * H);
    // dh becomes the direct path dh z, then gains dgh W_hh.
    gru_cell_backward(dh, saved + r * 4 * H, h_prev + r * H, dgi + r * 3 * H, dgh + r * 3 * H, dh, b, H);
    w.multiply(dgh + r * 3 * H, b, dh, T(1));
  });
}

template <typename T>
void rnn_layer_forward(const RnnSteps& s, T* pre, const T* w_hh, T* h, T* out, T* h_prev, bool relu) {
  const int64_t H = s.hidden;
  if (H == 0) return;
  const RecurrentWeight<T> w(w_hh, H, H, true);
  for_each_step(s, false, [&](int64_t r, int64_t b) {
    if (h_prev) copy(h_prev + r * H, h, b * H);
    w.multiply(h, b, pre + r * H, T(1));
    rnn_act_forward(pre + r * H, out + r * H, b, H, relu);
    copy(h, out + r * H, b * H);
  });
}

template <typename T>
void rnn_layer_backward(const RnnSteps& s, const T* dout, T* dh, const T* out, const T* w_hh, T* dpre, bool relu) {
  const int64_t H = s.hidden;
  if (H == 0) return;
  const RecurrentWeight<T> w(w_hh, H, H, false);
  for_each_step(s, true, [&](int64_t r, int64_t b) {
    add_into(dh, dout + r * H, b * H);
    rnn_act_backward(dh, out + r * H, dpre + r * H, b, H, relu);
    w.multiply(dpre + r * H, b, dh, T(0));
  });
}

#define DLKERN_RNN_LAYER_INSTANTIATE(T)                                                                       \
  template void lstm_layer_forward<T>(const RnnSteps&, T*, const T*, T*, T*, T*, T*, T*, T*);                \
  template void lstm_layer_backward<T>(const RnnSteps&, const T*, T*, T*, const T*, const T*, const T*,      \
                                       const T*, T*);                                                        \
  template void gru_layer_forward<T>(const RnnSteps&, const T*, const T*, const T*, T*, T*, T*, T*);         \
  template void gru_layer_backward<T>(const RnnSteps&, const T*, T*, const T*, const T*, const T*, T*, T*);  \
  template void rnn_layer_forward<T>(const RnnSteps&, T*, const T*, T*, T*, T*, bool);                       \
  template void rnn_layer_backward<T>(const RnnSteps&, const T*, T*, const T*, const T*, T*, bool);
DLKERN_RNN_LAYER_INSTANTIATE(float)
DLKERN_RNN_LAYER_INSTANTIATE(double)
#undef DLKERN_RNN_LAYER_INSTANTIATE

}  // namespace dlkern::cpu
