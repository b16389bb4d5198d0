"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, forward and backward.

PyTorch's names, defaults and semantics on NumPy arrays: x is (N, C, H, W) or
(C, H, W), float32 or float64. Geometry arguments are an int or an (h, w) pair;
stride=None means stride = kernel_size. A non-contiguous x is copied explicitly here
(np.ascontiguousarray) before the kernel runs; the kernels read NCHW planes. The
arguments are checked by the kernels' bindings (csrc/bind/pool_args.h, shared with the
CUDA module), not here.

max_pool2d's indices are int64 flat positions ih * W + iw inside each (n, c) plane,
as PyTorch's; ties go to the first maximum in scan order and NaN propagates. A
window that covers no input element (possible only with dilation > 1 and padding)
gives -inf with index -1, which max_pool2d_backward skips.
"""

import numpy as np

from .. import _C

__all__ = [
    "max_pool2d", "max_pool2d_forward", "max_pool2d_backward",
    "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
]


def _contiguous(a):
    # The kernels read whole NCHW planes: a strided ndarray is copied once, explicitly,
    # here. Anything else reaches the binding, which names it in its error.
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices): max pooling and the int64 flat index of each maximum in its plane."""
    return _C.max_pool2d_forward(_contiguous(x), kernel_size, stride, padding, dilation, bool(ceil_mode))


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling as torch.nn.functional.max_pool2d; (y, indices) with return_indices."""
    return _C.max_pool2d(_contiguous(x), kernel_size, stride, padding, dilation, bool(ceil_mode),
                         bool(return_indices))


def max_pool2d_backward(grad_out, indices, input_shape):
    """dx of input_shape: grad_out added into dx at the positions held in indices."""
    return _C.max_pool2d_backward(_contiguous(grad_out), _contiguous(indices), input_shape)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Average pooling as torch.nn.functional.avg_pool2d."""
    return _C.avg_pool2d(_contiguous(x), kernel_size, stride, padding, bool(ceil_mode), bool(count_include_pad),
                         divisor_override)


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """dx of input_shape for avg_pool2d with the same arguments."""
    return _C.avg_pool2d_backward(_contiguous(grad_out), input_shape, kernel_size, stride, padding, bool(ceil_mode),
                                  bool(count_include_pad), divisor_override)


def adaptive_avg_pool2d(x, output_size):
    """Adaptive average pooling as torch.nn.functional.adaptive_avg_pool2d; output_size is
    an int or an (h, w) pair, where None keeps that input size. 1 is global average pooling."""
    return _C.adaptive_avg_pool2d(_contiguous(x), output_size)


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    """dx of input_shape for adaptive_avg_pool2d (the output size is grad_out's)."""
    return _C.adaptive_avg_pool2d_backward(_contiguous(grad_out), input_shape)
