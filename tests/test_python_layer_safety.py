"""Silent wrong results and unclear errors in the Python layer (issue items 5 and 6):
nll_loss on K-dimensional input, clamp with tensor bounds, in-place operators,
__array__'s copy argument, int-only arguments (group_norm), load_state_dict errors,
the CLI's handling of mismatched checkpoints, --resume past the end, --threads, and
stale checkpoint temporaries. References are NumPy written here; gradients are float64
central finite differences."""

import os
import time

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
import dlkern.nn.functional as F
from dlkern import optim
from dlkern.__main__ import main
from dlkern.train.checkpoint import load_checkpoint, save_checkpoint
from test_autograd_helpers import gradcheck, t64


@pytest.fixture
def rng():
    return np.random.default_rng(11)


# ---------------------------------------------------------------------------- nll_loss

def nll_reference(x, t, weight, ignore_index, reduction):
    """Element by element over the target's positions: -w[c] x[n, c, d1, ...]."""
    c = x.shape[1]
    w = np.ones(c) if weight is None else weight
    losses = np.zeros(t.shape)
    wsum = 0.0
    for idx in np.ndindex(*t.shape):
        cls = int(t[idx])
        if cls == ignore_index:
            continue
        losses[idx] = -w[cls] * x[(idx[0], cls) + idx[1:]]
        wsum += w[cls]
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / wsum


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 5), (2, 3, 4, 5), (2, 3, 2, 3, 2)])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_k_dimensional(reduction, shape, weighted, rng):
    x = t64(rng, *shape)
    t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    t.reshape(-1)[::3] = -100  # some ignored targets
    w = rng.uniform(0.5, 2.0, shape[1]) if weighted else None
    wt = dlkern.tensor(w) if weighted else None
    got = F.nll_loss(x, dlkern.tensor(t), weight=wt, reduction=reduction)
    want = nll_reference(x.data, t, w, -100, reduction)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got.data, want, rtol=1e-12, atol=1e-15)
    gradcheck(lambda x: F.nll_loss(x, dlkern.tensor(t), weight=wt, reduction=reduction), [x], rng)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (3, 4, 5)])
def test_nll_loss_matches_cross_entropy_of_log_softmax(shape, rng):
    x = t64(rng, *shape, requires_grad=False)
    t = dlkern.tensor(rng.integers(0, shape[1], size=(shape[0],) + shape[2:]))
    for reduction in ("none", "sum", "mean"):
        ce = F.cross_entropy(x, t, reduction=reduction)
        nll = F.nll_loss(F.log_softmax(x, dim=1), t, reduction=reduction)
        np.testing.assert_allclose(nll.data, ce.data, rtol=1e-12, atol=1e-14)


def test_nll_loss_target_shape_is_checked(rng):
    x = t64(rng, 2, 3, 4, 5)
    # Same number of elements, wrong layout: (N, d2, d1) instead of (N, d1, d2).
    with pytest.raises(ValueError, match=r"nll_loss: input has shape \(2, 3, 4, 5\) but target has shape"):
        F.nll_loss(x, dlkern.tensor(rng.integers(0, 3, size=(2, 5, 4))))


# ---------------------------------------------------------------------------- clamp

def test_clamp_tensor_bounds_values_and_gradients(rng):
    # Values kept at least 0.05 away from the bounds so finite differences are exact.
    x = rng.uniform(-1, 1, size=(4, 5))
    lo = rng.uniform(-0.6, -0.1, size=(5,))
    hi = rng.uniform(0.1, 0.6, size=(4, 1))
    near = (np.abs(x - lo) < 0.05) | (np.abs(x - hi) < 0.05)
    while near.any():
        x[near] = rng.uniform(-1, 1, size=int(near.sum()))
        near = (np.abs(x - lo) < 0.05) | (np.abs(x - hi) < 0.05)
    assert (x < lo).any() and (x > hi).any() and ((x > lo) & (x < hi)).any()
    xt = dlkern.tensor(x, dtype=np.float64, requires_grad=True)
    lot = dlkern.tensor(lo, dtype=np.float64, requires_grad=True)
    hit = dlkern.tensor(hi, dtype=np.float64, requires_grad=True)
    y = xt.clamp(lot, hit)
    np.testing.assert_array_equal(y.data, np.minimum(np.maximum(x, lo), hi))
    gradcheck(lambda a, b, c: a.clamp(b, c), [xt, lot, hit], rng)
    assert lot.grad.shape == (5,) and hit.grad.shape == (4, 1)
    # Explicit: with a unit cotangent, each bound's gradient counts the elements it clamps.
    for t in (xt, lot, hit):
        t.grad = None
    xt.clamp(lot, hit).sum().backward()
    np.testing.assert_array_equal(xt.grad.data, ((x >= lo) & (x <= hi)).astype(float))
    np.testing.assert_array_equal(lot.grad.data, (x < lo).sum(0))
    np.testing.assert_array_equal(hit.grad.data, (x > hi).sum(1, keepdims=True))


def test_clamp_single_tensor_bound_and_ties(rng):
    x = dlkern.tensor([-2.0, -1.0, 0.0, 1.0, 2.0], dtype=np.float64, requires_grad=True)
    lo = dlkern.tensor([-1.0, -1.0, -1.0, -1.0, 3.0], dtype=np.float64, requires_grad=True)
    x.clamp(min=lo).sum().backward()
    # PyTorch: x gets the gradient where x >= min (ties included), min where x < min.
    np.testing.assert_array_equal(x.grad.data, [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(lo.grad.data, [1, 0, 0, 0, 1])
    x.grad = None
    hi = dlkern.tensor([1.0, 1.0, 1.0, 1.0, 1.0], dtype=np.float64, requires_grad=True)
    x.clamp(max=hi).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(hi.grad.data, [0, 0, 0, 0, 1])


def test_clamp_min_greater_than_max_gives_max(rng):
    x = dlkern.tensor([-3.0, 0.0, 3.0], dtype=np.float64, requires_grad=True)
    lo = dlkern.tensor([1.0, 1.0, 1.0], dtype=np.float64, requires_grad=True)
    hi = dlkern.tensor([-1.0, -1.0, -1.0], dtype=np.float64, requires_grad=True)
    y = x.clamp(lo, hi)
    np.testing.assert_array_equal(y.data, [-1.0, -1.0, -1.0])  # the result is max everywhere
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0, 0, 0])
    np.testing.assert_array_equal(lo.grad.data, [0, 0, 0])
    np.testing.assert_array_equal(hi.grad.data, [1, 1, 1])


def test_clamp_tensor_bounds_and_inplace_on_the_device_twin():
    """The device-neutral path (tests/host_cuda.py stands in for dlkern._C_cuda): the
    CUDA clip kernel takes numbers only, so tensor bounds must not reach it."""
    import host_cuda
    from dlkern.device import CUDADevice

    dev = CUDADevice(0, module=host_cuda)
    x = dlkern.tensor([-2.0, 0.0, 2.0], dtype=np.float64).to(dev).requires_grad_()
    lo = dlkern.tensor([-1.0, -1.0, 3.0], dtype=np.float64).to(dev).requires_grad_()
    hi = dlkern.tensor([1.0, 1.0, 1.0], dtype=np.float64).to(dev).requires_grad_()
    y = x.clamp(lo, hi)
    np.testing.assert_array_equal(y.data.numpy(), [-1.0, 0.0, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data.numpy(), [0, 1, 0])
    np.testing.assert_array_equal(lo.grad.data.numpy(), [1, 0, 0])
    np.testing.assert_array_equal(hi.grad.data.numpy(), [0, 0, 1])
    p = dlkern.ones(3).to(dev).requires_grad_()
    data = p.data
    with dlkern.no_grad():
        p -= 0.25 * dlkern.ones(3).to(dev)
        p *= 2
    assert p.data is data
    np.testing.assert_array_equal(p.data.numpy(), [1.5, 1.5, 1.5])


def test_clamp_tensor_bound_dtype_mismatch_is_an_error():
    x = dlkern.zeros(3)
    with pytest.raises(TypeError, match="clamp: min has dtype float64"):
        x.clamp(dlkern.zeros(3, dtype=np.float64))


# ---------------------------------------------------------------------------- in-place operators

def test_inplace_operators_update_the_same_object():
    t = dlkern.tensor([1.0, 2.0, 3.0])
    alias = t
    t += 1
    t -= dlkern.tensor([0.5, 0.5, 0.5])
    t *= 2
    t /= dlkern.tensor(4.0)
    assert t is alias and t.dtype == np.float32
    np.testing.assert_allclose(alias.data, [0.75, 1.25, 1.75])
    data = t.data
    t += np.ones(3, np.float64)  # a float64 right side keeps the left's dtype
    assert t.data is data and t.dtype == np.float32


def test_inplace_broadcast_must_not_change_the_shape():
    t = dlkern.zeros(3)
    t += dlkern.ones(1)          # broadcasts into (3,): fine
    t += dlkern.ones(2, 3)[0]
    np.testing.assert_array_equal(t.data, [2, 2, 2])
    with pytest.raises(RuntimeError, match=r"\+=: output with shape \(3,\) doesn't match the broadcast shape"):
        t += dlkern.ones(2, 3)
    with pytest.raises(RuntimeError, match=r"-=: output with shape \(3,\)"):
        t -= dlkern.ones(4)
    np.testing.assert_array_equal(t.data, [2, 2, 2])


def test_inplace_integer_tensor_cannot_take_a_float_result():
    t = dlkern.tensor([1, 2, 3])
    t += 1
    assert t.data.tolist() == [2, 3, 4]
    with pytest.raises(RuntimeError, match="can't be cast"):
        t /= 2


def test_inplace_on_leaf_requiring_grad():
    w = dlkern.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        w -= 0.1
    with dlkern.no_grad():
        w -= 0.5
    np.testing.assert_allclose(w.data, [0.5, 0.5, 0.5])
    assert w.requires_grad and w.is_leaf


def test_inplace_on_graph_tensor_and_with_grad_operand_refused():
    w = dlkern.ones(3, requires_grad=True)
    y = w * 2
    with pytest.raises(RuntimeError, match="in-place"):
        y += 1
    acc = dlkern.zeros(3)
    with pytest.raises(RuntimeError, match="requires grad"):
        acc += w  # the gradient to w would be silently lost


def test_manual_sgd_loop_trains(rng):
    x = rng.standard_normal((64, 3)).astype(np.float32)
    true_w = np.array([[1.5], [-2.0], [0.5]], np.float32)
    y = x @ true_w + 0.3
    model = nn.Linear(3, 1)
    params = list(model.parameters())
    ids = [id(p) for p in params]
    before = [p.data.copy() for p in params]
    xt, yt = dlkern.tensor(x), dlkern.tensor(y)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(model(xt), yt)
        for p in params:
            p.grad = None
        loss.backward()
        with dlkern.no_grad():
            for p in params:
                p -= 0.1 * p.grad
        losses.append(float(loss.item()))
    assert [id(p) for p in model.parameters()] == ids      # the same objects
    assert all(p is q for p, q in zip(params, model.parameters()))
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, params))
    assert losses[-1] < 0.01 * losses[0]
    # An optimizer holding the parameters sees the in-place updates.
    opt = optim.SGD(model.parameters(), lr=0.0)
    with dlkern.no_grad():
        model.weight *= 0
    assert np.all(opt.param_groups[0]["params"][0].data == 0)


# ---------------------------------------------------------------------------- __array__

def test_array_copy_semantics():
    t = dlkern.tensor([1.0, 2.0, 3.0])
    copied = np.array(t, copy=True)
    assert not np.shares_memory(copied, t.data)
    copied[0] = 99
    assert t.data[0] == 1.0
    alias = np.asarray(t)
    assert np.shares_memory(alias, t.data)
    assert np.shares_memory(np.array(t, copy=False), t.data)
    assert np.shares_memory(np.array(t, copy=None), t.data)
    with pytest.raises(ValueError, match="copy"):
        np.array(t, dtype=np.float64, copy=False)
    converted = np.asarray(t, dtype=np.float64)
    assert converted.dtype == np.float64 and not np.shares_memory(converted, t.data)
    assert t.__array__(copy=True) is not t.data


# ---------------------------------------------------------------------------- int-only arguments

@pytest.mark.parametrize("groups", [2.9, 2.0, True, "2", None])
def test_group_norm_num_groups_must_be_int(groups, rng):
    x = t64(rng, 2, 4, 3, requires_grad=False)
    with pytest.raises(TypeError, match="group_norm: num_groups must be an int"):
        F.group_norm(x, groups)
    with pytest.raises(TypeError, match="group_norm(_forward)?: num_groups must be an int"):
        dlkern.ops.group_norm(x.data, groups)
    with pytest.raises(TypeError, match="GroupNorm: num_groups must be an int"):
        nn.GroupNorm(groups, 4)


def test_group_norm_num_groups_values(rng):
    x = t64(rng, 2, 4, 3, requires_grad=False)
    want = F.group_norm(x, 2).data
    np.testing.assert_array_equal(F.group_norm(x, np.int64(2)).data, want)  # NumPy integers are fine
    np.testing.assert_array_equal(nn.GroupNorm(np.int32(2), 4, dtype=np.float64)(x).data, want)
    for bad in (0, -2, 3):
        with pytest.raises(ValueError, match="group_norm"):
            F.group_norm(x, bad)
        with pytest.raises(ValueError, match="GroupNorm"):
            nn.GroupNorm(bad, 4)
    with pytest.raises(ValueError, match="num_groups"):
        dlkern.ops.group_norm(x.data, 0)


def test_sizes_and_offsets_must_be_int(rng):
    with pytest.raises(TypeError, match="sizes must be ints"):
        dlkern.zeros(2.7)
    with pytest.raises(TypeError, match="sizes must be ints"):
        dlkern.zeros(6).reshape(2, 3.0)
    assert dlkern.zeros(np.int64(2), 3).shape == (2, 3)
    with pytest.raises(TypeError, match="rope: offset must be an int"):
        F.rope(t64(rng, 1, 2, 4, requires_grad=False), offset=1.5)


# ---------------------------------------------------------------------------- load_state_dict

class Small(nn.Module):
    def __init__(self, hidden=4):
        super().__init__()
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def test_load_state_dict_errors_list_every_problem():
    a, b = Small(), Small()
    sd = a.state_dict()
    del sd["fc2.bias"]
    sd["fc3.weight"] = dlkern.zeros(2)
    sd["fc1.weight"] = dlkern.zeros(5, 3)
    before = b.fc2.weight.data.copy()
    with pytest.raises(RuntimeError) as info:
        b.load_state_dict(sd)
    msg = str(info.value)
    assert msg.startswith("Error(s) in loading state_dict for Small")
    assert "missing keys: fc2.bias" in msg and "unexpected keys: fc3.weight" in msg
    assert "size mismatch for fc1.weight" in msg and "(5, 3)" in msg and "(4, 3)" in msg
    np.testing.assert_array_equal(b.fc2.weight.data, before)  # nothing copied


def test_load_state_dict_non_strict_returns_named_keys():
    a, b = Small(), Small()
    sd = a.state_dict()
    del sd["fc2.bias"]
    sd["extra"] = dlkern.zeros(1)
    result = b.load_state_dict(sd, strict=False)
    missing, unexpected = result
    assert result.missing_keys == missing == ["fc2.bias"]
    assert result.unexpected_keys == unexpected == ["extra"]
    assert result["missing_keys"] == ["fc2.bias"]
    np.testing.assert_array_equal(b.fc1.weight.data, a.fc1.weight.data)
    assert repr(b.load_state_dict(a.state_dict())) == "<All keys matched successfully>"


def test_load_state_dict_bad_values():
    b = Small()
    with pytest.raises(TypeError, match="load_state_dict: expected a dict"):
        b.load_state_dict([1, 2, 3])
    sd = Small().state_dict()
    sd["fc1.bias"] = {"nested": 1}
    with pytest.raises(RuntimeError, match="fc1.bias is not numeric"):
        b.load_state_dict(sd)


# ---------------------------------------------------------------------------- CLI

DIGITS = ["--epochs", "1", "--batch-size", "256", "--no-progress", "--threads", "1", "--scheduler", "none"]

CORPUS_TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
               "All:\nSpeak, speak.\n\n") * 40
GPT_SMALL = ["--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "16", "--batch-size", "4",
             "--eval-interval", "2", "--eval-batches", "1", "--sample-tokens", "0", "--threads", "1"]


def _one_line_error(err, *needles):
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err


def test_cli_resume_with_another_models_checkpoint(tmp_path, capsys):
    ck = tmp_path / "mlp.npz"
    assert main(["train", "--checkpoint", str(ck)] + DIGITS) == 0
    capsys.readouterr()
    rc = main(["train", "--model", "lenet", "--checkpoint", str(ck), "--resume"] + DIGITS)
    err = capsys.readouterr().err
    assert rc == 1
    _one_line_error(err, "error: train:", str(ck), "does not fit", "missing keys")


def test_cli_resume_with_a_checkpoint_missing_entries(tmp_path, capsys):
    ck = tmp_path / "partial.npz"
    save_checkpoint(ck, {"model": {}, "epoch": 1})
    rc = main(["train", "--checkpoint", str(ck), "--resume"] + DIGITS)
    assert rc == 1
    _one_line_error(capsys.readouterr().err, "error: train:", "does not fit")


def test_cli_gpt_checkpoint_mismatches(tmp_path, corpus, capsys):
    mlp_ck = tmp_path / "mlp.npz"
    save_checkpoint(mlp_ck, {"model": Small().state_dict(), "epoch": 1})
    # generate with a non-GPT checkpoint
    assert main(["generate", "--checkpoint", str(mlp_ck), "--max-new-tokens", "2"]) == 1
    _one_line_error(capsys.readouterr().err, "error: generate:", "not a GPT checkpoint")
    # generate with a GPT checkpoint whose weights do not fit its config
    gpt_ck = tmp_path / "gpt.npz"
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "2",
                 "--checkpoint", str(gpt_ck)] + GPT_SMALL) == 0
    capsys.readouterr()
    state = load_checkpoint(gpt_ck)
    state["config"]["d_model"] = 32
    broken = tmp_path / "broken.npz"
    save_checkpoint(broken, state)
    assert main(["generate", "--checkpoint", str(broken), "--max-new-tokens", "2"]) == 1
    _one_line_error(capsys.readouterr().err, "error: generate:", "does not fit", "size mismatch")
    # train --model gpt --resume from the classifier checkpoint, or the broken one
    for ck in (mlp_ck, broken):
        rc = main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "4", "--resume",
                   "--checkpoint", str(ck)] + GPT_SMALL)
        assert rc == 1
        _one_line_error(capsys.readouterr().err, "error: train:", str(ck))
    # resume on a text with characters the checkpoint's vocabulary lacks
    other = tmp_path / "other.txt"
    other.write_text(CORPUS_TEXT.replace("a", "\u00e9"))
    rc = main(["train", "--model", "gpt", "--text", str(other), "--steps", "4", "--resume",
               "--checkpoint", str(gpt_ck)] + GPT_SMALL)
    assert rc == 1
    _one_line_error(capsys.readouterr().err, "error: train:", "not in the vocabulary")
    # a classifier resume from the GPT checkpoint
    assert main(["train", "--checkpoint", str(gpt_ck), "--resume"] + DIGITS) == 1
    _one_line_error(capsys.readouterr().err, "error: train:", "'gpt' checkpoint")


def test_cli_missing_checkpoint_exits_1_for_train_and_generate(tmp_path, capsys):
    # (the exit-status convention: 1 for what fails while running, 2 for a wrong command line)
    missing = tmp_path / "nope.npz"
    assert main(["train", "--checkpoint", str(missing), "--resume"] + DIGITS) == 1
    _one_line_error(capsys.readouterr().err, "does not exist")
    assert main(["generate", "--checkpoint", str(missing)]) == 1
    _one_line_error(capsys.readouterr().err, "does not exist")


def test_cli_resume_past_the_last_epoch(tmp_path, capsys):
    ck = tmp_path / "done.npz"
    assert main(["train", "--checkpoint", str(ck)] + DIGITS) == 0
    out = capsys.readouterr().out
    trained = [line for line in out.splitlines() if line.startswith("done: test accuracy")][0]
    mtime = ck.stat().st_mtime_ns
    rc = main(["train", "--checkpoint", str(ck), "--resume"] + DIGITS)
    out = capsys.readouterr().out
    assert rc == 0
    assert "checkpoint already trained for 1 epochs (--epochs 1): nothing to do" in out
    assert "nan" not in out and "samples/s" not in out
    # the real test accuracy of the checkpoint: the same number the training run printed
    assert trained.split("|")[0].strip() in out
    assert ck.stat().st_mtime_ns == mtime  # not rewritten


def test_cli_gpt_resume_past_the_last_step(tmp_path, corpus, capsys):
    ck = tmp_path / "gpt.npz"
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "2",
                 "--checkpoint", str(ck)] + GPT_SMALL) == 0
    capsys.readouterr()
    rc = main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "2", "--resume",
               "--checkpoint", str(ck)] + GPT_SMALL)
    out = capsys.readouterr().out
    assert rc == 0
    assert "checkpoint already trained for 2 steps (--steps 2): nothing to do" in out
    assert "nan" not in out and "steps/s" not in out
    assert "val loss" in out


@pytest.mark.parametrize("value", ["0", "-2", "x"])
@pytest.mark.parametrize("command", [["train"], ["generate"]])
def test_cli_threads_must_be_positive(command, value, capsys):
    with pytest.raises(SystemExit) as info:
        main(command + ["--threads", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--threads" in err and "Traceback" not in err
    assert ("must be >= 1" in err) if value != "x" else ("positive integer" in err)


# ---------------------------------------------------------------------------- stale temporaries

def test_save_removes_stale_temporaries_of_the_same_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    old = time.time() - 3600
    stale = [tmp_path / "ck.npz.abcd1234.tmp", tmp_path / "ck.npz.x_9y8z7w.tmp"]
    keep = [tmp_path / "other.npz.abcd1234.tmp",     # another checkpoint's
            tmp_path / "ck.npz.abc.tmp",             # not mkstemp's pattern
            tmp_path / "ck.npz.abcd1234.tmp.keep",
            tmp_path / "xck.npz.abcd1234.tmp",
            tmp_path / "ck.npz.ABCD1234.tmp"]
    for p in stale + keep:
        p.write_bytes(b"partial")
        os.utime(p, (old, old))
    fresh = tmp_path / "ck.npz.zzzz9999.tmp"  # a save that started after ours: left alone
    save_checkpoint(path, {"w": np.ones(3)})
    fresh.write_bytes(b"in progress")
    os.utime(fresh, (time.time() + 60, time.time() + 60))
    save_checkpoint(path, {"w": np.arange(3.0)})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["ck.npz", fresh.name] + [p.name for p in keep])
    np.testing.assert_array_equal(load_checkpoint(path)["w"], np.arange(3.0))
