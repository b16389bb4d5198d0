"""dlkern.data: datasets, DataLoader order and seeding, IDX files, the real data sets."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from dlkern import data


def as_np(x):
    return x.numpy() if hasattr(x, "numpy") and not isinstance(x, np.ndarray) else np.asarray(x)


# ---------------------------------------------------------------------------- datasets

def test_tensor_dataset_indexes_arrays_together():
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6) * 10
    ds = data.TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    np.testing.assert_array_equal(xi, [8.0, 9.0])
    assert yi == 40
    xb, yb = ds[np.array([5, 0])]
    np.testing.assert_array_equal(yb, [50, 0])


def test_tensor_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match=r"TensorDataset: arrays must share their first dimension.*\(3,\).*\(4,\)"):
        data.TensorDataset(np.zeros(3), np.zeros(4))


def test_random_split_is_a_seeded_partition():
    ds = data.TensorDataset(np.arange(10))
    a, b = data.random_split(ds, [7, 3], generator=np.random.default_rng(1))
    got = sorted(int(a[i][0]) for i in range(len(a))) + sorted(int(b[i][0]) for i in range(len(b)))
    assert len(a) == 7 and len(b) == 3
    assert sorted(got) == list(range(10))
    a2, _ = data.random_split(ds, [7, 3], generator=np.random.default_rng(1))
    np.testing.assert_array_equal(a.indices, a2.indices)
    f1, f2 = data.random_split(ds, [0.5, 0.5], generator=np.random.default_rng(0))
    assert len(f1) + len(f2) == 10
    with pytest.raises(ValueError, match="random_split"):
        data.random_split(ds, [5, 4])


# ---------------------------------------------------------------------------- DataLoader

def _all_labels(loader):
    return np.concatenate([as_np(batch[1]) for batch in loader])


def test_loader_sequential_order_and_batch_sizes():
    ds = data.TensorDataset(np.arange(10.0)[:, None], np.arange(10))
    loader = data.DataLoader(ds, batch_size=4)
    sizes = [len(as_np(b[1])) for b in loader]
    assert sizes == [4, 4, 2] and len(loader) == 3
    np.testing.assert_array_equal(_all_labels(loader), np.arange(10))
    dropped = data.DataLoader(ds, batch_size=4, drop_last=True)
    assert [len(as_np(b[1])) for b in dropped] == [4, 4] and len(dropped) == 2


def test_loader_shuffle_is_seeded_and_reshuffles_each_epoch():
    ds = data.TensorDataset(np.arange(50.0)[:, None], np.arange(50))
    first = data.DataLoader(ds, batch_size=8, shuffle=True, generator=123)
    second = data.DataLoader(ds, batch_size=8, shuffle=True, generator=np.random.default_rng(123))
    e1, e2 = _all_labels(first), _all_labels(first)
    np.testing.assert_array_equal(np.sort(e1), np.arange(50))  # a permutation: every item once
    assert not np.array_equal(e1, np.arange(50))
    assert not np.array_equal(e1, e2)                          # a new order each epoch
    np.testing.assert_array_equal(_all_labels(second), e1)     # same seed, same order
    # The expected order is the generator's permutation.
    np.testing.assert_array_equal(e1, np.random.default_rng(123).permutation(50))


def test_loader_rows_stay_paired_with_labels():
    x = np.arange(30.0).reshape(15, 2)
    y = np.arange(15)
    for xb, yb in data.DataLoader(data.TensorDataset(x, y), batch_size=4, shuffle=True, generator=0):
        np.testing.assert_array_equal(as_np(xb)[:, 0], 2.0 * as_np(yb))


def test_loader_generic_dataset_uses_collate():
    class Squares(data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i, i * i]), i

    batches = list(data.DataLoader(Squares(), batch_size=2))
    np.testing.assert_array_equal(as_np(batches[0][0]), [[0, 0], [1, 1]])
    np.testing.assert_array_equal(as_np(batches[2][1]), [4])
    custom = list(data.DataLoader(Squares(), batch_size=5, collate_fn=lambda items: len(items)))
    assert custom == [5]
    single = list(data.DataLoader(Squares(), batch_size=None))
    assert len(single) == 5 and single[3][1] == 3


def test_loader_subset_of_tensor_dataset():
    ds = data.TensorDataset(np.arange(10.0)[:, None], np.arange(10))
    sub = data.Subset(ds, [9, 2, 5])
    np.testing.assert_array_equal(_all_labels(data.DataLoader(sub, batch_size=2)), [9, 2, 5])


def test_loader_bad_arguments():
    ds = data.TensorDataset(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        data.DataLoader(ds, batch_size=0)
    with pytest.raises(TypeError, match="generator must be a numpy.random.Generator"):
        data.DataLoader(ds, generator="seed")


# ---------------------------------------------------------------------------- IDX files

def _write_idx(path, array, type_code, compress):
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
        f.write(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, 0x08, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, 0x08, compress)
    np.testing.assert_array_equal(data.load_idx(tmp_path / f"train-images-idx3-ubyte{suffix}"), images)
    x, y = data.load_mnist_dir(tmp_path, train=True)
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x, images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    floats = np.linspace(-1, 1, 6).reshape(2, 3)
    _write_idx(tmp_path / "f.idx", floats, 0x0E, False)
    np.testing.assert_array_equal(data.load_idx(tmp_path / "f.idx"), floats)


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.load_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((4, 4), np.uint8), 0x08, False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="holds 13 data bytes, its header"):
        data.load_idx(tmp_path / "short")
    with pytest.raises(data.DatasetNotFoundError, match="missing t10k-images-idx3-ubyte"):
        data.load_mnist_dir(tmp_path, train=False)


def test_missing_data_directory_is_a_clear_error(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.fashion_mnist(root=tmp_path / "nowhere")


def test_missing_default_fashion_mnist_says_how_to_install(monkeypatch):
    if os.path.isdir(data.DEFAULT_FASHION_MNIST_DIR):
        pytest.skip("the default Fashion-MNIST directory exists on this machine")
    monkeypatch.delenv("DLKERN_FASHION_MNIST", raising=False)
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.fashion_mnist()


# ---------------------------------------------------------------------------- real data sets

def test_digits_split_and_normalisation():
    train, test = data.digits(test_fraction=0.2, seed=0)
    assert len(train) == 1438 and len(test) == 359
    x, y = train.tensors
    assert x.shape == (1438, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1.0) < 1e-4
    flat_train, _ = data.digits(flatten=True)
    assert flat_train.tensors[0].shape == (1438, 64)
    raw, labels = data.load_digits_arrays()
    assert raw.shape == (1797, 8, 8) and 0.0 <= raw.min() and raw.max() <= 1.0
    # The same seed gives the same split.
    again, _ = data.digits(test_fraction=0.2, seed=0)
    np.testing.assert_array_equal(again.tensors[1], y)


def test_digits_without_scikit_learn_is_a_clear_error(tmp_path):
    # A Python whose import path hides scikit-learn.
    blocker = tmp_path / "sklearn"
    blocker.mkdir()
    code = ("import importlib.util, sys; importlib.util.find_spec = lambda name, *a: None\n"
            "from dlkern import data\n"
            "try:\n    data.digits()\nexcept data.DatasetNotFoundError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert "ERR" in out.stdout and "pip install scikit-learn" in out.stdout, out.stdout + out.stderr


@pytest.mark.skipif(not os.path.isdir(data.DEFAULT_FASHION_MNIST_DIR),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_from_the_debian_package():
    train, test = data.fashion_mnist()
    assert len(train) == 60000 and len(test) == 10000
    assert train.tensors[0].shape == (60000, 1, 28, 28)
    assert set(np.unique(test.tensors[1])) == set(range(10))
