// The time loop of one recurrent layer in one direction (nn.RNN / nn.LSTM / nn.GRU): per
// step one recurrent GEMM and one fused cell kernel (cpu/rnn.h), with the state updated in
// place and every step's output and saves written straight into the all-step arrays.
// The input projection of all steps (one large GEMM) and the weight gradients (large GEMMs
// over all steps) stay with the caller.
//
// Rows are time-major and packed: step t owns batch_sizes[t] consecutive rows starting at
// the sum of the earlier sizes (PackedSequence's layout); sizes are > 0 and non-increasing,
// so the rows active at a step are the first rows of the state (B rows, B >= sizes[0]) and
// the others keep their state. `reverse` runs the steps last to first; a backward runs them
// in the opposite order of its forward. Every array is C-contiguous; H the hidden size.
//
//  lstm_layer_forward: gates (N, 4H) = x W_ih^T + b_ih + b_hh on entry, the activated gates
//    [i, f, g, o] (the backward's `act`) on return; h, c (B, H) the state; out (N, H);
//    optional saves c_all (each step's new c), c_prev, h_prev (the state before the step).
//  lstm_layer_backward: dout (N, H), dh, dc (B, H) the gradients reaching the final state,
//    updated in place to the initial state's; act, c_all, c_prev from the forward ->
//    dgates (N, 4H) w.r.t. the gate pre-activations.
//  gru_layer_forward: gi (N, 3H) = x W_ih^T + b_ih (read only); b_hh (3H) or null; h (B, H);
//    out (N, H); optional saves saved (N, 4H) = [r, z, n, h W_hn^T + b_hn], h_prev.
//    n = tanh(gi_n + r (h W_hn^T + b_hn)), PyTorch's placement of the reset gate.
//  gru_layer_backward: dout, dh (in place) as for LSTM, saved, h_prev -> dgi, dgh (N, 3H).
//  rnn_layer_forward: pre (N, H) = x W_ih^T + b_ih + b_hh on entry, the full pre-activations
//    on return; h (B, H); out (N, H); optional h_prev. h' = tanh(pre) or relu(pre).
//  rnn_layer_backward: dout, dh (in place), out the forward's outputs -> dpre (N, H).
// w_hh is (G H, H) as stored (G = 4, 3, 1). Threads: the per-step GEMM and cell kernels
// choose their own, as when called one by one.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

// The step layout shared by every layer kernel.
struct RnnSteps {
  const int64_t* batch_sizes = nullptr;
  int64_t steps = 0;
  bool reverse = false;
  int64_t batch = 0;   // B, the state's rows
  int64_t hidden = 0;  // H
};

template <typename T>
void lstm_layer_forward(const RnnSteps& s, T* gates, const T* w_hh, T* h, T* c, T* out, T* c_all, T* c_prev,
                        T* h_prev);

template <typename T>
void lstm_layer_backward(const RnnSteps& s, const T* dout, T* dh, T* dc, const T* act, const T* c_all,
                         const T* c_prev, const T* w_hh, T* dgates);

template <typename T>
void gru_layer_forward(const RnnSteps& s, const T* gi, const T* w_hh, const T* b_hh, T* h, T* out, T* saved,
                       T* h_prev);

template <typename T>
void gru_layer_backward(const RnnSteps& s, const T* dout, T* dh, const T* saved, const T* h_prev, const T* w_hh,
                        T* dgi, T* dgh);

template <typename T>
void rnn_layer_forward(const RnnSteps& s, T* pre, const T* w_hh, T* h, T* out, T* h_prev, bool relu);

template <typename T>
void rnn_layer_backward(const RnnSteps& s, const T* dout, T* dh, const T* out, const T* w_hh, T* dpre, bool relu);

}  // namespace dlkern::cpu
