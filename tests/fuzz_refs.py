"""The fuzz suite's calling conventions over dlkern.reference (the one float64 oracle):
explicit (before, after) paddings, statistics returned rather than updated in place,
attention with any causal offset. test_fuzz_ops.py::test_reference_adjoints checks every
adjoint against central differences of its forward."""

from dlkern import reference as R
from dlkern.reference import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward, attention_allowed,  # noqa: F401
                              avg_pool2d, avg_pool2d_backward, causal_conv1d, causal_conv1d_backward, conv2d,
                              conv2d_backward, f64, gelu_tanh, gelu_tanh_backward, gemm, group_norm_backward,
                              gru_cell_backward, gru_cell_forward, lstm_cell_backward, lstm_cell_forward,
                              log_softmax, log_softmax_backward, max_pool2d_backward, pool_out, rope, softmax,
                              softmax_backward)
from dlkern.reference import attention_grads as attention_backward  # noqa: F401
from dlkern.reference import attention_probs as attention  # noqa: F401
from dlkern.reference import batch_norm_running as batch_norm  # noqa: F401
from dlkern.reference import cross_entropy_forward as cross_entropy  # noqa: F401
from dlkern.reference import group_norm_forward as group_norm  # noqa: F401
from dlkern.reference import max_pool2d_forward as max_pool2d  # noqa: F401


def conv1d(x, w, b, stride, pads, dilation, groups):
    """pads: one (before, after) pair."""
    return R.conv1d(x, w, b, stride, [pads], dilation, groups)


def conv1d_backward(g_out, x, w, stride, pads, dilation, groups):
    return R.conv1d_backward(g_out, x, w, stride, [pads], dilation, groups)


def conv_pads(size, k, stride, dilation, padding):
    """(before, after) of one dim for an int padding or 'valid'/'same'."""
    return R.conv_pads((k,), (dilation,), padding)[0]


# Norms over the last k dims (k, not normalized_shape).
def layer_norm(x, k, weight, bias, eps):
    return R.layer_norm_forward(x, f64(x).shape[-k:], weight, bias, eps)


def layer_norm_backward(g, x, k, weight, mean, rstd):
    return R.layer_norm_backward(g, x, f64(x).shape[-k:], weight, mean, rstd)


def rms_norm(x, k, weight, eps):
    return R.rms_norm_forward(x, f64(x).shape[-k:], weight, eps)


def rms_norm_backward(g, x, k, weight, rstd):
    return R.rms_norm_backward(g, x, f64(x).shape[-k:], weight, rstd)


def batch_norm_backward(g, x, weight, save_mean, save_rstd, training):
    return R.batch_norm_backward(g, x, weight, save_mean, save_rstd, training)


def cross_entropy_backward(grad_loss, x, target, weight, ignore_index, reduction, smoothing):
    return R.cross_entropy_backward(grad_loss, x, target, None, weight, ignore_index, reduction, smoothing)
