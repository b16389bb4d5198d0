"""dlkern.nn: modules, layers, losses, functional forms and initialisers (PyTorch names)."""

from .parameter import Parameter
from .module import Module, Sequential, ModuleList, ModuleDict
from .layers import (Identity, Linear, Conv1d, Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, Flatten,
                     BatchNorm1d, BatchNorm2d, LayerNorm, RMSNorm, GroupNorm, Dropout, AlphaDropout, Embedding,
                     ReLU, Sigmoid, Tanh, SELU, SiLU, GELU, Softplus, LeakyReLU, ELU, Softmax, LogSoftmax,
                     MSELoss, L1Loss, CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss, SigmoidFocalLoss,
                     FocalLoss)
from .unpool import MaxUnpool2d
from .kv_cache import KVCache
from .positional import (SinusoidalPositionalEncoding, LearnedPositionalEmbedding, RotaryEmbedding, ALiBi,
                         alibi_slopes, alibi_bias, sinusoidal_table)
from .attention import MultiheadAttention
from .transformer import TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder, TransformerDecoder
# --- issue 13: layers ---
from .layers_resample import (ConvTranspose1d, ConvTranspose2d, Upsample, UpsamplingNearest2d,
                              UpsamplingBilinear2d, MaxPool1d, AvgPool1d, AdaptiveMaxPool2d, PixelShuffle,
                              PixelUnshuffle, Unflatten)
# --- end issue 13: layers ---
# --- issue 14: recurrent layers ---
from .rnn import RNNBase, RNN, LSTM, GRU, RNNCellBase, RNNCell, LSTMCell, GRUCell
# --- end issue 14 ---
from . import functional, init, utils
# --- issue 17: data parallelism ---
from . import parallel
# --- end issue 17 ---

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "ModuleDict", "Identity", "Linear", "Conv1d",
           "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten", "BatchNorm1d", "BatchNorm2d",
           "LayerNorm", "RMSNorm", "GroupNorm", "Dropout", "AlphaDropout", "Embedding", "ReLU", "Sigmoid", "Tanh",
           "SELU", "SiLU", "GELU", "Softplus", "LeakyReLU", "ELU", "Softmax", "LogSoftmax", "MSELoss", "L1Loss",
           "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "SigmoidFocalLoss", "FocalLoss",
           "KVCache", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding", "ALiBi",
           "alibi_slopes", "alibi_bias", "sinusoidal_table", "MultiheadAttention", "TransformerEncoderLayer",
           "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder", "functional", "init", "utils"]
# --- issue 13: layers ---
__all__ += ["ConvTranspose1d", "ConvTranspose2d", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d",
            "MaxPool1d", "AvgPool1d", "AdaptiveMaxPool2d", "PixelShuffle", "PixelUnshuffle", "Unflatten"]
# --- end issue 13: layers ---
__all__ += ["MaxUnpool2d"]  # (issue 13: edge semantics)
__all__ += ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]  # (issue 14)
__all__ += ["parallel"]  # (issue 17)
# --- issue 17: SyncBatchNorm ---
from .sync_batchnorm import SyncBatchNorm  # noqa: E402
__all__ += ["SyncBatchNorm"]
# --- end issue 17: SyncBatchNorm ---
