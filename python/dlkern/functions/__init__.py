"""Differentiable Functions, one module per op family. Each class is one op with its
forward and backward side by side; they compute through ``ctx.device``.

Every Function is named here, so ``dlkern.functions.<Name>`` (``_F.<Name>`` in the
tensor modules) reaches any of them."""

from .activation import Elu, Gelu, LeakyRelu, Relu, Selu, Sigmoid, Silu, Softplus, Tanh
from .attention import DecodeAttention, MultiHeadAttention, Rope, ScaledDotProductAttention
from .convert import Cast, ToDevice, host_array
from .elementwise import (Abs, Add, Clamp, Cos, Div, Exp, Log, MaskedFill, Maximum, Mul, Neg, Pow, Sin, Sqrt,
                          Sub, Where)
from .indexing import Diag, Flip, Gather, IndexSelect, Repeat, Roll, Scatter, ScatterAdd
from .elementwise import Erf
from .linalg import Linear, MatMul
from .loss import BinaryCrossEntropy, CrossEntropy, NLLLoss
from .nn import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Conv1d, Conv2d, Embedding, GroupNorm, LayerNorm,
                 LogSoftmax, MaxPool2d, MaxUnpool2d, RMSNorm, Softmax)
from .reduce import LogSumExp, MaxAll, MaxDim, Mean, Sum, Var
from .shape import Cat, Expand, GetItem, Permute, Reshape, Stack, Transpose
# --- math breadth (issue 13): scans and products, einsum/baddbmm, vector norm, lerp
from .scan import CumProd, CumSum, Prod
from .einsum import BaddBmm, Einsum, einsum_spec
from .vector_norm import VectorNorm
from .lerp import Lerp
# --- end math breadth
# --- transposed convolution, resampling gathers (issue 13: layers) ---
from .conv_transpose import ConvTranspose1d, ConvTranspose2d
from .resample import AxisPlan, MaxByIndex, Resample
# --- end ---
# --- issue 14: recurrent layers ---
from .rnn import GRULayer, LSTMLayer, PackRows, RNNLayer
# --- end issue 14 ---

__all__ = [
    "Elu", "Gelu", "LeakyRelu", "Relu", "Selu", "Sigmoid", "Silu", "Softplus", "Tanh",
    "DecodeAttention", "MultiHeadAttention", "Rope", "ScaledDotProductAttention",
    "Cast", "ToDevice", "host_array",
    "Abs", "Add", "Clamp", "Cos", "Div", "Exp", "Log", "MaskedFill", "Maximum", "Mul", "Neg", "Pow", "Sin",
    "Sqrt", "Sub", "Where",
    "Diag", "Flip", "Gather", "IndexSelect", "Repeat", "Roll", "Scatter", "ScatterAdd",
    "Erf",
    "Linear", "MatMul",
    "BinaryCrossEntropy", "CrossEntropy", "NLLLoss",
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm", "Conv1d", "Conv2d", "Embedding", "GroupNorm", "LayerNorm",
    "LogSoftmax", "MaxPool2d", "MaxUnpool2d", "RMSNorm", "Softmax",
    "LogSumExp", "MaxAll", "MaxDim", "Mean", "Sum", "Var",
    "Cat", "Expand", "GetItem", "Permute", "Reshape", "Stack", "Transpose",
    # --- math breadth (issue 13)
    "CumProd", "CumSum", "Prod", "BaddBmm", "Einsum", "einsum_spec", "VectorNorm", "Lerp",
    # --- end math breadth
    # --- issue 13: layers ---
    "ConvTranspose1d", "ConvTranspose2d", "AxisPlan", "MaxByIndex", "Resample",
    # --- end ---
]
__all__ += ["GRULayer", "LSTMLayer", "PackRows", "RNNLayer"]  # (issue 14)

# ---- robust training (issue 15): cross-entropy with probability targets as one Function
from .soft_loss import SoftCrossEntropy  # noqa: E402
__all__ += ["SoftCrossEntropy"]
# ---- end robust training
# --- issue 15: double backward (backward_graph on the Functions above, for create_graph) ---
from . import double_backward, double_backward_conv, double_backward_more, double_backward_nn, double_backward_rnn  # noqa: E402,F401,E501
from .double_backward import IndexAdd  # noqa: E402
from .double_backward_conv import ConvGradInput, ConvGradWeight, LinearMap  # noqa: E402
__all__ += ["IndexAdd", "ConvGradInput", "ConvGradWeight", "LinearMap"]
# --- end issue 15 ---
# --- issue 17: SyncBatchNorm (cross-rank batch statistics) ---
from .sync_batch_norm import SyncBatchNorm  # noqa: E402
__all__ += ["SyncBatchNorm"]
# --- end issue 17 ---
