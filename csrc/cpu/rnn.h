// The pointwise parts of the recurrent cells (nn.LSTM / nn.GRU): everything of one time
// step except the two matrix products, fused into one pass over the batch rows each way.
// Gate order is PyTorch's: LSTM (i, f, g, o), GRU (r, z, n). Every array is C-contiguous,
// rows of length H (or 3H / 4H for the gate blocks); B rows. Threads over rows.
//
//  lstm_cell_forward: gates (B, 4H) pre-activations, c_prev (B, H) ->
//    act (B, 4H) = [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)],
//    c = f c_prev + i g, h = o tanh(c)   (i, f, g, o the activated gates).
//  lstm_cell_backward: dh, dc (B, H) (dc: the gradient reaching c from later steps),
//    act, c_prev, c from the forward -> dgates (B, 4H) w.r.t. the pre-activations,
//    dc_prev (B, H). tanh(c) is recomputed rather than saved.
//  gru_cell_forward: gi = x W_ih^T + b_ih, gh = h_prev W_hh^T + b_hh (B, 3H), h_prev (B, H) ->
//    r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r gh_n),
//    h = (1 - z) n + z h_prev, saved (B, 4H) = [r, z, n, gh_n].
//  gru_cell_backward: dh (B, H), saved, h_prev -> dgi, dgh (B, 3H), dh_prev (B, H), where
//    dgh_r = dgi_r, dgh_z = dgi_z, dgh_n = dgi_n r and dh_prev = dh z only (the caller adds
//    dgh W_hh, the path through the matrix product).
//  rnn_act_forward: pre (B, H) -> h = tanh(pre) or relu(pre) (the vanilla RNN's step).
//  rnn_act_backward: dh, h (B, H) -> dpre = dh (1 - h^2) or dh [h > 0].
//  Outputs may be the very arrays the same position is read from (h == c_prev rows, act ==
//  gates, dc_prev == dc, dh_prev == dh, h == h_prev): each element is read before it is written.
#pragma once
#include <cstdint>

namespace dlkern::cpu {

template <typename T>
void lstm_cell_forward(const T* gates, const T* c_prev, T* h, T* c, T* act, int64_t B, int64_t H);

template <typename T>
void lstm_cell_backward(const T* dh, const T* dc, const T* act, const T* c_prev, const T* c, T* dgates, T* dc_prev,
                        int64_t B, int64_t H);

template <typename T>
void gru_cell_forward(const T* gi, const T* gh, const T* h_prev, T* h, T* saved, int64_t B, int64_t H);

template <typename T>
void gru_cell_backward(const T* dh, const T* saved, const T* h_prev, T* dgi, T* dgh, T* dh_prev, int64_t B, int64_t H);

template <typename T>
void rnn_act_forward(const T* pre, T* h, int64_t B, int64_t H, bool relu);

template <typename T>
void rnn_act_backward(const T* dh, const T* h, T* dpre, int64_t B, int64_t H, bool relu);

}  // namespace dlkern::cpu
