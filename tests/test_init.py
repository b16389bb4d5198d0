"""dlkern.nn.init: distribution statistics of every initialiser, and each layer's
default initialisation (as PyTorch)."""

import math

import numpy as np
import pytest

import dlkern
import dlkern.nn as nn
from dlkern.nn import init


def stats(t):
    return float(t.data.mean()), float(t.data.std())


def test_uniform_normal_constant():
    dlkern.manual_seed(0)
    t = dlkern.empty(300, 300)
    init.uniform_(t, -2, 4)
    assert t.data.min() >= -2 and t.data.max() < 4
    m, s = stats(t)
    assert abs(m - 1) < 0.03 and abs(s - 6 / math.sqrt(12)) < 0.03
    init.normal_(t, 3.0, 0.5)
    m, s = stats(t)
    assert abs(m - 3) < 0.01 and abs(s - 0.5) < 0.01
    assert t.dtype == np.float32
    init.zeros_(t)
    assert (t.data == 0).all()
    init.ones_(t)
    assert (t.data == 1).all()
    init.constant_(t, 2.5)
    assert (t.data == 2.5).all()


@pytest.mark.parametrize("shape", [(200, 300), (64, 32, 3, 3)])
def test_xavier(shape):
    dlkern.manual_seed(1)
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    t = dlkern.empty(*shape)
    init.xavier_uniform_(t, gain=2.0)
    bound = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(t.data).max() <= bound and np.abs(t.data).max() > 0.95 * bound
    assert abs(stats(t)[1] - bound / math.sqrt(3)) < 0.03 * bound
    init.xavier_normal_(t)
    assert abs(stats(t)[1] - math.sqrt(2 / (fan_in + fan_out))) < 0.03 * math.sqrt(2 / (fan_in + fan_out))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming(mode):
    dlkern.manual_seed(2)
    t = dlkern.empty(256, 128, 3)
    fan = 128 * 3 if mode == "fan_in" else 256 * 3
    init.kaiming_normal_(t, mode=mode, nonlinearity="relu")
    std = math.sqrt(2) / math.sqrt(fan)
    assert abs(stats(t)[0]) < 0.02 * std and abs(stats(t)[1] - std) < 0.02 * std
    init.kaiming_uniform_(t, a=math.sqrt(5), mode=mode)
    bound = math.sqrt(3) * math.sqrt(2 / 6) / math.sqrt(fan)  # gain(leaky_relu, sqrt 5) = sqrt(1/3)
    assert np.abs(t.data).max() <= bound and np.abs(t.data).max() > 0.99 * bound
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(t, mode="fan")


@pytest.mark.parametrize("shape", [(20, 50), (50, 20), (8, 4, 3)])
def test_orthogonal(shape):
    dlkern.manual_seed(3)
    t = dlkern.empty(*shape, dtype=dlkern.float64)
    init.orthogonal_(t, gain=1.5)
    w = t.data.reshape(shape[0], -1)
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    np.testing.assert_allclose(small, 2.25 * np.eye(small.shape[0]), atol=1e-10)


def test_calculate_gain():
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("linear") == 1
    assert abs(init.calculate_gain("leaky_relu", 0.2) - math.sqrt(2 / 1.04)) < 1e-12
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="2 dimensions"):
        init.xavier_uniform_(dlkern.empty(5))


def test_layer_default_init_as_pytorch():
    dlkern.manual_seed(4)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (lin.weight, lin.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.98 * bound
    assert abs(stats(lin.weight)[1] - bound / math.sqrt(3)) < 0.02 * bound
    conv = nn.Conv2d(16, 32, 3, groups=2)
    fan_in = 8 * 9
    for p in (conv.weight, conv.bias):
        assert np.abs(p.data).max() <= 1 / math.sqrt(fan_in)
    assert np.abs(conv.weight.data).max() > 0.98 / math.sqrt(fan_in)
    emb = nn.Embedding(500, 64)
    m, s = stats(emb.weight)
    assert abs(m) < 0.01 and abs(s - 1) < 0.01
    for layer in (nn.LayerNorm(8), nn.GroupNorm(2, 8), nn.BatchNorm1d(8)):
        assert (layer.weight.data == 1).all() and (layer.bias.data == 0).all()
    assert (nn.RMSNorm(8).weight.data == 1).all()
    bn = nn.BatchNorm2d(4)
    assert (bn.running_mean.data == 0).all() and (bn.running_var.data == 1).all()


@pytest.mark.parametrize("fn", [init.xavier_uniform_, init.xavier_normal_, init.kaiming_uniform_,
                                init.kaiming_normal_])
def test_fan_initialisers_leave_zero_element_tensors_alone(fn):
    """As PyTorch: a warning and no change, not a division by a zero fan."""
    t = dlkern.zeros(3, 0)
    with pytest.warns(UserWarning, match="zero-element tensors is a no-op"):
        assert fn(t) is t
    assert t.shape == (3, 0)


def test_zero_input_linear_layer():
    """nn.Linear(0, n) as PyTorch: weight (n, 0), bias bound 1/sqrt(0) taken as 0 (zeros),
    and the output is the bias for every row."""
    with pytest.warns(UserWarning, match="no-op"):
        layer = nn.Linear(0, 3)
    assert layer.weight.shape == (3, 0)
    np.testing.assert_array_equal(layer.bias.data, np.zeros(3, np.float32))
    out = layer(dlkern.zeros(2, 0))
    np.testing.assert_array_equal(out.data, np.zeros((2, 3), np.float32))
    out.sum().backward()
    assert layer.weight.grad.shape == (3, 0)
    np.testing.assert_array_equal(layer.bias.grad.data, [2, 2, 2])
