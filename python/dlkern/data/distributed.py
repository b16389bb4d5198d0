"""``DistributedSampler``: each rank's share of a data set's indices (PyTorch's semantics).

Every rank builds the same index list (a permutation seeded by ``seed + epoch`` when
shuffling, so all ranks agree without talking), pads it by repeating indices from its
start until it divides evenly (or, with ``drop_last``, cuts the tail), and takes every
``num_replicas``-th entry from position ``rank``. The shards are disjoint apart from the
padding and all equally long, so every rank runs the same number of steps (a rank with
one batch fewer would leave the others waiting in an all-reduce).

The permutation is NumPy's (``default_rng(seed + epoch).permutation``), not torch's
``randperm``: the shards of a shuffled epoch differ from PyTorch's; without shuffling
they are identical.
"""

import math

import numpy as np


def _count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"DistributedSampler: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class DistributedSampler:
    """Indices of ``dataset`` for rank ``rank`` of ``num_replicas`` (both default to
    ``dlkern.distributed``'s group: world size 1, rank 0 without one). Pass it to
    ``DataLoader(sampler=...)`` and call ``set_epoch(epoch)`` before each epoch so that
    the shuffle changes (identically on every rank)."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        from .. import distributed as dist
        if num_replicas is None:
            num_replicas = dist.get_world_size()
        if rank is None:
            rank = dist.get_rank()
        num_replicas = _count(num_replicas, "num_replicas", 1)
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(f"Invalid rank {rank!r}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = int(rank)
        self.epoch = 0
        self.shuffle = bool(shuffle)
        self.seed = _count(seed, "seed", 0)
        self.drop_last = bool(drop_last)
        n = len(dataset)
        if self.drop_last and n % num_replicas:
            # The tail that does not fill a row of num_replicas is dropped.
            self.num_samples = max(0, math.ceil((n - num_replicas) / num_replicas))
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def _indices(self):
        """The full, padded (or cut) index list all ranks share."""
        n = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            indices = np.arange(n)
        if self.drop_last:
            return indices[:self.total_size]
        pad = self.total_size - n
        if pad > 0:
            # Repeat the list from its start (several times over when it is shorter than the padding).
            indices = np.concatenate([indices, np.resize(indices, pad)])
        return indices

    def __iter__(self):
        return iter(self._indices()[self.rank:self.total_size:self.num_replicas].tolist())

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """The epoch the next ``__iter__`` shuffles for (the seed is ``seed + epoch``)."""
        self.epoch = _count(epoch, "epoch", 0)
