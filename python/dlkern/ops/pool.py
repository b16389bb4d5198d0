"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, forward and backward.

PyTorch's names, defaults and semantics on NumPy arrays: x is (N, C, H, W) or
(C, H, W), float32 or float64. Geometry arguments are an int or an (h, w) pair;
stride=None means stride = kernel_size. A non-contiguous x is copied explicitly here
(np.ascontiguousarray) before the kernel runs; the kernels read NCHW planes.

max_pool2d's indices are int64 flat positions ih * W + iw inside each (n, c) plane,
as PyTorch's; ties go to the first maximum in scan order and NaN propagates. A
window that covers no input element (possible only with dilation > 1 and padding)
gives -inf with index -1, which max_pool2d_backward skips.
"""

import numbers

import numpy as np

from .. import _C

__all__ = [
    "max_pool2d", "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
]


def _int(value, op, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    value = int(value)
    # The kernels refuse sizes above 2**31 by name; one past int64 would not even
    # convert (a TypeError from the binding), so it is refused here the same way.
    if not -2**63 <= value < 2**63:
        raise ValueError(f"{op}: {name} {value} is too large (limit 2**31)")
    return value


def _pair(value, op, name):
    """An int, or a sequence of 1 or 2 ints (PyTorch accepts both), as an (h, w) tuple."""
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            value = (value[0], value[0])
        if len(value) != 2:
            raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
        return (_int(value[0], op, name), _int(value[1], op, name))
    v = _int(value, op, name)
    return (v, v)


def _as_4d(x, op, name="x"):
    """(x as a C-contiguous 4-D array, whether a batch axis was added)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: {name} must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {x.shape}")
    added = x.ndim == 3
    if added:
        x = x[None]
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)  # the kernels read whole NCHW planes
    return x, added


def _input_shape(input_shape, grad_ndim, op):
    try:
        shape = tuple(_int(s, op, "input_shape") for s in input_shape)
    except TypeError as exc:
        raise TypeError(f"{op}: input_shape must be a sequence of ints, got {input_shape!r}") from exc
    if len(shape) != grad_ndim:
        raise ValueError(f"{op}: input_shape {shape} has {len(shape)} entries but grad_out is {grad_ndim}-D")
    return shape if len(shape) == 4 else (1,) + shape


def _unbatch(arrays, added):
    if not added:
        return arrays
    return tuple(None if a is None else a[0] for a in arrays)


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices): max pooling and the int64 flat index of each maximum in its plane."""
    op = "max_pool2d"
    kernel = _pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None else _pair(stride, op, "stride")
    x4, added = _as_4d(x, op)
    y, idx = _C.max_pool2d_forward(x4, kernel, stride, _pair(padding, op, "padding"),
                                   _pair(dilation, op, "dilation"), bool(ceil_mode), True)
    return _unbatch((y, idx), added)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling as torch.nn.functional.max_pool2d; (y, indices) with return_indices."""
    if return_indices:
        return max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)
    op = "max_pool2d"
    kernel = _pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None else _pair(stride, op, "stride")
    x4, added = _as_4d(x, op)
    y, _ = _C.max_pool2d_forward(x4, kernel, stride, _pair(padding, op, "padding"),
                                 _pair(dilation, op, "dilation"), bool(ceil_mode), False)
    return y[0] if added else y


def max_pool2d_backward(grad_out, indices, input_shape):
    """dx of input_shape: grad_out added into dx at the positions held in indices."""
    op = "max_pool2d_backward"
    g4, added = _as_4d(grad_out, op, "grad_out")
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"{op}: indices must be a numpy.ndarray, got {type(indices).__name__}")
    if indices.shape != np.shape(grad_out):
        raise ValueError(f"{op}: indices has shape {indices.shape} but grad_out has shape {np.shape(grad_out)}")
    i4 = indices[None] if added else indices
    if i4.dtype == np.int64 and not i4.flags.c_contiguous:
        i4 = np.ascontiguousarray(i4)
    dx = _C.max_pool2d_backward(g4, i4, _input_shape(input_shape, np.ndim(grad_out), op))
    return dx[0] if added else dx


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling as torch.nn.functional.avg_pool2d."""
    op = "avg_pool2d"
    kernel = _pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None else _pair(stride, op, "stride")
    divisor = None if divisor_override is None else _int(divisor_override, op, "divisor_override")
    x4, added = _as_4d(x, op)
    y = _C.avg_pool2d_forward(x4, kernel, stride, _pair(padding, op, "padding"), bool(ceil_mode),
                              bool(count_include_pad), divisor)
    return y[0] if added else y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """dx of input_shape for avg_pool2d with the same arguments."""
    op = "avg_pool2d_backward"
    kernel = _pair(kernel_size, op, "kernel_size")
    stride = kernel if stride is None else _pair(stride, op, "stride")
    divisor = None if divisor_override is None else _int(divisor_override, op, "divisor_override")
    g4, added = _as_4d(grad_out, op, "grad_out")
    dx = _C.avg_pool2d_backward(g4, _input_shape(input_shape, np.ndim(grad_out), op), kernel, stride,
                                _pair(padding, op, "padding"), bool(ceil_mode), bool(count_include_pad),
                                divisor)
    return dx[0] if added else dx


def adaptive_avg_pool2d(x, output_size):
    """Adaptive average pooling as torch.nn.functional.adaptive_avg_pool2d; output_size is
    an int or an (h, w) pair, where None keeps that input size. 1 is global average pooling."""
    op = "adaptive_avg_pool2d"
    x4, added = _as_4d(x, op)
    if isinstance(output_size, (tuple, list)):
        if len(output_size) != 2:
            raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
        size = tuple(x4.shape[2 + a] if s is None else _int(s, op, "output_size")
                     for a, s in enumerate(output_size))
    else:
        size = _pair(output_size, op, "output_size")
    y = _C.adaptive_avg_pool2d_forward(x4, size)
    return y[0] if added else y


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    """dx of input_shape for adaptive_avg_pool2d (the output size is grad_out's)."""
    op = "adaptive_avg_pool2d_backward"
    g4, added = _as_4d(grad_out, op, "grad_out")
    dx = _C.adaptive_avg_pool2d_backward(g4, _input_shape(input_shape, np.ndim(grad_out), op))
    return dx[0] if added else dx
