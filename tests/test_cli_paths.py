"""The command-line and training-loop options, each run once in process with one short
epoch (or a few steps) on a tiny model, asserting what the option must change: the
optimizer really built (its options and state in the saved checkpoint), the learning
rate after every scheduler step against the scheduler's formula, the seed's effect on
the weights, the GPT architecture options reaching the model, and fit()'s per-batch
scheduler, custom loss and progress bar."""

import math
import sys
import types

import numpy as np
import pytest

import dlkern
from dlkern import data, nn, optim
from dlkern.__main__ import main
from dlkern.models import GPT, MLP
from dlkern.optim import lr_scheduler
from dlkern.train import fit, load_checkpoint

MLP_RUN = ["train", "--model", "mlp", "--epochs", "1", "--batch-size", "256", "--threads", "1", "--no-progress"]
GPT_RUN = ["train", "--model", "gpt", "--steps", "3", "--n-layer", "1", "--n-head", "2", "--d-model", "16",
           "--block-size", "8", "--batch-size", "4", "--eval-interval", "3", "--eval-batches", "1",
           "--sample-tokens", "0", "--threads", "1"]
TEXT = "To be, or not to be, that is the question.\n" * 30


def _train(tmp_path, capsys, *options, run=MLP_RUN, name="run.npz"):
    """Run `python -m dlkern train` with `options` in process; the checkpoint it saved."""
    ckpt = tmp_path / name
    argv = list(run) + ["--checkpoint", str(ckpt)] + list(options)
    if run is GPT_RUN:
        corpus = tmp_path / "corpus.txt"
        corpus.write_text(TEXT)
        argv += ["--text", str(corpus)]
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return load_checkpoint(ckpt)


def _group(state):
    return state["optimizer"]["param_groups"][0]


def _param_state(state):
    """The optimizer state of the first parameter (every parameter has the same keys)."""
    entries = state["optimizer"]["state"]
    return entries[min(entries, key=int)] if entries else {}


# -------------------------------------------------------------------- optimizers

# What only that optimizer has: options of its parameter groups and per-parameter state.
OPTIMIZER_SIGNATURES = {
    "sgd": ({"momentum", "dampening", "nesterov"}, {"momentum_buffer"}),
    "adam": ({"betas", "amsgrad", "decoupled_weight_decay"}, {"step", "exp_avg", "exp_avg_sq"}),
    "adamw": ({"betas", "amsgrad", "decoupled_weight_decay"}, {"step", "exp_avg", "exp_avg_sq"}),
    "rmsprop": ({"alpha", "centered", "momentum"}, {"step", "square_avg"}),
    "adagrad": ({"lr_decay", "initial_accumulator_value"}, {"step", "sum"}),
    "radam": ({"betas", "decoupled_weight_decay"}, {"step", "exp_avg", "exp_avg_sq"}),
}
ALL_OPTION_KEYS = set().union(*(keys for keys, _ in OPTIMIZER_SIGNATURES.values()))


@pytest.mark.parametrize("name", sorted(OPTIMIZER_SIGNATURES))
def test_every_optimizer_is_the_one_used(tmp_path, capsys, name):
    state = _train(tmp_path, capsys, "--optimizer", name, "--lr", "0.01", "--scheduler", "none")
    options, state_keys = OPTIMIZER_SIGNATURES[name]
    group = _group(state)
    assert set(group) & ALL_OPTION_KEYS == options
    assert set(_param_state(state)) == state_keys
    assert group["lr"] == 0.01
    steps = math.ceil(1438 / 256)  # one epoch of the digits' training split
    if "step" in state_keys:
        assert int(_param_state(state)["step"]) == steps
    # AdamW is Adam with decoupled decay (PyTorch's default 0.01 is not the CLI's: 0)
    if name in ("adam", "adamw"):
        assert group["decoupled_weight_decay"] is (name == "adamw")


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_gpt_trains_with_the_optimizer_named(tmp_path, capsys, name):
    state = _train(tmp_path, capsys, "--optimizer", name, run=GPT_RUN)
    options, state_keys = OPTIMIZER_SIGNATURES[name]
    assert set(_group(state)) & ALL_OPTION_KEYS == options
    assert set(_param_state(state)) == state_keys


@pytest.mark.parametrize("momentum", [0.5, 0.0])
def test_momentum_reaches_sgd(tmp_path, capsys, momentum):
    state = _train(tmp_path, capsys, "--optimizer", "sgd", "--momentum", str(momentum), "--scheduler", "none")
    assert _group(state)["momentum"] == momentum
    # SGD keeps a momentum buffer only when it has momentum
    assert bool(state["optimizer"]["state"]) is (momentum != 0)


def test_weight_decay_reaches_the_optimizer_and_shrinks_the_weights(tmp_path, capsys):
    plain = _train(tmp_path, capsys, "--optimizer", "sgd", "--momentum", "0", "--scheduler", "none",
                   "--weight-decay", "0", name="plain.npz")
    decayed = _train(tmp_path, capsys, "--optimizer", "sgd", "--momentum", "0", "--scheduler", "none",
                     "--weight-decay", "0.5", name="decayed.npz")
    assert _group(plain)["weight_decay"] == 0 and _group(decayed)["weight_decay"] == 0.5
    norm = lambda s: sum(float(np.sum(np.asarray(v, np.float64) ** 2)) for v in s["model"].values())  # noqa: E731
    assert norm(decayed) < norm(plain)


# -------------------------------------------------------------------- schedulers

def _record_lr_steps(monkeypatch):
    """Record (scheduler class name, lr of group 0) after every scheduler step, the one a
    scheduler takes when it is made included (SequentialLR takes none: its first
    scheduler has set the lr)."""
    steps = []

    def recording(real_step):
        def step(self, *args, **kwargs):
            out = real_step(self, *args, **kwargs)
            steps.append((type(self).__name__, self.optimizer.param_groups[0]["lr"]))
            return out
        return step

    for cls in (lr_scheduler.LRScheduler, lr_scheduler.SequentialLR):
        monkeypatch.setattr(cls, "step", recording(cls.__dict__["step"]))
    return steps


def _one_cycle(lr, total, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """OneCycleLR's cosine policy (two phases), written out: lr at step t = 0..total-1."""
    initial = lr / div_factor
    low = initial / final_div_factor
    rise_end, fall_end = pct_start * total - 1, total - 1

    def anneal(start, end, pct):
        return end + (start - end) / 2 * (math.cos(math.pi * pct) + 1)

    out = []
    for t in range(total):
        if t <= rise_end:
            out.append(anneal(initial, lr, t / rise_end))
        else:
            out.append(anneal(lr, low, (t - rise_end) / (fall_end - rise_end)))
    return out


LR = 0.02
EPOCHS = 3
BATCHES = math.ceil(1438 / 256)
SCHEDULES = {
    # CLI name: (scheduler class stepped, lr after each of its steps, the first when made)
    "step": ("StepLR", [LR * 0.1 ** k for k in range(EPOCHS + 1)]),      # step_size max(1, 3 // 3)
    "cosine": ("CosineAnnealingLR", [LR * (1 + math.cos(math.pi * k / EPOCHS)) / 2 for k in range(EPOCHS + 1)]),
    "exponential": ("ExponentialLR", [LR * 0.95 ** k for k in range(EPOCHS + 1)]),
    # over 20 epochs: two of linear warm-up from 0.1 lr, then a cosine over the other 18
    "warmup-cosine": ("SequentialLR", [LR * 0.55] + [LR * (1 + math.cos(math.pi * k / 18)) / 2 for k in range(19)]),
    "onecycle": ("OneCycleLR", _one_cycle(LR, EPOCHS * BATCHES)),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_scheduler_lr_trajectory_matches_its_formula(tmp_path, capsys, monkeypatch, name):
    steps = _record_lr_steps(monkeypatch)
    epochs = 20 if name == "warmup-cosine" else EPOCHS
    state = _train(tmp_path, capsys, "--optimizer", "sgd", "--lr", str(LR), "--scheduler", name,
                   "--epochs", str(epochs))
    kind, expected = SCHEDULES[name]
    lrs = [lr for cls, lr in steps if cls == kind]
    if name == "onecycle":  # stepped per batch, the last batch's step included
        lrs = lrs[:-1]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-15)
    assert state["scheduler"] is not None
    np.testing.assert_allclose(_group(state)["lr"], steps[-1][1], rtol=1e-12)


def test_no_scheduler_keeps_the_lr(tmp_path, capsys, monkeypatch):
    steps = _record_lr_steps(monkeypatch)
    state = _train(tmp_path, capsys, "--optimizer", "sgd", "--lr", str(LR), "--scheduler", "none",
                   "--epochs", "2")
    assert steps == [] and state["scheduler"] is None and _group(state)["lr"] == LR


def test_gpt_scheduler_runs_over_the_steps(tmp_path, capsys, monkeypatch):
    steps = _record_lr_steps(monkeypatch)
    state = _train(tmp_path, capsys, "--scheduler", "cosine", "--lr", "0.01", run=GPT_RUN)
    lrs = [lr for cls, lr in steps if cls == "CosineAnnealingLR"]
    np.testing.assert_allclose(lrs, [0.01 * (1 + math.cos(math.pi * k / 3)) / 2 for k in range(4)],
                               atol=1e-15)
    assert state["step"] == 3


# -------------------------------------------------------------------- seeds

def _weights(state):
    return [np.asarray(v) for _, v in sorted(state["model"].items())]


@pytest.mark.parametrize("run", [MLP_RUN, GPT_RUN], ids=["mlp", "gpt"])
def test_seed_decides_the_weights(tmp_path, capsys, run):
    a = _train(tmp_path, capsys, "--seed", "3", run=run, name="a.npz")
    b = _train(tmp_path, capsys, "--seed", "3", run=run, name="b.npz")
    c = _train(tmp_path, capsys, "--seed", "4", run=run, name="c.npz")
    for x, y in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(_weights(a), _weights(c)))


@pytest.mark.parametrize("run", [MLP_RUN, GPT_RUN], ids=["mlp", "gpt"])
def test_seed_seeds_the_initial_weights(tmp_path, capsys, run):
    # an lr far below float32's resolution leaves the weights as they were initialised
    state = _train(tmp_path, capsys, "--seed", "5", "--optimizer", "sgd", "--momentum", "0", "--lr", "1e-30",
                   run=run)
    dlkern.manual_seed(5)
    fresh = GPT(**state["config"]) if run is GPT_RUN else MLP(64, (256, 256), 10)
    expected = {k: np.asarray(v.numpy()) for k, v in fresh.state_dict().items()}
    assert sorted(expected) == sorted(state["model"])
    for key, value in expected.items():  # (zero biases move by ~1e-34)
        np.testing.assert_allclose(np.asarray(state["model"][key]), value, rtol=1e-7, atol=1e-20)


# -------------------------------------------------------------------- GPT architecture options

def test_gpt_options_reach_the_model(tmp_path, capsys):
    state = _train(tmp_path, capsys, "--pos-encoding", "rope", "--n-kv-head", "1", "--dropout", "0.25",
                   run=GPT_RUN)
    config = state["config"]
    assert config["pos_encoding"] == "rope" and config["n_kv_head"] == 1 and config["dropout"] == 0.25
    model = state["model"]
    assert not any(key.startswith("wpe.") for key in model)       # RoPE has no position table
    d, head_dim = 16, 8
    assert np.asarray(model["blocks.0.attn.in_proj_weight"]).shape == (d + 2 * 1 * head_dim, d)
    learned = _train(tmp_path, capsys, run=GPT_RUN, name="learned.npz")
    assert learned["config"]["pos_encoding"] == "learned" and learned["config"]["n_kv_head"] is None
    assert np.asarray(learned["model"]["wpe.weight"]).shape == (8, d)


def test_gpt_dropout_changes_training(tmp_path, capsys):
    # same seed, same batches: only the dropout masks can make the weights differ
    plain = _train(tmp_path, capsys, "--dropout", "0", run=GPT_RUN, name="plain.npz")
    dropped = _train(tmp_path, capsys, "--dropout", "0.5", run=GPT_RUN, name="dropped.npz")
    assert any(not np.array_equal(x, y) for x, y in zip(_weights(plain), _weights(dropped)))


# -------------------------------------------------------------------- fit()

def _tiny_fit_setup(n=40, batch_size=8):
    dlkern.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = rng.integers(0, 3, n)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=0)
    model = MLP(6, (8,), 3)
    return model, optim.SGD(model.parameters(), lr=0.1), loader


@pytest.mark.parametrize("per_batch", [True, False])
def test_fit_steps_the_scheduler_per_batch_or_per_epoch(per_batch):
    model, opt, loader = _tiny_fit_setup()
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    fit(model, opt, loader, 2, scheduler=sched, scheduler_per_batch=per_batch, progress=False, log=lambda s: None)
    steps = 2 * len(loader) if per_batch else 2
    assert len(loader) == 5 and sched.last_epoch == steps
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** steps)


def test_fit_uses_the_loss_fn_given():
    model, opt, loader = _tiny_fit_setup()
    seen = []

    def loss_fn(out, target):
        loss = nn.functional.cross_entropy(out, target) * 3.0
        seen.append((float(loss.item()), target.shape[0]))
        return loss

    history = fit(model, opt, loader, 1, loss_fn=loss_fn, progress=False, log=lambda s: None)
    assert len(seen) == len(loader)
    mean = sum(v * n for v, n in seen) / sum(n for _, n in seen)
    assert history.train_loss == [pytest.approx(mean, rel=1e-12)]


def test_fit_progress_true_draws_a_bar_per_epoch(monkeypatch):
    bars = []

    def fake_tqdm(iterable, total=None, desc=None, **kwargs):
        bars.append((total, desc))
        return iterable

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=fake_tqdm))
    model, opt, loader = _tiny_fit_setup()
    fit(model, opt, loader, 2, progress=True, log=lambda s: None)
    assert bars == [(len(loader), "epoch 1/2"), (len(loader), "epoch 2/2")]
    bars.clear()
    fit(model, opt, loader, 1, progress=False, log=lambda s: None)
    assert bars == []
