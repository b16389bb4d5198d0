"""The character-level LSTM/GRU language model (models.RNNLM) and `python -m dlkern train
--model lstm|gru` / `generate` on its checkpoints, end to end on a small text (in process,
through dlkern.__main__.main); `--log-grad-norm`."""

import numpy as np
import pytest

import dlkern
from dlkern import Tensor
from dlkern.__main__ import main
from dlkern.models import RNNLM
from dlkern.nn import functional as F
from dlkern.train.checkpoint import load_checkpoint

CORPUS_TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
               "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n"
               "All:\nResolved. resolved.\n\n") * 40

SMALL = ["--n-layer", "1", "--d-model", "16", "--hidden-size", "32", "--block-size", "32", "--batch-size", "8",
         "--eval-interval", "10", "--eval-batches", "2", "--sample-tokens", "0", "--threads", "1"]


def _tokens(shape, vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, shape)


# ---------------------------------------------------------------- the model

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_carried_across_chunks_equals_one_forward(cell):
    dlkern.manual_seed(0)
    model = RNNLM(11, d_model=6, hidden_size=9, num_layers=2, cell=cell, dtype=np.float64)
    idx = _tokens((3, 10))
    full = model(idx).detach().numpy()
    assert full.shape == (3, 10, 11)
    first, state = model(idx[:, :4], return_state=True)
    second, _ = model(idx[:, 4:], state, return_state=True)
    np.testing.assert_allclose(np.concatenate([first.detach().numpy(), second.detach().numpy()], 1), full,
                               rtol=1e-12, atol=1e-12)
    assert RNNLM(**model.config).config == model.config


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_greedy_generate_equals_rerunning_the_whole_sequence(cell):
    # The reference recomputes every step from the start (no carried state): the state
    # that generate carries must give the same argmax tokens.
    dlkern.manual_seed(1)
    model = RNNLM(11, d_model=6, hidden_size=9, num_layers=2, cell=cell, dtype=np.float64).eval()
    prompt = _tokens((2, 3), seed=1)
    out = model.generate(prompt, 6, temperature=0)
    seq = prompt.copy()
    for _ in range(6):
        nxt = model(seq).detach().numpy()[:, -1].argmax(-1)
        seq = np.concatenate([seq, nxt[:, None]], 1)
    assert out.dtype == np.int64 and np.array_equal(out, seq)
    assert np.array_equal(model.generate(prompt, 0), prompt)
    # sampling is reproducible from a seed and stays inside the top_k tokens
    a = model.generate(prompt, 8, temperature=1.0, top_k=1, rng=3)
    assert np.array_equal(a[:, :9], seq)                   # top_k=1 is greedy
    b1, b2 = model.generate(prompt, 8, temperature=0.9, rng=5), model.generate(prompt, 8, temperature=0.9, rng=5)
    assert np.array_equal(b1, b2) and b1.min() >= 0 and b1.max() < 11


def test_rnnlm_errors():
    with pytest.raises(ValueError, match="cell must be one of"):
        RNNLM(10, cell="rnn")
    with pytest.raises(ValueError, match="hidden_size must be an int >= 1"):
        RNNLM(10, hidden_size=0)
    model = RNNLM(10, d_model=4, hidden_size=5, num_layers=1)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 10\)"):
        model(np.array([[0, 10]]))
    with pytest.raises(ValueError, match="int array"):
        model(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="at least one token"):
        model.generate(np.zeros((1, 0), np.int64), 3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(np.zeros((1, 1), np.int64), 3, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(np.zeros((1, 1), np.int64), 3, top_k=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnnlm_matches_a_torch_twin(cell):
    torch = pytest.importorskip("torch")
    dlkern.manual_seed(2)
    model = RNNLM(11, d_model=6, hidden_size=9, num_layers=2, cell=cell, dtype=np.float64)
    twin = torch.nn.ModuleDict({"wte": torch.nn.Embedding(11, 6),
                                "rnn": getattr(torch.nn, cell.upper())(6, 9, 2, batch_first=True),
                                "lm_head": torch.nn.Linear(9, 11)}).double()
    twin.load_state_dict({k: torch.tensor(v.numpy()) for k, v in model.state_dict().items()})
    idx, tgt = _tokens((3, 7), seed=2), _tokens((3, 7), seed=3)
    loss = F.cross_entropy(model(idx).reshape(21, 11), Tensor(tgt.reshape(21)))
    loss.backward()
    t_logits = twin["lm_head"](twin["rnn"](twin["wte"](torch.tensor(idx)))[0])
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(21, 11), torch.tensor(tgt.reshape(21)))
    t_loss.backward()
    assert float(loss.item()) == pytest.approx(float(t_loss.detach()), rel=1e-12)
    grads = dict(model.named_parameters())
    for name, prm in twin.named_parameters():
        np.testing.assert_allclose(grads[name].grad.numpy(), prm.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- the command line

def _losses(out):
    return [float(line.split("train loss ")[1].split()[0]) for line in out.splitlines() if line.startswith("step ")]


def _with(args, flag, value):
    """args with flag's value replaced."""
    i = args.index(flag)
    return args[:i + 1] + [value] + args[i + 2:]


def test_train_lstm_then_generate(corpus, tmp_path, capsys):
    ckpt = tmp_path / "lstm.npz"
    rc = main(["train", "--model", "lstm", "--text", str(corpus), "--steps", "40", "--lr", "1e-2",
               "--checkpoint", str(ckpt), "--log-grad-norm"] + SMALL)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "training lstm on" in out and "step    40/40" in out and "rnn (LSTM)" in out
    losses = _losses(out)
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.5   # from ~ln(34) = 3.5 down
    grad_lines = [line for line in out.splitlines() if "grad norm" in line]
    assert len(grad_lines) == 4 and all("(max " in line for line in grad_lines)
    total = float(grad_lines[-1].split("grad norm ")[1].split()[0])
    assert np.isfinite(total) and total > 0
    state = load_checkpoint(ckpt)
    assert state["kind"] == "lstm" and state["step"] == 40
    assert state["config"] == dict(vocab_size=len(set(CORPUS_TEXT)), d_model=16, hidden_size=32, num_layers=1,
                                   cell="lstm", dropout=0.0, dtype="float32")
    assert state["vocab"] == "".join(sorted(set(CORPUS_TEXT)))

    # no context limit: 80 new characters from a 32-character training window
    args = ["generate", "--checkpoint", str(ckpt), "--prompt", "All:\n", "--max-new-tokens", "80",
            "--temperature", "0", "--threads", "1"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("All:\n") and len(captured.out) == len("All:\n") + 80 + 1
    assert set(captured.out) <= set(CORPUS_TEXT) and "tokens/s" in captured.err
    assert main(args) == 0 and capsys.readouterr().out == captured.out     # greedy is deterministic
    assert main(args[:-4] + ["--temperature", "0.8", "--top-k", "5"]) == 0
    assert capsys.readouterr().out.startswith("All:\n")


def test_train_gru_with_sampling_at_the_end(corpus, tmp_path, capsys):
    ckpt = tmp_path / "gru.npz"
    small = _with(_with(SMALL, "--sample-tokens", "30"), "--n-layer", "2")
    assert main(["train", "--model", "gru", "--text", str(corpus), "--steps", "10", "--checkpoint", str(ckpt)]
                + small) == 0
    out = capsys.readouterr().out
    assert "rnn (GRU)" in out and "--- sample (30 characters" in out
    state = load_checkpoint(ckpt)
    assert state["kind"] == "gru" and state["config"]["num_layers"] == 2


def test_resume_continues_from_the_checkpoint(corpus, tmp_path, capsys):
    ckpt = tmp_path / "lstm.npz"
    # a constant learning rate: the schedule is laid over --steps, which the two runs change
    base = ["train", "--model", "lstm", "--text", str(corpus), "--scheduler", "none", "--checkpoint", str(ckpt)] + SMALL
    assert main(base + ["--steps", "10"]) == 0
    capsys.readouterr()
    assert main(base + ["--steps", "20", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 10" in out
    assert "step    20/20" in out and "step    10/" not in out
    assert load_checkpoint(ckpt)["step"] == 20
    # the resumed run ends with the weights of an uninterrupted one
    straight = tmp_path / "straight.npz"
    assert main(_with(base, "--checkpoint", str(straight)) + ["--steps", "20"]) == 0
    a, b = load_checkpoint(ckpt)["model"], load_checkpoint(straight)["model"]
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7)
    capsys.readouterr()
    # a checkpoint of another kind is refused with one line
    rc = main(["train", "--model", "gru", "--text", str(corpus), "--checkpoint", str(ckpt), "--steps", "30",
               "--resume"] + SMALL)
    err = capsys.readouterr().err
    # (exit 1: a checkpoint that does not fit is a run-time failure, as a missing or damaged one)
    assert rc == 1 and "holds a 'lstm' model, not --model gru" in err


def test_generate_rejects_a_checkpoint_whose_config_does_not_fit(corpus, tmp_path, capsys):
    ckpt = tmp_path / "lstm.npz"
    assert main(["train", "--model", "lstm", "--text", str(corpus), "--steps", "1", "--checkpoint", str(ckpt)]
                + SMALL) == 0
    from dlkern.train.checkpoint import save_checkpoint
    state = load_checkpoint(ckpt)
    state["config"]["hidden_size"] = 7
    save_checkpoint(tmp_path / "broken.npz", state)
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(tmp_path / "broken.npz")]) == 1  # a damaged checkpoint
    assert "does not fit the LSTM its config describes" in capsys.readouterr().err
    assert main(["train", "--model", "lstm", "--text", str(corpus), "--checkpoint", str(tmp_path / "x.npz"),
                 ] + _with(SMALL, "--hidden-size", "0")) == 2
    assert "hidden_size must be an int >= 1" in capsys.readouterr().err


def test_log_grad_norm_in_image_training(capsys):
    assert main(["train", "--epochs", "2", "--no-progress", "--threads", "1", "--log-grad-norm"]) == 0
    out = capsys.readouterr().out
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("grad norm " in line and "(max " in line for line in epochs)
    assert main(["train", "--epochs", "1", "--no-progress", "--threads", "1"]) == 0
    assert "grad norm" not in capsys.readouterr().out
