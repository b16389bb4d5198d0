"""Layers over dlkern.nn.functional_resample: ConvTranspose1d/2d, Upsample, 1-D pooling,
AdaptiveMaxPool2d, PixelShuffle/PixelUnshuffle and Unflatten, with PyTorch's
constructor arguments, parameter shapes and initialisation."""

import math

from . import functional_resample as FR
from . import init
from .layers import _bound_uniform_, _empty
from .module import Module


class _ConvTransposeNd(Module):
    _dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", dtype=None):
        super().__init__()
        name, n = type(self).__name__, self._dims
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must be positive and divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if padding_mode != "zeros":
            raise ValueError(f'{name}: only "zeros" padding_mode is supported, got {padding_mode!r}')
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be an int or a tuple of {n} ints, got {padding!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = FR._tuple(kernel_size, n, name, "kernel_size", 1)
        self.stride = FR._tuple(stride, n, name, "stride", 1)
        self.padding = FR._tuple(padding, n, name, "padding", 0)
        self.output_padding = FR._tuple(output_padding, n, name, "output_padding", 0)
        self.dilation = FR._tuple(dilation, n, name, "dilation", 1)
        self.padding_mode = padding_mode
        # PyTorch's transposed layout: (in_channels, out_channels / groups, *kernel)
        self.weight = _empty((in_channels, out_channels // groups) + self.kernel_size, dtype)
        if bias:
            self.bias = _empty((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        # (fan_in of this layout is out_channels / groups * prod(kernel), as in PyTorch)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            _bound_uniform_(self.bias, fan_in)

    def _output_padding(self, input, output_size):
        """output_padding for forward(input, output_size): the requested size minus the
        smallest one, which must lie within [smallest, smallest + stride - 1]."""
        if output_size is None:
            return self.output_padding
        n, name = self._dims, type(self).__name__
        size = list(output_size)
        if len(size) == n + (2 if input.ndim == n + 2 else 1):   # leading (N,) C given too
            size = size[-n:]
        if len(size) != n:
            raise ValueError(f"{name}: output_size must have {n} or {n + 2} elements, got {output_size!r}")
        pads = []
        for i in range(n):
            smallest = ((input.shape[-n + i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            largest = smallest + self.stride[i] - 1
            if not smallest <= size[i] <= largest:
                raise ValueError(f"{name}: requested an output size of {list(size)}, but valid sizes range from "
                                 f"{smallest} to {largest} along spatial dimension {i} (for an input of "
                                 f"{list(input.shape[-n:])})")
            pads.append(size[i] - smallest)
        return tuple(pads)

    def forward(self, input, output_size=None):
        fn = FR.conv_transpose2d if self._dims == 2 else FR.conv_transpose1d
        return fn(input, self.weight, self.bias, self.stride, self.padding, self._output_padding(input, output_size),
                  self.groups, self.dilation)

    def count_macs(self, args, kwargs, output):
        """Multiply-adds of one call (dlkern.utils.summary): every input element is scattered
        to K * C_out / groups outputs (K the kernel area), as PyTorch's flop counter."""
        return args[0].numel() * math.prod(self.kernel_size) * (self.out_channels // self.groups)

    def extra_repr(self):
        n = self._dims
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        for key, default in (("padding", 0), ("output_padding", 0), ("dilation", 1)):
            if getattr(self, key) != (default,) * n:
                s += f", {key}={getattr(self, key)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + (", bias=False" if self.bias is None else "")


class ConvTranspose2d(_ConvTransposeNd):
    _dims = 2


class ConvTranspose1d(_ConvTransposeNd):
    _dims = 1


class Upsample(Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, input):
        return FR.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                              self.recompute_scale_factor)

    def extra_repr(self):
        what = f"scale_factor={self.scale_factor}" if self.scale_factor is not None else f"size={self.size}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class MaxPool1d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return FR.max_pool1d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                             self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool1d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, count_include_pad

    def forward(self, input):
        return FR.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveMaxPool2d(Module):
    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input):
        return FR.adaptive_max_pool2d(input, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class PixelShuffle(Module):
    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input):
        return FR.pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    def __init__(self, downscale_factor):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input):
        return FR.pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self):
        return f"downscale_factor={self.downscale_factor}"


class Unflatten(Module):
    """Expands dimension `dim` into `unflattened_size` (one entry may be -1)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        if isinstance(dim, str):
            raise NotImplementedError("Unflatten: named dimensions are not supported (dim must be an int)")
        sizes = tuple(unflattened_size)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) for s in sizes):
            raise TypeError(f"Unflatten: unflattened_size must be a non-empty tuple of ints, got {unflattened_size!r}")
        self.dim, self.unflattened_size = dim, sizes

    def forward(self, input):
        ndim = input.ndim
        if not -ndim <= self.dim < ndim:
            raise IndexError(f"Unflatten: dim {self.dim} is out of range for an input of {ndim} dimensions")
        dim = self.dim % ndim
        sizes, n = list(self.unflattened_size), input.shape[self.dim % ndim]
        known = math.prod(s for s in sizes if s != -1)
        if sizes.count(-1) > 1 or (-1 in sizes and (known == 0 or n % known)) or \
                (-1 not in sizes and known != n) or any(s < -1 for s in sizes):
            raise ValueError(f"Unflatten: sizes {sizes} don't multiply up to the size of dim {dim} ({n}) of input "
                             f"{tuple(input.shape)}")
        if -1 in sizes:
            sizes[sizes.index(-1)] = n // known
        return input.reshape(*input.shape[:dim], *sizes, *input.shape[dim + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
