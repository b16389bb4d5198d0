"""Layers: Linear, Conv1d/2d, pooling, Flatten, normalisation, dropout, Embedding,
activations and losses as modules. Each initialises its parameters as PyTorch does."""

import math

import numpy as np

from .. import functions as _F
from ..autograd.autocast_state import autocast_allows_mixed_dtypes as _autocast_mixed
from ..dtypes import as_dtype as _as_dtype
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


def _empty(shape, dtype):
    return Parameter(np.empty(shape, _as_dtype(dtype) or np.float32))


def _bound_uniform_(param, fan_in):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    init.uniform_(param, -bound, bound)


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty((out_features, in_features), dtype)
        self.bias = _empty((out_features,), dtype) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            _bound_uniform_(self.bias, self.in_features)

    def forward(self, x):
        shape = x.data.shape  # (read once: a decode step runs this a few times per layer)
        if not shape or shape[-1] != self.in_features:
            raise ValueError(f"Linear: input has shape {tuple(x.shape)}, expected (..., {self.in_features})")
        if x.data.dtype != self.weight.data.dtype and not _autocast_mixed():
            raise TypeError(f"Linear: input dtype {x.dtype} differs from the weight dtype {self.weight.dtype}")
        return _F.Linear.apply(x, self.weight, self.bias)

    def count_macs(self, args, kwargs, output):
        """Multiply-adds of one call (dlkern.utils.summary): in * out per row of the input;
        the bias adds are not counted."""
        return math.prod(output.shape[:-1]) * self.in_features * self.out_features

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _ConvNd(Module):
    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{type(self).__name__}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        n = self._dims
        tup = (lambda v: (v,) * n if isinstance(v, int) else tuple(v))
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = tup(kernel_size), tup(stride), tup(dilation)
        self.padding = padding if isinstance(padding, str) else tup(padding)
        self.weight = _empty((out_channels, in_channels // groups) + self.kernel_size, dtype)
        if bias:
            self.bias = _empty((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            _bound_uniform_(self.bias, fan_in)

    def _arg(self, v):
        return v if isinstance(v, str) else (v[0] if self._dims == 1 else v)

    def _check(self, x):
        # (C, *spatial) unbatched or (N, C, *spatial), as PyTorch; F adds the batch dim
        if x.ndim not in (self._dims + 1, self._dims + 2) or x.shape[-self._dims - 1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: input has shape {tuple(x.shape)}, expected "
                             f"(N, {self.in_channels}, {', '.join('*' * self._dims)}) or unbatched "
                             f"({self.in_channels}, {', '.join('*' * self._dims)})")

    def count_macs(self, args, kwargs, output):
        """Multiply-adds of one call (dlkern.utils.summary): K * C_in / groups per output
        element, K the kernel area (dilation and padding change only the output size)."""
        return output.numel() * math.prod(self.kernel_size) * (self.in_channels // self.groups)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding != (0,) * self._dims:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    _dims = 2

    def forward(self, x):
        self._check(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_ConvNd):
    _dims = 1

    def forward(self, x):
        self._check(x)
        return F.conv1d(x, self.weight, self.bias, self.stride[0], self._arg(self.padding), self.dilation[0],
                        self.groups)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride if stride is not None else kernel_size, padding
        self.dilation, self.ceil_mode, self.return_indices = dilation, ceil_mode, return_indices

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride if stride is not None else kernel_size, padding
        self.ceil_mode, self.count_include_pad, self.divisor_override = ceil_mode, count_include_pad, divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class _BatchNorm(Module):
    _ndims = (2, 3)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dt = _as_dtype(dtype) or np.float32
        if affine:
            self.weight = Parameter(np.ones(num_features, dt))
            self.bias = Parameter(np.zeros(num_features, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dt)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dt)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), np.int64)))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def _check_input(self, x):
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: input has shape {tuple(x.shape)}, expected "
                             f"{' or '.join(f'{n}-D' for n in self._ndims)} with {self.num_features} channels")

    def _normalize(self, x, running_mean, running_var, use_batch, momentum):
        """The normalization proper (SyncBatchNorm replaces it with the cross-rank one)."""
        return F.batch_norm(x, running_mean, running_var, self.weight, self.bias, use_batch, momentum, self.eps)

    def forward(self, x):
        self._check_input(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # cumulative moving average, as PyTorch
                momentum = 1.0 / float(self.num_batches_tracked.data)
        use_batch = self.training or not self.track_running_stats
        rm = self.running_mean if (not self.training or self.track_running_stats) else None
        rv = self.running_var if (not self.training or self.track_running_stats) else None
        return self._normalize(x, rm, rv, use_batch, momentum)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    _ndims = (4,)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        dt = _as_dtype(dtype) or np.float32
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dt))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class RMSNorm(Module):
    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=None):
        super().__init__()
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, _as_dtype(dtype) or np.float32))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, dtype=None):
        super().__init__()
        num_groups = F._int_arg(num_groups, "GroupNorm", "num_groups")
        num_channels = F._int_arg(num_channels, "GroupNorm", "num_channels")
        if num_groups <= 0 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_groups={num_groups} must be positive and divide "
                             f"num_channels={num_channels}")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        dt = _as_dtype(dtype) or np.float32
        if affine:
            self.weight = Parameter(np.ones(num_channels, dt))
            self.bias = Parameter(np.zeros(num_channels, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        if not self.training:  # identity in eval (F.dropout's rule), without the call
            return x
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class AlphaDropout(Dropout):
    def forward(self, x):
        return F.alpha_dropout(x, self.p, self.training)


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        if padding_idx is not None and padding_idx < 0:
            padding_idx += num_embeddings
        self.padding_idx = padding_idx
        self.weight = _empty((num_embeddings, embedding_dim), dtype)
        self.reset_parameters()

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, x):
        return F.embedding(x, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


# ---------------------------------------------------------------------- activations

def _activation(name, fn, params=()):
    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        values = dict(params)
        for (key, _), a in zip(params, args):
            values[key] = a
        values.update(kwargs)
        for key, v in values.items():
            object.__setattr__(self, key, v)

    keys = tuple(key for key, _ in params)
    if len(keys) == 1:  # (GELU's approximate, ...): no generator per call
        key = keys[0]

        def forward(self, x):
            return fn(x, getattr(self, key))
    else:
        def forward(self, x):
            return fn(x, *(getattr(self, key) for key in keys))

    def extra_repr(self):
        return ", ".join(f"{key}={getattr(self, key)!r}" for key, _ in params)

    return type(name, (Module,), {"__init__": __init__, "forward": forward, "extra_repr": extra_repr,
                                  "__doc__": f"Module form of dlkern.nn.functional.{fn.__name__}."})


ReLU = _activation("ReLU", F.relu)
Sigmoid = _activation("Sigmoid", F.sigmoid)
Tanh = _activation("Tanh", F.tanh)
SELU = _activation("SELU", F.selu)
SiLU = _activation("SiLU", F.silu)
GELU = _activation("GELU", F.gelu, (("approximate", "none"),))
Softplus = _activation("Softplus", F.softplus, (("beta", 1.0), ("threshold", 20.0)))
LeakyReLU = _activation("LeakyReLU", F.leaky_relu, (("negative_slope", 0.01),))
ELU = _activation("ELU", F.elu, (("alpha", 1.0),))
Softmax = _activation("Softmax", F.softmax, (("dim", -1),))
LogSoftmax = _activation("LogSoftmax", F.log_softmax, (("dim", -1),))


# ---------------------------------------------------------------------- losses

class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        F._check_reduction(reduction, type(self).__name__)
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class MSELoss(_Loss):
    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index, self.label_smoothing = weight, ignore_index, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction, self.label_smoothing)


class NLLLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(_Loss):
    def __init__(self, weight=None, reduction="mean"):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction, self.pos_weight)


class SigmoidFocalLoss(_Loss):
    def __init__(self, alpha=0.25, gamma=2.0, reduction="mean"):
        super().__init__(reduction)
        self.alpha, self.gamma = alpha, gamma

    def forward(self, input, target):
        return F.sigmoid_focal_loss(input, target, self.alpha, self.gamma, self.reduction)


class FocalLoss(_Loss):
    def __init__(self, gamma=2.0, alpha=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.gamma, self.alpha, self.ignore_index = gamma, alpha, ignore_index

    def forward(self, input, target):
        return F.focal_loss(input, target, self.gamma, self.alpha, self.ignore_index, self.reduction)
