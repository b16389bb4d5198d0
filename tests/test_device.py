"""Tensors, modules and optimizers on a CUDA device, checked against the same work on
the CPU (float64, so the comparison is tight).

Every test runs on two CUDA backends: the host twin of dlkern._C_cuda (tests/host_cuda.py:
the real DeviceArray surface, kernels computed on the host), which runs everywhere and
checks the device-neutral Python layer, and the real module on a GPU (skipped without
one). The twin also counts host transfers, so "a training step never copies to the host"
is checked here.
"""

import numpy as np
import pytest

import dlkern
from dlkern import nn, optim
from dlkern.device import CUDADevice
import dlkern.nn.functional as F

import host_cuda
from cuda_support import HAS_GPU

BACKENDS = [
    pytest.param("twin", id="host-twin"),
    pytest.param("gpu", id="gpu", marks=pytest.mark.skipif(
        not HAS_GPU, reason="needs a CUDA device: dlkern._C_cuda is missing or no usable CUDA device is present")),
]


@pytest.fixture(params=BACKENDS)
def dev(request):
    if request.param == "twin":
        return CUDADevice(0, module=host_cuda)
    return dlkern.device("cuda")


def host(t):
    """A tensor's values as a NumPy array, whatever its device."""
    return t.detach().cpu().numpy()


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------- moving tensors

def test_to_device_and_back_keeps_values_dtype_and_shape(dev):
    for dtype in (np.float32, np.float64, np.int64):
        a = (rng().standard_normal((3, 4, 5)) * 10).astype(dtype)
        t = dlkern.tensor(a).to(dev)
        assert t.device == dev and t.is_cuda and t.dtype == dtype and t.shape == (3, 4, 5)
        assert isinstance(t.data, dev.array_type)
        back = t.cpu()
        assert back.device == "cpu"
        np.testing.assert_array_equal(back.numpy(), a)


def test_tensor_constructor_and_factories_on_device(dev):
    t = dlkern.tensor([[1.0, 2.0], [3.0, 4.0]], device=dev)
    np.testing.assert_array_equal(host(t), [[1, 2], [3, 4]])
    assert t.dtype == np.float32
    z = dlkern.zeros(2, 3, device=dev)
    assert z.device == dev and z.shape == (2, 3) and not host(z).any()
    assert host(dlkern.arange(5, device=dev)).tolist() == [0, 1, 2, 3, 4]
    assert t.sum().item() == 10.0
    assert "device='cuda:0'" in repr(t)


def test_host_conversions_of_a_device_tensor_are_explicit(dev):
    t = dlkern.tensor([1.0, 2.0]).to(dev)
    with pytest.raises(TypeError, match="cpu"):
        t.numpy()
    with pytest.raises(TypeError):
        np.asarray(t)
    with pytest.raises(TypeError):
        np.asarray(t.data)


def test_mixing_devices_in_one_op_is_a_clear_error(dev):
    a = dlkern.tensor([1.0, 2.0])
    b = a.to(dev)
    with pytest.raises(RuntimeError, match="same device"):
        a + b
    with pytest.raises(RuntimeError, match="different devices: cuda:0 and cpu"):
        b @ dlkern.tensor([[1.0], [2.0]])
    with pytest.raises(TypeError, match="cpu"):
        b + np.ones(2, np.float32)


def test_gradient_flows_back_through_to():
    dev = CUDADevice(0, module=host_cuda)
    x = dlkern.tensor(rng().standard_normal(5), dtype=np.float64, requires_grad=True)
    y = x.to(dev)
    (y * y).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.detach().numpy())


# ---------------------------------------------------------------------- op parity

def _inputs(shapes, seed=0, positive=False):
    r = rng(seed)
    out = []
    for s in shapes:
        a = r.standard_normal(s)
        out.append(np.abs(a) + 0.5 if positive else a)
    return out


OPS = {
    "add_broadcast": (lambda a, b: (a + b * 2.0 - 1.0).sum(), [(4, 5), (5,)]),
    "mul_div": (lambda a, b: (a * b / (b * b + 1.0)).mean(), [(3, 4), (3, 4)]),
    "pow_exp_log": (lambda a: (a ** 2 + a.exp() + (a * a + 1.0).log()).sum(), [(6,)]),
    "sqrt_tanh_sigmoid": (lambda a: ((a * a + 1.0).sqrt() * a.tanh() + a.sigmoid()).sum(), [(7,)]),
    "relu_abs_neg": (lambda a: (a.relu() - abs(a) + (-a)).sum(), [(9,)]),
    "sum_mean_dims": (lambda a: a.sum(dim=1).mean() + a.mean(dim=(0, 2), keepdim=True).sum(), [(2, 3, 4)]),
    "max_min_dim": (lambda a: a.max(dim=1).values.sum() + a.min(dim=0).values.sum() + a.max(), [(4, 5)]),
    "var_std": (lambda a: a.var(dim=0).sum() + a.std(), [(5, 3)]),
    "matmul_batched": (lambda a, b: (a @ b).sum(), [(2, 3, 4), (4, 5)]),
    "softmax_logsoftmax": (lambda a: (a.softmax(-1) * a).sum() + a.log_softmax(dim=1)[:, 0].sum(), [(4, 6)]),
    "getitem_basic": (lambda a: a[1:, ::2].sum() + a[0, -1] * 3.0 + a[..., None][2].sum(), [(4, 5)]),
    "reshape_transpose_permute": (lambda a: (a.reshape(6, 4).t() @ a.reshape(6, 4)).sum()
                                  + a.permute(2, 0, 1).flatten().sum(), [(2, 3, 4)]),
    "cat_stack_split": (lambda a, b: (dlkern.cat([a, b], dim=1) ** 2).sum()
                        + dlkern.stack([a, b]).sum(dim=0).max() + a.split(1, dim=1)[1].sum(), [(3, 2), (3, 2)]),
    "where_masked_fill_tril": (lambda a: dlkern.where(a > 0, a, a * 0.1).sum()
                               + a.masked_fill(a < -0.5, 0.0).sum() + a.tril().sum() + a.triu(1).sum(), [(5, 5)]),
    "gelu_silu_softplus_elu": (lambda a: (F.gelu(a) + F.gelu(a, approximate="tanh") + F.silu(a)
                                          + F.softplus(a) + F.elu(a)).sum(), [(8,)]),
    "layer_norm_rms_norm": (lambda a, w: (F.layer_norm(a, (6,), w, w * 0.5) * a).sum()
                            + (F.rms_norm(a, (6,), w) * a).sum(), [(3, 6), (6,)]),
    "linear": (lambda x, w, b: (F.linear(x, w, b) ** 2).sum(), [(4, 3), (5, 3), (5,)]),
    "conv2d_groups_stride": (lambda x, w, b: (F.conv2d(x, w, b, stride=2, padding=1, groups=2) ** 2).sum(),
                             [(2, 4, 7, 7), (6, 2, 3, 3), (6,)]),
    "conv1d_dilated": (lambda x, w: (F.conv1d(x, w, padding=2, dilation=2) ** 2).sum(), [(2, 3, 9), (4, 3, 3)]),
    "pooling": (lambda x: (F.max_pool2d(x, 3, stride=2, padding=1) ** 2).sum()
                + F.avg_pool2d(x, 2, ceil_mode=True, count_include_pad=False).sum()
                + (F.adaptive_avg_pool2d(x, (2, 3)) ** 2).sum(), [(2, 3, 7, 8)]),
    "logsumexp_expand": (lambda a: a.logsumexp(dim=1).sum() + a[:, :1].expand(4, 3).sum(), [(4, 3)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_and_gradient_match_cpu(dev, name):
    fn, shapes = OPS[name]
    arrays = _inputs(shapes, seed=len(name))
    cpu_in = [dlkern.tensor(a, dtype=np.float64, requires_grad=True) for a in arrays]
    dev_in = [dlkern.tensor(a, dtype=np.float64).to(dev).requires_grad_() for a in arrays]
    want = fn(*cpu_in)
    got = fn(*dev_in)
    assert got.device == dev
    np.testing.assert_allclose(host(got), host(want), rtol=1e-10, atol=1e-12)
    want.backward()
    got.backward()
    for c, d in zip(cpu_in, dev_in):
        assert d.grad.device == dev
        np.testing.assert_allclose(host(d.grad), host(c.grad), rtol=1e-10, atol=1e-12)


def test_losses_and_embedding_match_cpu(dev):
    r = rng(3)
    logits = r.standard_normal((6, 5))
    target = r.integers(0, 5, 6)
    target[2] = -100
    table = r.standard_normal((7, 4))
    idx = np.array([[1, 3, 3], [6, 0, 1]])
    results = []
    for d in ("cpu", dev):
        x = dlkern.tensor(logits, dtype=np.float64).to(d).requires_grad_()
        t = dlkern.tensor(target).to(d)
        emb = nn.Embedding(7, 4)
        emb.weight.data = table.copy()
        emb.to(d)
        i = dlkern.tensor(idx).to(d)
        loss = F.cross_entropy(x, t, label_smoothing=0.1) + F.mse_loss(emb(i), emb(i) * 0.5 + 1.0)
        loss.backward()
        results.append((host(loss), host(x.grad), host(emb.weight.grad)))
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------- modules and optimizers

def _mlp(seed):
    dlkern.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).double()


OPTIMIZERS = {
    "sgd_momentum_nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam_amsgrad": lambda p: optim.Adam(p, lr=1e-2, amsgrad=True, weight_decay=1e-3),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2),
    "rmsprop_centered": lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.5, centered=True),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.1, initial_accumulator_value=0.1),
    "radam": lambda p: optim.RAdam(p, lr=1e-2),
}


def _train(model, make_opt, device, steps=6, clip=None):
    r = rng(11)
    x = r.standard_normal((32, 6))
    y = r.integers(0, 3, 32)
    model.to(device)
    opt = make_opt(model.parameters())
    xt = dlkern.tensor(x, dtype=np.float64).to(device)
    yt = dlkern.tensor(y).to(device)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    return losses, opt


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_steps_on_device_match_cpu(dev, name):
    cpu_model, dev_model = _mlp(5), _mlp(5)
    params = list(dev_model.parameters())
    cpu_losses, _ = _train(cpu_model, OPTIMIZERS[name], "cpu", clip=0.5)
    dev_losses, opt = _train(dev_model, OPTIMIZERS[name], dev, clip=0.5)
    assert [p is q for p, q in zip(params, dev_model.parameters())] == [True] * len(params)
    np.testing.assert_allclose(dev_losses, cpu_losses, rtol=1e-10)
    for (n, p), q in zip(cpu_model.named_parameters(), dev_model.parameters()):
        assert q.device == dev, n
        np.testing.assert_allclose(host(q), host(p), rtol=1e-9, atol=1e-12, err_msg=n)
    # The optimizer's state lives on the device and saves as host arrays.
    state = opt.state_dict()["state"]
    assert all(isinstance(v, np.ndarray) for s in state.values() for v in s.values() if hasattr(v, "shape"))


@pytest.mark.parametrize("name", ["mlp", "lenet", "gpt"])
def test_a_training_step_copies_nothing_between_host_and_device(name):
    """Once the batch is on the device, forward, backward and the optimizer step make no
    host<->device copies (each would be a synchronisation on a GPU)."""
    from dlkern.models import GPT, LeNet5
    dev = CUDADevice(0, module=host_cuda)
    dlkern.manual_seed(1)
    r = rng(2)
    if name == "mlp":
        model, x, y = _mlp(1), r.standard_normal((16, 6)), r.integers(0, 3, 16)
    elif name == "lenet":
        model, x, y = LeNet5(), r.standard_normal((4, 1, 28, 28)).astype(np.float32), r.integers(0, 10, 4)
    else:
        model = GPT(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_kv_head=2, d_model=16, dropout=0.1)
        x, y = r.integers(0, 11, (3, 8)), r.integers(0, 11, (3, 8))
    model.to(dev)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    x, y = dlkern.tensor(x).to(dev), dlkern.tensor(y).to(dev)

    def step():
        opt.zero_grad()
        out = model(x)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
        opt.step()

    step()
    before = dict(host_cuda.transfers)
    for _ in range(3):
        step()
    assert host_cuda.transfers == before


def test_module_state_dict_moves_between_devices(dev):
    a, b = _mlp(2), _mlp(3)
    a.to(dev)
    b.load_state_dict(a.state_dict())  # device -> cpu
    for p, q in zip(a.parameters(), b.parameters()):
        assert q.device == "cpu"
        np.testing.assert_array_equal(host(q), host(p))
    c = _mlp(4).to(dev)
    c.load_state_dict(b.state_dict())  # cpu -> device
    for p, q in zip(b.parameters(), c.parameters()):
        assert q.device == dev
        np.testing.assert_array_equal(host(q), host(p))
    vector = nn.utils.parameters_to_vector(a.parameters())
    assert isinstance(vector, dev.array_type)
    np.testing.assert_array_equal(vector.numpy(), np.concatenate([host(p).ravel() for p in a.parameters()]))
    a.cpu()
    assert all(p.device == "cpu" for p in a.parameters())


def test_optimizer_state_dict_round_trips_through_the_host(dev):
    model = _mlp(6)
    _, opt = _train(model, OPTIMIZERS["adam_amsgrad"], dev, steps=2)
    saved = opt.state_dict()
    fresh = optim.Adam(model.parameters(), lr=1e-2, amsgrad=True, weight_decay=1e-3)
    fresh.load_state_dict(saved)
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            got = fresh.state[p][key]
            assert isinstance(got, dev.array_type)
            np.testing.assert_array_equal(got.numpy(), opt.state[p][key].numpy())


def test_clip_grad_value_and_norm_kinds_on_device(dev):
    for norm_type in (2.0, 1.0, float("inf"), 3.0):
        grads = _inputs([(4, 3), (5,)], seed=9)
        cpu = [dlkern.tensor(g, dtype=np.float64, requires_grad=True) for g in grads]
        gpu = [dlkern.tensor(g, dtype=np.float64).to(dev).requires_grad_() for g in grads]
        for ps in (cpu, gpu):
            for p, g in zip(ps, grads):
                p.grad = dlkern.tensor(g * 10).to(p.device)
        want = nn.utils.clip_grad_norm_(cpu, 1.0, norm_type)
        got = nn.utils.clip_grad_norm_(gpu, 1.0, norm_type)
        np.testing.assert_allclose(host(got), host(want), rtol=1e-12)
        for c, g in zip(cpu, gpu):
            np.testing.assert_allclose(host(g.grad), host(c.grad), rtol=1e-12)
    nn.utils.clip_grad_value_(gpu, 0.1)
    assert all(np.abs(host(p.grad)).max() <= 0.1 for p in gpu)


# ---------------------------------------------------------------------- the models

def _model_step_results(make_model, make_batch, device, steps=2, lr=1e-2):
    model = make_model().to(device)
    opt = optim.AdamW(model.parameters(), lr=lr)
    x, y = make_batch()
    xt, yt = dlkern.tensor(x).to(device), dlkern.tensor(y).to(device)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        logits = model(xt)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yt.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return losses, [host(p) for p in model.parameters()]


def _check_model_on_device(dev, make_model, make_batch):
    want_losses, want = _model_step_results(make_model, make_batch, "cpu")
    got_losses, got = _model_step_results(make_model, make_batch, dev)
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-9)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_lenet_trains_on_device_like_on_cpu(dev):
    from dlkern.models import LeNet5

    def make_model():
        dlkern.manual_seed(3)
        return LeNet5().double()

    def make_batch():
        r = rng(4)
        return r.standard_normal((4, 1, 28, 28)), r.integers(0, 10, 4)

    _check_model_on_device(dev, make_model, make_batch)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_gpt_trains_on_device_like_on_cpu(dev, pos):
    from dlkern.models import GPT

    def make_model():
        dlkern.manual_seed(5)
        return GPT(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_kv_head=2, d_model=16,
                   pos_encoding=pos, dtype=np.float64)

    def make_batch():
        r = rng(6)
        tokens = r.integers(0, 11, (3, 9))
        return tokens[:, :-1], tokens[:, 1:]

    _check_model_on_device(dev, make_model, make_batch)


def test_dropout_on_device_keeps_the_expected_fraction_and_scales(dev):
    dlkern.manual_seed(0)
    x = dlkern.ones(200, 100, device=dev)
    y = host(F.dropout(x, p=0.25))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    dlkern.manual_seed(0)
    np.testing.assert_array_equal(host(F.dropout(x, p=0.25)), y)  # follows dlkern.manual_seed


LOSSES = {
    "mse": lambda x, t, c: F.mse_loss(x, t),
    "l1_sum": lambda x, t, c: F.l1_loss(x, t, reduction="sum"),
    "bce": lambda x, t, c: F.binary_cross_entropy(x.sigmoid(), (t > 0).double()),
    "bce_logits": lambda x, t, c: F.binary_cross_entropy_with_logits(x, (t > 0).double(),
                                                                     pos_weight=dlkern.ones(4, dtype=np.float64,
                                                                                            device=x.device) * 2),
    "cross_entropy_weighted": lambda x, t, c: F.cross_entropy(x, c, weight=dlkern.arange(1.0, 5.0, dtype=np.float64,
                                                                                         device=x.device)),
    "cross_entropy_probs": lambda x, t, c: F.cross_entropy(x, t.softmax(-1), label_smoothing=0.2),
    "nll": lambda x, t, c: F.nll_loss(x.log_softmax(-1), c, reduction="sum"),
    "focal": lambda x, t, c: F.focal_loss(x, c, gamma=2.0, alpha=[0.1, 0.2, 0.3, 0.4]),
    "sigmoid_focal": lambda x, t, c: F.sigmoid_focal_loss(x, (t > 0).double(), reduction="mean"),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_functions_match_cpu(dev, name):
    r = rng(7)
    x_np, t_np = r.standard_normal((5, 4)), r.standard_normal((5, 4))
    c_np = r.integers(0, 4, 5)
    out = []
    for d in ("cpu", dev):
        x = dlkern.tensor(x_np, dtype=np.float64).to(d).requires_grad_()
        loss = LOSSES[name](x, dlkern.tensor(t_np, dtype=np.float64).to(d), dlkern.tensor(c_np).to(d))
        loss.backward()
        out.append((host(loss), host(x.grad)))
    for got, want in zip(out[1], out[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal"])
def test_attention_and_multihead_attention_match_cpu(dev, mask_kind):
    r = rng(8)
    q_np, k_np, v_np = r.standard_normal((2, 4, 5, 8)), r.standard_normal((2, 2, 6, 8)), r.standard_normal((2, 2, 6, 8))
    mask_np = {"none": None, "bool": r.random((5, 6)) > 0.3, "float": r.standard_normal((2, 1, 5, 6)),
               "causal": None}[mask_kind]
    x_np = r.standard_normal((2, 6, 16))
    pad = np.zeros((2, 6), bool)
    pad[1, 4:] = True
    results = []
    for d in ("cpu", dev):
        q, k, v = (dlkern.tensor(a, dtype=np.float64).to(d).requires_grad_() for a in (q_np, k_np, v_np))
        mask = None if mask_np is None else dlkern.tensor(mask_np).to(d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask_kind == "causal",
                                             enable_gqa=True)
        dlkern.manual_seed(1)
        mha = nn.MultiheadAttention(16, 4, batch_first=True, num_kv_heads=2, dtype=np.float64).to(d)
        x = dlkern.tensor(x_np, dtype=np.float64).to(d).requires_grad_()
        y = mha(x, x, x, key_padding_mask=dlkern.tensor(pad).to(d), need_weights=False)[0]
        ((out * out).sum() + (y ** 2).mean()).backward()
        results.append([host(out), host(y), host(q.grad), host(k.grad), host(v.grad), host(x.grad),
                        host(mha.in_proj_weight.grad)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- the training CLI

@pytest.fixture
def cuda_is_twin(monkeypatch):
    """dlkern.device("cuda") answers with the host twin (the CLI asks for it by name)."""
    import importlib
    device_module = importlib.import_module("dlkern.device")
    tensor_module = importlib.import_module("dlkern.tensor")
    twin = CUDADevice(0, module=host_cuda)
    real = device_module.device

    def fake(spec="cpu"):
        if isinstance(spec, str) and spec.split(":")[0] == "cuda":
            return twin
        return real(spec)
    for target in (device_module, tensor_module, dlkern):
        monkeypatch.setattr(target, "device" if target is not tensor_module else "_get_device", fake)
    return twin


def test_train_cli_runs_on_the_device(cuda_is_twin, tmp_path, capsys):
    from dlkern.__main__ import main
    ckpt = tmp_path / "mlp.npz"
    assert main(["train", "--model", "mlp", "--epochs", "1", "--device", "cuda", "--no-progress",
                 "--checkpoint", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "on cuda:0" in out and "test accuracy" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.8  # digits after one epoch of Adam
    text = tmp_path / "corpus.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 60)
    assert main(["train", "--model", "gpt", "--text", str(text), "--steps", "4", "--device", "cuda",
                 "--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "16", "--batch-size", "4",
                 "--eval-interval", "2", "--eval-batches", "1", "--sample-tokens", "5",
                 "--checkpoint", str(tmp_path / "gpt.npz")]) == 0
    out = capsys.readouterr().out
    assert "on cuda:0" in out and "--- sample" in out


def test_cached_decoding_on_device_matches_cpu(dev):
    """A GPT's forward over a prompt, then token by token against KV caches on the device,
    equals the same on the CPU (and the cache lives on the device)."""
    from dlkern.models import GPT
    tokens = rng(12).integers(0, 11, (2, 7))
    outs = []
    for d in ("cpu", dev):
        dlkern.manual_seed(9)
        model = GPT(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_kv_head=2, d_model=16,
                    pos_encoding="rope", dtype=np.float64).to(d)
        caches = model.make_cache(2)
        assert caches[0].device == d and isinstance(caches[0].k, d.array_type if d != "cpu" else np.ndarray)
        with dlkern.no_grad():
            logits = [host(model(dlkern.tensor(tokens[:, :4]).to(d), cache=caches))]
            for t in range(4, 7):
                logits.append(host(model(dlkern.tensor(tokens[:, t:t + 1]).to(d), cache=caches)))
        outs.append(np.concatenate(logits, axis=1))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-9, atol=1e-12)


def test_initialisers_fill_device_parameters_like_cpu_ones(dev):
    layers = []
    for d in ("cpu", dev):
        layer = nn.Linear(5, 4).to(d)
        dlkern.manual_seed(3)
        nn.init.xavier_uniform_(layer.weight)
        nn.init.normal_(layer.bias, std=0.5)
        nn.init.orthogonal_(layer.weight)
        layers.append(layer)
    for p, q in zip(layers[0].parameters(), layers[1].parameters()):
        assert q.device == dev
        np.testing.assert_array_equal(host(q), host(p))
    nn.init.zeros_(layers[1].bias)
    assert not host(layers[1].bias).any()


@pytest.mark.parametrize("pos", ["learned", "alibi"])
def test_gpt_generate_on_device_matches_cpu(dev, pos):
    from dlkern.models import GPT
    prompt = rng(13).integers(0, 11, (2, 3))
    outs = []
    for d in ("cpu", dev):
        dlkern.manual_seed(4)
        model = GPT(vocab_size=11, block_size=16, n_layer=2, n_head=4, n_kv_head=2, d_model=16, pos_encoding=pos,
                    dtype=np.float64).to(d)
        outs.append([model.generate(prompt, 8, temperature=0),
                     model.generate(dlkern.tensor(prompt).to(d), 6, temperature=0.9, top_k=4, rng=5)])
    for got, want in zip(outs[1], outs[0]):
        np.testing.assert_array_equal(got, want)

