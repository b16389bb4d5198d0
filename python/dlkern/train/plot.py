"""``python -m dlkern plot RUN [--out PNG]``: a training run's curves from its history.

RUN is a history file (train.history) or the checkpoint it sits beside. The figure has
a loss panel (train loss per epoch, or per step and at each evaluation with the
validation loss), an accuracy panel (image models: train and test accuracy) and a
learning-rate panel, drawn with matplotlib's Agg backend (no display needed) to a PNG:
by default the history's name with .png (``run.history.json`` -> ``run.history.png``).
matplotlib is optional: ``pip install "dlkern[plot]"``.
"""

from __future__ import annotations

from pathlib import Path

from .._cli import DefaultsHelpFormatter, RunError, UsageError
from .._files import write_atomically
from .history import HISTORY_SUFFIX, history_path, load_history


def add_plot_command(commands) -> None:
    p = commands.add_parser("plot", help="draw a training run's loss / accuracy / lr curves to a PNG",
                            description=__doc__.split("\n\n", 1)[1], formatter_class=DefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN", help=f"a *{HISTORY_SUFFIX} file, or the checkpoint it was written beside")
    p.add_argument("--out", default=None, metavar="PNG", help="where the PNG goes").shown_default = \
        "RUN's history name with .png, beside it"
    p.set_defaults(handler=run_plot)


def find_history(run) -> Path:
    """The history file RUN names: itself when it is one, else the one beside a checkpoint."""
    path = Path(run)
    if path.name.endswith(".json"):
        return path
    beside = history_path(path)
    if beside.is_file() or not path.is_file():
        return beside
    raise UsageError(f"{run} is neither a history file (*{HISTORY_SUFFIX}) nor a checkpoint with one beside it")


def _series(entries, x_key, y_key):
    points = [(e[x_key], e[y_key]) for e in entries if e.get(y_key) is not None and e.get(x_key) is not None]
    return [x for x, _ in points], [y for _, y in points]


def draw(history, out: Path) -> Path:
    """Write the history's curves to the PNG `out` (atomically); returns its path."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    by_epoch = history.get("unit") == "epoch"
    x_key = "epoch" if by_epoch else "step"
    panels = ["loss", "accuracy", "lr"] if by_epoch else ["loss", "lr"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6))
    title = f"{history.get('model', '?')}: " + " ".join(history.get("argv", [])[:12])
    fig.suptitle(title if len(title) < 110 else title[:107] + "...", fontsize=9)
    loss, lr = axes[0], axes[-1]
    if by_epoch:
        epochs = history.get("epochs", [])
        loss.plot(*_series(epochs, x_key, "train_loss"), marker=".", label="train")
        acc = axes[1]
        acc.plot(*_series(epochs, x_key, "train_accuracy"), marker=".", label="train")
        acc.plot(*_series(epochs, x_key, "test_accuracy"), marker=".", label="test")
        acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        acc.legend()
        lr.plot(*_series(epochs, x_key, "lr"), marker=".")
    else:
        steps, evals = history.get("steps", []), history.get("evals", [])
        loss.plot(*_series(steps, x_key, "train_loss"), linewidth=0.6, alpha=0.6, label="train (each step)")
        loss.plot(*_series(evals, x_key, "val_loss"), marker="o", label="validation")
        lr.plot(*_series(steps, x_key, "lr"))
    loss.set(xlabel=x_key, ylabel="loss", title="loss")
    loss.legend()
    lr.set(xlabel=x_key, ylabel="learning rate", title="learning rate")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, format="png", dpi=100)  # (the temporary name has no .png for savefig to go by)
    try:
        return write_atomically(out, write)
    finally:
        plt.close(fig)


def run_plot(args) -> int:
    try:
        import matplotlib  # noqa: F401  (only to say what is missing before reading anything)
    except ImportError:
        raise RunError("plot needs matplotlib: pip install 'dlkern[plot]'") from None
    path = find_history(args.run)
    if not path.is_file():
        raise RunError(f"no history at {path} (train writes one beside --checkpoint, or to --history PATH)")
    try:
        history = load_history(path)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    out = Path(args.out) if args.out else path.with_suffix(".png")  # (find_history gives a *.json)
    print(draw(history, out))
    return 0
