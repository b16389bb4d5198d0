"""Real data sets that work offline.

- ``digits()``: the 8x8 handwritten digits (1797 images, 10 classes) that ship inside
  scikit-learn (``pip install scikit-learn``), read straight from its bundled file.
- ``fashion_mnist()``: MNIST-format IDX files from a directory, by default Debian's
  ``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``), which
  installs them under /usr/share/datasets/fashion-mnist.

Images come back as float32 scaled to [0, 1], labels as int64.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path
from typing import Tuple

import numpy as np

from .dataset import TensorDataset

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are missing; the message says how to get them."""


def package_dir(name: str, missing: str) -> Path:
    """The directory of installed package `name`, found without importing it (data sets
    that ship inside a package are read from its files); DatasetNotFoundError(missing)
    when it is not installed."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(missing)
    return Path(list(spec.submodule_search_locations)[0])


# --------------------------------------------------------------------------- digits

def _sklearn_digits_file() -> Path:
    root = package_dir("sklearn", "the digits data set ships inside scikit-learn, which is not installed: "
                                  "pip install scikit-learn (or pip install 'dlkern[data]')")
    path = root / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise DatasetNotFoundError(f"scikit-learn is installed but its digits file is missing: {path}")
    return path


def load_digits_arrays() -> Tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int64)."""
    raw = np.loadtxt(_sklearn_digits_file(), delimiter=",", dtype=np.float32)
    images = (raw[:, :-1] / 16.0).reshape(-1, 8, 8).astype(np.float32)
    labels = raw[:, -1].astype(np.int64)
    return images, labels


# --------------------------------------------------------------------------- IDX / MNIST

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_idx(path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed), the format of MNIST and
    Fashion-MNIST: magic (0, 0, type, ndim), ndim big-endian uint32 sizes, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"load_idx: {path} is not an IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"load_idx: {path} is truncated inside its header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"load_idx: {path} holds {len(data) - header} data bytes, "
                         f"its header {shape} says {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DatasetNotFoundError(f"{root}: missing {stem}[.gz]")


def load_mnist_dir(root, train: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """(images (n, 28, 28) float32 in [0, 1], labels (n,) int64) from a directory with
    the standard MNIST file names ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz])."""
    root = Path(root)
    if not root.is_dir():
        hint = (" -- install it with: apt-get install dataset-fashion-mnist"
                if str(root) == DEFAULT_FASHION_MNIST_DIR else "")
        raise DatasetNotFoundError(f"data directory {root} does not exist{hint}")
    prefix = "train" if train else "t10k"
    images = load_idx(_find(root, f"{prefix}-images-idx3-ubyte"))
    labels = load_idx(_find(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"load_mnist_dir: {root} holds images {images.shape} and labels {labels.shape}")
    return (images.astype(np.float32) / 255.0), labels.astype(np.int64)


# --------------------------------------------------------------------------- splits, scaling

def train_test_split(n: int, test_fraction: float = 0.2, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Index arrays (train, test) of a seeded random split of range(n)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"train_test_split: test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def normalize(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(images - mean) / std in float32 (use the training split's statistics)."""
    return ((images - np.float32(mean)) / np.float32(std)).astype(np.float32)


def _dataset(images, labels, flatten: bool, channels: bool) -> TensorDataset:
    if flatten:
        images = images.reshape(images.shape[0], -1)
    elif channels:
        images = images[:, None]
    return TensorDataset(np.ascontiguousarray(images), labels)


def digits(test_fraction: float = 0.2, seed: int = 0, flatten: bool = False,
           channels: bool = True, normalized: bool = True) -> Tuple[TensorDataset, TensorDataset]:
    """(train, test) TensorDatasets of the scikit-learn digits, split with a fixed seed.

    Images are (n, 1, 8, 8) (``channels``), or (n, 64) with ``flatten``; with
    ``normalized`` they are standardised by the training split's mean and std.
    """
    images, labels = load_digits_arrays()
    train, test = train_test_split(len(labels), test_fraction, seed)
    if normalized:
        mean, std = float(images[train].mean()), float(images[train].std())
        images = normalize(images, mean, std)
    return (_dataset(images[train], labels[train], flatten, channels),
            _dataset(images[test], labels[test], flatten, channels))


def fashion_mnist(root=None, flatten: bool = False, channels: bool = True,
                  normalized: bool = True) -> Tuple[TensorDataset, TensorDataset]:
    """(train, test) TensorDatasets of Fashion-MNIST (60000 / 10000 28x28 images) read
    from ``root`` (default: $DLKERN_FASHION_MNIST or /usr/share/datasets/fashion-mnist)."""
    root = root or os.environ.get("DLKERN_FASHION_MNIST", DEFAULT_FASHION_MNIST_DIR)
    train_x, train_y = load_mnist_dir(root, train=True)
    test_x, test_y = load_mnist_dir(root, train=False)
    if normalized:
        mean, std = float(train_x.mean()), float(train_x.std())
        train_x, test_x = normalize(train_x, mean, std), normalize(test_x, mean, std)
    return _dataset(train_x, train_y, flatten, channels), _dataset(test_x, test_y, flatten, channels)
