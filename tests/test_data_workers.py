"""DataLoader: shuffles that follow dlkern.manual_seed, and worker processes
(num_workers) that give the same batches in the same order as loading in-process."""

import gc
import multiprocessing
import os
import time

import numpy as np
import pytest

import dlkern
from dlkern import data


class Items(data.Dataset):
    """A generic (non-TensorDataset) data set, so batches go through collate; item `bad`
    raises, to test error propagation."""

    def __init__(self, n=23, bad=None):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.bad:
            raise ValueError(f"item {i} is broken")
        return np.full((3,), i, dtype=np.float32), np.int64(i)


class RandomItems(Items):
    """Items that draw from dlkern's default generator (as a random transform does)."""

    def __getitem__(self, i):
        return np.float64(dlkern.generator.default_generator().random()), np.int64(i)


def _labels(loader):
    return [np.asarray(batch[1].numpy()) for batch in loader]


def _same(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and (x == y).all() for x, y in zip(a, b))


def _no_children():
    deadline = time.monotonic() + 5
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    return multiprocessing.active_children() == []


# --------------------------------------------------------------------------- seeded shuffles

def test_shuffle_without_generator_follows_manual_seed():
    ds = data.TensorDataset(np.arange(50, dtype=np.float32), np.arange(50))
    dlkern.manual_seed(7)
    first = [_labels(data.DataLoader(ds, batch_size=8, shuffle=True)) for _ in range(2)]
    dlkern.manual_seed(7)
    second = [_labels(data.DataLoader(ds, batch_size=8, shuffle=True)) for _ in range(2)]
    assert all(_same(a, b) for a, b in zip(first, second))
    # a fresh permutation each epoch, and a different one for another seed
    assert not _same(first[0], first[1])
    dlkern.manual_seed(8)
    assert not _same(first[0], _labels(data.DataLoader(ds, batch_size=8, shuffle=True)))
    for epoch in first[0], first[1]:
        assert sorted(np.concatenate(epoch).tolist()) == list(range(50))


def test_permutation_is_drawn_when_the_epoch_starts():
    ds = data.TensorDataset(np.arange(20))
    loader = data.DataLoader(ds, batch_size=5, shuffle=True)
    dlkern.manual_seed(3)
    a = [b[0].numpy() for b in loader]
    dlkern.manual_seed(3)
    b = [b[0].numpy() for b in loader]
    assert _same(a, b)
    # NumPy reference: the seed is the first integer of the default generator's stream
    seed = int(np.random.default_rng(3).integers(0, 2**63 - 1))
    expected = np.random.default_rng(seed).permutation(20)
    np.testing.assert_array_equal(np.concatenate(a), expected)


def test_explicit_generator_ignores_manual_seed():
    ds = data.TensorDataset(np.arange(30))
    dlkern.manual_seed(0)
    a = [b[0].numpy() for b in data.DataLoader(ds, batch_size=30, shuffle=True, generator=5)]
    dlkern.manual_seed(1)
    b = [b[0].numpy() for b in data.DataLoader(ds, batch_size=30, shuffle=True, generator=5)]
    assert _same(a, b)
    np.testing.assert_array_equal(a[0], np.random.default_rng(5).permutation(30))
    gen = np.random.default_rng(5)
    c = [b[0].numpy() for b in data.DataLoader(ds, batch_size=30, shuffle=True, generator=gen)]
    assert _same(a, c)


def test_unshuffled_loader_leaves_the_default_generator_alone():
    dlkern.manual_seed(11)
    list(data.DataLoader(data.TensorDataset(np.arange(10)), batch_size=3))
    after = dlkern.generator.default_generator().random()
    assert after == np.random.default_rng(11).random()


# --------------------------------------------------------------------------- workers

@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("batch_size,drop_last", [(4, False), (4, True), (1, False), (None, False)])
def test_workers_give_the_same_batches_in_the_same_order(shuffle, batch_size, drop_last):
    ds = Items(23)
    kw = dict(batch_size=batch_size, shuffle=shuffle, drop_last=drop_last)
    dlkern.manual_seed(5)
    ref = [np.asarray(b[1] if batch_size is None else b[1].numpy()) for b in data.DataLoader(ds, **kw)]
    dlkern.manual_seed(5)
    got = [np.asarray(b[1] if batch_size is None else b[1].numpy())
           for b in data.DataLoader(ds, num_workers=2, **kw)]
    assert _same(ref, got)
    # the in-process order is itself the NumPy reference order
    order = np.arange(23)
    if shuffle:
        order = np.random.default_rng(int(np.random.default_rng(5).integers(0, 2**63 - 1))).permutation(23)
    flat = np.concatenate([np.atleast_1d(x) for x in got])
    expect = order[:20] if drop_last else order
    np.testing.assert_array_equal(flat, expect)
    assert _no_children()


def test_workers_tensor_dataset_and_subset_match_in_process():
    x = np.random.default_rng(0).standard_normal((40, 2, 3)).astype(np.float32)
    y = np.arange(40)
    for ds in (data.TensorDataset(x, y), data.Subset(data.TensorDataset(x, y), np.arange(39, -1, -3))):
        ref = [tuple(t.numpy() for t in b) for b in data.DataLoader(ds, batch_size=6, shuffle=True, generator=2)]
        got = [tuple(t.numpy() for t in b)
               for b in data.DataLoader(ds, batch_size=6, shuffle=True, generator=2, num_workers=3,
                                        prefetch_factor=1)]
        assert len(ref) == len(got)
        for r, g in zip(ref, got):
            for a, b in zip(r, g):
                np.testing.assert_array_equal(a, b)
    assert _no_children()


def test_workers_with_a_sampler_and_a_custom_collate():
    ds = Items(10)
    sampler = [9, 1, 8, 2, 7]

    def collate(items):
        return [int(i) for _, i in items]

    got = list(data.DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate, num_workers=2))
    assert got == [[9, 1], [8, 2], [7]]


def test_empty_dataset_with_workers():
    assert list(data.DataLoader(Items(0), batch_size=3, num_workers=2)) == []
    assert _no_children()


def test_worker_seeds_and_worker_info():
    seen = []

    def init(worker_id):
        info = data.get_worker_info()
        assert info.id == worker_id and info.num_workers == 2 and isinstance(info.dataset, RandomItems)

    dlkern.manual_seed(0)
    for _ in range(2):
        batch = list(data.DataLoader(RandomItems(8), batch_size=2, num_workers=2, worker_init_fn=init))
        seen.append(np.concatenate([b[0].numpy() for b in batch]))
    # seeded: the same numbers for the same manual_seed ...
    dlkern.manual_seed(0)
    again = np.concatenate([b[0].numpy() for b in data.DataLoader(RandomItems(8), batch_size=2, num_workers=2)])
    np.testing.assert_array_equal(seen[0], again)
    # ... but workers do not repeat each other's draws (batches 0, 1 come from workers 0, 1)
    assert seen[0][0] != seen[0][2]
    # and the next pool (new base seed) draws afresh
    assert not np.array_equal(seen[0], seen[1])
    # NumPy reference: worker k is seeded with base + k, base the next draw of the default generator
    base = int(np.random.default_rng(0).integers(0, 2**62))
    np.testing.assert_array_equal(seen[0][:2], np.random.default_rng(base).random(2))
    np.testing.assert_array_equal(seen[0][2:4], np.random.default_rng(base + 1).random(2))
    assert data.get_worker_info() is None


def test_worker_exception_is_raised_with_the_worker_traceback():
    loader = data.DataLoader(Items(20, bad=13), batch_size=4, num_workers=2)
    with pytest.raises(ValueError) as info:
        list(loader)
    message = str(info.value)
    assert "item 13 is broken" in message
    assert "DataLoader worker process" in message and "Traceback" in message
    assert "__getitem__" in message
    assert _no_children()


def test_worker_init_fn_exception_and_unpicklable_batch():
    def init(worker_id):
        raise KeyError("no such thing")

    with pytest.raises(RuntimeError, match="worker_init_fn"):
        list(data.DataLoader(Items(4), batch_size=2, num_workers=1, worker_init_fn=init))

    with pytest.raises(Exception, match="pickle|Pickl"):
        list(data.DataLoader(Items(4), batch_size=2, num_workers=1, collate_fn=lambda items: (lambda: 0)))
    assert _no_children()


def test_dead_worker_is_reported_not_waited_for():
    class Dies(Items):
        def __getitem__(self, i):
            os._exit(3)

    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        list(data.DataLoader(Dies(4), batch_size=2, num_workers=1))
    assert _no_children()


def test_timeout():
    class Slow(Items):
        def __getitem__(self, i):
            time.sleep(5)
            return super().__getitem__(i)

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 0.3 seconds"):
        list(data.DataLoader(Slow(4), batch_size=2, num_workers=1, timeout=0.3))
    assert time.monotonic() - start < 10
    assert _no_children()


def test_workers_stop_when_the_iterator_is_dropped_or_the_loop_raises():
    loader = data.DataLoader(Items(40), batch_size=2, num_workers=2)
    it = iter(loader)
    next(it)
    assert len(multiprocessing.active_children()) == 2
    del it
    gc.collect()
    assert _no_children()

    def consume():
        for i, _ in enumerate(loader):
            if i == 2:
                raise ArithmeticError("user code failed")

    with pytest.raises(ArithmeticError):
        consume()
    gc.collect()
    assert _no_children()


def test_persistent_workers_survive_epochs_and_an_abandoned_epoch():
    loader = data.DataLoader(Items(12), batch_size=3, num_workers=2, persistent_workers=True)
    first = _labels(loader)
    pids = sorted(p.pid for p in multiprocessing.active_children())
    assert len(pids) == 2
    it = iter(loader)
    next(it)  # abandon this epoch: its results still in flight must not leak into the next
    del it
    second = _labels(loader)
    assert _same(first, second)
    assert sorted(p.pid for p in multiprocessing.active_children()) == pids
    del loader
    gc.collect()
    assert _no_children()


def test_persistent_workers_restart_after_a_worker_error():
    ds = Items(8, bad=5)
    loader = data.DataLoader(ds, batch_size=2, num_workers=2, persistent_workers=True)
    with pytest.raises(ValueError, match="item 5 is broken"):
        list(loader)
    assert _no_children()
    ds.bad = None  # fork: the next pool sees the repaired data set
    assert _same(_labels(loader), [np.array([0, 1]), np.array([2, 3]), np.array([4, 5]), np.array([6, 7])])
    del loader
    gc.collect()
    assert _no_children()


def test_spawn_context():
    ds = data.TensorDataset(np.arange(10, dtype=np.float32), np.arange(10))
    got = _labels(data.DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn"))
    assert _same(got, [np.arange(0, 4), np.arange(4, 8), np.arange(8, 10)])

    class Local(Items):  # a class local to a function cannot be pickled for spawn
        pass

    with pytest.raises(Exception, match="pickle|Pickl"):
        list(data.DataLoader(Local(6), batch_size=2, num_workers=2, multiprocessing_context="spawn"))
    assert _no_children()


def test_bad_worker_arguments():
    ds = Items(4)
    with pytest.raises(ValueError, match="num_workers"):
        data.DataLoader(ds, num_workers=-1)
    with pytest.raises(ValueError, match="num_workers"):
        data.DataLoader(ds, num_workers=1.5)
    with pytest.raises(ValueError, match="prefetch_factor"):
        data.DataLoader(ds, prefetch_factor=2)
    with pytest.raises(ValueError, match="prefetch_factor"):
        data.DataLoader(ds, num_workers=1, prefetch_factor=0)
    with pytest.raises(ValueError, match="persistent_workers"):
        data.DataLoader(ds, persistent_workers=True)
    with pytest.raises(ValueError, match="timeout"):
        data.DataLoader(ds, timeout=-1)
    with pytest.raises(TypeError, match="worker_init_fn"):
        data.DataLoader(ds, num_workers=1, worker_init_fn=3)
    with pytest.raises(TypeError, match="generator"):
        data.DataLoader(ds, generator="seed")
    loader = data.DataLoader(ds, num_workers=2)
    assert loader.prefetch_factor == 2 and data.DataLoader(ds).prefetch_factor is None
    assert _no_children()


# --------------------------------------------------------------------------- resume

@pytest.mark.parametrize("num_workers", [0, 2])
def test_fit_resumes_exactly_with_default_generator_shuffles(tmp_path, num_workers):
    """No loader generator: the shuffles (and, with workers, the augmentation seeds) come
    from dlkern's default generator, whose state the checkpoint holds."""
    from dlkern import nn, optim
    from dlkern.data import transforms as T
    from dlkern.models import MLP
    from dlkern.train import fit

    train, _ = data.digits(seed=0, flatten=True)
    jitter = lambda v: v + 0.05 * dlkern.generator.default_generator().standard_normal(v.shape).astype(v.dtype)

    def run(epochs, checkpoint=None, resume=False, seed=3):
        dlkern.manual_seed(seed)
        ds = data.TransformDataset(train, jitter)
        loader = data.DataLoader(ds, batch_size=128, shuffle=True, num_workers=num_workers)
        model = MLP(64, (16,), 10, dropout=0.2)
        opt = optim.Adam(model.parameters(), lr=3e-3)
        fit(model, opt, loader, epochs, checkpoint=checkpoint, resume=resume, log=lambda _m: None,
            progress=False)
        return {k: np.array(v.numpy()) for k, v in model.state_dict().items()}

    whole = run(3)
    ck = tmp_path / "run.npz"
    run(1, checkpoint=ck)
    resumed = run(3, checkpoint=ck, resume=True, seed=99)  # the checkpoint's RNG state wins
    for name, value in whole.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    # and the shuffles do depend on the seed
    assert not all(np.array_equal(run(1, seed=4)[k], run(1, seed=5)[k]) for k in whole)
    assert _no_children()
