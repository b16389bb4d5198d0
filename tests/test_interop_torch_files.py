"""torch.save files read by dlkern.load without PyTorch and without running their pickle
(hand-made files, layout checks, malicious pickles refused), and models moving both
ways: a dlkern state_dict saved with dlkern.save opens in PyTorch through
safetensors.torch.load_file, a torch.save'd state_dict loads into the dlkern module
built the same way, and the outputs agree. The PyTorch parts are skipped without torch."""

import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import dlkern
from dlkern import nn, optim


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------- torch.save files, no torch
def _torch_like_zip(path, pickle_bytes, storages=None):
    """A zip laid out as torch.save writes it, with our own data.pkl and storages."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            z.writestr(f"archive/data/{key}", raw)
    return path


def _tensor_pickle(size, stride, offset=0, numel=4):
    """Protocol-2 pickle of {'w': _rebuild_tensor_v2(storage 0 of `numel` floats, ...)}."""
    def ints(values):
        return b"(" + b"".join(b"K" + bytes([v]) for v in values) + b"t"

    return (b"\x80\x02}X\x01\x00\x00\x00w"
            b"ctorch._utils\n_rebuild_tensor_v2\n("
            b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu"
            + b"K" + bytes([numel]) + b"tQ"
            + b"K" + bytes([offset]) + ints(size) + ints(stride)
            + b"\x89ccollections\nOrderedDict\n)RtRs.")


def test_handmade_torch_file_loads_and_checks_the_layout(tmp_path):
    raw = np.arange(4, dtype="<f4").tobytes()
    good = _torch_like_zip(tmp_path / "good.pt", _tensor_pickle((2, 2), (1, 2)), {"0": raw})
    w = dlkern.load(good)["w"]
    np.testing.assert_array_equal(w.numpy(), np.arange(4, dtype=np.float32).reshape(2, 2).T)
    # saved from a GPU: the location is ignored, the tensor lands on the CPU (map_location="cpu")
    on_gpu = _tensor_pickle((4,), (1,)).replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert b"cuda:0" in on_gpu
    w = dlkern.load(_torch_like_zip(tmp_path / "gpu.pt", on_gpu, {"0": raw}))["w"]
    assert w.device.type == "cpu"
    np.testing.assert_array_equal(w.numpy(), [0, 1, 2, 3])
    past_end = _torch_like_zip(tmp_path / "past.pt", _tensor_pickle((2, 2), (2, 2)), {"0": raw})
    with pytest.raises(pickle.UnpicklingError, match="reaches past its storage"):
        dlkern.load(past_end)
    short = _torch_like_zip(tmp_path / "short.pt", _tensor_pickle((2, 2), (2, 1)), {"0": raw[:8]})
    with pytest.raises(pickle.UnpicklingError, match="holds 8 bytes, not 4 elements"):
        dlkern.load(short)


def test_malicious_pickles_are_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = (b"\x80\x02cos\nsystem\nX" + struct.pack("<I", len(f"touch {marker}")) + f"touch {marker}".encode()
            + b"\x85R.")
    with pytest.raises(pickle.UnpicklingError, match=r"global os.system.*never runs code"):
        dlkern.load(_torch_like_zip(tmp_path / "evil.pt", evil))
    assert not marker.exists()
    eval_call = b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R."
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        dlkern.load(_torch_like_zip(tmp_path / "eval.pt", eval_call))
    # BUILD on an allowed global would change OrderedDict for the whole process
    build = b"\x80\x02ccollections\nOrderedDict\n}X\x03\x00\x00\x00fooK\x01sb."
    with pytest.raises(pickle.UnpicklingError, match="set state"):
        dlkern.load(_torch_like_zip(tmp_path / "build.pt", build))
    assert not hasattr(__import__("collections").OrderedDict, "foo")
    # BUILD on an OrderedDict instance: only torch's `_metadata` attribute passes
    shadow = b"\x80\x02ccollections\nOrderedDict\n)R}X\x04\x00\x00\x00keysK\x01sb."
    with pytest.raises(pickle.UnpicklingError, match=r"sets attributes \['keys'\]"):
        dlkern.load(_torch_like_zip(tmp_path / "shadow.pt", shadow))
    # an allowed global handed back as a value is not a state_dict
    leak = b"\x80\x02ccollections\nOrderedDict\n."
    with pytest.raises(pickle.UnpicklingError, match="not part of a state_dict"):
        dlkern.load(_torch_like_zip(tmp_path / "leak.pt", leak))
    bad_key = _tensor_pickle((1,), (1,)).replace(b"X\x01\x00\x00\x000X", b"X\x01\x00\x00\x00/X")
    with pytest.raises(pickle.UnpicklingError, match="unexpected storage reference"):
        dlkern.load(_torch_like_zip(tmp_path / "key.pt", bad_key, {"0": b"\0" * 16}))


# ---------------------------------------------------------------------------- with PyTorch
def _torch_mlp(torch):
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _dlkern_mlp():
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _torch_conv(torch):
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5))


def _dlkern_conv():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 3 * 3, 5))


NETS = [(_torch_mlp, _dlkern_mlp, (5, 6)), (_torch_conv, _dlkern_conv, (3, 2, 6, 6))]


def _train_a_little(model, x, torch=None):
    """A few steps so BatchNorm's running statistics differ from their defaults."""
    if torch is None:
        opt = optim.SGD(model.parameters(), lr=0.05)
        for _ in range(2):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(2):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()


@pytest.mark.parametrize("make_torch, make_dlkern, shape", NETS, ids=["mlp", "conv"])
def test_dlkern_state_dict_opens_in_torch(make_torch, make_dlkern, shape, tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch

    x = rng(2).standard_normal(shape).astype(np.float32)
    ours = make_dlkern()
    _train_a_little(ours, dlkern.tensor(x))
    ours.eval()
    path = tmp_path / "ours.safetensors"
    dlkern.save(ours.state_dict(), path)
    loaded = safetensors.torch.load_file(path)
    sd = ours.state_dict()
    assert sorted(loaded) == sorted(sd)
    for key, t in sd.items():
        np.testing.assert_array_equal(loaded[key].numpy(), t.numpy())
    theirs = make_torch(torch)
    theirs.load_state_dict(loaded)  # strict: the same keys and shapes as PyTorch's model
    theirs.eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(dlkern.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make_torch, make_dlkern, shape", NETS, ids=["mlp", "conv"])
def test_torch_state_dict_file_loads_into_dlkern(make_torch, make_dlkern, shape, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    x = rng(3).standard_normal(shape).astype(np.float32)
    theirs = make_torch(torch)
    _train_a_little(theirs, torch.from_numpy(x), torch)
    theirs.eval()
    path = tmp_path / "theirs.pt"
    torch.save(theirs.state_dict(), path)
    loaded = dlkern.load(path)
    assert list(loaded) == list(theirs.state_dict())
    ours = make_dlkern()
    ours.load_state_dict(loaded)
    ours.eval()
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(dlkern.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    # torch tensors straight into load_state_dict, Parameters (requiring grad) included
    direct = make_dlkern()
    direct.load_state_dict(dict(theirs.named_parameters()) | dict(theirs.named_buffers()))
    direct.eval()
    np.testing.assert_allclose(direct(dlkern.tensor(x)).detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_torch_file_dtypes_views_ties_and_nesting(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    emb = torch.nn.Embedding(4, 3)
    head = torch.nn.Linear(3, 4, bias=False)
    head.weight = emb.weight
    opt = torch.optim.Adam(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    opt.step()
    obj = {
        "t": base.t(), "slice": base[1:, 2:], "scalar": torch.tensor(2.5, dtype=torch.float64),
        "empty": torch.zeros(0, 3), "half": torch.tensor([0.5, -1.25], dtype=torch.float16),
        "bf16": torch.tensor([1.0, -2.5, 3.140625, 1e30], dtype=torch.bfloat16),
        "long": torch.tensor([-(2 ** 40), 3]), "bool": torch.tensor([True, False]),
        "param": torch.nn.Parameter(torch.ones(2)),
        "tied": {"emb.weight": emb.weight.detach(), "head.weight": head.weight.detach()},
        "optimizer": opt.state_dict(), "epoch": 7, "name": "x", "nested": [1, (2.5, None)],
    }
    path = tmp_path / "mixed.pt"
    torch.save(obj, path)
    back = dlkern.load(path)
    for key in ("t", "slice", "scalar", "empty", "half", "long", "bool"):
        assert back[key].dtype == np.dtype(str(obj[key].dtype).replace("torch.", "")), key
        np.testing.assert_array_equal(back[key].numpy(), obj[key].numpy(), err_msg=key)
    # bfloat16 is upcast to float32, exactly
    assert back["bf16"].dtype == np.float32
    np.testing.assert_array_equal(back["bf16"].numpy(), obj["bf16"].float().numpy())
    assert isinstance(back["param"], nn.Parameter) and back["param"].requires_grad
    tied = back["tied"]
    assert tied["emb.weight"].data.ctypes.data == tied["head.weight"].data.ctypes.data  # one storage
    np.testing.assert_array_equal(tied["head.weight"].numpy(), emb.weight.detach().numpy())
    state = back["optimizer"]["state"][0]
    np.testing.assert_array_equal(state["exp_avg"].numpy(), opt.state_dict()["state"][0]["exp_avg"].numpy())
    assert back["optimizer"]["param_groups"][0]["lr"] == 0.1 and back["epoch"] == 7
    assert back["name"] == "x" and back["nested"] == [1, (2.5, None)]
    # a bf16 torch tensor straight into load_state_dict is upcast too
    m = nn.Linear(2, 1, bias=False)
    m.load_state_dict({"weight": torch.tensor([[0.5, 0.25]], dtype=torch.bfloat16)})
    np.testing.assert_array_equal(m.weight.detach().numpy(), [[0.5, 0.25]])


def test_torch_file_loads_without_torch(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "sd.pt"
    torch.save({"w": torch.arange(6.0).reshape(2, 3).t()}, path)
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "import dlkern\n"
            f"w = dlkern.load({str(path)!r})['w']\n"
            "print(w.numpy().tolist())\n"
            "assert 'torch' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]"


def test_legacy_torch_format_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "old.pt"
    torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="legacy.*not supported"):
        dlkern.load(path)


def test_torch_pickles_with_other_globals_are_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: its class is a global
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        dlkern.load(path)
