"""A multi-layer perceptron classifier."""

from __future__ import annotations

from typing import Sequence

from .. import nn


class MLP(nn.Module):
    """Flatten, then Linear -> ReLU (-> Dropout) per hidden layer, then a Linear head.

    MLP(784, (256, 256), 10) is the 784-256-256-10 network of the benchmarks.
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256), num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        layers = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)
