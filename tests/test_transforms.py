"""dlkern.data.transforms against NumPy references written here (torchvision is not
installed on this machine, so there is no parity part)."""

import numpy as np
import pytest

import dlkern
from dlkern import data
from dlkern.data import transforms as T


def _img(shape=(2, 5, 6), seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --------------------------------------------------------------------------- Normalize

@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5), (3, 0, 5)])
def test_normalize_per_channel(shape):
    x = _img(shape)
    mean, std = [0.5, -1.0, 2.0], [2.0, 0.5, 4.0]
    got = T.Normalize(mean, std)(x)
    ref = np.empty_like(x)
    for c in range(3):
        ref[..., c, :, :] = (x[..., c, :, :] - mean[c]) / std[c]
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert got.dtype == np.float32 and isinstance(got, np.ndarray)


def test_normalize_scalar_stats_tensor_input_and_noncontiguous():
    x = _img((4, 1, 6, 6))[:, :, ::2, ::-1]  # non-contiguous view
    t = dlkern.from_numpy(np.ascontiguousarray(x))
    got = T.Normalize(0.2860, 0.3530)(t)
    assert isinstance(got, dlkern.Tensor)
    np.testing.assert_allclose(got.numpy(), (x - np.float32(0.2860)) / np.float32(0.3530), rtol=1e-6)
    np.testing.assert_allclose(T.Normalize(0.2860, 0.3530)(x), got.numpy(), rtol=1e-6)


def test_normalize_inplace_and_nan():
    x = _img((1, 3, 3))
    x[0, 1, 1] = np.nan
    before = x.copy()
    out = T.Normalize([1.0], [2.0], inplace=True)(x)
    assert out is x
    np.testing.assert_array_equal(np.isnan(x), np.isnan(before))
    np.testing.assert_allclose(x, (before - 1) / 2, rtol=1e-6)


def test_normalize_errors():
    with pytest.raises(ValueError, match="Normalize.*shape"):
        T.Normalize(0, 1)(np.zeros((4, 4), np.float32))
    with pytest.raises(TypeError, match="Normalize.*floating"):
        T.Normalize(0, 1)(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="Normalize: mean has 2 values.*3 channels"):
        T.Normalize([0, 0], [1, 1, 1])(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="division by zero"):
        T.Normalize([0], [0.0])(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="Normalize: std must be a number"):
        T.Normalize(0, [[1.0]])


# --------------------------------------------------------------------------- RandomCrop

def _crop_reference(x, size, pads, seed, mode="constant", fill=0):
    left, top, right, bottom = pads
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    padded = np.pad(x, widths, mode=mode, **({"constant_values": fill} if mode == "constant" else {}))
    rng = np.random.default_rng(seed)
    h, w = padded.shape[-2:]
    i = int(rng.integers(0, h - size[0] + 1))
    j = int(rng.integers(0, w - size[1] + 1))
    return padded[..., i:i + size[0], j:j + size[1]]


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 2, 7, 9)])
def test_random_crop_matches_the_numpy_reference(mode, shape):
    x = _img(shape)
    for seed in range(5):
        got = T.RandomCrop(shape[-1] - 2 if shape[-1] == 28 else 5, padding=2, padding_mode=mode,
                           fill=1.5, generator=seed)(x)
        size = (26, 26) if shape[-1] == 28 else (5, 5)
        np.testing.assert_array_equal(got, _crop_reference(x, size, (2, 2, 2, 2), seed, mode, 1.5))


def test_random_crop_padding_forms_and_rectangular_size():
    x = _img((1, 4, 6))
    got = T.RandomCrop((5, 3), padding=(1, 2), generator=3)(x)  # 1 left/right, 2 top/bottom
    np.testing.assert_array_equal(got, _crop_reference(x, (5, 3), (1, 2, 1, 2), 3))
    got = T.RandomCrop(4, padding=(0, 1, 2, 3), generator=4)(x)
    np.testing.assert_array_equal(got, _crop_reference(x, (4, 4), (0, 1, 2, 3), 4))
    # full-size crop without padding is the identity, on a Tensor too
    t = dlkern.from_numpy(x)
    out = T.RandomCrop((4, 6))(t)
    assert isinstance(out, dlkern.Tensor)
    np.testing.assert_array_equal(out.numpy(), x)


def test_random_crop_pad_if_needed_and_errors():
    x = _img((1, 3, 3))
    out = T.RandomCrop(5, pad_if_needed=True, generator=0)(x)
    assert out.shape == (1, 5, 5)
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2)])
    rng = np.random.default_rng(0)
    i, j = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    np.testing.assert_array_equal(out, padded[..., i:i + 5, j:j + 5])
    with pytest.raises(ValueError, match="RandomCrop: required crop size"):
        T.RandomCrop(4)(x)
    with pytest.raises(ValueError, match="RandomCrop: expected an image"):
        T.RandomCrop(1)(np.zeros(3))
    with pytest.raises(ValueError, match="padding_mode"):
        T.RandomCrop(2, padding_mode="wrap")
    with pytest.raises(ValueError, match="padding must be non-negative"):
        T.RandomCrop(2, padding=-1)
    with pytest.raises(TypeError, match="RandomCrop: size"):
        T.RandomCrop(2.5)
    with pytest.raises(ValueError, match="RandomCrop: size must be positive"):
        T.RandomCrop(0)
    with pytest.raises(TypeError, match="RandomCrop: generator"):
        T.RandomCrop(2, generator="x")


def test_random_crop_varies_and_follows_manual_seed():
    x = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    crop = T.RandomCrop(4)
    dlkern.manual_seed(1)
    a = [crop(x) for _ in range(6)]
    dlkern.manual_seed(1)
    b = [crop(x) for _ in range(6)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert len({p[0, 0, 0] for p in a}) > 1
    rng = np.random.default_rng(1)
    i, j = int(rng.integers(0, 7)), int(rng.integers(0, 7))
    np.testing.assert_array_equal(a[0], x[..., i:i + 4, j:j + 4])


# --------------------------------------------------------------------------- RandomHorizontalFlip

def test_horizontal_flip_reference_and_probabilities():
    x = _img((2, 3, 4, 5))
    flip = T.RandomHorizontalFlip(0.5, generator=9)
    rng = np.random.default_rng(9)
    for _ in range(8):
        expect = x[..., ::-1] if rng.random() < 0.5 else x
        np.testing.assert_array_equal(flip(x), expect)
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0)(x), x[..., ::-1])
    assert T.RandomHorizontalFlip(0.0)(x) is x
    t = dlkern.from_numpy(x)
    out = T.RandomHorizontalFlip(1.0)(t)
    assert isinstance(out, dlkern.Tensor)
    np.testing.assert_array_equal(out.numpy(), x[..., ::-1])
    empty = np.zeros((1, 0, 3), np.float32)
    assert T.RandomHorizontalFlip(1.0)(empty).shape == (1, 0, 3)
    with pytest.raises(ValueError, match="RandomHorizontalFlip: p"):
        T.RandomHorizontalFlip(1.5)


# --------------------------------------------------------------------------- ToTensor, Compose

def test_to_tensor():
    hw = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = T.ToTensor()(hw)
    assert isinstance(out, dlkern.Tensor) and out.shape == (1, 3, 4) and out.dtype == dlkern.float32
    np.testing.assert_allclose(out.numpy()[0], hw / 255.0, rtol=1e-6)
    hwc = _img((3, 4, 2))
    np.testing.assert_array_equal(T.ToTensor()(hwc).numpy(), hwc.transpose(2, 0, 1))
    t = dlkern.from_numpy(hwc)
    assert T.ToTensor()(t) is t
    with pytest.raises(ValueError, match="ToTensor"):
        T.ToTensor()(np.zeros((1, 2, 3, 4)))


def test_compose_chains_in_order():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    pipeline = T.Compose([T.RandomHorizontalFlip(1.0), T.Normalize([1.0], [2.0])])
    np.testing.assert_allclose(pipeline(x), (x[..., ::-1] - 1) / 2)
    assert "RandomHorizontalFlip" in repr(pipeline)
    with pytest.raises(TypeError, match="Compose"):
        T.Compose([1])


# --------------------------------------------------------------------------- with a DataLoader

def test_transform_dataset_in_a_loader_in_process_and_with_workers():
    x = np.random.default_rng(0).random((12, 1, 6, 6)).astype(np.float32)
    y = np.arange(12)
    pipeline = T.Compose([T.RandomCrop(6, padding=1), T.RandomHorizontalFlip(), T.Normalize(0.5, 0.25)])
    ds = data.TransformDataset(data.TensorDataset(x, y), pipeline, target_transform=lambda v: v * 10)
    dlkern.manual_seed(4)
    a = list(data.DataLoader(ds, batch_size=4, shuffle=True))
    dlkern.manual_seed(4)
    b = list(data.DataLoader(ds, batch_size=4, shuffle=True))
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia.numpy(), ib.numpy())
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
    labels = np.concatenate([lab.numpy() for _, lab in a])
    assert sorted(labels.tolist()) == [10 * i for i in range(12)]
    assert a[0][0].shape == (4, 1, 6, 6)
    # reference for the first item: the shuffle draws first, then each transform in turn
    rng = np.random.default_rng(4)
    order = np.random.default_rng(int(rng.integers(0, 2**63 - 1))).permutation(12)
    img = np.pad(x[order[0]], [(0, 0), (1, 1), (1, 1)])
    i, j = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    img = img[..., i:i + 6, j:j + 6]
    if rng.random() < 0.5:
        img = img[..., ::-1]
    np.testing.assert_allclose(a[0][0].numpy()[0], (img - 0.5) / 0.25, rtol=1e-6)
    # with workers: deterministic for a seed, items still paired with their labels
    dlkern.manual_seed(4)
    w1 = list(data.DataLoader(ds, batch_size=4, shuffle=True, num_workers=2))
    dlkern.manual_seed(4)
    w2 = list(data.DataLoader(ds, batch_size=4, shuffle=True, num_workers=2))
    for (ia, la), (ib, lb) in zip(w1, w2):
        np.testing.assert_array_equal(ia.numpy(), ib.numpy())
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
    np.testing.assert_array_equal(np.concatenate([lab.numpy() for _, lab in w1]), labels)


def test_transform_dataset_plain_items_and_errors():
    class Plain(data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.full((1, 2, 2), i, np.float32)

    ds = data.TransformDataset(Plain(), T.RandomHorizontalFlip(1.0))
    assert len(ds) == 2 and ds[1].shape == (1, 2, 2)
    assert data.TransformDataset(Plain())[1][0, 0, 0] == 1
    with pytest.raises(TypeError, match="TransformDataset: transform"):
        data.TransformDataset(Plain(), transform=3)
