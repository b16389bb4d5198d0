"""Convolution: conv2d, conv1d (causal and streaming), forward and backward.

PyTorch names, defaults and semantics (cross-correlation, NCHW / NCL, ``groups``,
``padding`` as int, pair, "valid" or "same"). float32 and float64; x and weight must
share the dtype. Non-contiguous inputs are copied here, explicitly, before the kernel.
The output size along a dimension is floor((size + pad_before + pad_after -
dilation*(kernel-1) - 1) / stride) + 1; impossible geometry raises ValueError naming
the argument, as does a stride, dilation, padding or dilation*(kernel-1) above 2**31
(absurd for any layer, and the bound that keeps the kernels' size arithmetic in int64).
"""

from __future__ import annotations

import numbers

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
# Largest stride, dilation, padding and dilation*(kernel-1): the kernels' limit, far
# beyond any real layer, below which no size they compute can overflow int64.
_MAX_ARG = _C.conv_max_arg


def _ints(value, n, op, name):
    """An int, or a tuple/list of n ints, as a tuple of n Python ints."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(value):
        out = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(is_int(v) for v in value):
        out = tuple(int(v) for v in value)
    else:
        kind = "an int" if n == 1 else f"an int or a tuple of {n} ints"
        raise TypeError(f"{op}: {name} must be {kind}, got {value!r}")
    if max(out) > _MAX_ARG:
        raise ValueError(f"{op}: {name} {value!r} is too large (limit 2**31)")
    return out


def _array(value, op, name, ndim, layout):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(value).__name__}")
    if value.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name} has dtype {value.dtype}; expected float32 or float64")
    if value.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout}, got shape {value.shape}")
    return np.ascontiguousarray(value)  # an explicit copy only when not C-contiguous


def _check_inputs(op, x, weight, groups, nd):
    spatial = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
    kernel = "(O, C/groups, K)" if nd == 1 else "(O, C/groups, kH, kW)"
    x = _array(x, op, "x", nd + 2, spatial)
    weight = _array(weight, op, "weight", nd + 2, kernel)
    if weight.dtype != x.dtype:
        raise TypeError(f"{op}: x has dtype {x.dtype} but weight has dtype {weight.dtype}; "
                        "both must be the same float type")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool):
        raise TypeError(f"{op}: groups must be an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be positive, got {groups}")
    c, o = x.shape[1], weight.shape[0]
    if c % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {c} input channels of x {x.shape}")
    if o % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {o} output channels of weight {weight.shape}")
    if weight.shape[1] != c // groups:
        raise ValueError(f"{op}: weight {weight.shape} must have C/groups = {c // groups} in dimension 1 "
                         f"(x {x.shape}, groups={groups})")
    if min(weight.shape[2:]) < 1:
        raise ValueError(f"{op}: weight {weight.shape} has an empty kernel")
    return x, weight


def _geometry(op, x, weight, stride, padding, dilation, nd):
    """Validated (stride, [(before, after)] per dim, dilation) and the output sizes."""
    stride = _ints(stride, nd, op, "stride")
    dilation = _ints(dilation, nd, op, "dilation")
    if min(stride) < 1:
        raise ValueError(f"{op}: stride must be positive, got {stride if nd > 1 else stride[0]}")
    if min(dilation) < 1:
        raise ValueError(f"{op}: dilation must be positive, got {dilation if nd > 1 else dilation[0]}")
    kernel = weight.shape[2:]
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * nd
        elif padding == "same":
            if max(stride) != 1:
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride}")
            # As PyTorch: the extra element of an odd total goes after.
            pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]
        else:
            raise ValueError(f"{op}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}")
    else:
        pad = _ints(padding, nd, op, "padding")
        if min(pad) < 0:
            raise ValueError(f"{op}: padding must be non-negative, got {pad if nd > 1 else pad[0]}")
        pads = [(p, p) for p in pad]
    out = []
    for size, k, s, d, (before, after) in zip(x.shape[2:], kernel, stride, dilation, pads):
        span, padded = d * (k - 1) + 1, size + before + after
        if padded < span:
            raise ValueError(f"{op}: kernel size {k} with dilation {d} spans {span}, larger than the padded "
                             f"input {padded} (size {size} + padding {before + after}); x {x.shape}, "
                             f"weight {weight.shape}")
        out.append((padded - span) // s + 1)
    return stride, pads, dilation, tuple(out)


def _check_bias(op, bias, x, weight):
    if bias is None:
        return None
    if not isinstance(bias, np.ndarray):
        raise TypeError(f"{op}: bias must be a numpy.ndarray or None, got {type(bias).__name__}")
    if bias.dtype != x.dtype:
        raise TypeError(f"{op}: bias has dtype {bias.dtype} but x has dtype {x.dtype}")
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"{op}: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
    return np.ascontiguousarray(bias)


def _check_grad_out(op, grad_out, x, weight, out_spatial):
    if not isinstance(grad_out, np.ndarray):
        raise TypeError(f"{op}: grad_out must be a numpy.ndarray, got {type(grad_out).__name__}")
    expected = (x.shape[0], weight.shape[0]) + tuple(out_spatial)
    if grad_out.shape != expected:
        raise ValueError(f"{op}: grad_out has shape {grad_out.shape}, expected the output shape {expected}")
    if grad_out.dtype != x.dtype:
        raise TypeError(f"{op}: grad_out has dtype {grad_out.dtype} but x has dtype {x.dtype}")
    return np.ascontiguousarray(grad_out)


def _need(op, need):
    if len(need) != 3:
        raise ValueError(f"{op}: need must be three booleans (dx, dweight, dbias), got {need!r}")
    return tuple(bool(n) for n in need)


# ----------------------------------------------------------------------------- conv2d


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution of x (N, C, H, W) with weight (O, C/groups, kH, kW) plus bias (O,)."""
    op = "conv2d"
    x, weight = _check_inputs(op, x, weight, groups, 2)
    stride, pads, dilation, _ = _geometry(op, x, weight, stride, padding, dilation, 2)
    bias = _check_bias(op, bias, x, weight)
    return _C.conv2d_forward(x, weight, bias, stride, pads[0] + pads[1], dilation, int(groups), op)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True)):
    """Gradients of conv2d: (dx | None, dweight | None, dbias | None), as selected by `need`."""
    op = "conv2d_backward"
    x, weight = _check_inputs(op, x, weight, groups, 2)
    stride, pads, dilation, out = _geometry(op, x, weight, stride, padding, dilation, 2)
    grad_out = _check_grad_out(op, grad_out, x, weight, out)
    need = _need(op, need)
    return _C.conv2d_backward(grad_out, x, weight, stride, pads[0] + pads[1], dilation, int(groups), *need, op)


# ----------------------------------------------------------------------------- conv1d
# The H = 1 case of the 2-D kernel: x (N, C, L) is viewed as (N, C, 1, L) (no copy).


def _conv1d_call(op, x, weight, bias, stride, pads, dilation, groups):
    y = _C.conv2d_forward(x[:, :, None, :], weight[:, :, None, :], bias, (1, stride[0]),
                          (0, 0) + pads[0], (1, dilation[0]), int(groups), op)
    return y[:, :, 0, :]


def _conv1d_backward_call(op, grad_out, x, weight, stride, pads, dilation, groups, need):
    dx, dw, db = _C.conv2d_backward(grad_out[:, :, None, :], x[:, :, None, :], weight[:, :, None, :],
                                    (1, stride[0]), (0, 0) + pads[0], (1, dilation[0]), int(groups), *need, op)
    return (None if dx is None else dx[:, :, 0, :], None if dw is None else dw[:, :, 0, :], db)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution of x (N, C, L) with weight (O, C/groups, K) plus bias (O,)."""
    op = "conv1d"
    x, weight = _check_inputs(op, x, weight, groups, 1)
    stride, pads, dilation, _ = _geometry(op, x, weight, stride, padding, dilation, 1)
    bias = _check_bias(op, bias, x, weight)
    return _conv1d_call(op, x, weight, bias, stride, pads, dilation, groups)


def conv1d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need=(True, True, True)):
    """Gradients of conv1d: (dx | None, dweight | None, dbias | None)."""
    op = "conv1d_backward"
    x, weight = _check_inputs(op, x, weight, groups, 1)
    stride, pads, dilation, out = _geometry(op, x, weight, stride, padding, dilation, 1)
    grad_out = _check_grad_out(op, grad_out, x, weight, out)
    return _conv1d_backward_call(op, grad_out, x, weight, stride, pads, dilation, groups, _need(op, need))


def _causal_pads(op, weight, dilation):
    dilation = _ints(dilation, 1, op, "dilation")
    if dilation[0] < 1:
        raise ValueError(f"{op}: dilation must be positive, got {dilation[0]}")
    context = (weight.shape[2] - 1) * dilation[0]
    if context > _MAX_ARG:
        raise ValueError(f"{op}: dilation {dilation[0]} with kernel size {weight.shape[2]} needs a causal "
                         f"padding of {context}, above the limit 2**31")
    return [(context, 0)], dilation


def _check_causal_length(op, x):
    if x.shape[2] < 1:
        raise ValueError(f"{op}: x {x.shape} has no time steps")


def causal_conv1d(x, weight, bias=None, dilation=1, groups=1):
    """conv1d with left padding (K-1)*dilation only: output (N, O, L), y[t] sees x[<= t]."""
    op = "causal_conv1d"
    x, weight = _check_inputs(op, x, weight, groups, 1)
    pads, dilation = _causal_pads(op, weight, dilation)
    _check_causal_length(op, x)
    bias = _check_bias(op, bias, x, weight)
    return _conv1d_call(op, x, weight, bias, (1,), pads, dilation, groups)


def causal_conv1d_backward(grad_out, x, weight, dilation=1, groups=1, need=(True, True, True)):
    """Gradients of causal_conv1d: (dx | None, dweight | None, dbias | None)."""
    op = "causal_conv1d_backward"
    x, weight = _check_inputs(op, x, weight, groups, 1)
    pads, dilation = _causal_pads(op, weight, dilation)
    _check_causal_length(op, x)
    grad_out = _check_grad_out(op, grad_out, x, weight, (x.shape[2],))
    return _conv1d_backward_call(op, grad_out, x, weight, (1,), pads, dilation, groups, _need(op, need))


class Conv1dStream:
    """causal_conv1d over a sequence fed in pieces.

    Keeps the last (K-1)*dilation inputs of each sequence as state (zeros at the
    start, as the causal padding), so ``step`` on consecutive chunks (any lengths,
    including 1) returns exactly the columns causal_conv1d gives on the whole sequence.
    The batch size and dtype are fixed by the first chunk until ``reset()``.
    """

    def __init__(self, weight, bias=None, dilation=1, groups=1):
        op = "Conv1dStream"
        self.weight = _array(weight, op, "weight", 3, "(O, C/groups, K)")
        if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
        if self.weight.shape[0] % groups:
            raise ValueError(f"{op}: groups={groups} does not divide the {self.weight.shape[0]} output channels "
                             f"of weight {self.weight.shape}")
        if self.weight.shape[2] < 1:
            raise ValueError(f"{op}: weight {self.weight.shape} has an empty kernel")
        pads, self.dilation = _causal_pads(op, self.weight, dilation)
        self.groups = int(groups)
        self.context = pads[0][0]
        self.in_channels = self.weight.shape[1] * self.groups
        if bias is not None:
            bias = _check_bias(op, bias, np.empty((0,), self.weight.dtype), self.weight)
        self.bias = bias
        self._state = None

    def reset(self):
        """Forget the history: the next chunk starts a new sequence."""
        self._state = None

    def step(self, x_chunk):
        """x_chunk (N, C, l) -> (N, O, l), continuing the sequence seen so far."""
        op = "Conv1dStream.step"
        x = _array(x_chunk, op, "x_chunk", 3, "(N, C, l)")
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
        window = np.concatenate([self._state, x], axis=2)
        y = _conv1d_call(op, window, self.weight, self.bias, (1,), [(0, 0)], self.dilation, self.groups)
        self._state = np.ascontiguousarray(window[:, :, window.shape[2] - self.context:])
        return y
