"""``mpirun -n 2 python -m dlkern train --distributed``: the MLP, LeNet with SyncBatchNorm and
the GPT train on 2 ranks; rank 0 alone prints and writes the checkpoint; a checkpoint
resumes on another number of ranks (one included)."""

import subprocess
import sys

import numpy as np

from dlkern.train import load_checkpoint
from mpi_support import check_ok, mpi_env, mpirun

MLP = ["-m", "dlkern", "train", "--distributed", "--model", "mlp", "--batch-size", "128", "--no-progress"]


def _plain(argv, cwd):
    """The same command in one ordinary process (no launcher)."""
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300,
                          env=mpi_env(), cwd=cwd)
    return check_ok(proc)


def test_mlp_two_ranks_log_once_and_resume_on_one(tmp_path):
    ckpt = tmp_path / "mlp.npz"
    out = check_ok(mpirun(2, MLP + ["--epochs", "2", "--checkpoint", ckpt], cwd=tmp_path))
    assert out.count("done: test accuracy") == 1, out  # rank 0 alone prints
    assert "batch 128 per rank (256 in all)" in out and "2 MPI rank(s) x 1 thread(s)" in out, out
    assert out.count("epoch   2/2") == 1, out
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2 and all(not k.startswith("module.") for k in state["model"]), list(state["model"])
    # one writer (rank 0: the checkpoint and its history), no temporaries left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.history.json", "mlp.npz"]
    accuracy = float(out.split("done: test accuracy ")[1].split()[0])
    assert accuracy > 0.8, out

    # Resume the 2-rank checkpoint in a plain single process, then on 3 ranks.
    out1 = _plain(["-m", "dlkern", "train", "--model", "mlp", "--batch-size", "128", "--no-progress", "--threads",
                   "1", "--epochs", "3", "--checkpoint", ckpt, "--resume"], tmp_path)
    assert "resumed from" in out1 and "at epoch 2" in out1 and "epoch   3/3" in out1, out1
    out3 = check_ok(mpirun(3, MLP + ["--epochs", "4", "--checkpoint", ckpt, "--resume"], cwd=tmp_path))
    assert out3.count("at epoch 3") == 1 and "epoch   4/4" in out3, out3
    assert load_checkpoint(ckpt)["epoch"] == 4


def test_lenet_sync_batchnorm(tmp_path):
    ckpt = tmp_path / "lenet.npz"
    argv = ["-m", "dlkern", "train", "--distributed", "--model", "lenet", "--batch-norm", "--epochs", "1",
            "--batch-size", "64", "--no-progress", "--checkpoint", ckpt]
    out = check_ok(mpirun(2, argv, cwd=tmp_path, timeout=300))
    assert out.count("done: test accuracy") == 1, out
    assert "SyncBatchNorm" in out, out  # the summary names the converted layers
    model = load_checkpoint(ckpt)["model"]
    assert any(k.endswith("running_mean") for k in model), list(model)
    assert all(np.isfinite(v).all() for v in model.values() if isinstance(v, np.ndarray))


def test_gpt_two_ranks(tmp_path):
    ckpt = tmp_path / "gpt.npz"
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question. " * 200)
    gpt = ["-m", "dlkern", "train", "--model", "gpt", "--text", text, "--n-layer", "1", "--n-head", "2",
           "--d-model", "16", "--block-size", "16", "--batch-size", "4", "--eval-interval", "2",
           "--eval-batches", "1", "--sample-tokens", "0", "--checkpoint", ckpt]
    out = check_ok(mpirun(2, gpt + ["--distributed", "--steps", "4"], cwd=tmp_path, timeout=300))
    assert out.count("done: 4 steps") == 1 and out.count("step     4/4") == 1, out
    assert "batch 4 x 16 per rank (8 in all)" in out, out
    assert load_checkpoint(ckpt)["step"] == 4
    out1 = _plain(gpt + ["--steps", "6", "--resume", "--threads", "1"], tmp_path)
    assert "resumed from" in out1 and "at step 4" in out1 and "done: 2 steps" in out1, out1


def test_distributed_refusals(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dlkern", "train", "--distributed", "--eps", "0.1"],
                          capture_output=True, text=True, timeout=120, env=mpi_env(), cwd=tmp_path)
    assert proc.returncode == 2 and "--distributed does not combine" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "dlkern", "train", "--batch-norm"],
                          capture_output=True, text=True, timeout=120, env=mpi_env(), cwd=tmp_path)
    assert proc.returncode == 2 and "--batch-norm is for --model lenet" in proc.stderr, proc.stderr
