"""Convolution: conv2d, conv1d (causal and streaming), forward and backward.

PyTorch names, defaults and semantics (cross-correlation, NCHW / NCL, ``groups``,
``padding`` as int, pair, "valid" or "same"). float32 and float64; x and weight must
share the dtype. Non-contiguous inputs are copied here, explicitly, before the kernel.
The output size along a dimension is floor((size + pad_before + pad_after -
dilation*(kernel-1) - 1) / stride) + 1; impossible geometry raises ValueError naming
the argument, as does a stride, dilation, padding or dilation*(kernel-1) above 2**31
(absurd for any layer, and the bound that keeps the kernels' size arithmetic in int64).
The arguments are checked by the kernels' bindings (csrc/common/geometry.h, shared with
the CUDA module), not here.
"""

from __future__ import annotations

import numpy as np

from .. import _C

__all__ = [
    "conv2d",
    "conv2d_backward",
    "conv1d",
    "conv1d_backward",
    "causal_conv1d",
    "causal_conv1d_backward",
    "Conv1dStream",
]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _contiguous(a):
    # The kernels read C-contiguous arrays: a strided ndarray is copied once, explicitly,
    # here. Anything else reaches the binding, which names it in its error.
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of x (N, C, H, W) with weight (O, C/groups, kH, kW) plus bias (O,)."""
    return _C.conv2d(_contiguous(x), _contiguous(weight), _contiguous(bias), stride, padding, dilation, groups)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True)):
    """Gradients of conv2d: (dx | None, dweight | None, dbias | None), as selected by `need`."""
    return _C.conv2d_backward(_contiguous(grad_out), _contiguous(x), _contiguous(weight), stride, padding,
                              dilation, groups, need)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of x (N, C, L) with weight (O, C/groups, K) plus bias (O,)."""
    return _C.conv1d(_contiguous(x), _contiguous(weight), _contiguous(bias), stride, padding, dilation, groups)


def conv1d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True)):
    """Gradients of conv1d: (dx | None, dweight | None, dbias | None)."""
    return _C.conv1d_backward(_contiguous(grad_out), _contiguous(x), _contiguous(weight), stride, padding,
                              dilation, groups, need)


def causal_conv1d(x, weight, bias=None, dilation=1, groups=1):
    """conv1d with left padding (K-1)*dilation only: output (N, O, L), y[t] sees x[<= t]."""
    return _C.causal_conv1d(_contiguous(x), _contiguous(weight), _contiguous(bias), dilation, groups)


def causal_conv1d_backward(grad_out, x, weight, dilation=1, groups=1, need=(True, True, True)):
    """Gradients of causal_conv1d: (dx | None, dweight | None, dbias | None)."""
    return _C.causal_conv1d_backward(_contiguous(grad_out), _contiguous(x), _contiguous(weight), dilation, groups,
                                     need)


def _as(op, call, *args):
    """call(*args) with its errors reported as `op`'s (the kernel checks them)."""
    try:
        return call(*args)
    except (TypeError, ValueError) as exc:
        kernel = call.__name__
        raise type(exc)(str(exc).replace(f"{kernel}:", f"{op}:", 1)) from None


class Conv1dStream:
    """causal_conv1d over a sequence fed in pieces.

    Keeps the last (K-1)*dilation inputs of each sequence as state (zeros at the
    start, as the causal padding), so ``step`` on consecutive chunks (any lengths,
    including 1) returns exactly the columns causal_conv1d gives on the whole sequence.
    The batch size and dtype are fixed by the first chunk until ``reset()``.
    """

    def __init__(self, weight, bias=None, dilation=1, groups=1):
        weight, bias = _contiguous(weight), _contiguous(bias)
        # The kernel checks weight, bias, dilation and groups, on one time step of zeros.
        ok = (isinstance(weight, np.ndarray) and weight.ndim == 3 and weight.dtype in _FLOATS
              and isinstance(groups, (int, np.integer)) and not isinstance(groups, bool) and 0 < groups < 2**31)
        probe = np.zeros((1, weight.shape[1] * int(groups) if ok else 1, 1), weight.dtype if ok else np.float32)
        _as("Conv1dStream", _C.causal_conv1d, probe, weight, bias, dilation, groups)
        self.weight, self.bias, self.dilation, self.groups = weight, bias, int(dilation), int(groups)
        self.context = (weight.shape[2] - 1) * self.dilation
        self.in_channels = weight.shape[1] * self.groups
        self._state = None

    def reset(self):
        """Forget the history: the next chunk starts a new sequence."""
        self._state = None

    def step(self, x_chunk):
        """x_chunk (N, C, l) -> (N, O, l), continuing the sequence seen so far."""
        op = "Conv1dStream.step"
        if not isinstance(x_chunk, np.ndarray) or x_chunk.ndim != 3:
            raise TypeError(f"{op}: x_chunk must be a 3-D (N, C, l) numpy.ndarray, got "
                            f"{getattr(x_chunk, 'shape', type(x_chunk).__name__)}")
        x = x_chunk
        if x.dtype != self.weight.dtype:
            raise TypeError(f"{op}: x_chunk has dtype {x.dtype} but weight has dtype {self.weight.dtype}")
        n, c, length = x.shape
        if c != self.in_channels:
            raise ValueError(f"{op}: x_chunk {x.shape} has {c} channels, weight {self.weight.shape} with "
                             f"groups={self.groups} needs {self.in_channels}")
        if self._state is None:
            self._state = np.zeros((n, c, self.context), x.dtype)
        elif self._state.shape[0] != n:
            raise ValueError(f"{op}: x_chunk has batch size {n} but the stream started with "
                             f"{self._state.shape[0]}; call reset() to start a new batch")
        if length == 0:
            return np.empty((n, self.weight.shape[0], 0), x.dtype)
        # concatenate keeps a strided chunk's layout (e.g. reversed, channels fastest),
        # and the kernel reads C-contiguous arrays only.
        window = _contiguous(np.concatenate([self._state, x], axis=2))
        y = _C.conv1d(window, self.weight, self.bias, 1, 0, self.dilation, self.groups)
        self._state = np.ascontiguousarray(window[:, :, window.shape[2] - self.context:])
        return y
