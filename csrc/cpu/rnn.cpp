// Recurrent-cell front end (cpu/rnn.h): the thread count and the run-time ISA path.
#include "cpu/rnn.h"

#include "common/runtime.h"
#include "cpu/isa.h"

namespace dlkern::cpu {
namespace {

// A thread gets at least this many elements of gate work: the LSTM forward costs about
// 1 ns per element on one core (four transcendentals per hidden unit), so ~30 us per
// thread keeps a fork/join a small share of the call. Rows are the unit of work.
constexpr int64_t kMinElemsPerThread = 1 << 15;

int threads_for(int64_t B, int64_t row_elems) { return dlkern::threads_for(B * row_elems, kMinElemsPerThread, B); }

}  // namespace

template <typename T>
void lstm_cell_forward(const T* gates, const T* c_prev, T* h, T* c, T* act, int64_t B, int64_t H) {
  if (B <= 0 || H <= 0) return;
  kernels<T>().lstm_fwd(gates, c_prev, h, c, act, B, H, threads_for(B, 4 * H));
}

template <typename T>
void lstm_cell_backward(const T* dh, const T* dc, const T* act, const T* c_prev, const T* c, T* dgates, T* dc_prev,
                        int64_t B, int64_t H) {
  if (B <= 0 || H <= 0) return;
  kernels<T>().lstm_bwd(dh, dc, act, c_prev, c, dgates, dc_prev, B, H, threads_for(B, 4 * H));
}

template <typename T>
void gru_cell_forward(const T* gi, const T* gh, const T* h_prev, T* h, T* saved, int64_t B, int64_t H) {
  if (B <= 0 || H <= 0) return;
  kernels<T>().gru_fwd(gi, gh, h_prev, h, saved, B, H, threads_for(B, 3 * H));
}

template <typename T>
void gru_cell_backward(const T* dh, const T* saved, const T* h_prev, T* dgi, T* dgh, T* dh_prev, int64_t B,
                       int64_t H) {
  if (B <= 0 || H <= 0) return;
  kernels<T>().gru_bwd(dh, saved, h_prev, dgi, dgh, dh_prev, B, H, threads_for(B, 3 * H));
}

template <typename T>
void rnn_act_forward(const T* pre, T* h, int64_t B, int64_t H, bool relu) {
  if (B <= 0 || H <= 0) return;
  kernels<T>().rnn_fwd(pre, h, B, H, relu, threads_for(B, H));
}

template <typename T>
void rnn_act_backward(const T* dh, const T* h, T* dpre, int64_t B, int64_t H, bool relu) {
  if (B <= 0 || H <= 0) return;
  kernels<T>().rnn_bwd(dh, h, dpre, B, H, relu, threads_for(B, H));
}

#define DLKERN_RNN_INSTANTIATE(T)                                                                              \
  template void lstm_cell_forward<T>(const T*, const T*, T*, T*, T*, int64_t, int64_t);                        \
  template void lstm_cell_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t); \
  template void gru_cell_forward<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t);                   \
  template void gru_cell_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t);             \
  template void rnn_act_forward<T>(const T*, T*, int64_t, int64_t, bool);                                    \
  template void rnn_act_backward<T>(const T*, const T*, T*, int64_t, int64_t, bool);
DLKERN_RNN_INSTANTIATE(float)
DLKERN_RNN_INSTANTIATE(double)
#undef DLKERN_RNN_INSTANTIATE

}  // namespace dlkern::cpu
