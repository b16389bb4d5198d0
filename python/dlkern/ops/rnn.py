"""The recurrent cells' pointwise steps (nn.LSTM / nn.GRU): one fused pass per time step
each way, around the two matrix products the caller does with matmul/gemm.

``lstm_cell_forward(gates, c_prev) -> (h, c, act)``,
``lstm_cell_backward(dh, dc, act, c_prev, c) -> (dgates, dc_prev)``,
``gru_cell_forward(gi, gh, h_prev) -> (h, saved)``,
``gru_cell_backward(dh, saved, h_prev) -> (dgi, dgh, dh_prev)``: gate order and formulas
as PyTorch's (csrc/cpu/rnn.h states them). These are the compiled functions themselves:
they check their arguments (2-D, one float dtype, consistent shapes) and copy a
non-contiguous input once, C-contiguous, themselves.
"""

from .. import _C

__all__ = ["lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward"]

lstm_cell_forward = _C.lstm_cell_forward
lstm_cell_backward = _C.lstm_cell_backward
gru_cell_forward = _C.gru_cell_forward
gru_cell_backward = _C.gru_cell_backward
