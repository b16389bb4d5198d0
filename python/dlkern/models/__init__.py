"""Ready-made models: MLP and LeNet-5 (and, with the attention work, a GPT)."""

from .mlp import MLP
from .lenet import LeNet5

__all__ = ["MLP", "LeNet5"]
