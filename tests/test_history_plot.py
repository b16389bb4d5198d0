"""A training run's history.json (written beside the checkpoint, or to --history, at every
epoch or evaluation; continued on --resume) and `python -m dlkern plot` drawing it to a
PNG. The history's numbers are checked against the lines the run printed and against
the schedules' formulas; the PNG by its signature and size."""

import json
import math
import re
import struct
import sys

import pytest

from dlkern.__main__ import main
from dlkern.train import load_checkpoint
from dlkern.train.history import FORMAT, history_path, load_history

MLP = ["train", "--batch-size", "256", "--threads", "1", "--no-progress", "--scheduler", "cosine"]
GPT = ["train", "--model", "gpt", "--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "8",
       "--batch-size", "4", "--eval-interval", "3", "--eval-batches", "1", "--sample-tokens", "0",
       "--threads", "1", "--no-progress"]
TEXT = "To be, or not to be, that is the question.\n" * 30
EPOCH_LINE = re.compile(r"epoch +(\d+)/\d+  train loss ([0-9.]+)  train acc ([0-9.]+)  test acc ([0-9.]+)")
STEP_LINE = re.compile(r"step +(\d+)/\d+  train loss ([0-9.]+)  val loss ([0-9.]+)  \(([0-9.]+) steps/s\)")


def _strict(path):
    """The JSON, refusing NaN/Infinity (strict JSON readers would)."""
    def refuse(name):
        raise AssertionError(f"{path} holds {name}")
    return json.loads(path.read_text(), parse_constant=refuse)


def _run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_history_path_rules(tmp_path):
    assert history_path(tmp_path / "run.npz") == tmp_path / "run.history.json"
    assert history_path("dlkern-gpt.npz").name == "dlkern-gpt.history.json"
    assert history_path(tmp_path / "noext") == tmp_path / "noext.history.json"
    assert history_path(tmp_path / "run.npz", tmp_path / "h.json") == tmp_path / "h.json"
    assert history_path(None) is None


def test_image_run_history_matches_the_printed_lines(tmp_path, capsys):
    ck = tmp_path / "run.npz"
    out = _run(MLP + ["--epochs", "3", "--checkpoint", str(ck), "--lr", "0.002"], capsys)
    data = _strict(tmp_path / "run.history.json")
    assert data["format"] == FORMAT and data["model"] == "mlp" and data["unit"] == "epoch"
    assert data["argv"][:2] == ["train", "--batch-size"] and data["args"]["epochs"] == 3
    assert data["args"]["optimizer"] == "adam" and data["finished"] is True
    assert data["steps"] == [] and data["evals"] == []
    epochs = data["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert set(epochs[0]) == {"epoch", "train_loss", "train_accuracy", "test_accuracy", "lr",
                              "samples_per_second", "train_seconds", "wall_seconds"}
    printed = EPOCH_LINE.findall(out)
    assert len(printed) == 3
    for record, (epoch, loss, train_acc, test_acc) in zip(epochs, printed):
        assert record["epoch"] == int(epoch)
        assert f"{record['train_loss']:.4f}" == loss
        assert f"{record['train_accuracy']:.4f}" == train_acc
        assert f"{record['test_accuracy']:.4f}" == test_acc
        # cosine over the epochs, stepped after each: epoch e trains at lr0 (1 + cos(pi (e-1) / 3)) / 2
        assert record["lr"] == pytest.approx(0.002 * (1 + math.cos(math.pi * (record["epoch"] - 1) / 3)) / 2)
        assert record["samples_per_second"] == pytest.approx(1438 / record["train_seconds"], rel=1e-9)
    walls = [e["wall_seconds"] for e in epochs]
    assert walls == sorted(walls) and all(w > 0 for w in walls)
    assert data["summary"]["test_accuracy"] == epochs[-1]["test_accuracy"]
    done = re.search(r"done: test accuracy ([0-9.]+) .* \| (\d+) train samples/s \(training steps only\)", out)
    assert done and done.group(1) == f"{data['summary']['test_accuracy']:.4f}"
    assert int(done.group(2)) == round(data["summary"]["samples_per_second"])
    # the training throughput counts the training steps alone: 3 epochs' samples over their seconds
    assert data["summary"]["samples_per_second"] == pytest.approx(
        3 * 1438 / sum(e["train_seconds"] for e in epochs), rel=1e-9)
    assert f"history {tmp_path / 'run.history.json'}" in out


def test_resume_continues_the_history(tmp_path, capsys):
    ck = tmp_path / "run.npz"
    _run(MLP + ["--epochs", "2", "--checkpoint", str(ck)], capsys)
    first = _strict(tmp_path / "run.history.json")["epochs"]
    _run(MLP + ["--epochs", "3", "--checkpoint", str(ck), "--resume"], capsys)
    data = _strict(tmp_path / "run.history.json")
    assert [e["epoch"] for e in data["epochs"]] == [1, 2, 3]
    assert data["epochs"][:2] == first and data["resumed_at"] == 2
    assert load_checkpoint(ck)["epoch"] == 3


def test_explicit_history_and_none_without_a_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(MLP + ["--epochs", "1"], capsys)
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no --history: nothing written
    target = tmp_path / "out" / "h.json"
    _run(MLP + ["--epochs", "1", "--history", str(target)], capsys)
    assert [e["epoch"] for e in _strict(target)["epochs"]] == [1]


def test_language_model_history_per_step_and_per_evaluation(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    ck = tmp_path / "g.npz"
    out = _run(GPT + ["--text", str(corpus), "--steps", "7", "--checkpoint", str(ck), "--lr", "0.004"], capsys)
    data = _strict(tmp_path / "g.history.json")
    assert data["unit"] == "step" and data["model"] == "gpt" and data["epochs"] == []
    steps, evals = data["steps"], data["evals"]
    assert [s["step"] for s in steps] == list(range(1, 8))
    assert [e["step"] for e in evals] == [3, 6, 7]
    printed = STEP_LINE.findall(out)
    for record, (step, train, val, rate) in zip(evals, printed):
        assert record["step"] == int(step)
        assert f"{record['train_loss']:.4f}" == train and f"{record['val_loss']:.4f}" == val
        assert f"{record['steps_per_second']:.2f}" == rate
        assert record["steps_per_second"] == pytest.approx(record["step"] / record["train_seconds"], rel=1e-9)
        assert record["tokens_per_second"] == pytest.approx(record["steps_per_second"] * 4 * 8)
        assert record["train_loss"] == steps[record["step"] - 1]["train_loss"]
    # warmup-cosine over 7 steps: warm-up 1 step from 0.1 lr, then cosine over 6
    expected = [0.004 * 0.1] + [0.004 * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(6)]
    assert [s["lr"] for s in steps] == pytest.approx(expected)
    assert evals[-1]["wall_seconds"] >= evals[0]["wall_seconds"] > 0
    # resume: the steps up to the checkpoint are kept, the new ones follow
    _run(GPT + ["--text", str(corpus), "--steps", "9", "--checkpoint", str(ck), "--resume", "--lr", "0.004"],
         capsys)
    resumed = load_history(tmp_path / "g.history.json")
    assert [s["step"] for s in resumed["steps"]] == list(range(1, 10))
    assert resumed["steps"][:7] == steps and resumed["resumed_at"] == 7


def test_history_is_written_at_each_epoch(tmp_path, capsys, monkeypatch):
    import dlkern.train.history as history

    writes = []
    original = history.RunHistory.write

    def spy(self):
        original(self)
        writes.append(len(load_history(self.path)["epochs"]))
    monkeypatch.setattr(history.RunHistory, "write", spy)
    _run(MLP + ["--epochs", "3", "--checkpoint", str(tmp_path / "r.npz")], capsys)
    assert writes == [1, 2, 3, 3]  # each epoch, then the summary


# ---------------------------------------------------------------------------- plot

def _png_size(path):
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="plot needs matplotlib (pip install 'dlkern[plot]')")
    ck = tmp_path / "run.npz"
    _run(MLP + ["--epochs", "2", "--checkpoint", str(ck)], capsys)
    assert main(["plot", str(ck)]) == 0  # the checkpoint: its history beside it
    png = tmp_path / "run.history.png"
    assert capsys.readouterr().out.strip() == str(png)
    width, height = _png_size(png)
    assert width > 900 and height > 200  # three panels side by side
    out = tmp_path / "sub" / "curves.png"
    assert main(["plot", str(tmp_path / "run.history.json"), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and _png_size(out) == (width, height)
    # a language model's history: loss and lr panels
    corpus = tmp_path / "c.txt"
    corpus.write_text(TEXT)
    _run(GPT + ["--text", str(corpus), "--steps", "4", "--checkpoint", str(tmp_path / "g.npz")], capsys)
    assert main(["plot", str(tmp_path / "g.history.json")]) == 0
    lm_width, _ = _png_size(tmp_path / "g.history.png")
    assert 500 < lm_width < width
    capsys.readouterr()


def test_plot_errors(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib", reason="plot needs matplotlib (pip install 'dlkern[plot]')")
    assert main(["plot", str(tmp_path / "none.history.json")]) == 1
    assert "no history at" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    assert main(["plot", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: plot: ") and "not a training history" in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["plot", str(other)]) == 1
    assert "pip install 'dlkern[plot]'" in capsys.readouterr().err


def test_a_diverged_run_stops_with_its_history_and_no_nan_checkpoint(tmp_path, capsys):
    ck = tmp_path / "nan.npz"
    rc = main(MLP + ["--epochs", "2", "--optimizer", "sgd", "--lr", "1e12", "--scheduler", "none",
                     "--checkpoint", str(ck)])
    err = capsys.readouterr().err
    assert rc == 1 and "error: train: the loss became nan in epoch 1; lower --lr" in err
    assert not ck.exists()  # the diverged weights are not saved
    data = _strict(tmp_path / "nan.history.json")
    assert [e["epoch"] for e in data["epochs"]] == [1] and data["epochs"][0]["train_loss"] is None
    assert data["finished"] is False
