"""dlkern.utils.checkpoint (gradient checkpointing) and the GPT's checkpointed blocks
(issue 15, deliverable 5): the gradients must equal the plain run's exactly (float64),
with dropout (the RNG state is replayed), non-Tensor arguments and nesting; parity with
torch.utils.checkpoint on a small MLP."""

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.__main__ import main
from dlkern.generator import RNG
from dlkern.models import GPT
from dlkern.nn import functional as F
from dlkern.utils import checkpoint, checkpoint_sequential


def _mlp(dropout=0.0, seed=0):
    dlkern.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 4)).to(dlkern.float64)


def _x(shape=(5, 6), seed=1, requires_grad=True):
    return dlkern.tensor(np.random.default_rng(seed).normal(size=shape), requires_grad=requires_grad)


def _grads(model, *tensors):
    return [p.grad.numpy().copy() for p in model.parameters()] + [t.grad.numpy().copy() for t in tensors]


def _run(model, x, use_checkpoint, seed=7, **kw):
    model.zero_grad()
    x.grad = None
    dlkern.manual_seed(seed)
    y = checkpoint(model, x, **kw) if use_checkpoint else model(x)
    (y * y).sum().backward()
    return y.detach().numpy(), _grads(model, x)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_gradients_equal_the_plain_run_exactly(dropout):
    model = _mlp(dropout)
    x = _x()
    y0, g0 = _run(model, x, False)
    state_plain = RNG.generator.bit_generator.state
    y1, g1 = _run(model, x, True)
    assert RNG.generator.bit_generator.state == state_plain  # the recompute's draws are not consumed twice
    np.testing.assert_array_equal(y0, y1)
    for a, b in zip(g0, g1):
        np.testing.assert_array_equal(a, b)


def test_without_preserved_rng_dropout_masks_differ():
    model = _mlp(0.5)
    x = _x(shape=(20, 6))
    _, g0 = _run(model, x, False)
    _, g1 = _run(model, x, True, preserve_rng_state=False)
    assert not all(np.array_equal(a, b) for a, b in zip(g0, g1))   # so the replay above is what matters


def test_output_has_a_node_and_activations_are_not_recorded():
    model = _mlp()
    y = checkpoint(model, _x())
    assert type(y.grad_fn).__name__ == "CheckpointFunction" and y.requires_grad
    with dlkern.no_grad():
        z = checkpoint(model, _x())
    assert z.grad_fn is None and not z.requires_grad


def test_non_tensor_and_keyword_arguments():
    model = _mlp()
    a, b = _x(seed=2), _x(seed=3)

    def fn(x, scale, mode, other=None, shift=0.0):
        h = model(x * scale + shift)
        return h * other.sum() if mode == "mul" else h

    def loss_of(use):
        model.zero_grad()
        a.grad = b.grad = None
        y = checkpoint(fn, a, 0.5, "mul", other=b, shift=2.0) if use else fn(a, 0.5, "mul", other=b, shift=2.0)
        (y * y).sum().backward()
        return _grads(model, a, b)

    for u, v in zip(loss_of(False), loss_of(True)):
        np.testing.assert_array_equal(u, v)


def test_nested_checkpoints():
    model = _mlp(0.2)
    inner = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).to(dlkern.float64)
    x = _x()

    def outer(t):
        return checkpoint(inner, model(t)) * 2

    def run(use):
        model.zero_grad()
        inner.zero_grad()
        x.grad = None
        dlkern.manual_seed(3)
        y = checkpoint(outer, x) if use else inner(model(x)) * 2
        y.sum().backward()
        return _grads(model, x) + [p.grad.numpy().copy() for p in inner.parameters()]

    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


def test_input_without_grad_still_trains_the_parameters():
    model = _mlp()
    x = _x(requires_grad=False)
    y = checkpoint(model, x)
    y.sum().backward()
    expected = [p.grad.numpy().copy() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for p, e in zip(model.parameters(), expected):
        np.testing.assert_array_equal(p.grad.numpy(), e)
    assert x.grad is None


def test_retain_graph_backward_twice_accumulates():
    model = _mlp()
    x = _x()
    y = checkpoint(model, x)
    y.sum().backward(retain_graph=True)
    once = x.grad.numpy().copy()
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * once, rtol=1e-15)


def test_non_contiguous_and_empty_inputs():
    model = _mlp()
    raw = _x(shape=(6, 5), requires_grad=False).numpy()
    xt = dlkern.tensor(raw, requires_grad=True).transpose(0, 1)   # (5, 6), non-contiguous, non-leaf
    checkpoint(model, xt).sum().backward()
    g = _grads(model)
    model.zero_grad()
    leaf = dlkern.tensor(raw.T.copy(), requires_grad=True)
    model(leaf).sum().backward()
    for a, b in zip(g, _grads(model)):
        np.testing.assert_array_equal(a, b)
    empty = dlkern.tensor(np.zeros((0, 6)), requires_grad=True)
    y = checkpoint(model, empty)
    assert y.shape == (0, 4)
    y.sum().backward()
    assert empty.grad.shape == (0, 6)


def test_checkpoint_sequential_matches():
    model = _mlp(0.2)
    x = _x()

    def run(use):
        model.zero_grad()
        x.grad = None
        dlkern.manual_seed(9)
        y = checkpoint_sequential(model, 2, x) if use else model(x)
        y.sum().backward()
        return _grads(model, x)

    for a, b in zip(run(False), run(True)):
        np.testing.assert_array_equal(a, b)


def test_errors():
    x = _x()
    with pytest.raises(TypeError, match="checkpoint: function must be callable"):
        checkpoint(3, x)
    with pytest.raises(TypeError, match="checkpoint: fn must return one Tensor"):
        checkpoint(lambda t: (t, t), x)
    with pytest.raises(ValueError, match="at least one Tensor"):
        checkpoint(lambda s: s, 2.0)
    with pytest.raises(TypeError, match="use_reentrant"):
        checkpoint(lambda t: t * 2, x, use_reentrant=None)
    with pytest.raises(ValueError, match="Unexpected keyword"):
        checkpoint(lambda t, k=1: t * k, x, use_reentrant=True, k=2)
    with pytest.raises(ValueError, match="checkpoint_sequential: segments"):
        checkpoint_sequential(_mlp(), 0, x)


def test_torch_parity_small_mlp():
    torch = pytest.importorskip("torch")
    import torch.utils.checkpoint as tcp
    model = _mlp()
    tm = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for tl, dl in zip([tm[0], tm[2]], lins):
            tl.weight.copy_(torch.from_numpy(dl.weight.detach().numpy().copy()))
            tl.bias.copy_(torch.from_numpy(dl.bias.detach().numpy().copy()))
    x = np.random.default_rng(4).normal(size=(5, 6))
    xd = dlkern.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    (checkpoint(model, xd) ** 2).sum().backward()
    (tcp.checkpoint(tm, xt, use_reentrant=False) ** 2).sum().backward()
    np.testing.assert_allclose(xd.grad.numpy(), xt.grad.numpy(), rtol=1e-12, atol=1e-14)
    for tl, dl in zip([tm[0], tm[2]], lins):
        np.testing.assert_allclose(dl.weight.grad.numpy(), tl.weight.grad.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dl.bias.grad.numpy(), tl.bias.grad.numpy(), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- GPT

def _gpt_grads(checkpointed, dropout=0.2):
    dlkern.manual_seed(0)
    m = GPT(11, block_size=8, n_layer=2, n_head=2, d_model=8, dropout=dropout, dtype=np.float64)
    m.checkpoint_activations = checkpointed
    idx = np.random.default_rng(0).integers(0, 11, size=(3, 8))
    dlkern.manual_seed(5)
    out = m(dlkern.tensor(idx))
    F.cross_entropy(out.reshape(-1, 11), dlkern.tensor(idx.reshape(-1))).backward()
    return out.detach().numpy(), {n: p.grad.numpy() for n, p in m.named_parameters()}, m


def test_gpt_checkpointed_blocks_give_the_same_gradients():
    out0, g0, _ = _gpt_grads(False)
    out1, g1, m = _gpt_grads(True)
    np.testing.assert_array_equal(out0, out1)
    assert g0.keys() == g1.keys()
    for k in g0:
        np.testing.assert_array_equal(g0[k], g1[k], err_msg=k)
    m.eval()  # eval mode (and generation with caches) runs the blocks plainly
    with dlkern.no_grad():
        assert m(dlkern.tensor(np.zeros((1, 4), np.int64))).grad_fn is None


def test_train_gpt_checkpoint_activations_cli(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question.\n" * 40)
    small = ["--n-layer", "2", "--n-head", "2", "--d-model", "16", "--block-size", "16", "--batch-size", "4",
             "--eval-interval", "2", "--eval-batches", "1", "--sample-tokens", "0", "--threads", "1",
             "--text", str(text), "--steps", "2"]
    losses = []
    for extra in ([], ["--checkpoint-activations"]):
        rc = main(["train", "--model", "gpt", "--checkpoint", str(tmp_path / "g.npz")] + small + extra)
        out = capsys.readouterr().out
        assert rc == 0, out
        losses.append([line.split("train loss ")[1].split()[0] for line in out.splitlines() if "train loss" in line])
    assert losses[0] == losses[1] and losses[0]      # the same training run, printed to 4 digits
    assert main(["train", "--model", "lstm", "--checkpoint-activations", "--text", str(text), "--steps", "1"]) == 2
    assert "--checkpoint-activations is for --model gpt" in capsys.readouterr().err


def test_checkpoint_on_the_cuda_host_twin():
    import host_cuda
    from dlkern.devices import CUDADevice

    dev = CUDADevice(0, module=host_cuda)
    model = _mlp(0.3)
    x = _x()
    _, g0 = _run(model, x, False)
    model.to(dev)
    model.zero_grad()
    xd = dlkern.tensor(x.detach().numpy(), device=dev, requires_grad=True)
    dlkern.manual_seed(7)
    y = checkpoint(model, xd)
    (y * y).sum().backward()
    got = [p.grad.cpu().numpy() for p in model.parameters()] + [xd.grad.cpu().numpy()]
    # the twin's dropout draws its own masks: compare with the plain run on the twin
    model.zero_grad()
    xd2 = dlkern.tensor(x.detach().numpy(), device=dev, requires_grad=True)
    dlkern.manual_seed(7)
    y2 = model(xd2)
    (y2 * y2).sum().backward()
    ref = [p.grad.cpu().numpy() for p in model.parameters()] + [xd2.grad.cpu().numpy()]
    assert len(got) == len(g0)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
