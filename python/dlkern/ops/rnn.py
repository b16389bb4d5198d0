"""The recurrent cells' pointwise steps (nn.LSTM / nn.GRU): one fused pass per time step
each way, around the two matrix products the caller does with matmul/gemm.

``lstm_cell_forward(gates, c_prev) -> (h, c, act)``,
``lstm_cell_backward(dh, dc, act, c_prev, c) -> (dgates, dc_prev)``,
``gru_cell_forward(gi, gh, h_prev) -> (h, saved)``,
``gru_cell_backward(dh, saved, h_prev) -> (dgi, dgh, dh_prev)``: gate order and formulas
as PyTorch's (csrc/cpu/rnn.h states them). These are the compiled functions themselves:
they check their arguments (2-D, one float dtype, consistent shapes) and copy a
non-contiguous input once, C-contiguous, themselves.

The layer loops over a whole packed sequence (csrc/cpu/rnn_layer.h states the contract),
one call per layer and direction, the state and the outputs written in place:
``lstm_layer_forward(gates, w_hh, h, c, out, batch_sizes, reverse=False, c_all=None,
c_prev=None, h_prev=None)``, ``lstm_layer_backward(dout, dh, dc, act, c_all, c_prev, w_hh,
batch_sizes, reverse=False) -> dgates``, ``gru_layer_forward(gi, w_hh, b_hh, h, out,
batch_sizes, reverse=False, saved=None, h_prev=None)``, ``gru_layer_backward(dout, dh, saved,
h_prev, w_hh, batch_sizes, reverse=False) -> (dgi, dgh)``, ``rnn_layer_forward(pre, w_hh, h,
out, batch_sizes, reverse=False, nonlinearity='tanh', h_prev=None)``,
``rnn_layer_backward(dout, dh, out, w_hh, batch_sizes, reverse=False, nonlinearity='tanh')
-> dpre``.
"""

from .. import _C

__all__ = ["lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward",
           "lstm_layer_forward", "lstm_layer_backward", "gru_layer_forward", "gru_layer_backward",
           "rnn_layer_forward", "rnn_layer_backward"]

lstm_cell_forward = _C.lstm_cell_forward
lstm_cell_backward = _C.lstm_cell_backward
gru_cell_forward = _C.gru_cell_forward
gru_cell_backward = _C.gru_cell_backward
lstm_layer_forward = _C.lstm_layer_forward
lstm_layer_backward = _C.lstm_layer_backward
gru_layer_forward = _C.gru_layer_forward
gru_layer_backward = _C.gru_layer_backward
rnn_layer_forward = _C.rnn_layer_forward
rnn_layer_backward = _C.rnn_layer_backward
