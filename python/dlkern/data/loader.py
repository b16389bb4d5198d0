"""``DataLoader``: batches of a Dataset, optionally shuffled, optionally loaded by worker
processes (the machinery is in _workers.py)."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .dataset import Dataset, Subset, TensorDataset, _generator_arg


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


class _Fetch:
    """Loads one batch (an index array) or one item (an int): the work a DataLoader
    worker does. A plain object so it pickles for 'spawn' workers."""

    def __init__(self, dataset, arrays, base, collate_fn, batched: bool):
        self.dataset, self.arrays, self.base = dataset, arrays, base
        self.collate_fn, self.batched = collate_fn, batched

    def __call__(self, idx):
        if not self.batched:
            return self.dataset[int(idx)]
        if self.arrays is not None:
            rows = idx if self.base is None else self.base[idx]
            return tuple(_to_batch(a[rows]) for a in self.arrays)
        return (self.collate_fn or default_collate)([self.dataset[int(i)] for i in idx])


def _mp_context(context):
    import multiprocessing
    import sys

    if context is None:
        # fork shares the dataset without pickling it; spawn is the only safe default
        # where fork is unavailable or unsafe (macOS, Windows).
        return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    if isinstance(context, str):
        return multiprocessing.get_context(context)
    return context


class DataLoader:
    """Iterate over ``dataset`` in batches.

    Args follow PyTorch: batch_size (None yields single items), shuffle (a fresh
    permutation every epoch), drop_last, collate_fn, sampler (an iterable of indices,
    such as a ``DistributedSampler``; it sets the order and the length, so it excludes
    shuffle), generator (a ``numpy.random.Generator`` or an int seed that draws the
    permutations; without one, each epoch's permutation is seeded from dlkern's
    default generator when the epoch starts, so ``dlkern.manual_seed`` makes the
    shuffles reproducible, as ``torch.manual_seed`` does).

    Keyword-only here (this signature's positional order already differs from
    PyTorch's after shuffle): num_workers (0 loads in this process; N > 0 starts N
    worker processes, 'fork' on Linux and 'spawn' elsewhere unless
    ``multiprocessing_context`` says otherwise; the batches and their order are the same
    as with 0), prefetch_factor (batches in flight per worker, default 2),
    worker_init_fn (called with the worker id in each worker, after seeding),
    persistent_workers (keep the workers between epochs), timeout (seconds to wait for
    a batch, 0 = for ever). Worker k seeds ``random``, NumPy's global state and dlkern's
    generator with base_seed + k, base_seed drawn from dlkern's default generator when
    the workers start; an exception in a worker is raised again here with the worker's
    traceback in its message.

    TensorDataset (and Subsets of it) are batched by fancy indexing, one gather per
    array per batch, instead of per item.
    """

    def __init__(self, dataset: Dataset, batch_size: Optional[int] = 1, shuffle: bool = False,
                 drop_last: bool = False, collate_fn: Optional[Callable] = None, generator=None, sampler=None,
                 *, num_workers: int = 0, prefetch_factor: Optional[int] = None,
                 worker_init_fn: Optional[Callable] = None, persistent_workers: bool = False,
                 timeout: float = 0, multiprocessing_context=None):
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
            raise ValueError(f"DataLoader: batch_size must be a positive integer or None, got {batch_size!r}")
        self._check_workers(num_workers, prefetch_factor, persistent_workers, timeout, worker_init_fn)
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.sampler = sampler
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn
        # None: each epoch's permutation is seeded from dlkern's default generator.
        self.generator = _generator_arg(generator, "DataLoader")
        self.num_workers = int(num_workers)
        self.prefetch_factor = (2 if prefetch_factor is None else int(prefetch_factor)) if num_workers else None
        self.worker_init_fn = worker_init_fn
        self.persistent_workers = bool(persistent_workers)
        self.timeout = float(timeout)
        self.multiprocessing_context = multiprocessing_context
        self._pool = None

    @staticmethod
    def _check_workers(num_workers, prefetch_factor, persistent_workers, timeout, worker_init_fn):
        if not isinstance(num_workers, (int, np.integer)) or isinstance(num_workers, bool) or num_workers < 0:
            raise ValueError(f"DataLoader: num_workers option should be a non-negative integer, got {num_workers!r}; "
                             "use num_workers=0 to disable multiprocessing")
        if prefetch_factor is not None:
            if num_workers == 0:
                raise ValueError("DataLoader: prefetch_factor option could only be specified in multiprocessing: "
                                 "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None")
            if (not isinstance(prefetch_factor, (int, np.integer)) or isinstance(prefetch_factor, bool)
                    or prefetch_factor < 1):
                raise ValueError(f"DataLoader: prefetch_factor must be a positive integer, got {prefetch_factor!r}")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        if not isinstance(timeout, (int, float, np.integer, np.floating)) or timeout < 0:
            raise ValueError(f"DataLoader: timeout option should be non-negative, got {timeout!r}")
        if worker_init_fn is not None and not callable(worker_init_fn):
            raise TypeError(f"DataLoader: worker_init_fn must be callable, got {type(worker_init_fn).__name__}")

    def __len__(self):
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        if self.batch_size is None:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self):
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), dtype=np.intp)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        generator = self.generator
        if generator is None:
            # Drawn now, at the start of the epoch, as PyTorch's RandomSampler does.
            from ..generator import default_generator

            generator = np.random.default_rng(int(default_generator().integers(0, 2**63 - 1)))
        return generator.permutation(n)

    def _fast_arrays(self):
        """The arrays behind a TensorDataset (or a Subset of one), with the index map."""
        ds, base = self.dataset, None
        if isinstance(ds, Subset) and isinstance(ds.dataset, TensorDataset):
            ds, base = ds.dataset, ds.indices
        if isinstance(ds, TensorDataset) and self.collate_fn is None:
            return ds.tensors, base
        return None, None

    def _fetcher(self):
        arrays, base = self._fast_arrays()
        return _Fetch(self.dataset, arrays, base, self.collate_fn, self.batch_size is not None)

    def _batches(self, order):
        if self.batch_size is None:
            return list(order)
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[start:start + self.batch_size] for start in range(0, stop, self.batch_size)]

    def __iter__(self):
        batches = self._batches(self._order())
        if self.num_workers == 0:
            return self._in_process(batches)
        from ._workers import MultiProcessIter

        pool = self._pool
        if pool is None or pool.closed:
            pool = self._start_workers()
            if self.persistent_workers:
                self._pool = pool
        return MultiProcessIter(pool, batches, self.prefetch_factor, self.timeout,
                                owns_pool=not self.persistent_workers)

    def _in_process(self, batches):
        fetch = self._fetcher()
        for idx in batches:
            yield fetch(idx)

    def _start_workers(self):
        from ..generator import default_generator
        from ._workers import WorkerPool

        # Drawn after the epoch's order, so the order matches num_workers=0.
        seed = int(default_generator().integers(0, 2**62))
        return WorkerPool(self._fetcher(), self.num_workers, _mp_context(self.multiprocessing_context),
                          seed, self.worker_init_fn)

    def __del__(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown()
