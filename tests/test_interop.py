"""Interop: DLPack (memory shared with NumPy and PyTorch), dlkern.as_tensor, and
dlkern.save / dlkern.load as safetensors files (round trips, tied weights stored once,
nested non-tensor state, optimizer state, crash safety). torch.save files and PyTorch
models: tests/test_interop_torch_files.py.

The file contents are checked against a reader of the safetensors format written here
(the 8-byte header length, the JSON header, the raw little-endian data), independent of
the safetensors package; the PyTorch parts are skipped without torch."""

import json
import struct
import sys

import numpy as np
import pytest

import safetensors.numpy as safetensors_numpy  # required: the 'test' extra installs it

import dlkern
from dlkern import nn, optim
from dlkern.device import CUDADevice

import host_cuda


_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
           "U8": "u1", "BOOL": "?"}


def read_safetensors(path):
    """(entries, metadata) of a safetensors file by its format: name -> NumPy array."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        data = fh.read()
    metadata = header.pop("__metadata__", {})
    entries = {}
    for name, e in header.items():
        start, end = e["data_offsets"]
        entries[name] = np.frombuffer(data[start:end], _DTYPES[e["dtype"]]).reshape(e["shape"])
    return entries, metadata


def rng(seed=0):
    return np.random.default_rng(seed)


def twin():
    return CUDADevice(0, module=host_cuda)


# ---------------------------------------------------------------------------- DLPack
@pytest.mark.parametrize("make", [
    lambda: np.arange(12, dtype=np.float32).reshape(3, 4),
    lambda: np.arange(12, dtype=np.float64).reshape(3, 4).T,        # non-contiguous
    lambda: np.arange(12, dtype=np.float32).reshape(3, 4)[:, 1::2],  # strided
    lambda: np.array(3.5, np.float32),                               # 0-d
    lambda: np.zeros((0, 3), np.float32),                            # empty
    lambda: np.arange(5, dtype=np.int64),
    lambda: np.array([True, False, True]),
    lambda: np.arange(4, dtype=np.float16),
], ids=["f32", "f64-T", "strided", "0d", "empty", "int64", "bool", "f16"])
def test_dlpack_shares_memory_with_numpy_both_ways(make):
    a = make()
    t = dlkern.from_dlpack(a)
    assert t.data.ctypes.data == a.ctypes.data and t.shape == a.shape and t.dtype == a.dtype
    assert t.data.strides == a.strides
    back = np.from_dlpack(t)
    assert back.ctypes.data == a.ctypes.data and back.strides == a.strides
    if a.size:
        flat = (0,) * a.ndim
        t.data[flat] = 1
        assert a[flat] == 1           # dlkern -> the NumPy source
        back[flat] = 0
        assert t.data[flat] == 0      # NumPy export -> dlkern
    assert t.__dlpack_device__() == (1, 0)


def test_from_dlpack_of_a_tensor_shares_and_copy_true_copies():
    t = dlkern.tensor([1.0, 2.0, 3.0])
    same = dlkern.from_dlpack(t)
    same.data[0] = 7
    assert t.data[0] == 7
    copy = dlkern.from_dlpack(t, copy=True)
    copy.data[1] = 9
    assert t.data[1] == 2
    assert not same.requires_grad and same.grad_fn is None


def test_dlpack_errors():
    x = dlkern.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(BufferError, match="require gradient.*detach"):
        x.__dlpack__()
    np.testing.assert_array_equal(np.from_dlpack(x.detach()), [1.0, 2.0])
    flipped = dlkern.arange(6.0)[::-1]
    assert flipped.data.strides[0] < 0
    with pytest.raises(BufferError, match="negative strides.*clone"):
        flipped.__dlpack__()
    np.testing.assert_array_equal(np.from_dlpack(flipped, copy=True), [5, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(np.from_dlpack(flipped.clone()), [5, 4, 3, 2, 1, 0])
    with pytest.raises(TypeError, match="from_dlpack.*__dlpack__.*list"):
        dlkern.from_dlpack([1, 2])
    with pytest.raises(ValueError, match="from_dlpack.*copy=False"):
        dlkern.from_dlpack(np.ones(2), device=twin(), copy=False)


def test_dlpack_of_a_cuda_tensor_names_the_device():
    c = dlkern.tensor([1.0, 2.0], device=twin())
    assert c.__dlpack_device__() == (2, 0)
    with pytest.raises(BufferError, match=r"__dlpack__.*cuda:0.*\.cpu\(\)"):
        c.__dlpack__()

    class OnGpu:  # what a CUDA array of another library reports
        def __dlpack__(self, **kwargs):
            raise AssertionError("not to be called")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(BufferError, match="from_dlpack: only CPU memory"):
        dlkern.from_dlpack(OnGpu())
    moved = dlkern.from_dlpack(np.arange(3.0), device=twin())
    assert moved.device.type == "cuda"
    np.testing.assert_array_equal(moved.cpu().numpy(), [0, 1, 2])


def test_as_tensor_shares_when_it_can():
    a = np.arange(6.0).reshape(2, 3)
    t = dlkern.as_tensor(a)
    t.data[0, 0] = 9
    assert a[0, 0] == 9 and t.dtype == np.float64
    assert dlkern.as_tensor(t) is t
    cast = dlkern.as_tensor(a, dtype=dlkern.float32)
    cast.data[0, 1] = 5
    assert a[0, 1] == 1 and cast.dtype == np.float32
    moved = dlkern.as_tensor(a, device=twin())
    assert moved.device.type == "cuda"
    np.testing.assert_array_equal(moved.cpu().numpy(), a)
    # other data: dlkern.tensor's dtype rules (Python floats -> float32, ints -> int64)
    for data, dtype, shape in (([1.0, 2.0], np.float32, (2,)), ([1, 2], np.int64, (2,)), (3.0, np.float32, ()),
                               (np.float64(2.0), np.float64, ()), (True, np.bool_, ())):
        out = dlkern.as_tensor(data)
        assert out.dtype == dtype and out.shape == shape, data


def test_as_tensor_matches_torch():
    torch = pytest.importorskip("torch")
    for data in ([1.0, 2.0], [1, 2], 3.0, np.float64(2.0), np.arange(3.0), True, [[True], [False]]):
        ours, theirs = dlkern.as_tensor(data), torch.as_tensor(data)
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", ""), data
        assert ours.shape == tuple(theirs.shape)
    src = torch.arange(4.0)
    ours = dlkern.as_tensor(src)
    ours.data[2] = -1
    assert src[2].item() == -1


def test_torch_shares_memory_through_dlpack():
    torch = pytest.importorskip("torch")
    t = dlkern.tensor(rng().standard_normal((3, 4)).astype(np.float32))
    for convert in (torch.from_dlpack, torch.as_tensor):
        x = convert(t)
        assert x.data_ptr() == t.data.ctypes.data and tuple(x.shape) == (3, 4) and x.dtype == torch.float32
        x[0, 0] = 42.0
        assert t.data[0, 0] == 42.0
        t.data[1, 1] = -5.0
        assert x[1, 1].item() == -5.0
    view = t.T  # a non-contiguous view keeps its strides
    x = torch.from_dlpack(view)
    assert x.stride() == (1, 4) and x.data_ptr() == view.data.ctypes.data
    np.testing.assert_array_equal(x.numpy(), view.data)
    # and back: a torch tensor into dlkern
    src = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    d = dlkern.from_dlpack(src)
    d.data[0, 0] = 100
    assert src[0, 0].item() == 100 and d.dtype == np.int64
    with pytest.raises(TypeError, match=r"from_dlpack: NumPy can't hold .*bfloat16.*\.float\(\)"):
        dlkern.from_dlpack(torch.ones(2, dtype=torch.bfloat16))
    # PyTorch refuses to export a tensor that requires grad, and dlkern does the same
    with pytest.raises(BufferError):
        dlkern.from_dlpack(torch.ones(2, requires_grad=True))
    with pytest.raises(BufferError, match="require gradient"):
        torch.from_dlpack(dlkern.ones(2, requires_grad=True))
    # a flipped view is refused instead of reaching torch, which aborts on negative strides
    with pytest.raises(BufferError, match="negative strides"):
        torch.from_dlpack(dlkern.arange(4.0)[::-1])
    for value in (np.array(2.5, np.float32), np.zeros((0, 2), np.float32), np.array([True, False])):
        x = torch.from_dlpack(dlkern.from_numpy(value))
        assert tuple(x.shape) == value.shape
        np.testing.assert_array_equal(x.numpy(), value)


# ---------------------------------------------------------------------------- save / load
def _round_trip(obj, tmp_path, name="x.safetensors"):
    path = tmp_path / name
    dlkern.save(obj, path)
    return dlkern.load(path), path


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(12, dtype=np.float64).reshape(3, 4).T,
    np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::2, 1:],
    np.array(-1.25, np.float32),
    np.zeros((0, 5), np.float32),
    np.arange(6, dtype=np.int64) - 3,
    np.arange(6, dtype=np.int32),
    np.array([True, False, True]),
    np.linspace(-2, 2, 7).astype(np.float16),
    np.arange(5, dtype=np.uint8),
], ids=["f32", "f64-T", "strided", "0d", "empty", "int64", "int32", "bool", "f16", "uint8"])
def test_tensor_round_trip(array, tmp_path):
    back, path = _round_trip(dlkern.from_numpy(array), tmp_path)
    assert isinstance(back, dlkern.Tensor) and back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back.numpy(), array)
    entries, _ = read_safetensors(path)
    assert list(entries) == ["tensor"]
    np.testing.assert_array_equal(entries["tensor"], array)


def test_state_dict_keys_values_and_metadata_in_the_file(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    sd = model.state_dict()
    back, path = _round_trip(sd, tmp_path)
    entries, metadata = read_safetensors(path)
    assert sorted(entries) == sorted(sd) == sorted(back)
    for key, t in sd.items():
        np.testing.assert_array_equal(entries[key], t.numpy())
        np.testing.assert_array_equal(back[key].numpy(), t.numpy())
        assert back[key].dtype == t.dtype
    assert metadata["format"] == "pt" and json.loads(metadata["dlkern"])["version"] == 1
    fresh = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    fresh.load_state_dict(back)
    x = dlkern.tensor(rng().standard_normal((5, 3)).astype(np.float32))
    np.testing.assert_array_equal(fresh(x).detach().numpy(), model(x).detach().numpy())


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.head = nn.Linear(3, 5, bias=False)
        self.head.weight = self.emb.weight  # the same Parameter under two names


def test_tied_weights_are_stored_once_and_come_back_as_one_tensor(tmp_path):
    model = Tied()
    sd = model.state_dict()
    assert sorted(sd) == ["emb.weight", "head.weight"]
    back, path = _round_trip(sd, tmp_path)
    entries, _ = read_safetensors(path)
    assert list(entries) == ["emb.weight"]  # stored once
    assert back["emb.weight"] is back["head.weight"]
    np.testing.assert_array_equal(back["head.weight"].numpy(), model.emb.weight.detach().numpy())
    # arrays sharing memory (the same view twice) are stored once too; other views are not
    base = np.arange(8.0)
    back, path = _round_trip({"a": base, "b": base[:], "c": base[2:5]}, tmp_path, "views.safetensors")
    assert sorted(read_safetensors(path)[0]) == ["a", "c"]
    assert back["a"] is back["b"]
    np.testing.assert_array_equal(back["c"], [2, 3, 4])


def test_nested_state_keeps_types_and_plain_values(tmp_path):
    w = dlkern.tensor([[1.0, 2.0]], requires_grad=True)
    p = nn.Parameter(dlkern.tensor([3.0]))
    obj = {
        "model": {"w": w, "p": p, "plain": dlkern.tensor([1, 2])},
        "arrays": [np.arange(3), (np.ones(2, np.float32), 7)],
        3: "int key", (1, 2): "tuple key", None: None,
        "epoch": 3, "lr": 0.5, "nan": float("nan"), "flag": True, "name": "run", "np": np.float64(2.5),
        "empty": {}, "nothing": [],
    }
    back, path = _round_trip(obj, tmp_path)
    assert list(back) == list(obj)  # order and key types
    assert back[3] == "int key" and back[(1, 2)] == "tuple key" and back[None] is None
    assert back["epoch"] == 3 and back["lr"] == 0.5 and np.isnan(back["nan"]) and back["flag"] is True
    assert back["np"] == 2.5 and back["empty"] == {} and back["nothing"] == [] and back["name"] == "run"
    assert back["model"]["w"].requires_grad and back["model"]["w"].is_leaf
    assert isinstance(back["model"]["p"], nn.Parameter) and back["model"]["p"].requires_grad
    assert not back["model"]["plain"].requires_grad and back["model"]["plain"].dtype == np.int64
    assert isinstance(back["arrays"][0], np.ndarray) and isinstance(back["arrays"][1], tuple)
    np.testing.assert_array_equal(back["arrays"][1][0], np.ones(2, np.float32))
    assert back["arrays"][1][1] == 7
    assert sorted(read_safetensors(path)[0]) == ["arrays.0", "arrays.1.0", "model.p", "model.plain", "model.w"]


def test_colliding_flat_keys_stay_apart(tmp_path):
    obj = {"a.b": np.zeros(1), "a": {"b": np.ones(1)}}
    back, path = _round_trip(obj, tmp_path)
    assert sorted(read_safetensors(path)[0]) == ["a.b", "a.b#2"]
    assert back["a.b"][0] == 0 and back["a"]["b"][0] == 1


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.Adam(ps, lr=0.01, betas=(0.8, 0.9)),
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
], ids=["adam", "sgd-momentum"])
def test_optimizer_state_round_trips_and_resumes_identically(make_opt, tmp_path):
    def model_and_opt():
        dlkern.manual_seed(0)
        m = nn.Linear(4, 3)
        return m, make_opt(m.parameters())

    x = dlkern.tensor(rng(1).standard_normal((8, 4)).astype(np.float32))

    def step(m, opt):
        opt.zero_grad()
        (m(x) ** 2).mean().backward()
        opt.step()

    m, opt = model_and_opt()
    for _ in range(3):
        step(m, opt)
    back, _ = _round_trip({"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, tmp_path)
    assert back["epoch"] == 3
    assert back["optimizer"]["param_groups"] == opt.state_dict()["param_groups"]
    m2, opt2 = model_and_opt()
    m2.load_state_dict(back["model"])
    opt2.load_state_dict(back["optimizer"])
    step(m, opt)
    step(m2, opt2)
    for a, b in zip(m.parameters(), m2.parameters()):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_cuda_tensors_are_saved_from_the_host_and_map_location(tmp_path):
    dev = twin()
    t = dlkern.tensor([1.0, 2.0, 3.0], device=dev)
    back, path = _round_trip({"a": t, "b": t, "bare": t.data}, tmp_path)
    assert sorted(read_safetensors(path)[0]) == ["a"]  # one device array, stored once
    assert back["bare"] is back["a"]
    assert back["a"].device.type == "cpu" and back["a"] is back["b"]
    moved = dlkern.load(path, map_location=dev)
    assert moved["a"].device.type == "cuda" and moved["a"] is moved["b"]
    np.testing.assert_array_equal(moved["a"].cpu().numpy(), [1, 2, 3])
    with pytest.raises(TypeError, match="map_location"):
        dlkern.load(path, map_location=lambda s, loc: s)


def test_save_and_load_errors(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match=r"dlkern.save: can't store entry 'a.0', a object"):
        dlkern.save({"a": [object()]}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match=r"can't store the object, a Linear.*state_dict\(\) instead"):
        dlkern.save(nn.Linear(2, 2), tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="dtype complex128"):
        dlkern.save({"z": np.ones(2, np.complex128)}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="dlkern.save: f must be a file path"):
        dlkern.save({}, __import__("io").BytesIO())
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dlkern.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk").write_bytes(b"hello, not a tensor file")
    with pytest.raises(ValueError, match="not a safetensors file"):
        dlkern.load(tmp_path / "junk")
    truncated = tmp_path / "trunc.safetensors"
    dlkern.save({"w": np.arange(100.0)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        dlkern.load(truncated)
    # without the package: the message names the extra to install
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match=r"pip install 'dlkern\[io\]'"):
        dlkern.save({"w": np.ones(1)}, tmp_path / "y.safetensors")


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    dlkern.save({"w": np.ones(3)}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(safetensors_numpy, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        dlkern.save({"w": np.zeros(3)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(dlkern.load(path)["w"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_foreign_safetensors_file_loads_as_a_flat_dict(tmp_path):
    path = tmp_path / "other.safetensors"
    safetensors_numpy.save_file({"b": np.arange(3, dtype=np.int32), "a": np.ones((2, 2), np.float32)}, path)
    back = dlkern.load(path)
    assert sorted(back) == ["a", "b"] and all(isinstance(v, dlkern.Tensor) for v in back.values())
    np.testing.assert_array_equal(back["b"].numpy(), [0, 1, 2])


def test_training_checkpoints_keep_their_layout_and_load_names_them(tmp_path):
    from dlkern.train import load_checkpoint, save_checkpoint

    state = {"w": np.arange(3.0), "epoch": 2, "step": np.array(5.0), "wt": np.arange(6.0).reshape(2, 3).T}
    path = save_checkpoint(tmp_path / "ck.npz", state)
    with pytest.raises(ValueError, match="training checkpoint.*dlkern.train.load_checkpoint"):
        dlkern.load(path)
    back = load_checkpoint(path)
    assert back["epoch"] == 2
    for key in ("w", "step", "wt"):  # a 0-d array stays 0-d, a transposed one keeps its values
        assert back[key].shape == state[key].shape
        np.testing.assert_array_equal(back[key], state[key])
