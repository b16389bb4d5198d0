"""Normalisation: layer_norm, rms_norm, group_norm, batch_norm, forward and backward.

PyTorch names, defaults and semantics on NumPy arrays (float32/float64). ``*_forward``
returns the output and what the backward needs; ``*_backward`` returns the gradients
(None for a gradient not requested); the plain names return only the output.

The kernels need C-contiguous arrays: a non-contiguous ndarray is copied here, once,
explicitly (``numpy.ascontiguousarray``); anything that is not an ndarray is passed
through unchanged so the compiled layer rejects it with a TypeError (no silent casts).

The backward functions do not receive the bias, so they cannot know whether there was
one: dbias is computed unless ``need_bias=False`` is passed (it is one add per element).
"""

import numbers

import numpy as np

from .. import _C

__all__ = [
    "layer_norm", "layer_norm_forward", "layer_norm_backward",
    "rms_norm", "rms_norm_forward", "rms_norm_backward",
    "group_norm", "group_norm_forward", "group_norm_backward",
    "batch_norm", "batch_norm_forward", "batch_norm_backward",
]


def _contiguous(a):
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        return np.ascontiguousarray(a)
    return a


def _shape_tuple(normalized_shape):
    """An int or a sequence of ints, as PyTorch accepts (torch.Size, list, tuple)."""
    if type(normalized_shape) is int:  # the common case, without the ABC check below
        return (normalized_shape,)
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    try:
        return tuple(int(d) for d in normalized_shape)
    except TypeError:
        raise TypeError(f"normalized_shape must be an int or a sequence of ints, got "
                        f"{type(normalized_shape).__name__}") from None


# ----------------------------------------------------------------------------- layer norm


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer norm over the trailing ``normalized_shape`` dims -> (y, mean, rstd), with
    mean/rstd of shape ``x.shape[:-len(normalized_shape)]`` (rstd = 1/sqrt(var + eps))."""
    return _C.layer_norm_forward(_contiguous(x), _shape_tuple(normalized_shape),
                                 _contiguous(weight), _contiguous(bias), float(eps))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm`` on NumPy arrays."""
    return layer_norm_forward(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(grad_out, x, normalized_shape, weight, mean, rstd, need_bias=True):
    """-> (dx, dweight or None (weight None), dbias or None (need_bias False))."""
    return _C.layer_norm_backward(_contiguous(grad_out), _contiguous(x), _shape_tuple(normalized_shape),
                                  _contiguous(weight), _contiguous(mean), _contiguous(rstd),
                                  need_bias=bool(need_bias))


# ----------------------------------------------------------------------------- RMS norm


def rms_norm_forward(x, normalized_shape, weight=None, eps=None):
    """RMS norm -> (y, rstd); eps=None uses ``numpy.finfo(x.dtype).eps`` (as PyTorch)."""
    return _C.rms_norm_forward(_contiguous(x), _shape_tuple(normalized_shape), _contiguous(weight),
                               None if eps is None else float(eps))


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """``torch.nn.functional.rms_norm`` on NumPy arrays."""
    return rms_norm_forward(x, normalized_shape, weight, eps)[0]


def rms_norm_backward(grad_out, x, normalized_shape, weight, rstd):
    """-> (dx, dweight or None)."""
    return _C.rms_norm_backward(_contiguous(grad_out), _contiguous(x), _shape_tuple(normalized_shape),
                                _contiguous(weight), _contiguous(rstd))


# ----------------------------------------------------------------------------- group norm


def _num_groups(num_groups, op):
    """num_groups as a Python int: an int or a NumPy integer, never a bool or a float
    (int(2.9) would silently be 2). Positivity and divisibility are checked in C++."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, numbers.Integral):
        raise TypeError(f"{op}: num_groups must be an int, got {type(num_groups).__name__} {num_groups!r}")
    return int(num_groups)



def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Group norm of x (N, C, *) -> (y, mean, rstd) with mean/rstd (N, num_groups)."""
    return _C.group_norm_forward(_contiguous(x), _num_groups(num_groups, "group_norm_forward"), _contiguous(weight),
                                 _contiguous(bias), float(eps))


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm`` on NumPy arrays."""
    return group_norm_forward(x, num_groups, weight, bias, eps)[0]


def group_norm_backward(grad_out, x, num_groups, weight, mean, rstd, need_bias=True):
    """-> (dx, dweight or None, dbias or None)."""
    return _C.group_norm_backward(_contiguous(grad_out), _contiguous(x),
                                  _num_groups(num_groups, "group_norm_backward"),
                                  _contiguous(weight), _contiguous(mean), _contiguous(rstd),
                                  need_bias=bool(need_bias))


# ----------------------------------------------------------------------------- batch norm


def _running(a, name):
    # Updated in place, so never copied: a non-contiguous one is an error, not a copy
    # whose update would be lost.
    if isinstance(a, np.ndarray) and not a.flags.c_contiguous:
        raise ValueError(f"batch_norm: {name} must be C-contiguous (it is updated in place)")
    return a


def batch_norm_forward(x, running_mean, running_var, weight=None, bias=None, training=False,
                       momentum=0.1, eps=1e-5):
    """Batch norm of x (N, C) or (N, C, *) -> (y, save_mean, save_rstd), the (C,)
    statistics used. Training: batch statistics, and running_mean/running_var (if not
    None) updated in place with the unbiased variance. Eval: the running statistics."""
    return _C.batch_norm_forward(_contiguous(x), _running(running_mean, "running_mean"),
                                 _running(running_var, "running_var"), _contiguous(weight),
                                 _contiguous(bias), bool(training), float(momentum), float(eps))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """``torch.nn.functional.batch_norm`` on NumPy arrays."""
    return batch_norm_forward(x, running_mean, running_var, weight, bias, training, momentum, eps)[0]


def batch_norm_backward(grad_out, x, weight, save_mean, save_rstd, training, need_bias=True):
    """-> (dx, dweight or None, dbias or None). training=False treats the statistics as
    constants (eval mode)."""
    return _C.batch_norm_backward(_contiguous(grad_out), _contiguous(x), _contiguous(weight),
                                  _contiguous(save_mean), _contiguous(save_rstd), bool(training),
                                  need_bias=bool(need_bias))
