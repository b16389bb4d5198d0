"""LeNet-5 (LeCun et al., 1998) with ReLU and max pooling, for small grey images."""

from __future__ import annotations

from .. import nn


class LeNet5(nn.Module):
    """conv 5x5 (6) -> pool 2 -> conv 5x5 (16) -> pool 2 -> 120 -> 84 -> classes.

    `input_size` is the image side: 28 gives the classic 16x5x5 feature map (the
    first conv pads by 2, as for MNIST). Images smaller than 20 (the 8x8 digits) pad
    the second conv too, so the 5x5 kernels still fit. `batch_norm` puts a BatchNorm2d
    after each convolution (before its ReLU); the convolutions then have no bias.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 batch_norm: bool = False):
        super().__init__()
        if input_size < 4:
            raise ValueError(f"LeNet5: input_size must be at least 4, got {input_size}")
        side = input_size // 2                      # conv1 keeps the size (pad 2), pool halves it
        pad2 = 0 if side >= 10 else 2               # conv2 needs room for a 5x5 window
        side = (side + 2 * pad2 - 4) // 2
        def block(cin, cout, pad):
            if not batch_norm:
                return [nn.Conv2d(cin, cout, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2)]
            return [nn.Conv2d(cin, cout, 5, padding=pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(in_channels, 6, 2), *block(6, 16, pad2))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
