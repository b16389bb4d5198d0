"""End to end: a small MLP trained by hand-written SGD learns a nonlinear problem
(two interleaved moons-like spirals need the hidden layers), using only layers whose
ops need no merged kernel."""

import numpy as np

import dlkern
import dlkern.nn as nn
import dlkern.nn.functional as F


def make_data(rng, n=256):
    t = rng.uniform(0, 3 * np.pi, n)
    label = rng.integers(0, 2, n)
    r = t / (3 * np.pi) + 0.1
    angle = t + np.pi * label
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], 1) + rng.normal(0, 0.02, (n, 2))
    return x.astype(np.float32), label.astype(np.float32)


def test_mlp_learns_spirals():
    dlkern.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))
    xt, yt = dlkern.tensor(x), dlkern.tensor(y[:, None])
    velocity = [np.zeros_like(p.data) for p in model.parameters()]
    first = None
    for step in range(1500):
        model.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(xt), yt)
        loss.backward()
        first = first if first is not None else loss.item()
        with dlkern.no_grad():
            for p, v in zip(model.parameters(), velocity):
                v *= 0.9
                v += p.grad.data
                p.data -= 0.2 * v
    model.eval()
    with dlkern.no_grad():
        pred = (model(xt).data[:, 0] > 0).astype(np.float32)
    accuracy = (pred == y).mean()
    assert loss.item() < 0.25 * first, (first, loss.item())
    assert accuracy > 0.95, accuracy
