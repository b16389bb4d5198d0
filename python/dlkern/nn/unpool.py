"""Max unpooling (the partial inverse of max_pool2d with return_indices=True):
dlkern.nn.functional.max_unpool2d and the module nn.MaxUnpool2d, as PyTorch's."""

import numbers

import numpy as np

from .. import functions as _F
from ..device import array_namespace
from ..tensor import Tensor
from .module import Module


def _pair(v, op, name):
    """An int or a pair of ints as a pair; anything else is a TypeError naming it."""
    try:
        pair = (v, v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else tuple(v)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pair):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}")
    return tuple(int(p) for p in pair)


def _output_hw(op, in_hw, kernel, stride, padding, output_size):
    """The unpooled plane size: (in - 1) * stride - 2 * padding + kernel per dim, or
    output_size's last two entries, which must lie strictly within one stride of it (the
    sizes a max_pool2d with these arguments maps to in_hw)."""
    default = tuple((i - 1) * s - 2 * p + k for i, k, s, p in zip(in_hw, kernel, stride, padding))
    if output_size is None:
        size = default
    else:
        size = tuple(int(n) for n in output_size)
        if len(size) not in (2, 3, 4):
            raise ValueError(f"{op}: output_size must have 2 entries (or the full 3-D/4-D shape), got {output_size}")
        size = size[-2:]
        for d in range(2):
            lo, hi = default[d] - stride[d], default[d] + stride[d]
            if not lo < size[d] < hi:
                raise ValueError(f"{op}: invalid output_size {tuple(output_size)} (dim {d} must be between "
                                 f"{lo} and {hi}, exclusive)")
    if min(size) <= 0:
        raise ValueError(f"{op}: the output plane {size} is empty (input plane {in_hw}, kernel {kernel}, "
                         f"stride {stride}, padding {padding})")
    return size


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """x (N, C, H, W) or unbatched (C, H, W), with the int64 `indices` that
    max_pool2d(..., return_indices=True) gave (a flat position in each output plane), into
    zeros of the unpooled size; differentiable in input."""
    op = "max_unpool2d"
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (C, H, W) unbatched or 4-D (N, C, H, W) input, got shape "
                         f"{tuple(input.shape)}")
    if isinstance(indices, Tensor) and indices.device != input.device:
        raise RuntimeError(f"{op}: indices are on {indices.device} but the input is on {input.device}")
    idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype != np.int64:
        raise TypeError(f"{op}: indices must be int64, got {idx.dtype}")
    if tuple(idx.shape) != tuple(input.shape):
        raise ValueError(f"{op}: indices have shape {tuple(idx.shape)} but the input has shape "
                         f"{tuple(input.shape)}; they must match")
    kernel = _pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None else _pair(stride, op, "stride")
    padding = _pair(padding, op, "padding")
    out_hw = _output_hw(op, tuple(input.shape[-2:]), kernel, stride, padding, output_size)
    bounds = array_namespace(idx).host_bounds(idx)
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= out_hw[0] * out_hw[1]):
        bad = bounds[0] if bounds[0] < 0 else bounds[1]
        raise IndexError(f"{op}: found an invalid max index {bad} (output planes are {out_hw[0]}x{out_hw[1]})")
    idx = input.device.to_device(idx)
    if input.ndim == 3:  # unbatched: a batch of one, as PyTorch
        return _F.MaxUnpool2d.apply(input.unsqueeze(0), idx.reshape((1,) + tuple(idx.shape)), out_hw).squeeze(0)
    return _F.MaxUnpool2d.apply(input, idx, out_hw)


class MaxUnpool2d(Module):
    """max_unpool2d as a module: forward(input, indices, output_size=None)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = _pair(kernel_size, "MaxUnpool2d", "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "MaxUnpool2d", "stride")
        self.padding = _pair(padding, "MaxUnpool2d", "padding")

    def forward(self, input, indices, output_size=None):
        return max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
