"""dlkern.adversarial (FGSM, PGD) and ``train --adversarial`` (issue 15, deliverable 3).

References: a linear model whose input gradient is known in closed form (NumPy), the
ball / range invariants, and the same algorithms written with torch autograd."""

import numpy as np
import pytest

import dlkern
from dlkern import adversarial, nn
from dlkern.__main__ import main


def _linear(d, c, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    lin = nn.Linear(d, c)
    if dtype == np.float64:
        lin = lin.to(dlkern.float64)
    w, b = rng.normal(size=(c, d)).astype(dtype), rng.normal(size=c).astype(dtype)
    lin.weight.data[...] = w
    lin.bias.data[...] = b
    return lin, w.astype(np.float64), b.astype(np.float64)


def _ce_input_grad(x, y, w, b):
    """d mean_n CE(x_n W^T + b, y_n) / dx = (softmax(z) - onehot(y)) W / N, in NumPy."""
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p @ w / len(y)


def _ce_loss(x, y, w, b):
    z = x @ w.T + b
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def _batch(n=6, d=5, c=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, size=(n, d))
    y = rng.integers(0, c, size=n)
    return x, y


@pytest.mark.parametrize("eps", [0.0, 0.03, 0.2])
def test_fgsm_is_x_plus_eps_sign_of_the_closed_form_gradient(eps):
    lin, w, b = _linear(5, 3)
    x, y = _batch()
    got = adversarial.fgsm(lin, dlkern.tensor(x), dlkern.tensor(y), eps)
    expected = np.clip(x + eps * np.sign(_ce_input_grad(x, y, w, b)), 0.0, 1.0)
    assert got.dtype == dlkern.float64 and not got.requires_grad and got.grad_fn is None
    np.testing.assert_array_equal(got.numpy(), expected)


def test_fgsm_custom_loss_and_clamp_none():
    # loss = sum(x w): the gradient is w on every sample; no clamp lets x leave [0, 1]
    lin, w, _ = _linear(4, 1, seed=3)
    x = np.full((3, 4), 0.99)
    got = adversarial.fgsm(lin, dlkern.tensor(x), None, 0.5, loss_fn=lambda out, y: out.sum(), clamp=None)
    np.testing.assert_array_equal(got.numpy(), x + 0.5 * np.sign(w[0]))
    clamped = adversarial.fgsm(lin, dlkern.tensor(x), None, 0.5, loss_fn=lambda out, y: out.sum(), clamp=(0, 1))
    np.testing.assert_array_equal(clamped.numpy(), np.clip(x + 0.5 * np.sign(w[0]), 0, 1))


def test_fgsm_non_contiguous_input_float32():
    lin, w, b = _linear(5, 3, dtype=np.float32)
    x, y = _batch()
    xt = dlkern.tensor(np.ascontiguousarray(x.T).astype(np.float32)).transpose(0, 1)  # non-contiguous view
    got = adversarial.fgsm(lin, xt, dlkern.tensor(y), 0.1)
    assert got.dtype == dlkern.float32
    g = _ce_input_grad(x.astype(np.float32).astype(np.float64), y, lin.weight.data.astype(np.float64),
                       lin.bias.data.astype(np.float64))
    expected = np.clip(x.astype(np.float32) + np.float32(0.1) * np.sign(g).astype(np.float32), 0, 1)
    np.testing.assert_array_equal(got.numpy(), expected)


def _trained_mlp(seed=0):
    dlkern.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).to(dlkern.float64)
    return model


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_in_ball_and_range_and_increases_loss(norm, random_start):
    model = _trained_mlp()
    x, y = _batch(n=8)
    eps = 0.1 if norm == "linf" else 0.3
    xt, yt = dlkern.tensor(x), dlkern.tensor(y)
    adv = adversarial.pgd(model, xt, yt, eps, alpha=eps / 4, steps=10, random_start=random_start, norm=norm)
    a = adv.numpy()
    assert a.min() >= 0.0 and a.max() <= 1.0
    if norm == "linf":
        assert np.abs(a - x).max() <= eps * (1 + 1e-12)
    else:
        assert np.sqrt(((a - x) ** 2).sum(1)).max() <= eps * (1 + 1e-12)
    with dlkern.no_grad():
        before = nn.functional.cross_entropy(model(xt), yt).item()
        after = nn.functional.cross_entropy(model(adv), yt).item()
    assert after > before + 1e-3


def test_pgd_clamp_active_near_the_range_edge():
    model = _trained_mlp()
    x = np.full((4, 5), 0.99)
    y = np.array([0, 1, 2, 0])
    adv = adversarial.pgd(model, dlkern.tensor(x), dlkern.tensor(y), 0.2, 0.05, 5, clamp=(0.0, 1.0))
    assert adv.numpy().max() <= 1.0 and adv.numpy().min() >= 0.79 - 1e-12


def test_pgd_one_step_without_random_start_equals_fgsm_when_alpha_is_eps():
    lin, w, b = _linear(5, 3)
    x, y = _batch()
    got = adversarial.pgd(lin, dlkern.tensor(x), dlkern.tensor(y), 0.1, 0.1, 1, random_start=False)
    expected = np.clip(x + 0.1 * np.sign(_ce_input_grad(x, y, w, b)), 0, 1)
    np.testing.assert_array_equal(got.numpy(), expected)


def test_pgd_l2_steps_follow_the_normalised_gradient():
    lin, w, b = _linear(5, 3)
    x, y = _batch()
    eps, alpha = 0.5, 0.05
    adv = x.copy()
    for _ in range(3):  # far inside the ball and the range: no projection is active
        g = _ce_input_grad(adv, y, w, b)
        adv = adv + alpha * g / (np.sqrt((g ** 2).sum(1, keepdims=True)) + 1e-12)
    got = adversarial.pgd(lin, dlkern.tensor(x), dlkern.tensor(y), eps, alpha, 3, random_start=False,
                          norm="l2", clamp=None)
    np.testing.assert_allclose(got.numpy(), adv, rtol=0, atol=1e-14)


def test_pgd_zero_steps_and_zero_eps():
    model = _trained_mlp()
    x, y = _batch()
    xt, yt = dlkern.tensor(x), dlkern.tensor(y)
    np.testing.assert_array_equal(adversarial.pgd(model, xt, yt, 0.1, 0.1, 0, random_start=False).numpy(), x)
    np.testing.assert_array_equal(adversarial.pgd(model, xt, yt, 0.0, 0.1, 5).numpy(), x)
    start = adversarial.pgd(model, xt, yt, 0.1, 0.1, 0, random_start=True).numpy()
    assert np.abs(start - x).max() <= 0.1 and not np.array_equal(start, x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_random_start_reproducible_with_a_seed(norm):
    model = _trained_mlp()
    x, y = _batch()
    xt, yt = dlkern.tensor(x), dlkern.tensor(y)
    runs = []
    for _ in range(2):
        dlkern.manual_seed(123)
        runs.append(adversarial.pgd(model, xt, yt, 0.1, 0.02, 3, norm=norm).numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    a = adversarial.pgd(model, xt, yt, 0.1, 0.02, 3, norm=norm, generator=np.random.default_rng(7)).numpy()
    b = adversarial.pgd(model, xt, yt, 0.1, 0.02, 3, norm=norm, generator=np.random.default_rng(7)).numpy()
    c = adversarial.pgd(model, xt, yt, 0.1, 0.02, 3, norm=norm, generator=np.random.default_rng(8)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_start_l2_is_inside_the_ball():
    model = _trained_mlp()
    x, y = _batch(n=50)
    start = adversarial.pgd(model, dlkern.tensor(x), dlkern.tensor(y), 0.2, 0.1, 0, norm="l2", clamp=None).numpy()
    r = np.sqrt(((start - x) ** 2).sum(1))
    assert r.max() <= 0.2 * (1 + 1e-12) and r.min() > 0.0


@pytest.mark.parametrize("training", [True, False])
def test_attacks_leave_model_mode_and_grads_alone(training):
    model = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Linear(8, 3)).to(dlkern.float64)
    model.train(training)
    params = list(model.parameters())
    params[0].grad = dlkern.ones(*params[0].shape, dtype=dlkern.float64)  # an existing gradient
    x, y = _batch()
    adversarial.fgsm(model, dlkern.tensor(x), dlkern.tensor(y), 0.1)
    adversarial.pgd(model, dlkern.tensor(x), dlkern.tensor(y), 0.1, 0.03, 3)
    assert model.training is training
    assert all(m.training is training for m in model.modules())
    np.testing.assert_array_equal(params[0].grad.numpy(), np.ones(params[0].shape))
    assert all(p.grad is None for p in params[1:])
    assert all(p.requires_grad for p in params)


def test_input_requires_grad_is_not_changed():
    model = _trained_mlp()
    x, y = _batch()
    xt = dlkern.tensor(x, requires_grad=True)
    adv = adversarial.pgd(model, xt, dlkern.tensor(y), 0.1, 0.03, 2)
    assert xt.requires_grad and xt.grad is None and not adv.requires_grad


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps=-0.1), "eps"), (dict(eps=float("nan")), "eps"), (dict(eps=True), "eps"),
    (dict(alpha=-1.0), "alpha"), (dict(steps=-1), "steps"), (dict(steps=1.5), "steps"),
    (dict(norm="l1"), "norm"), (dict(clamp=(1.0, 0.0)), "clamp"), (dict(clamp=3), "clamp"),
])
def test_pgd_errors(kwargs, match):
    model = _trained_mlp()
    x, y = _batch()
    args = dict(eps=0.1, alpha=0.01, steps=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"pgd: {match}"):
        adversarial.pgd(model, dlkern.tensor(x), dlkern.tensor(y), **args)


@pytest.mark.parametrize("eps", [-1, float("inf"), "0.1"])
def test_fgsm_errors(eps):
    model = _trained_mlp()
    x, y = _batch()
    with pytest.raises(ValueError, match="fgsm: eps"):
        adversarial.fgsm(model, dlkern.tensor(x), dlkern.tensor(y), eps)


def test_torch_parity_fgsm_and_pgd():
    torch = pytest.importorskip("torch")
    model = _trained_mlp()
    tm = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    with torch.no_grad():
        for tp, p in zip(tm.parameters(), model.parameters()):
            tp.copy_(torch.from_numpy(p.detach().numpy().copy()))
    x, y = _batch(n=8)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def torch_grad(xa):
        xa = xa.clone().requires_grad_(True)
        return torch.autograd.grad(torch.nn.functional.cross_entropy(tm(xa), ty), xa)[0]

    fg = (tx + 0.1 * torch_grad(tx).sign()).clamp(0, 1)
    np.testing.assert_array_equal(adversarial.fgsm(model, dlkern.tensor(x), dlkern.tensor(y), 0.1).numpy(),
                                  fg.numpy())
    adv = tx.clone()
    for _ in range(5):
        adv = (tx + (adv + 0.03 * torch_grad(adv).sign() - tx).clamp(-0.1, 0.1)).clamp(0, 1)
    got = adversarial.pgd(model, dlkern.tensor(x), dlkern.tensor(y), 0.1, 0.03, 5, random_start=False)
    np.testing.assert_allclose(got.numpy(), adv.numpy(), rtol=0, atol=1e-15)


def test_train_cli_adversarial_prints_clean_and_robust_accuracy(capsys):
    pytest.importorskip("sklearn")
    rc = main(["train", "--model", "mlp", "--epochs", "1", "--no-progress", "--threads", "1",
               "--adversarial", "pgd", "--eps", "0.125", "--pgd-steps", "2", "--clean-weight", "0.5"])
    out = capsys.readouterr().out
    assert rc == 0, out
    line = [s for s in out.splitlines() if s.startswith("robust:")][0]
    clean = float(line.split("clean test accuracy ")[1].split()[0])
    robust = float(line.split("test accuracy ")[-1])
    assert "PGD-10" in line and 0.0 <= robust <= clean <= 1.0 and clean > 0.5


def test_train_cli_fgsm_and_errors(capsys):
    pytest.importorskip("sklearn")
    assert main(["train", "--epochs", "1", "--no-progress", "--threads", "1", "--adversarial", "fgsm",
                 "--eps", "0.1"]) == 0
    assert "robust: clean test accuracy" in capsys.readouterr().out
    assert main(["train", "--epochs", "1", "--adversarial", "pgd"]) == 2
    assert "--adversarial needs --eps" in capsys.readouterr().err
    assert main(["train", "--epochs", "1", "--eps", "-1"]) == 2
    assert "--eps must be" in capsys.readouterr().err
    assert main(["train", "--epochs", "1", "--eps", "0.1", "--clean-weight", "2"]) == 2
    assert "--clean-weight" in capsys.readouterr().err


def test_attacks_on_the_cuda_host_twin():
    import host_cuda
    from dlkern.devices import CUDADevice

    dev = CUDADevice(0, module=host_cuda)
    model = _trained_mlp()
    x, y = _batch()
    ref = [adversarial.fgsm(model, dlkern.tensor(x), dlkern.tensor(y), 0.1).numpy(),
           adversarial.pgd(model, dlkern.tensor(x), dlkern.tensor(y), 0.3, 0.1, 3, random_start=False,
                           norm="l2").numpy()]
    model.to(dev)
    xd, yd = dlkern.tensor(x, device=dev), dlkern.tensor(y, device=dev)
    got = [adversarial.fgsm(model, xd, yd, 0.1),
           adversarial.pgd(model, xd, yd, 0.3, 0.1, 3, random_start=False, norm="l2")]
    for r, g in zip(ref, got):
        assert g.device == dev
        np.testing.assert_allclose(g.cpu().numpy(), r, rtol=0, atol=1e-14)
    start = adversarial.pgd(model, xd, yd, 0.1, 0.1, 0).cpu().numpy()
    assert np.abs(start - x).max() <= 0.1 and start.min() >= 0
