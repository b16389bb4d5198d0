"""Map-style data sets, as in ``torch.utils.data``."""

from __future__ import annotations

from typing import Sequence

import numpy as np


class Dataset:
    """A map-style data set: ``len(ds)`` items, ``ds[i]`` the i-th one."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")


def _as_array(x):
    # Tensors (anything with .numpy()) and array-likes alike; no copy for ndarrays.
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        return x.numpy()
    return np.asarray(x)


def _generator_arg(generator, name: str):
    """A ``generator=`` argument checked: an int seed becomes a private NumPy Generator, a
    Generator stays, None stays None (dlkern's default generator, looked up when drawing)."""
    if generator is None:
        return None
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return np.random.default_rng(int(generator))
    if isinstance(generator, np.random.Generator):
        return generator
    raise TypeError(f"{name}: generator must be a numpy.random.Generator, an int seed or None, "
                    f"got {type(generator).__name__}")


def _generator_or_default(generator):
    """``generator``, or dlkern's default generator (at call time, so manual_seed governs it)."""
    if generator is not None:
        return generator
    from ..generator import default_generator

    return default_generator()


class TensorDataset(Dataset):
    """Arrays (or Tensors) indexed together along their first axis.

    ``ds[i]`` is a tuple with the i-th row of each; ``ds[index_array]`` gives whole
    batches at once, which the DataLoader uses instead of collating item by item.
    """

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one array")
        self.tensors = tuple(_as_array(t) for t in tensors)
        sizes = {t.shape[0] if t.ndim else None for t in self.tensors}
        if None in sizes or len(sizes) != 1:
            shapes = ", ".join(str(t.shape) for t in self.tensors)
            raise ValueError(f"TensorDataset: arrays must share their first dimension, got shapes {shapes}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]


class Subset(Dataset):
    """The items of ``dataset`` at ``indices``."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __getitem__(self, index):
        if isinstance(index, (list, np.ndarray)):
            return self.dataset[self.indices[np.asarray(index)]]
        return self.dataset[int(self.indices[index])]

    def __len__(self):
        return len(self.indices)


def random_split(dataset: Dataset, lengths: Sequence, generator: np.random.Generator | None = None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    lengths = list(lengths)
    if lengths and all(isinstance(x, float) for x in lengths):
        if not np.isclose(sum(lengths), 1.0):
            raise ValueError(f"random_split: fractions must sum to 1, got {sum(lengths)}")
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):  # hand out the remainder round-robin, as PyTorch
            counts[i % len(counts)] += 1
        lengths = counts
    if any(int(x) != x or x < 0 for x in lengths) or sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} must be non-negative integers summing to {n}")
    rng = generator if generator is not None else np.random.default_rng()
    order = rng.permutation(n)
    out, start = [], 0
    for length in lengths:
        out.append(Subset(dataset, order[start:start + int(length)]))
        start += int(length)
    return out
