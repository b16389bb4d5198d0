"""The command line as a user meets it: the `dlkern` console script and --version, help
that states every default (and the per-model ones), options of another model refused,
one exit-status convention (2: the command line is wrong, 1: the run failed) for train
and generate, files created with the user's umask, progress bars, --momentum reaching
RMSprop and OneCycle with Adagrad. Each run is in process and tiny."""

import argparse
import io
import math
import os
import re
import stat
import subprocess
import sys
import types
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import dlkern
from dlkern.__main__ import build_parser, main
from dlkern._cli import DefaultsHelpFormatter
from dlkern._files import write_atomically
from dlkern.train import load_checkpoint
from dlkern.train.progress import StepBar

ROOT = Path(__file__).resolve().parents[1]
MLP = ["train", "--epochs", "1", "--batch-size", "256", "--threads", "1", "--no-progress"]
GPT_SMALL = ["--steps", "4", "--n-layer", "1", "--n-head", "2", "--d-model", "16", "--block-size", "8",
             "--batch-size", "4", "--eval-interval", "2", "--eval-batches", "1", "--sample-tokens", "0",
             "--threads", "1"]
TEXT = "To be, or not to be, that is the question.\n" * 30


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def _exit_code(argv, capsys):
    """(exit status, stdout, stderr) of main(argv), argparse's SystemExit included."""
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ version and script

def test_version_in_process_and_as_module(capsys):
    rc, out, _ = _exit_code(["--version"], capsys)
    assert rc == 0 and out == f"dlkern {dlkern.__version__}\n"
    # The child imports the dlkern this test imports (same interpreter and environment: an
    # installed wheel has no _C in the source tree, so no PYTHONPATH of our own).
    proc = subprocess.run([sys.executable, "-m", "dlkern", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"dlkern {dlkern.__version__}", proc.stderr


def test_console_script_entry_point_is_main():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"dlkern": "dlkern.__main__:main"}
    assert project["optional-dependencies"]["plot"] == ["matplotlib>=3.5"]
    # what the generated script does: sys.exit(main()) with argv from sys.argv
    module, name = project["scripts"]["dlkern"].split(":")
    entry = getattr(__import__(module, fromlist=[name]), name)
    saved = sys.argv
    sys.argv = ["dlkern", "--version"]
    try:
        buf = io.StringIO()
        with redirect_stdout(buf), pytest.raises(SystemExit) as exc:
            sys.exit(entry())
    finally:
        sys.argv = saved
    assert exc.value.code == 0 and buf.getvalue() == f"dlkern {dlkern.__version__}\n"


def test_main_returns_an_int_exit_status(capsys):
    rc = main(["info"])
    assert isinstance(rc, int) and rc == 0
    capsys.readouterr()


# -------------------------------------------------------------------------------- help

def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


@pytest.mark.parametrize("command", ["train", "generate", "plot", "info"])
def test_every_option_states_its_default(command):
    _, commands = _subparsers()
    sub = commands[command]
    assert sub.formatter_class is DefaultsHelpFormatter
    formatter = DefaultsHelpFormatter(command)
    missing = [a.option_strings[0] for a in sub._actions
               if a.option_strings and a.option_strings != ["-h", "--help"]
               and "default" not in formatter._get_help_string(a)]
    assert missing == []


def test_train_help_shows_the_defaults_and_the_per_model_table(capsys):
    rc, out, _ = _exit_code(["train", "--help"], capsys)
    assert rc == 0
    text = " ".join(out.split())  # argparse wraps lines
    assert "--epochs EPOCHS (mlp / lenet) (default: mlp/lenet 30)" in text
    assert "(default: mlp 0.001; lenet 0.05; gpt/lstm/gru 0.002)" in text
    assert "--block-size BLOCK_SIZE" in text and "(default: 128)" in text
    assert "momentum of --optimizer sgd or rmsprop (default: sgd 0.9, rmsprop 0.0)" in text
    assert "SGD/RMSprop momentum" not in text
    table = out[out.index("per-model defaults"):].splitlines()
    header = table[1].split()
    assert header == ["mlp", "lenet", "gpt", "lstm", "gru"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:] if line.strip()}
    assert rows["--optimizer"] == ["adam", "sgd", "adamw", "adamw", "adamw"]
    assert rows["--epochs"] == ["30", "30", "-", "-", "-"]
    assert rows["--steps"] == ["-", "-", "1500", "1500", "1500"]
    assert rows["--n-layer"] == ["-", "-", "4", "2", "2"]
    assert rows["--hidden-size"] == ["-", "-", "-", "256", "256"]


def test_top_level_help_is_plain_text(capsys):
    rc, out, _ = _exit_code(["--help"], capsys)
    assert rc == 0
    assert "``" not in out
    for command in ("info", "train", "generate", "plot", "bench"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command
    assert "exit status" in out


def test_every_command_help_is_plain_text(capsys, monkeypatch):
    # Descriptions come from docstrings written for the API pages; a terminal gets no
    # ``literal`` markup from them. Every bench table of this checkout is included.
    from pathlib import Path

    from dlkern.bench import benchmarks

    monkeypatch.setenv("DLKERN_BENCH_CASES", str(Path(__file__).resolve().parents[1] / "bench" / "cases"))
    commands = [["info"], ["train"], ["generate"], ["plot"], ["bench"]] + [["bench", b] for b in benchmarks()]
    assert len(commands) > 10
    for command in commands:
        rc, out, _ = _exit_code(command + ["--help"], capsys)
        assert rc == 0 and out.startswith("usage:"), command
        assert "``" not in out, (command, out)


# ------------------------------------------------------------- options of another model

@pytest.mark.parametrize("argv, option, model", [
    (["--model", "gpt", "--epochs", "99"], "--epochs", "gpt"),
    (["--model", "mlp", "--steps", "5"], "--steps", "mlp"),
    (["--model", "lstm", "--n-head", "2"], "--n-head", "lstm"),
    (["--model", "gpt", "--hidden-size", "64"], "--hidden-size", "gpt"),
    (["--model", "mlp", "--batch-norm"], "--batch-norm", "mlp"),
    (["--model", "gpt", "--dataset", "digits"], "--dataset", "gpt"),
    (["--model", "gru", "--eps", "0.1"], "--eps", "gru"),
    (["--model", "lenet", "--text", "x.txt"], "--text", "lenet"),
    (["--model", "gru", "--checkpoint-activations"], "--checkpoint-activations", "gru"),
])
def test_an_option_of_another_model_is_a_usage_error(argv, option, model, capsys):
    rc, out, err = _exit_code(["train", *argv], capsys)
    line = _one_line(err)
    assert rc == 2
    assert line.startswith("error: train: ") and option in line and f"--model {model}" in line
    assert out == ""  # refused before anything runs


def test_momentum_is_for_sgd_and_rmsprop(tmp_path, capsys):
    rc, _, err = _exit_code(MLP + ["--momentum", "0.5"], capsys)  # mlp trains with adam
    assert rc == 2 and "--momentum is for --optimizer sgd or rmsprop, not adam" in _one_line(err)
    expected = {("rmsprop", "0.5"): 0.5, ("rmsprop", None): 0.0, ("sgd", None): 0.9, ("sgd", "0.3"): 0.3}
    for (name, momentum), value in expected.items():
        ck = tmp_path / f"{name}{momentum}.npz"
        argv = MLP + ["--optimizer", name, "--lr", "0.01", "--checkpoint", str(ck)]
        argv += ["--momentum", momentum] if momentum else []
        assert main(argv) == 0
        group = load_checkpoint(ck)["optimizer"]["param_groups"][0]
        assert group["momentum"] == value, (name, momentum)
        # RMSprop with momentum keeps a momentum buffer per parameter (PyTorch's state layout)
        state = next(iter(load_checkpoint(ck)["optimizer"]["state"].values()))
        assert ("momentum_buffer" in state) == (value > 0), (name, sorted(state))
    capsys.readouterr()


def _one_cycle_lr(i, total, max_lr, pct_start=0.3, div=25.0, final_div=1e4):
    """OneCycleLR (cos) learning rate after i scheduler steps: an independent reference."""
    initial = max_lr / div
    low = initial / final_div
    end1 = pct_start * total - 1

    def cos(start, end, pct):
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))
    if i <= end1:
        return cos(initial, max_lr, i / end1)
    return cos(max_lr, low, (i - end1) / (total - 1 - end1))


def test_onecycle_with_adagrad_trains(tmp_path, capsys):
    ck = tmp_path / "ada.npz"
    rc, out, err = _exit_code(MLP[:1] + ["--epochs", "3", "--batch-size", "256", "--threads", "1",
                                          "--no-progress", "--optimizer", "adagrad", "--scheduler", "onecycle",
                                          "--lr", "0.05", "--checkpoint", str(ck)], capsys)
    assert rc == 0, err
    state = load_checkpoint(ck)
    assert set(next(iter(state["optimizer"]["state"].values()))) == {"step", "sum"}  # Adagrad's
    history = __import__("json").loads((tmp_path / "ada.history.json").read_text())
    per_epoch = math.ceil(1438 / 256)
    total = 3 * per_epoch
    for record in history["epochs"]:
        last_step = record["epoch"] * per_epoch - 1   # the epoch's last batch ran after this many steps
        assert record["lr"] == pytest.approx(_one_cycle_lr(last_step, total, 0.05), rel=1e-9)


# ------------------------------------------------------------------------ exit statuses

def _damaged(path):
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


def test_exit_statuses_agree_between_train_and_generate(tmp_path, corpus, capsys):
    missing = tmp_path / "nope.npz"
    damaged = _damaged(tmp_path / "damaged.npz")
    cases = [
        # a run-time failure: 1
        (["train", "--checkpoint", str(missing), "--resume"] + MLP[1:], 1, "does not exist"),
        (["generate", "--checkpoint", str(missing)], 1, "does not exist"),
        (["train", "--checkpoint", str(damaged), "--resume"] + MLP[1:], 1, "damaged"),
        (["generate", "--checkpoint", str(damaged)], 1, "damaged"),
        (["train", "--model", "gpt", "--text", str(tmp_path / "none.txt")] + GPT_SMALL, 1, "does not exist"),
        (["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "nodata")] + MLP[1:], 1,
         "does not exist"),
        (MLP + ["--optimizer", "sgd", "--lr", "1e12", "--scheduler", "none"], 1, "the loss became nan"),
        # a wrong command line: 2
        (MLP + ["--device", "tpu"], 2, "--device tpu"),
        (["train", "--model", "gpt", "--text", str(corpus), "--device", "tpu"] + GPT_SMALL, 2, "--device tpu"),
        (MLP + ["--epochs", "0"], 2, "--epochs"),
        (["generate", "--max-new-tokens", "0"], 2, "--max-new-tokens"),
        (["train", "--resume"] + MLP[1:], 2, "--resume needs --checkpoint"),
        (["train", "--model", "resnet"], 2, "invalid choice"),
        # values an optimizer or a generator refuses: 2 with a message, never a traceback
        (MLP + ["--optimizer", "sgd", "--momentum", "-1"], 2, "--optimizer sgd: Invalid momentum value"),
        (MLP + ["--weight-decay", "-1"], 2, "Invalid weight_decay value"),
        (MLP + ["--lr", "nan"], 2, "Invalid learning rate value: nan"),
        (MLP + ["--seed", "-1"], 2, "argument --seed: must be >= 0"),
        (["generate", "--seed", "-1"], 2, "argument --seed: must be >= 0"),
        (["train", "--model", "gpt", "--text", str(corpus), "--eval-interval", "0"], 2, "--eval-interval"),
        (["train", "--model", "gpt", "--text", str(corpus), "--eval-batches", "0"], 2, "--eval-batches"),
    ]
    for argv, status, message in cases:
        rc, _, err = _exit_code(argv, capsys)
        assert rc == status, (argv, err)
        assert "Traceback" not in err, err
        line = err.splitlines()[-1]
        assert message in line, (argv, err)
        if line.startswith("error: "):  # ours: one line naming the command
            assert line.startswith(f"error: {argv[0]}: ") and _one_line(err) == line, err
        else:  # argparse's: usage, then "<prog> <command>: error: argument ..."
            assert status == 2 and f"dlkern {argv[0]}: error: " in line, err


def test_generate_bad_prompt_is_a_usage_error(tmp_path, corpus, capsys):
    ck = tmp_path / "g.npz"
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--checkpoint", str(ck)] + GPT_SMALL) == 0
    capsys.readouterr()
    rc, _, err = _exit_code(["generate", "--checkpoint", str(ck), "--prompt", "\u00e9"], capsys)
    assert rc == 2 and "--prompt" in _one_line(err)


# ------------------------------------------------------------------------------- umask

@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_created_with_the_umask(tmp_path, capsys, mask, mode):
    old = os.umask(mask)
    try:
        ck = tmp_path / "run.npz"
        assert main(MLP + ["--checkpoint", str(ck)]) == 0
        plain = write_atomically(tmp_path / "plain.bin", lambda tmp: Path(tmp).write_bytes(b"x"))
    finally:
        os.umask(old)
    capsys.readouterr()
    for path in (ck, tmp_path / "run.history.json", plain):
        assert stat.S_IMODE(path.stat().st_mode) == mode, (path, oct(path.stat().st_mode))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_write_atomically_leaves_the_umask_as_it_was(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomically(tmp_path / "a", lambda tmp: Path(tmp).write_text("a"))
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o640


# ---------------------------------------------------------------------------- progress

class _FakeTqdm:
    made = []

    def __init__(self, iterable=None, total=None, initial=0, desc=None, **kwargs):
        self.total, self.n, self.desc, self.postfix, self.closed = total, initial, desc, None, False
        self.initial = initial
        _FakeTqdm.made.append(self)

    def update(self, n=1):
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):  # tqdm's signature
        self.postfix = dict(ordered_dict or {}, **kwargs)

    def write(self, line, file=None):
        print(line, file=file or sys.stdout)

    def close(self):
        self.closed = True


def test_language_model_steps_have_a_bar_with_the_loss(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeTqdm))
    monkeypatch.setattr("dlkern.train.progress.sys.stderr", types.SimpleNamespace(isatty=lambda: True))
    _FakeTqdm.made.clear()
    ck = tmp_path / "g.npz"
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--checkpoint", str(ck)] + GPT_SMALL) == 0
    out = capsys.readouterr().out
    (bar,) = _FakeTqdm.made
    assert (bar.total, bar.initial, bar.n, bar.closed) == (4, 0, 4, True)
    final = re.findall(r"step     4/4  train loss ([0-9.]+)", out)
    assert bar.postfix == {"loss": final[0]}
    # the first line comes before the corpus is read
    assert out.splitlines()[0].startswith("train --model gpt: reading ")
    # a resumed run's bar starts where the checkpoint stopped
    _FakeTqdm.made.clear()
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--checkpoint", str(ck), "--resume"]
                + [a if a != "4" else "6" for a in GPT_SMALL]) == 0
    capsys.readouterr()
    assert (_FakeTqdm.made[0].initial, _FakeTqdm.made[0].n) == (4, 6)
    # --no-progress: none
    _FakeTqdm.made.clear()
    assert main(["train", "--model", "gpt", "--text", str(corpus), "--checkpoint", str(ck), "--no-progress"]
                + GPT_SMALL) == 0
    capsys.readouterr()
    assert _FakeTqdm.made == []


def test_step_bar_without_tqdm_or_terminal_prints_plainly(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed
    bar = StepBar(3, "x", enabled=True)
    bar.update(1, loss="1.0")
    bar.write("a line")
    bar.close()
    assert capsys.readouterr().out == "a line\n"
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeTqdm))
    _FakeTqdm.made.clear()
    StepBar(3, "x", enabled=False).update(1)
    StepBar(3, "x", enabled=None).update(1)  # None: only on a terminal (pytest's stderr is not one)
    assert _FakeTqdm.made == []


class _FakeTqdmIterable(_FakeTqdm):
    made = []

    def __init__(self, iterable=None, **kwargs):
        super().__init__(**kwargs)
        self.iterable = iterable
        _FakeTqdmIterable.made.append(self)

    def __iter__(self):
        return iter(self.iterable)


def test_image_runs_off_a_terminal_draw_no_bar(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeTqdmIterable))
    _FakeTqdmIterable.made.clear()
    assert main(["train", "--epochs", "1", "--batch-size", "512", "--threads", "1"]) == 0
    capsys.readouterr()
    assert _FakeTqdmIterable.made == []  # pytest's stderr is not a terminal


def test_fit_bar_postfix_is_the_last_batch_loss(monkeypatch):
    from dlkern import data, nn, optim
    from dlkern.train import fit

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeTqdmIterable))
    _FakeTqdmIterable.made.clear()
    dlkern.manual_seed(0)
    x = dlkern.tensor(np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32))
    y = dlkern.tensor(np.arange(20) % 2)
    loader = data.DataLoader(data.TensorDataset(x, y), batch_size=8)
    model = nn.Linear(3, 2)
    seen = []

    def loss_fn(out, target):
        loss = nn.functional.cross_entropy(out, target)
        seen.append(float(loss.item()))
        return loss
    fit(model, optim.SGD(model.parameters(), lr=0.1), loader, 1, loss_fn=loss_fn, progress=True,
        log=lambda s: None)
    (bar,) = _FakeTqdmIterable.made
    assert bar.postfix == {"loss": f"{seen[-1]:.4f}"}  # one epoch: nothing after it
    # three epochs: from the second on, the bar also estimates the epochs after it
    _FakeTqdmIterable.made.clear()
    seen.clear()
    fit(model, optim.SGD(model.parameters(), lr=0.1), loader, 3, loss_fn=loss_fn, progress=True,
        log=lambda s: None)
    first, second, third = _FakeTqdmIterable.made
    assert first.postfix.keys() == {"loss"} and third.postfix.keys() == {"loss"}
    assert second.postfix["loss"] == f"{seen[5]:.4f}" and re.fullmatch(r"\d+:\d\d", second.postfix["then"])


def test_clock_format():
    from dlkern.train.loop import _clock
    assert [_clock(s) for s in (0, 59.6, 61, 3599, 3600, 7325)] == ["0:00", "1:00", "1:01", "59:59", "1:00:00",
                                                                      "2:02:05"]


def test_bench_cases_have_a_bar(tmp_path, capsys, monkeypatch):
    from dlkern.bench import benchmarks

    if "softmax" not in benchmarks():
        pytest.skip("the benchmark tables live in a source checkout (bench/cases)")
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=_FakeTqdm))
    monkeypatch.setattr("dlkern.train.progress.sys.stderr", types.SimpleNamespace(isatty=lambda: True))
    _FakeTqdm.made.clear()
    assert main(["bench", "softmax", "--shapes", "8x16,4x8", "--threads", "1", "--repeats", "1", "--peers",
                 "numpy", "--out", str(tmp_path / "s.md")]) == 0
    out = capsys.readouterr().out
    (bar,) = _FakeTqdm.made
    rows = [line for line in out.splitlines() if line.startswith("[1T] ")]  # one per case: (log_)softmax x 2
    assert len(rows) == 4
    assert (bar.total, bar.n, bar.closed, bar.desc) == (4, 4, True, "bench softmax")
    assert (tmp_path / "s.md").is_file()
