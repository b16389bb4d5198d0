"""Ready-made models: MLP, LeNet-5, a GPT language model and a recurrent (LSTM/GRU) one."""

from .mlp import MLP
from .lenet import LeNet5
from .gpt import GPT
from .rnn_lm import RNNLM

__all__ = ["MLP", "LeNet5", "GPT", "RNNLM"]
