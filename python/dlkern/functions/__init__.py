"""Differentiable Functions, one module per op family. Each class is one op with its
forward and backward side by side; they compute through ``ctx.device``."""

from . import elementwise, reduce, shape, linalg, activation, nn, loss  # noqa: F401
