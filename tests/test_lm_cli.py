"""`python -m dlkern train --model gpt` and `python -m dlkern generate`, end to end on a
small text (in process, through dlkern.__main__.main)."""

import numpy as np
import pytest

from dlkern.__main__ import main
from dlkern.train import lm
from dlkern.train.checkpoint import load_checkpoint

CORPUS_TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
               "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than to famish?\n\n"
               "All:\nResolved. resolved.\n\n") * 40

SMALL = ["--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "16", "--batch-size", "8",
         "--eval-interval", "10", "--eval-batches", "2", "--sample-tokens", "0", "--threads", "1"]


def test_sample_batch_windows_are_shifted_by_one():
    ids = np.arange(100)
    x, y = lm.sample_batch(ids, 4, 10, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 10)
    assert np.array_equal(y, x + 1)                       # targets are the next ids
    assert np.array_equal(x, x[:, :1] + np.arange(10))    # contiguous windows
    assert x.min() >= 0 and y.max() < 100


def test_train_gpt_then_generate(corpus, tmp_path, capsys):
    ckpt = tmp_path / "gpt.npz"
    rc = main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "30", "--lr", "3e-3",
               "--checkpoint", str(ckpt)] + SMALL)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "training gpt on" in out and "step    30/30" in out
    losses = [float(line.split("train loss ")[1].split()[0]) for line in out.splitlines() if "train loss" in line]
    assert losses[-1] < losses[0]                          # it learned something in 30 steps
    state = load_checkpoint(ckpt)
    assert state["kind"] == "gpt" and state["step"] == 30
    assert state["vocab"] == "".join(sorted(set(CORPUS_TEXT)))
    assert state["config"]["n_layer"] == 1 and state["config"]["d_model"] == 16

    rc = main(["generate", "--checkpoint", str(ckpt), "--prompt", "All:\n", "--max-new-tokens", "12",
               "--temperature", "0", "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.out.startswith("All:\n")
    assert len(captured.out) == len("All:\n") + 12 + 1     # prompt, 12 new characters, print's newline
    assert set(captured.out) <= set(CORPUS_TEXT) | {"\n"}
    assert "tokens/s" in captured.err

    # Greedy decoding is deterministic: the same call prints the same text.
    main(["generate", "--checkpoint", str(ckpt), "--prompt", "All:\n", "--max-new-tokens", "12",
          "--temperature", "0", "--threads", "1"])
    assert capsys.readouterr().out == captured.out


def test_resume_continues_from_the_checkpoint(corpus, tmp_path, capsys):
    ckpt = tmp_path / "gpt.npz"
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "10",
                 "--checkpoint", str(ckpt)] + SMALL) == 0
    capsys.readouterr()
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "20", "--resume",
                 "--checkpoint", str(ckpt)] + SMALL) == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 10" in out
    assert "step    20/20" in out and "step    10/" not in out
    assert load_checkpoint(ckpt)["step"] == 20


def test_generate_errors(corpus, tmp_path, capsys):
    assert main(["generate", "--checkpoint", str(tmp_path / "missing.npz")]) != 0
    assert "does not exist" in capsys.readouterr().err
    ckpt = tmp_path / "gpt.npz"
    main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "1", "--checkpoint", str(ckpt)] + SMALL)
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(ckpt), "--prompt", "\u00e9"]) == 2
    assert "not in the vocabulary" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(ckpt), "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens" in capsys.readouterr().err


def test_train_gpt_rejects_a_text_shorter_than_the_block(tmp_path, capsys):
    path = tmp_path / "tiny.txt"
    path.write_text("abcdefghij" * 3)
    assert main(["train", "--model", "gpt", "--text", str(path), "--checkpoint", str(tmp_path / "c.npz")]
                + SMALL) == 2
    assert "too short" in capsys.readouterr().err


def test_generate_past_the_block_slides_the_window(corpus, tmp_path, capsys):
    # Learned positions stop at block_size (16 here): 40 new tokens need a sliding window.
    ckpt = tmp_path / "gpt.npz"
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--steps", "2",
                 "--checkpoint", str(ckpt)] + SMALL) == 0
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(ckpt), "--prompt", "All:\nSpeak, speak.\n\nFirst",
                 "--max-new-tokens", "40", "--temperature", "0.8", "--top-k", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("All:\nSpeak, speak.\n\nFirst")
    assert len(out) == len("All:\nSpeak, speak.\n\nFirst") + 40 + 1   # + print's newline
