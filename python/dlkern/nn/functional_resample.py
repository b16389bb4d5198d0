"""Functional forms of transposed convolution, interpolation, pixel (un)shuffle, 1-D and
adaptive max pooling (re-exported by dlkern.nn.functional with PyTorch's names).

They build on the existing Functions and kernels (conv, max/avg pool) and on Resample,
so each runs wherever those run. Geometry is checked here only where an output shape
must be computed before a kernel sees the arguments; errors name the op and argument."""

import math
import numbers

import numpy as np

from .. import functions as _F
from ..tensor import Tensor
from ._args import _int_arg, _same_dtype

__all__ = ["conv_transpose1d", "conv_transpose2d", "interpolate", "upsample", "pixel_shuffle",
           "pixel_unshuffle", "max_pool1d", "avg_pool1d", "adaptive_max_pool2d"]


def _tuple(value, n, op, name, minimum):
    """value (an int or n ints) as a tuple of n ints, each >= minimum."""
    items = (value,) * n if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(items) != n:
        raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")
    items = tuple(_int_arg(v, op, name) for v in items)
    if any(v < minimum for v in items):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return items


# ---------------------------------------------------------------------- transposed convolution

def conv_transpose_output_size(op, in_size, kernel, stride, padding, output_padding, dilation):
    """(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1 per
    dimension, after PyTorch's output_padding < max(stride, dilation) rule."""
    out = []
    for i, (n, k, s, p, o, d) in enumerate(zip(in_size, kernel, stride, padding, output_padding, dilation)):
        if o >= s and o >= d:
            raise ValueError(f"{op}: output padding must be smaller than either stride or dilation, got "
                             f"output_padding={output_padding}, stride={stride}, dilation={dilation}")
        size = (n - 1) * s - 2 * p + d * (k - 1) + o + 1
        if size <= 0:
            raise ValueError(f"{op}: the output size {size} along spatial dimension {i} is not positive (input "
                             f"size {n}, kernel {k}, stride {s}, padding {p}, output_padding {o}, dilation {d})")
        out.append(size)
    return tuple(out)


def _conv_transpose(op, nd, function, input, weight, bias, stride, padding, output_padding, groups, dilation):
    if input.ndim not in (nd + 1, nd + 2):
        raise ValueError(f"{op}: expected a {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, got shape "
                         f"{tuple(input.shape)}")
    if weight.ndim != nd + 2:
        raise ValueError(f"{op}: weight must be {nd + 2}-D (in_channels, out_channels/groups, *kernel), got "
                         f"shape {tuple(weight.shape)}")
    stride = _tuple(stride, nd, op, "stride", 1)
    padding = _tuple(padding, nd, op, "padding", 0)
    output_padding = _tuple(output_padding, nd, op, "output_padding", 0)
    dilation = _tuple(dilation, nd, op, "dilation", 1)
    groups = _int_arg(groups, op, "groups")
    cin = weight.shape[0]
    if groups <= 0 or cin % groups:
        raise ValueError(f"{op}: groups={groups} must be positive and divide the weight's in_channels {cin} "
                         f"(weight {tuple(weight.shape)})")
    unbatched = input.ndim == nd + 1
    if unbatched:
        input = input.unsqueeze(0)
    if input.shape[1] != cin:
        raise ValueError(f"{op}: input has {input.shape[1]} channels (shape {tuple(input.shape)}) but weight "
                         f"{tuple(weight.shape)} (in_channels, out_channels/groups, *kernel) expects {cin}")
    cout = weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"{op}: bias must have shape ({cout},), got {tuple(bias.shape)}")
    _same_dtype(op, input, weight, bias)
    size = conv_transpose_output_size(op, input.shape[2:], weight.shape[2:], stride, padding, output_padding,
                                      dilation)
    extra = tuple(o // s for o, s in zip(output_padding, stride))
    args = (stride, padding, dilation) if nd == 2 else (stride[0], padding[0], dilation[0])
    y = function.apply(input, weight, bias, *args, groups, (input.shape[0], cout) + size, extra)
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 1-D convolution of input (N, C_in, L) or (C_in, L) with weight
    (C_in, C_out/groups, K): the gradient of conv1d with respect to its input."""
    return _conv_transpose("conv_transpose1d", 1, _F.ConvTranspose1d, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution of input (N, C_in, H, W) or (C_in, H, W) with weight
    (C_in, C_out/groups, kH, kW): the gradient of conv2d with respect to its input."""
    return _conv_transpose("conv_transpose2d", 2, _F.ConvTranspose2d, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


# ---------------------------------------------------------------------- interpolation

_MODES = {"nearest": (1, 2), "linear": (1,), "bilinear": (2,)}
_TORCH_ONLY_MODES = ("bicubic", "trilinear", "area", "nearest-exact")


def _sizes_and_scales(op, input, size, scale_factor, recompute_scale_factor):
    """(output sizes, scales passed to the index formulas: None or 1 / scale_factor each)."""
    dims = input.ndim - 2
    in_sizes = tuple(input.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: " + ("only one of size or scale_factor should be defined" if size is not None
                                      else "either size or scale_factor should be defined"))
    if size is not None:
        sizes = _tuple(size, dims, op, "size", 0)
        if recompute_scale_factor:
            raise ValueError(f"{op}: recompute_scale_factor is not meaningful with an explicit size")
        scales = (None,) * dims
    else:
        factors = (scale_factor,) * dims if isinstance(scale_factor, numbers.Real) else tuple(scale_factor)
        if len(factors) != dims:
            raise ValueError(f"{op}: scale_factor {scale_factor!r} must be a number or have {dims} entries "
                             f"(input spatial size {list(in_sizes)})")
        if any(not isinstance(f, numbers.Real) or isinstance(f, bool) or not f > 0 for f in factors):
            raise ValueError(f"{op}: scale_factor must be positive numbers, got {scale_factor!r}")
        sizes = tuple(int(math.floor(float(n) * float(f))) for n, f in zip(in_sizes, factors))
        scales = (None,) * dims if recompute_scale_factor else tuple(float(f) for f in factors)
    if any(s <= 0 for s in sizes) or any(n <= 0 for n in in_sizes):
        raise ValueError(f"{op}: input and output sizes should be greater than 0, got input {list(in_sizes)} and "
                         f"output {list(sizes)}")
    return sizes, scales


def _src_scale(real, in_size, out_size, scale, align_corners):
    """The source step per output index in `real` arithmetic (PyTorch's, in the input's
    float type): (in-1)/(out-1) with align_corners, else 1/scale_factor or in/out."""
    if align_corners:
        return real(in_size - 1) / real(out_size - 1) if out_size > 1 else real(0)
    if scale is not None:
        return real(1.0 / scale)
    return real(in_size) / real(out_size)


def nearest_indices(in_size, out_size, scale):
    """floor(dst * s) clamped to in_size - 1, in float32 as PyTorch computes it."""
    s = _src_scale(np.float32, in_size, out_size, scale, False)
    src = np.floor(np.arange(out_size, dtype=np.float32) * s).astype(np.int64)
    return np.minimum(src, in_size - 1)


def linear_indices_weights(in_size, out_size, scale, align_corners, dtype):
    """(i0, i1, w0, w1): out[d] = w0[d] * x[i0[d]] + w1[d] * x[i1[d]], PyTorch's formulas in
    the input's float type; a source position below 0 is clamped to 0."""
    real = np.dtype(dtype).type
    s = _src_scale(real, in_size, out_size, scale, align_corners)
    dst = np.arange(out_size, dtype=dtype)
    src = dst * s if align_corners else np.maximum(s * (dst + real(0.5)) - real(0.5), real(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    w1 = np.clip(src - i0.astype(dtype), 0, 1).astype(dtype)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, (real(1) - w1).astype(dtype), w1


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize input (N, C, L) or (N, C, H, W): 'nearest' (3-D, 4-D), 'linear' (3-D),
    'bilinear' (4-D), with PyTorch's source-index formulas."""
    op = "interpolate"
    if mode not in _MODES:
        if mode in _TORCH_ONLY_MODES:
            raise NotImplementedError(f"{op}: mode {mode!r} is not implemented (supported: {', '.join(_MODES)})")
        raise ValueError(f"{op}: unknown mode {mode!r}; supported: {', '.join(_MODES)}")
    if antialias:
        raise NotImplementedError(f"{op}: antialias=True is not implemented")
    dims = input.ndim - 2
    if dims not in _MODES[mode]:
        need = " or ".join(f"{d + 2}-D" for d in _MODES[mode])
        raise NotImplementedError(f"{op}: got a {input.ndim}-D input, but mode {mode!r} needs a {need} input")
    if mode == "nearest":
        if align_corners is not None:
            raise ValueError(f"{op}: align_corners can only be set with the interpolating modes linear | bilinear")
    else:
        align_corners = bool(align_corners)
    sizes, scales = _sizes_and_scales(op, input, size, scale_factor, recompute_scale_factor)
    out = input
    for k in range(dims):
        axis = input.ndim - dims + k
        n_in, n_out = input.shape[axis], sizes[k]
        if mode == "nearest":
            plan = _F.AxisPlan([nearest_indices(n_in, n_out, scales[k])], None, n_in)
        else:
            i0, i1, w0, w1 = linear_indices_weights(n_in, n_out, scales[k], align_corners, input.dtype)
            plan = _F.AxisPlan([i0, i1], [w0, w1], n_in)
        out = _F.Resample.apply(out, plan, axis)
    return out


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """torch.nn.functional.upsample: interpolate under its older name."""
    return interpolate(input, size, scale_factor, mode, align_corners)


# ---------------------------------------------------------------------- pixel shuffle

def _pixel_check(op, input, factor, name):
    factor = _int_arg(factor, op, name)
    if factor <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {factor}")
    if input.ndim < 3:
        raise ValueError(f"{op}: expected an input of at least 3 dimensions (*, C, H, W), got shape "
                         f"{tuple(input.shape)}")
    return factor


def pixel_shuffle(input, upscale_factor):
    """(*, C*r*r, H, W) -> (*, C, H*r, W*r)."""
    r = _pixel_check("pixel_shuffle", input, upscale_factor, "upscale_factor")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle: the channel dimension {c} of input {tuple(input.shape)} is not "
                         f"divisible by upscale_factor**2 = {r * r}")
    n = len(lead)
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return x.contiguous().reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H*r, W*r) -> (*, C*r*r, H, W), the inverse of pixel_shuffle."""
    r = _pixel_check("pixel_unshuffle", input, downscale_factor, "downscale_factor")
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise ValueError(f"pixel_unshuffle: the spatial size ({h}, {w}) of input {tuple(input.shape)} is not "
                         f"divisible by downscale_factor = {r}")
    n = len(lead)
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.contiguous().reshape(*lead, c * r * r, h // r, w // r)


# ---------------------------------------------------------------------- 1-D and adaptive pooling

def _pool1d_input(op, input):
    if input.ndim not in (2, 3):
        raise ValueError(f"{op}: expected a 2-D (C, L) or 3-D (N, C, L) input, got shape {tuple(input.shape)}")
    return input.unsqueeze(-2)   # a unit height: the 2-D kernels pool along the width


def _as_1d(op, call, *args):
    """call(*args) with a 2-D kernel's errors reported as the 1-D op's."""
    try:
        return call(*args)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{op}: {exc}") from None


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling over L of (N, C, L) or (C, L); with return_indices also the int64
    positions of the maxima along L."""
    op = "max_pool1d"
    (k,) = _tuple(kernel_size, 1, op, "kernel_size", 1)
    (s,) = _tuple(kernel_size if stride is None else stride, 1, op, "stride", 1)
    (p,) = _tuple(padding, 1, op, "padding", 0)
    (d,) = _tuple(dilation, 1, op, "dilation", 1)
    x = _pool1d_input(op, input)
    args = ((1, k), (1, s), (0, p), (1, d), bool(ceil_mode))
    if not return_indices:
        return _as_1d(op, _F.MaxPool2d.apply, x, *args).squeeze(-2)
    y, idx = _as_1d(op, x.device.max_pool2d_forward, x.data, *args)
    out = _F.MaxByIndex.apply(x, y, idx).squeeze(-2)
    # (a unit height: the flat index h * W + w is the position along L)
    return out, Tensor._make(idx, x.device, False, None).squeeze(-2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling over L of (N, C, L) or (C, L)."""
    op = "avg_pool1d"
    (k,) = _tuple(kernel_size, 1, op, "kernel_size", 1)
    (s,) = _tuple(kernel_size if stride is None else stride, 1, op, "stride", 1)
    (p,) = _tuple(padding, 1, op, "padding", 0)
    x = _pool1d_input(op, input)
    return _as_1d(op, _F.AvgPool2d.apply, x, (1, k), (1, s), (0, p), bool(ceil_mode), bool(count_include_pad),
                  None).squeeze(-2)


def _windows(n_in, n_out):
    """PyTorch's adaptive windows: [floor(i * in / out), ceil((i + 1) * in / out))."""
    return [((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)) for i in range(n_out)]


def adaptive_max_pool2d_arrays(dev, x, oh, ow):
    """(y, indices) of adaptive max pooling of array x (..., H, W) on device namespace dev:
    the maximum of each window and its flat index h * W + w, the first in scan order.
    Columns first (per row, per output column), then rows: the first row holding a
    window's maximum, at that row's first maximal column, is the first in scan order."""
    h, w = x.shape[-2:]
    vals, cols = [], []
    for start, end in _windows(w, ow):
        win = x[..., start:end]
        at = dev.expand_dims(dev.argmax(win, axis=-1), -1)
        vals.append(dev.take_along_axis(win, at, axis=-1)[..., 0])
        cols.append(at[..., 0] + start)
    v, c = dev.stack(vals, axis=-1), dev.stack(cols, axis=-1)   # (..., H, ow)
    ys, idx = [], []
    for start, end in _windows(h, oh):
        win = v[..., start:end, :]
        at = dev.expand_dims(dev.argmax(win, axis=-2), -2)
        ys.append(dev.take_along_axis(win, at, axis=-2)[..., 0, :])
        col = dev.take_along_axis(c[..., start:end, :], at, axis=-2)[..., 0, :]
        idx.append((at[..., 0, :] + start) * w + col)
    return dev.contiguous(dev.stack(ys, axis=-2)), dev.contiguous(dev.stack(idx, axis=-2))


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Adaptive max pooling of (N, C, H, W) or (C, H, W) to output_size (an int or an
    (h, w) pair, None keeping that input size); with return_indices also the int64 flat
    positions h * W + w of the maxima in each plane."""
    op = "adaptive_max_pool2d"
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
                         f"{tuple(input.shape)}")
    if any(n == 0 for n in input.shape[-3:]):
        raise ValueError(f"{op}: expected input to have non-zero size for non-batch dimensions, got shape "
                         f"{tuple(input.shape)}")
    pair = (output_size, output_size) if output_size is None or isinstance(output_size, numbers.Integral) \
        else tuple(output_size)
    if len(pair) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    oh, ow = (input.shape[-2 + i] if v is None else _int_arg(v, op, "output_size") for i, v in enumerate(pair))
    if oh < 0 or ow < 0:
        raise ValueError(f"{op}: output_size must be non-negative, got {output_size!r}")
    dev = input.device
    if oh == 0 or ow == 0:
        shape = tuple(input.shape[:-2]) + (oh, ow)
        y, idx = dev.zeros(shape, dtype=input.dtype), dev.zeros(shape, dtype=np.int64)
    else:
        y, idx = adaptive_max_pool2d_arrays(dev, input.data, oh, ow)
    out = _F.MaxByIndex.apply(input, y, idx)
    return (out, Tensor._make(idx, dev, False, None)) if return_indices else out
