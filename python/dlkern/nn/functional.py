"""Stateless forms of the layers, activations and losses (dlkern.nn.functional)."""

import numpy as np

from ..device import array_namespace
from .. import functions as _F
from ..autograd import is_grad_enabled as _is_grad_enabled
from ..autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from ..generator import RNG as _RNG
from ..tensor import Tensor, tensor as _tensor
from ..functions.activation import SELU_ALPHA, SELU_SCALE
from ..functions import attention as _FA
from ._args import _int_arg, _same_dtype
# transposed convolution, interpolation, pixel shuffle, 1-D and adaptive max pooling and
# max unpooling live in their own modules; F names them, as PyTorch's functional does
from .functional_resample import (adaptive_max_pool2d, avg_pool1d, conv_transpose1d, conv_transpose2d,  # noqa: F401
                                  interpolate, max_pool1d, pixel_shuffle, pixel_unshuffle, upsample)
from .unpool import max_unpool2d  # noqa: F401

_REDUCTIONS = ("none", "mean", "sum")


def _pair(v, name, op):
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair, got {v}")
    return v


def _check_reduction(reduction, op):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# ---------------------------------------------------------------------- layers

def linear(input, weight, bias=None):
    if input.shape[-1:] != weight.shape[1:]:
        raise ValueError(f"linear: input has shape {tuple(input.shape)} but weight has shape "
                         f"{tuple(weight.shape)} (expected input (..., {weight.shape[1]}))")
    _same_dtype("linear", input, weight, bias)
    return _F.Linear.apply(input, weight, bias)


def _conv(fn, op, layout, input, weight, bias, stride, padding, dilation, groups):
    """Convolution `fn` over len(layout) - 2 spatial dims; an unbatched input (C, *spatial)
    gets a batch of one added here (the kernels take batched inputs only) and removed from
    the result, as PyTorch."""
    spatial = len(layout) - 2
    if input.ndim not in (spatial + 1, spatial + 2):
        raise ValueError(f"{op}: expected a {spatial + 1}-D ({', '.join(layout[1:])}) unbatched or "
                         f"{spatial + 2}-D ({', '.join(layout)}) batched input, got shape {tuple(input.shape)}")
    channels = input.shape[-spatial - 1]
    if channels != weight.shape[1] * groups:
        raise ValueError(f"{op}: input has {channels} channels (shape {tuple(input.shape)}) but weight "
                         f"{tuple(weight.shape)} with groups={groups} expects {weight.shape[1] * groups}")
    _same_dtype(op, input, weight, bias)
    if input.ndim == spatial + 1:
        return fn.apply(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    return fn.apply(input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv(_F.Conv2d, "conv2d", ("N", "C", "H", "W"), input, weight, bias, stride, padding, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv(_F.Conv1d, "conv1d", ("N", "C", "L"), input, weight, bias, stride, padding, dilation, groups)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling; with return_indices=True, (values, indices): int64 flat positions
    ih * W + iw of each maximum in its input plane (no gradient), for max_unpool2d."""
    if return_indices:
        found = []
        values = _F.MaxPool2d.apply(input, kernel_size, stride, padding, dilation, ceil_mode, found)
        return values, Tensor._make(found[0], input.device, False, None)
    return _F.MaxPool2d.apply(input, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _F.AvgPool2d.apply(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def adaptive_avg_pool2d(input, output_size):
    return _F.AdaptiveAvgPool2d.apply(input, output_size)


def _norm_shape(normalized_shape):
    if normalized_shape.__class__ is tuple:  # the modules' form, checked first
        return normalized_shape
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    normalized_shape = _norm_shape(normalized_shape)
    if input.data.shape[-len(normalized_shape):] != normalized_shape:  # (a shape slice is a tuple)
        raise ValueError(f"layer_norm: input shape {tuple(input.shape)} does not end with {normalized_shape}")
    return _F.LayerNorm.apply(input, normalized_shape, weight, bias, eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    normalized_shape = _norm_shape(normalized_shape)
    if tuple(input.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"rms_norm: input shape {tuple(input.shape)} does not end with {normalized_shape}")
    return _F.RMSNorm.apply(input, normalized_shape, weight, eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    num_groups = _int_arg(num_groups, "group_norm", "num_groups")
    if num_groups <= 0:
        raise ValueError(f"group_norm: num_groups must be positive, got {num_groups}")
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise ValueError(f"group_norm: {num_groups} groups do not divide the channels of input {tuple(input.shape)}")
    return _F.GroupNorm.apply(input, num_groups, weight, bias, eps)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    rm = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    rv = running_var.data if isinstance(running_var, Tensor) else running_var
    if training and input.shape[0] * int(np.prod(input.shape[2:])) <= 1:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input {tuple(input.shape)}")
    return _F.BatchNorm.apply(input, rm, rv, weight, bias, training, momentum, eps)


def _array(x):
    """x as an array where it lives: a Tensor's data, an array of any device as it is,
    other host data (lists, numbers) through NumPy."""
    if isinstance(x, Tensor):
        return x.data
    try:
        array_namespace(x)
    except TypeError:
        return np.asarray(x)
    return x


def embedding(input, weight, padding_idx=None):
    if isinstance(input, Tensor) and input.device != weight.device:
        raise RuntimeError(f"embedding: indices are on {input.device} but the weight is on {weight.device}")
    idx = _array(input)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    n = weight.shape[0]
    # (indices on a GPU are bounds-checked by the gather kernel, which raises IndexError)
    bounds = array_namespace(idx).host_bounds(idx)
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= n):
        # (negative indices too: PyTorch refuses them rather than counting from the end)
        raise IndexError(f"embedding: index out of range in self: indices must be in [0, {n}) for {n} "
                         f"embeddings, got min {bounds[0]}, max {bounds[1]}")
    idx = weight.device.to_device(idx.astype(np.int64, copy=False))
    if padding_idx is not None and padding_idx < 0:
        padding_idx += n
    return _F.Embedding.apply(weight, idx, padding_idx)


def dropout(input, p=0.5, training=True):
    """Inverted dropout: zero with probability p, scale survivors by 1/(1-p); identity in eval."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    keep = input.device.uniform(input.shape) >= p
    mask = keep.astype(input.dtype) * input.dtype.type(1.0 / (1.0 - p))
    return _F.Mul.apply(input, mask)


def alpha_dropout(input, p=0.5, training=False):
    """Dropout for SELU networks: keeps mean and variance of a standard-normal input."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"alpha_dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    alpha_p = -SELU_ALPHA * SELU_SCALE
    a = ((1 - p) * (1 + p * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * p
    keep = input.device.uniform(input.shape) >= p
    scale = (keep * a).astype(input.dtype)
    shift = ((~keep) * (a * alpha_p) + b).astype(input.dtype)
    return _F.Add.apply(_F.Mul.apply(input, scale), shift)


def flatten(input, start_dim=0, end_dim=-1):
    return input.flatten(start_dim, end_dim)


# ---------------------------------------------------------------------- activations

def relu(input):
    return _F.Relu.apply(input)


def leaky_relu(input, negative_slope=0.01):
    return _F.LeakyRelu.apply(input, negative_slope)


def elu(input, alpha=1.0):
    return _F.Elu.apply(input, alpha)


def gelu(input, approximate="none"):
    return input.gelu(approximate)


def selu(input):
    return _F.Selu.apply(input)


def softplus(input, beta=1.0, threshold=20.0):
    return _F.Softplus.apply(input, beta, threshold)


def silu(input):
    return _F.Silu.apply(input)


def sigmoid(input):
    return _F.Sigmoid.apply(input)


def tanh(input):
    return _F.Tanh.apply(input)


def softmax(input, dim=-1, *, axis=None):
    return input.softmax(dim, axis=axis)


def log_softmax(input, dim=-1, *, axis=None):
    return input.log_softmax(dim, axis=axis)


# ---------------------------------------------------------------------- losses

def _check_same_shape(op, input, target):
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{op}: input has shape {tuple(input.shape)} but target has shape {tuple(target.shape)}")


def mse_loss(input, target, reduction="mean"):
    _check_reduction(reduction, "mse_loss")
    _check_same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    _check_reduction(reduction, "l1_loss")
    _check_same_shape("l1_loss", input, target)
    return _reduce((input - target).abs(), reduction)


def _target_array(target, op):
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype}")
    return t.astype(np.int64, copy=False)


def _weight_array(weight):
    if weight is None:
        return None
    return weight.data if isinstance(weight, Tensor) else np.asarray(weight)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """The fused log-softmax + NLL kernel. input (N, C) or (N, C, d1, ...), target
    integer classes (N,) or (N, d1, ...)."""
    _check_reduction(reduction, "cross_entropy")
    t_raw = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t_raw.dtype.kind == "f":
        return _cross_entropy_probs(input, target, weight, reduction, label_smoothing)
    t = _target_array(target, "cross_entropy")
    if input.ndim == 1:  # one unbatched sample (C,) with a 0-d target
        if t.ndim != 0:
            raise ValueError(f"cross_entropy: input has shape {tuple(input.shape)} but target has shape {t.shape}")
        out = cross_entropy(input.unsqueeze(0), t.reshape(1), weight, ignore_index, reduction, label_smoothing)
        return out.reshape(()) if reduction == "none" else out
    if input.ndim < 2 or t.shape != (input.shape[0],) + tuple(input.shape[2:]):
        raise ValueError(f"cross_entropy: input has shape {tuple(input.shape)} but target has shape {t.shape} "
                         f"(expected {(input.shape[0],) + tuple(input.shape[2:]) if input.ndim >= 2 else ()})")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    return _F.CrossEntropy.apply(input, t, _weight_array(weight), ignore_index, reduction, float(label_smoothing))


def _cross_entropy_probs(input, target, weight, reduction, label_smoothing):
    """Class-probability targets (same shape as input): -sum_c w_c t_c log_softmax(x)_c,
    mean over samples (as PyTorch; weights do not renormalise here)."""
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"cross_entropy: probability target has shape {tuple(target.shape)} but input has "
                         f"shape {tuple(input.shape)}")
    if not isinstance(target, Tensor):
        target = _tensor(target, dtype=input.dtype, device=input.device)
    # ---- robust training (issue 15): one fused Function (log_softmax kernel + closed-form
    # backward) when no gradient flows to the target; the composite below otherwise
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if not (target.requires_grad and _is_grad_enabled()) and target.dtype == input.dtype \
            and target.device == input.device and input.ndim >= 1:
        c = input.shape[0 if input.ndim == 1 else 1]
        t = target.data
        if label_smoothing:
            t = t * (1 - label_smoothing) + label_smoothing / c
        w = None
        if weight is not None:
            w = weight.data if isinstance(weight, Tensor) else input.device.to_device(np.asarray(weight))
            w = w.astype(input.data.dtype)
        return _F.SoftCrossEntropy.apply(input, t, w, reduction)
    # ---- end robust training
    c = input.shape[1]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / c
    prod = log_softmax(input, dim=1) * target
    if weight is not None:
        w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
        prod = prod * w.astype(input.dtype).reshape((1, c) + (1,) * (input.ndim - 2))
    return _reduce(-prod.sum(1), reduction)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """input (N, C) or (N, C, d1, ...) of log-probabilities (or (C,) with a 0-d target),
    target integer classes (N,) or (N, d1, ...); mean divides by the summed weights of the
    non-ignored targets (as PyTorch)."""
    _check_reduction(reduction, "nll_loss")
    t = _target_array(target, "nll_loss")
    expected = () if input.ndim == 1 else (input.shape[0],) + tuple(input.shape[2:]) if input.ndim >= 2 else None
    if expected is None or tuple(t.shape) != expected:
        raise ValueError(f"nll_loss: input has shape {tuple(input.shape)} but target has shape {tuple(t.shape)} "
                         f"(expected {expected if expected is not None else 'an input with >= 1 dims'})")
    return _F.NLLLoss.apply(input, t, _weight_array(weight), ignore_index, reduction)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    _check_reduction(reduction, "binary_cross_entropy")
    _check_same_shape("binary_cross_entropy", input, target)
    return _reduce(_F.BinaryCrossEntropy.apply(input, target, _weight_array(weight)), reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """(1 - y) x + (1 + (pw - 1) y) softplus(-x): stable for any logit."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    _check_same_shape("binary_cross_entropy_with_logits", input, target)
    sp = _F.Softplus.apply(-input, 1.0, float("inf"))
    if pos_weight is not None:
        log_weight = (pos_weight - 1) * target + 1
        loss = (1 - target) * input + log_weight * sp
    else:
        loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def sigmoid_focal_loss(input, target, alpha=0.25, gamma=2.0, reduction="none"):
    """Focal loss on logits for binary/multi-label targets (Lin et al.; torchvision's
    definition): bce_with_logits * (1 - p_t)^gamma, weighted by alpha_t if alpha >= 0."""
    _check_reduction(reduction, "sigmoid_focal_loss")
    p = input.sigmoid()
    ce = binary_cross_entropy_with_logits(input, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return _reduce(loss, reduction)


def focal_loss(input, target, gamma=2.0, alpha=None, ignore_index=-100, reduction="mean"):
    """Multi-class focal loss: -alpha[t] (1 - p_t)^gamma log p_t over the softmax of
    input (N, C) or (N, C, d1, ...). alpha: None, a scalar, or per-class weights (C,).
    mean divides by the number of non-ignored targets."""
    _check_reduction(reduction, "focal_loss")
    t = _target_array(target, "focal_loss")
    if input.ndim > 2:
        c = input.shape[1]
        perm = (0,) + tuple(range(2, input.ndim)) + (1,)
        input = input.permute(*perm).reshape(-1, c)
        t = t.reshape(-1)
    n, c = input.shape
    dev = input.device
    valid = t != ignore_index
    if (valid & ((t < 0) | (t >= c))).any():
        raise ValueError(f"focal_loss: target value out of range for {c} classes")
    safe = dev.where(valid, t, 0)
    logp = log_softmax(input, dim=1)
    logpt = logp[dev.arange(n), safe]
    pt = logpt.exp()
    loss = -((1 - pt) ** gamma) * logpt
    scale = valid.astype(input.dtype)
    if alpha is not None:
        a = alpha.data if isinstance(alpha, Tensor) else dev.to_device(np.asarray(alpha, dtype=input.dtype))
        scale = scale * (a[safe] if a.ndim else a)
    loss = loss * scale
    if reduction == "none":
        return loss.reshape(target.shape) if hasattr(target, "shape") else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / max(int(valid.sum()), 1)


# ---------------------------------------------------------------------- attention

def _attention_mask(mask, dtype, shape, op, name="attn_mask", device=None):
    """`mask` (Tensor or array, bool or float) checked against the score shape `shape`
    (..., Tq, Tk) it must broadcast to, as an array with len(shape) dims on `device` (a
    host mask is copied to a GPU device): bool stays bool (True = take part), float is
    cast to `dtype`."""
    if mask is None:
        return None
    if isinstance(mask, Tensor) and device is not None and mask.device != device:
        raise RuntimeError(f"{op}: {name} is on {mask.device} but the attention inputs are on {device}")
    m = _array(mask)
    if m.dtype != np.bool_ and m.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be bool or floating point, got dtype {m.dtype}")
    try:
        ok = m.ndim <= len(shape) and np.broadcast_shapes(m.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{op}: {name} has shape {tuple(m.shape)}, which does not broadcast to the attention "
                         f"scores' shape {tuple(shape)} (batch, heads, target length, source length)")
    if m.dtype != np.bool_:
        m = m.astype(dtype, copy=False)
    m = m.reshape((1,) * (len(shape) - m.ndim) + tuple(m.shape))
    if device is not None:
        m = device.to_device(m)
    return array_namespace(m).contiguous(m)


def _attention_seed(dropout_p):
    # The kernels regenerate the dropout mask from an integer seed; drawing it from
    # dlkern's generator makes dropout follow dlkern.manual_seed.
    return int(_RNG.generator.integers(0, 2 ** 31 - 1)) if dropout_p > 0 else 0


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """softmax(query key^T * scale + mask) value, as torch.nn.functional.scaled_dot_product_attention.

    query (..., Hq, Tq, D), key (..., Hkv, Tk, D), value (..., Hkv, Tk, Dv); as PyTorch,
    every dim but the last two broadcasts (e.g. query (B, H, Tq, D) with key/value
    (1, H, Tk, D) or (H, Tk, D)), and the gradient of a broadcast input is summed back to
    its shape. Hq != Hkv > 1 needs enable_gqa=True and Hq divisible by Hkv (query head h
    reads KV head h // (Hq // Hkv), without copying K and V). attn_mask (Tensor or array)
    broadcasts to (..., Hq, Tq, Tk): bool True = attend, float = added to the scores; no
    gradient flows into it. is_causal
    masks key j > query i (top-left aligned); unlike PyTorch it may be combined with
    attn_mask. A query row with every key masked gives 0 (PyTorch gives NaN). A masked key
    (causal, False, or -inf in a float mask) contributes nothing to the output or any
    gradient, even if its key or value holds NaN or Inf. dropout_p
    applies whenever it is > 0 (as PyTorch: pass 0.0 in eval); its randomness follows
    dlkern.manual_seed.
    """
    op = "scaled_dot_product_attention"
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"{op}: {name} must have at least 2 dims (..., seq, head_dim), "
                             f"got shape {tuple(t.shape)}")
        if t.dtype != query.dtype and not _autocast_mixed():
            raise TypeError(f"{op}: dtype mismatch: query is {query.dtype} but {name} is {t.dtype}")
    qs, ks, vs = tuple(query.shape), tuple(key.shape), tuple(value.shape)
    if qs[-1] != ks[-1]:
        raise ValueError(f"{op}: head_dim mismatch: query has head_dim {qs[-1]} but key has {ks[-1]} "
                         f"(query {qs}, key {ks})")
    if ks[-2] != vs[-2]:
        raise ValueError(f"{op}: key {ks} and value {vs} must have the same sequence length")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"{op}: dropout_p must be in [0, 1), got {dropout_p}")
    matrices = len(qs) == len(ks) == len(vs) == 2  # (seq, dim) each: so is the output
    query, key, value, lead, hq = _attention_broadcast(op, query, key, value, enable_gqa)
    batch = int(np.prod(lead)) if lead else 1
    scores = (batch, hq, qs[-2], ks[-2])
    if attn_mask is not None:
        dev = query.device
        m = _attention_mask(attn_mask, query.dtype, lead + scores[1:], op, device=dev)
        if len(lead) != 1:
            m = dev.contiguous(dev.broadcast_to(m, lead + tuple(m.shape[-3:]))).reshape((batch,) + tuple(m.shape[-3:]))
        attn_mask = m
    if len(lead) != 1:
        query, key, value = (t.reshape((batch,) + tuple(t.shape[-3:])) for t in (query, key, value))
    out = _FA.ScaledDotProductAttention.apply(query, key, value, attn_mask, bool(is_causal),
                                             None if scale is None else float(scale), float(dropout_p),
                                             _attention_seed(dropout_p))
    if matrices:
        return out.reshape(tuple(out.shape[-2:]))
    return out if len(lead) == 1 else out.reshape(lead + tuple(out.shape[-3:]))


def _attention_broadcast(op, query, key, value, enable_gqa):
    """query, key and value with their batch dims (all but the last three) broadcast to
    one shape `lead`, as PyTorch broadcasts every dim but the last two; a missing heads dim
    is 1. The heads broadcast too, except where key/value hold fewer heads than query as
    grouped-query attention (enable_gqa=True, or a single key/value head, which reads the
    same either way): the kernel then reads them in place. -> (q, k, v, lead, heads).
    A broadcast input is an Expand view, so its gradient is summed back to its shape."""
    qs, ks, vs = query.data.shape, key.data.shape, value.data.shape
    if (len(qs) == len(ks) == len(vs) > 2 and qs[:-3] == ks[:-3] == vs[:-3] and ks[-3] == vs[-3]
            and (qs[-3] == ks[-3] or enable_gqa and qs[-3] % ks[-3] == 0)):
        return query, key, value, qs[:-3], qs[-3]  # nothing to broadcast (the common cases, kept cheap)
    qs, ks, vs = (s if len(s) > 2 else (1,) + s for s in (qs, ks, vs))
    lead = qs[:-3]
    if not (len(qs) == len(ks) == len(vs) and lead == ks[:-3] == vs[:-3]):  # (the common case skips this)
        try:
            lead = np.broadcast_shapes(qs[:-3], ks[:-3], vs[:-3])
        except ValueError:
            raise ValueError(f"{op}: the batch dims of query {tuple(query.shape)}, key {tuple(key.shape)} and "
                             f"value {tuple(value.shape)} do not broadcast") from None
    hq, hk, hv = qs[-3], ks[-3], vs[-3]
    grouped = hk == hv and hq != hk and (enable_gqa or hk == 1)
    if grouped and hq % hk:
        raise ValueError(f"{op}: query heads ({hq}) must be divisible by key/value heads ({hk})")
    if not grouped and len({hq, hk, hv} - {1}) > 1:
        hint = "; pass enable_gqa=True for grouped-query attention" if hk == hv else ""
        raise ValueError(f"{op}: query has {hq} heads but key/value have {hk}/{hv}{hint}")
    heads = max(hq, hk, hv)

    def to(t, shape, h):
        target = lead + (h,) + shape[-2:]
        return t if tuple(t.shape) == target else t.expand(*target)
    query = to(query, qs, heads)
    key = to(key, ks, hk if grouped else heads)
    value = to(value, vs, hv if grouped else heads)
    return query, key, value, tuple(lead), heads


def rope(input, offset=0, base=10000.0):
    """Rotary position embedding of input (..., T, D), D even, at positions
    offset..offset+T-1; pairs are (i, i + D/2) ("rotate half", as GPT-NeoX/LLaMA)."""
    if input.shape[-1] % 2:
        raise ValueError(f"rope: the last dim (head_dim) must be even, got shape {tuple(input.shape)}")
    offset = _int_arg(offset, "rope", "offset")
    if offset < 0:
        raise ValueError(f"rope: offset must be >= 0, got {offset}")
    return _FA.Rope.apply(input, offset, float(base))


apply_rotary_emb = rope
