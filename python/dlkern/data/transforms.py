"""Image transforms for Fashion-MNIST-like data, shaped like ``torchvision.transforms``.

Images are channel-first: (C, H, W), or (N, C, H, W) where the same operation (the same
crop, the same flip) applies to the whole batch, as torchvision does for a batched
tensor. A transform takes a NumPy array or a dlkern Tensor and gives back the same kind.

Random transforms draw from ``generator``: a ``numpy.random.Generator``, an int seed
(a private generator made from it), or None for dlkern's default generator, looked up
at every call so ``dlkern.manual_seed`` governs it (and, in DataLoader workers, each
worker's own seed). With ``num_workers > 0`` prefer None: a private generator is copied
into every worker, which would then all draw the same crops.

``TransformDataset(dataset, transform)`` applies a transform to each item as a
DataLoader fetches it.
"""

from __future__ import annotations

import numbers
from typing import Callable, Optional, Sequence

import numpy as np

from .dataset import Dataset, _as_array, _generator_arg, _generator_or_default
from .loader import _to_batch

_PAD_MODES = ("constant", "edge", "reflect", "symmetric")


def _is_tensor(x) -> bool:
    from ..tensor import Tensor

    return isinstance(x, Tensor)


def _like(result: np.ndarray, original):
    """``result`` as the same kind of object as the transform's input."""
    return _to_batch(result) if _is_tensor(original) else result


def _image(x, name: str) -> np.ndarray:
    array = _as_array(x)
    if array.ndim < 2:
        raise ValueError(f"{name}: expected an image of shape (..., H, W), got shape {array.shape}")
    return array


class _Random:
    def _generator(self):
        return _generator_or_default(self.generator)


class Compose:
    """Apply ``transforms`` one after the other."""

    def __init__(self, transforms: Sequence[Callable]):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {type(t).__name__}")
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        inner = "".join(f"\n    {t!r}" for t in self.transforms)
        return f"Compose({inner}\n)"


class ToTensor:
    """An (H, W) or (H, W, C) image array as a (C, H, W) dlkern Tensor; uint8 images are
    scaled to float32 in [0, 1], other dtypes keep their values (torchvision's rule).
    A dlkern Tensor passes through unchanged."""

    def __call__(self, pic):
        if _is_tensor(pic):
            return pic
        from ..tensor import from_numpy

        array = np.asarray(pic)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ValueError(f"ToTensor: expected an (H, W) or (H, W, C) image, got shape {array.shape}")
        chw = array.transpose(2, 0, 1)
        if chw.dtype == np.uint8:  # one float32 copy, scaled in place
            chw = np.ascontiguousarray(chw, dtype=np.float32)
            chw /= np.float32(255)
        else:
            chw = np.ascontiguousarray(chw)
        return from_numpy(chw)

    def __repr__(self):
        return "ToTensor()"


class Normalize:
    """(x - mean[c]) / std[c] for each channel c of a (C, H, W) or (N, C, H, W) float image;
    mean and std are numbers or sequences of one number per channel."""

    def __init__(self, mean, std, inplace: bool = False):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        for label, values in (("mean", self.mean), ("std", self.std)):
            if values.ndim != 1:
                raise ValueError(f"Normalize: {label} must be a number or a sequence of numbers, "
                                 f"got shape {values.shape}")
        self.inplace = bool(inplace)

    def __call__(self, x):
        array = _as_array(x)
        if array.ndim < 3:
            raise ValueError(f"Normalize: expected a (C, H, W) or (N, C, H, W) image, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"Normalize: input should be a floating-point image, got {array.dtype}")
        channels = array.shape[-3]
        for label, values in (("mean", self.mean), ("std", self.std)):
            if values.size not in (1, channels):
                raise ValueError(f"Normalize: {label} has {values.size} values for an image with {channels} channels")
        mean = self.mean.astype(array.dtype)[:, None, None]
        std = self.std.astype(array.dtype)[:, None, None]
        if (std == 0).any():
            raise ValueError(f"Normalize: std evaluated to zero in {array.dtype}, leading to division by zero")
        if self.inplace:
            if not array.flags.writeable:
                raise ValueError("Normalize: inplace=True needs a writeable image")
            np.subtract(array, mean, out=array)
            np.divide(array, std, out=array)
            return x
        return _like((array - mean) / std, x)

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _pair(value, name: str, what: str):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, Sequence) and len(value) == 1:
        return _pair(value[0], name, what)
    if (isinstance(value, Sequence) and len(value) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name}: {what} must be an int or a sequence of two ints, got {value!r}")


def _padding(padding, name: str):
    """(left, top, right, bottom) from an int, a (left/right, top/bottom) pair or a 4-tuple."""
    if isinstance(padding, Sequence) and len(padding) == 4:
        pads = tuple(padding)
    else:
        horizontal, vertical = _pair(padding, name, "padding")
        pads = (horizontal, vertical, horizontal, vertical)
    if not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in pads):
        raise TypeError(f"{name}: padding must hold ints, got {padding!r}")
    if any(p < 0 for p in pads):
        raise ValueError(f"{name}: padding must be non-negative, got {padding!r}")
    return tuple(int(p) for p in pads)


def _pad(array: np.ndarray, pads, mode: str, fill):
    left, top, right, bottom = pads
    if not any(pads):
        return array
    widths = [(0, 0)] * (array.ndim - 2) + [(top, bottom), (left, right)]
    if mode == "constant":
        return np.pad(array, widths, mode="constant", constant_values=fill)
    return np.pad(array, widths, mode=mode)


class RandomCrop(_Random):
    """A random ``size`` (int or (h, w)) window of the image, after ``padding`` (int,
    (left/right, top/bottom) or (left, top, right, bottom)) in ``padding_mode``
    ('constant' with ``fill``, 'edge', 'reflect', 'symmetric'); ``pad_if_needed`` pads an
    image smaller than ``size`` up to it. The top row is drawn before the left column,
    each uniform over the valid offsets."""

    def __init__(self, size, padding=0, pad_if_needed: bool = False, fill=0,
                 padding_mode: str = "constant", generator=None):
        self.size = _pair(size, "RandomCrop", "size")
        if min(self.size) < 1:
            raise ValueError(f"RandomCrop: size must be positive, got {size!r}")
        self.padding = _padding(padding, "RandomCrop")
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"RandomCrop: padding_mode must be one of {', '.join(_PAD_MODES)}, got {padding_mode!r}")
        self.pad_if_needed = bool(pad_if_needed)
        self.fill = fill
        self.padding_mode = padding_mode
        self.generator = _generator_arg(generator, "RandomCrop")

    def __call__(self, x):
        array = _pad(_image(x, "RandomCrop"), self.padding, self.padding_mode, self.fill)
        th, tw = self.size
        h, w = array.shape[-2:]
        if self.pad_if_needed and (h < th or w < tw):
            extra_w, extra_h = max(tw - w, 0), max(th - h, 0)
            array = _pad(array, (extra_w, extra_h, extra_w, extra_h), self.padding_mode, self.fill)
            h, w = array.shape[-2:]
        if h < th or w < tw:
            raise ValueError(f"RandomCrop: required crop size {(th, tw)} is larger than the (padded) "
                             f"image size {(h, w)}")
        rng = self._generator()
        top = int(rng.integers(0, h - th + 1))
        left = int(rng.integers(0, w - tw + 1))
        return _like(array[..., top:top + th, left:left + tw].copy(), x)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding}, padding_mode={self.padding_mode!r})"


class RandomHorizontalFlip(_Random):
    """Mirror the image left-right (its last axis) with probability ``p``."""

    def __init__(self, p: float = 0.5, generator=None):
        if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.generator = _generator_arg(generator, "RandomHorizontalFlip")

    def __call__(self, x):
        array = _image(x, "RandomHorizontalFlip")
        if self._generator().random() < self.p:
            return _like(array[..., ::-1].copy(), x)
        return x

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class TransformDataset(Dataset):
    """``dataset`` with ``transform`` applied to each item's first element (the image) and
    ``target_transform`` to its second (the label); an item that is not a tuple or list
    is passed to ``transform`` whole."""

    def __init__(self, dataset: Dataset, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None):
        for label, fn in (("transform", transform), ("target_transform", target_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"TransformDataset: {label} must be callable, got {type(fn).__name__}")
        self.dataset = dataset
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)):
            return self.transform(item) if self.transform is not None else item
        item = list(item)
        if self.transform is not None and item:
            item[0] = self.transform(item[0])
        if self.target_transform is not None and len(item) > 1:
            item[1] = self.target_transform(item[1])
        return tuple(item)
