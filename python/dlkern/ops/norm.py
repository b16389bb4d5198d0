"""Normalisation: layer_norm, rms_norm, group_norm, batch_norm, forward and backward.

PyTorch names, defaults and semantics on NumPy arrays (float32/float64). ``*_forward``
returns the output and what the backward needs; ``*_backward`` returns the gradients
(None for a gradient not requested); the plain names return only the output.

The kernels need C-contiguous arrays: a non-contiguous ndarray is copied here, once,
explicitly (``numpy.ascontiguousarray``); anything that is not an ndarray is passed
through unchanged so the compiled layer rejects it with a TypeError (no silent casts).

Scalar arguments are checked by the binding, not converted here: ``normalized_shape``
an int or a sequence of ints, ``num_groups`` an int in [1, C] dividing C, ``eps``
finite and >= 0, ``momentum`` finite (TypeError for floats where ints are due, bools,
strings; ValueError naming the op and argument for values out of range).

The backward functions do not receive the bias, so they cannot know whether there was
one: dbias is computed unless ``need_bias=False`` is passed (it is one add per element).
"""

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


# ----------------------------------------------------------------------------- layer norm


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer norm over the trailing ``normalized_shape`` dims -> (y, mean, rstd), with
    mean/rstd of shape ``x.shape[:-len(normalized_shape)]`` (rstd = 1/sqrt(var + eps))."""
    return _C.layer_norm_forward(_contiguous(x), normalized_shape, _contiguous(weight), _contiguous(bias), eps)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm`` on NumPy arrays."""
    return layer_norm_forward(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(grad_out, x, normalized_shape, weight, mean, rstd, need_bias=True):
    """-> (dx, dweight or None (weight None), dbias or None (need_bias False))."""
    return _C.layer_norm_backward(_contiguous(grad_out), _contiguous(x), normalized_shape,
                                  _contiguous(weight), _contiguous(mean), _contiguous(rstd),
                                  need_bias=bool(need_bias))


# ----------------------------------------------------------------------------- RMS norm


def rms_norm_forward(x, normalized_shape, weight=None, eps=None):
    """RMS norm -> (y, rstd); eps=None uses ``numpy.finfo(x.dtype).eps`` (as PyTorch)."""
    return _C.rms_norm_forward(_contiguous(x), normalized_shape, _contiguous(weight), eps)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """``torch.nn.functional.rms_norm`` on NumPy arrays."""
    return rms_norm_forward(x, normalized_shape, weight, eps)[0]


def rms_norm_backward(grad_out, x, normalized_shape, weight, rstd):
    """-> (dx, dweight or None)."""
    return _C.rms_norm_backward(_contiguous(grad_out), _contiguous(x), normalized_shape,
                                _contiguous(weight), _contiguous(rstd))


# ----------------------------------------------------------------------------- group norm


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5):
    """Group norm of x (N, C, *) -> (y, mean, rstd) with mean/rstd (N, num_groups)."""
    return _C.group_norm_forward(_contiguous(x), num_groups, _contiguous(weight),
                                 _contiguous(bias), eps)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm`` on NumPy arrays."""
    return group_norm_forward(x, num_groups, weight, bias, eps)[0]


def group_norm_backward(grad_out, x, num_groups, weight, mean, rstd, need_bias=True):
    """-> (dx, dweight or None, dbias or None)."""
    return _C.group_norm_backward(_contiguous(grad_out), _contiguous(x), num_groups,
                                  _contiguous(weight), _contiguous(mean), _contiguous(rstd),
                                  need_bias=bool(need_bias))


# ----------------------------------------------------------------------------- batch norm


def batch_norm_forward(x, running_mean, running_var, weight=None, bias=None, training=False,
                       momentum=0.1, eps=1e-5):
    """Batch norm of x (N, C) or (N, C, *) -> (y, save_mean, save_rstd), the (C,)
    statistics used. Training: batch statistics, and running_mean/running_var (if not
    None) updated in place with the unbiased variance. Eval: the running statistics."""
    # running_mean / running_var are updated in place, so never copied here.
    return _C.batch_norm_forward(_contiguous(x), running_mean, running_var, _contiguous(weight),
                                 _contiguous(bias), bool(training), momentum, eps)


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
