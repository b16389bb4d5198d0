"""Ready-made models: MLP, LeNet-5 and a GPT language model."""

from .mlp import MLP
from .lenet import LeNet5
from .gpt import GPT

__all__ = ["MLP", "LeNet5", "GPT"]
