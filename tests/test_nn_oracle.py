"""Optional extra oracle: a small network's forward and parameter gradients against
PyTorch (skipped without torch). The primary
references are the NumPy ones in test_nn.py / test_losses.py."""

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
import dlkern.nn.functional as F

torch = pytest.importorskip("torch")


def build(lib):
    return lib.Sequential(
        lib.Conv2d(3, 8, 3, padding=1), lib.BatchNorm2d(8), lib.ReLU(), lib.MaxPool2d(2),
        lib.Conv2d(8, 8, 3, stride=2, groups=2), lib.GroupNorm(4, 8), lib.GELU(), lib.AvgPool2d(2, 1),
        lib.AdaptiveAvgPool2d(2), lib.Flatten(), lib.Linear(32, 16), lib.LayerNorm(16), lib.SiLU(),
        lib.Linear(16, 5))


def test_small_cnn_matches_torch():
    torch.manual_seed(0)
    tnet = build(torch.nn).double()
    net = build(nn).double()
    net.load_state_dict({k: v.detach().numpy() for k, v in tnet.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 12, 12))
    y = rng.integers(0, 5, 4)
    for step in range(2):  # the second step uses the updated running statistics
        tnet.zero_grad()
        net.zero_grad()
        tout = tnet(torch.from_numpy(x))
        tloss = torch.nn.functional.cross_entropy(tout, torch.from_numpy(y), label_smoothing=0.1)
        tloss.backward()
        out = net(dlkern.tensor(x))
        loss = F.cross_entropy(out, dlkern.tensor(y), label_smoothing=0.1)
        loss.backward()
        np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-10)
        tparams = dict(tnet.named_parameters())
        for name, p in net.named_parameters():
            np.testing.assert_allclose(p.grad.data, tparams[name].grad.numpy(), rtol=1e-7, atol=1e-10,
                                       err_msg=name)
        tbufs = dict(tnet.named_buffers())
        for name, b in net.named_buffers():
            np.testing.assert_allclose(b.data, tbufs[name].numpy(), rtol=1e-10, err_msg=name)
    net.eval()
    tnet.eval()
    np.testing.assert_allclose(net(dlkern.tensor(x)).data, tnet(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-9, atol=1e-11)
