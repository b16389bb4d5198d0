"""DistributedSampler (each rank's shard of the indices, PyTorch's semantics) and the
DataLoader's sampler argument. No MPI needed: num_replicas and rank are passed."""

import math

import numpy as np
import pytest

import dlkern
from dlkern.data import DataLoader, Dataset, DistributedSampler, TensorDataset

SIZES = [0, 1, 5, 7, 10, 11]
REPLICAS = [1, 2, 3, 4]


def reference(n, replicas, rank, shuffle, seed, epoch, drop_last):
    """The shard, written from the description: permute, pad by repeating from the start
    (or drop the tail), then every replicas-th entry from rank."""
    order = list(np.random.default_rng(seed + epoch).permutation(n)) if shuffle else list(range(n))
    if drop_last:
        per_rank = n // replicas
        order = order[:per_rank * replicas]
    else:
        per_rank = math.ceil(n / replicas)
        while len(order) < per_rank * replicas:
            order += order[:per_rank * replicas - len(order)]
    return [int(i) for i in order[rank::replicas]]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("replicas", REPLICAS)
@pytest.mark.parametrize("n", SIZES)
def test_shards_match_the_reference_and_partition(n, replicas, shuffle, drop_last):
    shards = []
    for rank in range(replicas):
        s = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=shuffle, seed=3,
                               drop_last=drop_last)
        s.set_epoch(2)
        got = list(s)
        assert got == reference(n, replicas, rank, shuffle, 3, 2, drop_last)
        assert len(got) == len(s)
        assert all(type(i) is int for i in got)
        shards.append(got)
    assert len({len(sh) for sh in shards}) == 1  # equal shards: every rank runs as many steps
    flat = sorted(i for sh in shards for i in sh)
    if drop_last:
        assert len(flat) == len(set(flat)) == (n // replicas) * replicas  # disjoint, the tail dropped
    else:
        assert set(flat) == set(range(n))  # all covered, only the padding repeats
        assert len(flat) == math.ceil(n / replicas) * replicas


def test_set_epoch_reshuffles_the_same_way_on_every_rank():
    def shards(epoch, seed=0):
        out = []
        for rank in range(3):
            s = DistributedSampler(range(12), num_replicas=3, rank=rank, seed=seed)
            s.set_epoch(epoch)
            out.append(list(s))
        return out
    e0, e1 = shards(0), shards(1)
    for sh in (e0, e1):
        assert sorted(i for s in sh for i in s) == list(range(12))  # one shared permutation
    assert e0 != e1
    assert shards(1) == e1  # deterministic
    assert shards(1, seed=5) != e1
    # without set_epoch the order repeats
    s = DistributedSampler(range(12), num_replicas=3, rank=0)
    assert list(s) == list(s)


def test_defaults_without_a_process_group():
    s = DistributedSampler(range(5))
    assert (s.num_replicas, s.rank, s.shuffle, s.seed, s.drop_last) == (1, 0, True, 0, False)
    assert sorted(s) == list(range(5))
    assert list(DistributedSampler(range(5), shuffle=False)) == [0, 1, 2, 3, 4]


def test_padding_longer_than_the_data():
    # 2 items on 5 replicas: the list is repeated more than once
    got = [list(DistributedSampler(range(2), num_replicas=5, rank=r, shuffle=False)) for r in range(5)]
    assert got == [[0], [1], [0], [1], [0]]
    assert [len(DistributedSampler(range(2), num_replicas=5, rank=r, drop_last=True)) for r in range(5)] == [0] * 5


@pytest.mark.parametrize("kwargs, text", [
    ({"num_replicas": 2, "rank": 2}, r"Invalid rank 2, rank should be in the interval \[0, 1\]"),
    ({"num_replicas": 2, "rank": -1}, "Invalid rank -1"),
    ({"num_replicas": 0, "rank": 0}, "num_replicas must be an integer >= 1"),
    ({"num_replicas": 2.0, "rank": 0}, "num_replicas must be an integer"),
    ({"num_replicas": 2, "rank": True}, "Invalid rank True"),
    ({"num_replicas": 2, "rank": 0, "seed": -1}, "seed must be an integer >= 0"),
])
def test_errors(kwargs, text):
    with pytest.raises(ValueError, match=text):
        DistributedSampler(range(4), **kwargs)


def test_set_epoch_error():
    with pytest.raises(ValueError, match="epoch must be an integer"):
        DistributedSampler(range(4), num_replicas=1, rank=0).set_epoch("1")


class Squares(Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return np.array([i, i * i], np.float64)


def test_dataloader_takes_the_sampler_order_and_length():
    x = np.arange(14, dtype=np.float64).reshape(7, 2)
    y = np.arange(7)
    for rank in range(2):
        sampler = DistributedSampler(range(7), num_replicas=2, rank=rank, seed=1)
        want = list(sampler)  # 4 indices, one of them padding on rank 1
        fast = DataLoader(TensorDataset(x, y), batch_size=3, sampler=sampler)
        assert len(fast) == 2
        xs, ys = zip(*fast)
        np.testing.assert_array_equal(np.concatenate([t.numpy() for t in xs]), x[want])
        np.testing.assert_array_equal(np.concatenate([t.numpy() for t in ys]), y[want])
        slow = DataLoader(Squares(), batch_size=3, sampler=sampler, drop_last=True)
        assert len(slow) == 1
        (b,) = list(slow)
        np.testing.assert_array_equal(b.numpy(), [[i, i * i] for i in want[:3]])
    # any iterable of indices; batch_size=None gives items
    items = list(DataLoader(Squares(), batch_size=None, sampler=[6, 0, 6]))
    np.testing.assert_array_equal(np.stack(items), [[6, 36], [0, 0], [6, 36]])
    assert len(DataLoader(Squares(), batch_size=2, sampler=[])) == 0 and list(DataLoader(Squares(), sampler=[])) == []


def test_dataloader_sampler_excludes_shuffle():
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(Squares(), sampler=[0, 1], shuffle=True)


@pytest.mark.parametrize("drop_last", [False, True])
def test_parity_with_torch(drop_last):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DistributedSampler as TorchSampler
    for n in SIZES:
        for replicas in REPLICAS:
            for rank in range(replicas):
                ours = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False,
                                          drop_last=drop_last)
                theirs = TorchSampler(range(n), num_replicas=replicas, rank=rank, shuffle=False, drop_last=drop_last)
                assert list(ours) == list(theirs), (n, replicas, rank)
                assert (len(ours), ours.total_size, ours.num_samples) == (len(theirs), theirs.total_size,
                                                                         theirs.num_samples)
                shuffled = TorchSampler(range(n), num_replicas=replicas, rank=rank, drop_last=drop_last)
                assert len(DistributedSampler(range(n), num_replicas=replicas, rank=rank, drop_last=drop_last)) \
                    == len(shuffled)
    with pytest.raises(ValueError, match="Invalid rank 2"):
        TorchSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        torch.utils.data.DataLoader(range(4), sampler=[0, 1], shuffle=True)
