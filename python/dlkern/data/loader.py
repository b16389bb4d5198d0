"""``DataLoader``: batches of a Dataset, optionally shuffled by a seeded generator."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .dataset import Dataset, Subset, TensorDataset


def _to_batch(array: np.ndarray):
    """A collated array as a dlkern Tensor (wrapping the fresh batch array, no copy)."""
    from ..tensor import from_numpy

    return from_numpy(np.ascontiguousarray(array))


def default_collate(items):
    """Stack a list of items (arrays, numbers, or tuples/lists/dicts of them) into batches."""
    first = items[0]
    if isinstance(first, tuple) or isinstance(first, list):
        return type(first)(default_collate([item[i] for item in items]) for i in range(len(first)))
    if isinstance(first, dict):
        return {key: default_collate([item[key] for item in items]) for key in first}
    return _to_batch(np.stack([np.asarray(item) for item in items]))


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Args follow PyTorch: batch_size (None yields single items), shuffle (a fresh
    permutation every epoch, drawn from ``generator``, a ``numpy.random.Generator``
    or an int seed), drop_last, collate_fn, sampler (an iterable of indices, such as a
    ``DistributedSampler``; it sets the order and the length, so it excludes shuffle).
    TensorDataset (and Subsets of it) are
    batched by fancy indexing, one gather per array per batch, instead of per item.
    """

    def __init__(self, dataset: Dataset, batch_size: Optional[int] = 1, shuffle: bool = False,
                 drop_last: bool = False, collate_fn: Optional[Callable] = None, generator=None, sampler=None):
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise ValueError(f"DataLoader: batch_size must be a positive integer or None, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        if generator is None or isinstance(generator, (int, np.integer)):
            generator = np.random.default_rng(generator)
        if not isinstance(generator, np.random.Generator):
            raise TypeError(f"DataLoader: generator must be a numpy.random.Generator or an int seed, "
                            f"got {type(generator).__name__}")
        self.generator = generator

    def __len__(self):
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), dtype=np.intp)
        n = len(self.dataset)
        return self.generator.permutation(n) if self.shuffle else np.arange(n)

    def _fast_arrays(self):
        """The arrays behind a TensorDataset (or a Subset of one), with the index map."""
        ds, base = self.dataset, None
        if isinstance(ds, Subset) and isinstance(ds.dataset, TensorDataset):
            ds, base = ds.dataset, ds.indices
        if isinstance(ds, TensorDataset) and self.collate_fn is None:
            return ds.tensors, base
        return None, None

    def __iter__(self):
        order = self._order()
        if self.batch_size is None:
            for i in order:
                yield self.dataset[int(i)]
            return
        arrays, base = self._fast_arrays()
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        collate = self.collate_fn or default_collate
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            if arrays is not None:
                rows = idx if base is None else base[idx]
                yield tuple(_to_batch(a[rows]) for a in arrays)
            else:
                yield collate([self.dataset[int(i)] for i in idx])
