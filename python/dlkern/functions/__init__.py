"""Differentiable Functions, one module per op family. Each class is one op with its
forward and backward side by side; they compute through ``ctx.device``.

Every Function is named here, so ``dlkern.functions.<Name>`` (``_F.<Name>`` in the
tensor modules) reaches any of them."""

from .activation import Elu, Gelu, LeakyRelu, Relu, Selu, Sigmoid, Silu, Softplus, Tanh
from .attention import DecodeAttention, MultiHeadAttention, Rope, ScaledDotProductAttention
from .convert import Cast, ToDevice, host_array
from .elementwise import (Abs, Add, Clamp, Cos, Div, Exp, Log, MaskedFill, Maximum, Mul, Neg, Pow, Sin, Sqrt,
                          Sub, Where)
from .elementwise import Erf
from .linalg import Linear, MatMul
from .loss import BinaryCrossEntropy, CrossEntropy, NLLLoss
from .nn import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm, Conv1d, Conv2d, Embedding, GroupNorm, LayerNorm,
                 LogSoftmax, MaxPool2d, RMSNorm, Softmax)
from .reduce import LogSumExp, MaxAll, MaxDim, Mean, Sum, Var
from .shape import Cat, Expand, GetItem, Permute, Reshape, Stack, Transpose

__all__ = [
    "Elu", "Gelu", "LeakyRelu", "Relu", "Selu", "Sigmoid", "Silu", "Softplus", "Tanh",
    "DecodeAttention", "MultiHeadAttention", "Rope", "ScaledDotProductAttention",
    "Cast", "ToDevice", "host_array",
    "Abs", "Add", "Clamp", "Cos", "Div", "Exp", "Log", "MaskedFill", "Maximum", "Mul", "Neg", "Pow", "Sin",
    "Sqrt", "Sub", "Where",
    "Erf",
    "Linear", "MatMul",
    "BinaryCrossEntropy", "CrossEntropy", "NLLLoss",
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm", "Conv1d", "Conv2d", "Embedding", "GroupNorm", "LayerNorm",
    "LogSoftmax", "MaxPool2d", "RMSNorm", "Softmax",
    "LogSumExp", "MaxAll", "MaxDim", "Mean", "Sum", "Var",
    "Cat", "Expand", "GetItem", "Permute", "Reshape", "Stack", "Transpose",
]
