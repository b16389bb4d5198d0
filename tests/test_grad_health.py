"""Gradient health (issue 14, deliverable 3): dlkern.utils.grad_norms / total_grad_norm
against NumPy and PyTorch, the vanishing gradient of a tanh RNN over 200 steps beside an
LSTM's, and gradient clipping keeping an exploding RNN's training finite."""

import numpy as np
import pytest

import dlkern
from dlkern import Tensor, nn, optim
from dlkern.utils import grad_norms, largest_grad_norm, total_grad_norm


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 5, batch_first=True, dtype=np.float64)
        self.head = nn.Linear(5, 2, dtype=np.float64)
        self.unused = nn.Linear(2, 2, dtype=np.float64)   # never in the graph: no .grad

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _trained_net(seed=0):
    dlkern.manual_seed(seed)
    net = Net()
    x = np.random.default_rng(seed).standard_normal((4, 6, 3))
    (net(Tensor(x)) ** 2).sum().backward()
    return net, x


def _np_norm(g, p):
    a = np.abs(np.asarray(g, dtype=np.float64)).ravel()
    if p == np.inf:
        return a.max()
    return (a ** p).sum() ** (1.0 / p)


@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, np.inf])
def test_grad_norms_match_numpy(p):
    net, _ = _trained_net()
    norms = grad_norms(net, norm_type=p)
    expected = {name: _np_norm(prm.grad.numpy(), p) for name, prm in net.named_parameters()
                if prm.grad is not None}
    assert list(norms) == list(expected)            # named_parameters order, no-grad ones left out
    assert not any(k.startswith("unused") for k in norms) and "rnn.weight_hh_l0" in norms
    for name in expected:
        assert norms[name] == pytest.approx(expected[name], rel=1e-12)
    all_grads = np.concatenate([prm.grad.numpy().ravel() for prm in net.parameters() if prm.grad is not None])
    assert total_grad_norm(net, p) == pytest.approx(_np_norm(all_grads, p), rel=1e-12)
    assert total_grad_norm(norms, p) == pytest.approx(_np_norm(all_grads, p), rel=1e-12)
    name, value = largest_grad_norm(norms)
    assert value == max(norms.values()) and norms[name] == value


def test_total_grad_norm_is_what_clip_grad_norm_returns():
    net, _ = _trained_net(1)
    total = total_grad_norm(net)
    assert float(optim.clip_grad_norm_(net.parameters(), 1e9).item()) == pytest.approx(total, rel=1e-12)


def test_grad_norms_edge_cases():
    net = Net()
    assert grad_norms(net) == {} and total_grad_norm(net) == 0.0 and largest_grad_norm({}) == (None, 0.0)
    # an empty parameter has norm 0; a NaN gradient gives a NaN norm and is the one reported largest
    lin = nn.Linear(3, 2)
    lin.weight = nn.Parameter(Tensor(np.zeros((2, 0), np.float32)))
    lin.weight.grad = Tensor(np.zeros((2, 0), np.float32))
    lin.bias.grad = Tensor(np.array([np.nan, 1.0], np.float32))
    norms = grad_norms(lin)
    assert norms["weight"] == 0.0 and np.isnan(norms["bias"])
    assert largest_grad_norm(norms)[0] == "bias" and np.isnan(total_grad_norm(norms))
    # a tied parameter appears once, under its first name
    tied = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    tied[1].weight = tied[0].weight
    tied(Tensor(np.ones((1, 2), np.float32))).sum().backward()
    assert list(grad_norms(tied)) == ["0.weight"]
    with pytest.raises(TypeError, match="grad_norms: model must be an nn.Module"):
        grad_norms([np.ones(3)])


def test_grad_norms_match_torch():
    torch = pytest.importorskip("torch")
    net, x = _trained_net(2)
    tnet = torch.nn.ModuleDict({"rnn": torch.nn.GRU(3, 5, batch_first=True).double(),
                                "head": torch.nn.Linear(5, 2).double()})
    tnet.load_state_dict({k: torch.tensor(v.numpy()) for k, v in net.state_dict().items()
                          if not k.startswith("unused")})
    out = tnet["head"](tnet["rnn"](torch.tensor(x))[0][:, -1])
    (out ** 2).sum().backward()
    norms = grad_norms(net)
    for name, prm in tnet.named_parameters():
        assert norms[name] == pytest.approx(float(prm.grad.norm()), rel=1e-10)
    expected = float(torch.nn.utils.get_total_norm([prm.grad for prm in tnet.parameters()]))
    assert total_grad_norm(norms) == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- vanishing gradients

def _input_grad_ratio(module, steps=200, seed=0):
    """||dL/dx_0|| / ||dL/dx_{T-1}|| for L the sum of the output at the last step: how much
    of the loss's gradient reaches the first input, relative to the last one."""
    x = Tensor(np.random.default_rng(seed).standard_normal((steps, 1, 8)), requires_grad=True)
    module(x)[0][-1].sum().backward()
    per_step = np.linalg.norm(x.grad.numpy().reshape(steps, -1), axis=1)
    assert per_step[-1] > 0.1                                # the last input matters
    return per_step[0] / per_step[-1]


def _modules(forget_bias):
    dlkern.manual_seed(0)
    rnn = nn.RNN(8, 32, nonlinearity="tanh", dtype=np.float64)
    lstm = nn.LSTM(8, 32, dtype=np.float64)
    if forget_bias:
        # PyTorch's gate order is (input, forget, cell, output): rows 32:64 are the forget gate
        lstm.bias_ih_l0.data[32:64] = forget_bias
        lstm.bias_hh_l0.data[32:64] = 0.0
    return rnn, lstm


def test_tanh_rnn_gradient_vanishes_over_200_steps_where_the_lstm_keeps_it():
    # float64: the tanh RNN's ratio (~1e-52 here) is below float32's smallest subnormal.
    rnn, lstm = _modules(forget_bias=0.0)            # PyTorch's initialisation for both
    rnn_ratio, lstm_ratio = _input_grad_ratio(rnn), _input_grad_ratio(lstm)
    assert rnn_ratio < 1e-40
    # The LSTM's cell path (gated by sigmoid(f) ~ 0.5) vanishes too, but ~10 orders slower.
    assert lstm_ratio > 1e6 * rnn_ratio
    # A forget-gate bias of 3 (sigmoid ~ 0.95: the cell carries its state) keeps a usable
    # gradient at step 0; the tanh RNN has no such path.
    _, lstm_open = _modules(forget_bias=3.0)
    open_ratio = _input_grad_ratio(lstm_open)
    assert open_ratio > 1e-3 and open_ratio > 1e30 * rnn_ratio


# ---------------------------------------------------------------- exploding gradients

def _train_exploding_rnn(clip, steps=60, seq=100):
    """A relu RNN whose recurrent weight is 1.25 * I on positive inputs: its state and
    gradients grow as 1.25^t (~1e10 over 100 steps). SGD lr 0.05 on a regression of
    the last state; (total grad norms before clipping, losses, params finite at the end)."""
    dlkern.manual_seed(0)
    rnn, head = nn.RNN(4, 16, nonlinearity="relu"), nn.Linear(16, 1)
    model = nn.ModuleList([rnn, head])
    rnn.weight_hh_l0.data[...] = 1.25 * np.eye(16, dtype=np.float32)
    rng = np.random.default_rng(0)
    x = Tensor(np.abs(rng.standard_normal((seq, 8, 4))).astype(np.float32))
    y = Tensor(rng.standard_normal((8, 1)).astype(np.float32))
    opt = optim.SGD(model.parameters(), lr=0.05)
    norms, losses = [], []
    with np.errstate(all="ignore"):                  # the unclipped run overflows on purpose
        for _ in range(steps):
            opt.zero_grad()
            loss = ((head(rnn(x)[0][-1]) - y) ** 2).mean()
            loss.backward()
            norms.append(total_grad_norm(model))
            if clip:
                optim.clip_grad_norm_(model.parameters(), max_norm=1.0)
            opt.step()
            losses.append(float(loss.item()))
    finite = all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())
    return np.array(norms), np.array(losses), finite


def test_clipping_keeps_an_exploding_rnn_finite():
    norms, losses, finite = _train_exploding_rnn(clip=False)
    assert norms[0] > 1e15                           # the first gradient has exploded
    assert not np.isfinite(losses[1:]).any() and not finite   # one unclipped step ruins the weights

    c_norms, c_losses, c_finite = _train_exploding_rnn(clip=True)
    assert c_norms[0] == norms[0]                    # the same first gradient ...
    assert np.isfinite(c_losses).all() and np.isfinite(c_norms).all() and c_finite   # ... stays finite
    assert c_losses[-10:].max() < 1e-6 * c_losses[0]  # and training pulls the weights back
