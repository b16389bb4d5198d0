"""`python -m dlkern train --amp bf16|fp16`: autocast training reaches the float32 run's
accuracy (the default MLP run on digits, both runs here), float16 with a GradScaler
trains, LeNet and the language models train under autocast, checkpoints keep the
scaler state and resume exactly."""

import re

import numpy as np
import pytest

from dlkern.__main__ import main
from dlkern.train.amp import MixedPrecision
from dlkern.train.checkpoint import load_checkpoint

QUIET = ["--no-progress", "--threads", "1"]


def _train(capsys, *args):
    assert main(["train", *QUIET, *args]) == 0
    out = capsys.readouterr().out
    return out, float(re.search(r"done: test accuracy ([0-9.]+)", out).group(1))


@pytest.fixture(scope="module")
def float32_accuracy():
    import io
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", *QUIET]) == 0
    return float(re.search(r"done: test accuracy ([0-9.]+)", buf.getvalue()).group(1))


def test_bf16_default_mlp_run_matches_float32_accuracy(capsys, float32_accuracy):
    # the default run (MLP 64-256-256-10, 30 epochs, Adam, seed 0) in float32 and in bfloat16
    out, acc = _train(capsys, "--amp", "bf16")
    assert "autocast bf16" in out
    assert float32_accuracy > 0.95
    assert abs(acc - float32_accuracy) <= 0.005, (acc, float32_accuracy)


def test_fp16_with_grad_scaler_trains(capsys, float32_accuracy):
    out, acc = _train(capsys, "--amp", "fp16")
    assert "autocast fp16 + GradScaler" in out
    assert abs(acc - float32_accuracy) <= 0.01, (acc, float32_accuracy)


def test_lenet_trains_under_bf16(capsys):
    out, _ = _train(capsys, "--model", "lenet", "--epochs", "3", "--amp", "bf16")
    losses = [float(x) for x in re.findall(r"train loss ([0-9.]+)", out)]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_checkpoint_keeps_scaler_state_and_resume_is_exact(capsys, tmp_path):
    ckpt = tmp_path / "amp.npz"
    fixed = ("--scheduler", "none", "--amp", "fp16")  # (a cosine schedule depends on --epochs)
    full, acc_full = _train(capsys, "--epochs", "3", *fixed)
    _train(capsys, "--epochs", "2", *fixed, "--checkpoint", str(ckpt))
    state = load_checkpoint(ckpt)
    assert state["amp"]["mode"] == "fp16"
    assert state["amp"]["scaler"]["scale"] == 65536.0  # 2 epochs x 23 steps: no growth, no overflow
    assert state["amp"]["scaler"]["_growth_tracker"] == 2 * 23
    out, acc = _train(capsys, "--epochs", "3", *fixed, "--checkpoint", str(ckpt), "--resume")
    assert "resumed from" in out and acc == acc_full
    assert re.findall(r"epoch   3/3.*", out) == re.findall(r"epoch   3/3.*", full)
    # the growth count went on from the checkpoint's (a fresh scaler would say 23)
    assert load_checkpoint(ckpt)["amp"]["scaler"]["_growth_tracker"] == 3 * 23


CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n") * 60
SMALL_LM = ["--n-layer", "1", "--n-head", "2", "--d-model", "32", "--block-size", "16", "--batch-size", "8",
            "--eval-interval", "40", "--eval-batches", "4", "--sample-tokens", "0", "--steps", "40",
            "--lr", "3e-3"]


@pytest.mark.parametrize("model", ["gpt", "lstm"])
def test_language_model_val_loss_close_to_float32(model, capsys, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(CORPUS)

    def val_loss(*extra):
        ckpt = tmp_path / f"{model}{len(extra)}.npz"
        # (--n-head is the GPT's: an LSTM run given it is refused)
        small = SMALL_LM if model == "gpt" else SMALL_LM[:2] + SMALL_LM[4:]
        assert main(["train", "--model", model, "--text", str(corpus), "--checkpoint", str(ckpt),
                     "--threads", "1", *small, *extra]) == 0
        out = capsys.readouterr().out
        return float(re.findall(r"val loss ([0-9.]+)", out)[-1]), load_checkpoint(ckpt)

    ref, _ = val_loss()
    bf16, state = val_loss("--amp", "bf16")
    assert state["amp"] == {"mode": "bf16", "scaler": {}}  # bfloat16 runs without a scaler
    assert abs(bf16 - ref) <= 0.02 * ref, (bf16, ref)


def test_bad_amp_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--amp", "fp8"])
    assert exc.value.code == 2
    assert "--amp" in capsys.readouterr().err


def test_mixed_precision_off_is_the_plain_step():
    amp = MixedPrecision()
    assert amp.describe() == "float32" and not amp.scaler.is_enabled()
    with amp.autocast():
        from dlkern.autograd.autocast_state import AutocastState
        assert not AutocastState.active
    with pytest.raises(ValueError, match="mode"):
        MixedPrecision("fp8")
    assert np.isfinite(MixedPrecision("fp16").scaler.get_scale())


# ---------------------------------------------------------------------- bench train --amp
def _run_bench(*argv):
    import argparse
    from dlkern.bench import load_benchmark
    bench = load_benchmark("train")
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args([str(a) for a in argv]))


def test_bench_train_amp_quick_without_torch(tmp_path):
    out = tmp_path / "amp.md"
    assert _run_bench("--amp", "bf16", "--quick", "--no-torch", "--models", "mlp", "--threads", 1,
                      "--repeats", 1, "--out", out) == 0
    text = out.read_text()
    assert "| mlp1024 | 1 |" in text and "dlkern autocast steps/s" in text
    assert "self time: GEMM" in text and "phase: optimizer step" in text
    with pytest.raises(SystemExit, match="unknown model"):
        _run_bench("--amp", "bf16", "--quick", "--no-torch", "--models", "charlstm", "--out", out)


def test_bench_train_amp_validates_against_torch(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "amp.md"
    assert _run_bench("--amp", "bf16", "--quick", "--models", "mlp,lenet", "--threads", 1, "--repeats", 1,
                      "--out", out) == 0
    text = out.read_text()
    assert "PyTorch autocast steps/s" in text and "| lenet | 1 |" in text
    assert "torch amp grad err" in text


def test_bench_amp_validation_catches_a_wrong_gradient(monkeypatch):
    torch = pytest.importorskip("torch")
    from dlkern.bench import common, load_module
    amp_bench = load_module("_train_amp")
    real = amp_bench._grads

    def corrupted(name, torch, amp, quick):
        loss, t_loss, pairs = real(name, torch, amp, quick)
        if amp:  # dlkern's autocast gradients 20% off: far beyond bf16 rounding
            pairs = [(g * 1.2, tg) for g, tg in pairs]
        return loss, t_loss, pairs

    assert amp_bench.validate("mlp1024", torch, True)["amp grad err"] < 0.2
    monkeypatch.setattr(amp_bench, "_grads", corrupted)
    with pytest.raises(common.BenchValidationError, match="disagree"):
        amp_bench.validate("mlp1024", torch, True)


def test_grad_norm_log_sees_unscaled_fp16_gradients(capsys):
    # with --log-grad-norm the scaler unscales before the norms are read: gradients of a
    # cross-entropy are O(1), the loss-scaled ones would be ~65536 times that
    out, _ = _train(capsys, "--epochs", "1", "--amp", "fp16", "--log-grad-norm")
    norm = float(re.search(r"grad norm ([0-9.e+-]+)", out).group(1))
    assert 0 < norm < 100, out
