"""A training run's history as JSON: what ``python -m dlkern plot`` draws.

``train`` writes it beside the checkpoint (``run.npz`` -> ``run.history.json``, the GPT's
default ``dlkern-gpt.npz`` -> ``dlkern-gpt.history.json``) or where ``--history`` says,
rewriting it atomically at every epoch (MLP/LeNet) or evaluation (language models), so
a run stopped at any point leaves a readable file. Layout::

    {"format": "dlkern-history/1", "model": "mlp", "unit": "epoch" | "step",
     "argv": [...], "args": {...resolved options...}, "started": "<UTC time>",
     "epochs": [{"epoch", "train_loss", "train_accuracy", "test_accuracy", "lr",
                 "samples_per_second", "train_seconds", "wall_seconds"}, ...],
     "steps": [{"step", "train_loss", "lr"}, ...],
     "evals": [{"step", "train_loss", "val_loss", "lr", "steps_per_second",
                "tokens_per_second", "train_seconds", "wall_seconds"}, ...],
     "finished": true | false, "summary": {...}}

Image runs fill "epochs", language models "steps" (every optimizer step) and "evals".
Throughput counts training steps only (no evaluation, no checkpoint writes); wall
seconds count everything since the run started. Non-finite numbers are written as null
(strict JSON). A resumed run keeps the entries of the file up to its resume point.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Dict, Optional

from .._files import write_atomically

HISTORY_SUFFIX = ".history.json"
FORMAT = "dlkern-history/1"
_SKIPPED_ARGS = ("handler", "argv")


def history_path(checkpoint, explicit=None) -> Optional[Path]:
    """Where a run's history goes: `explicit` (--history), else beside `checkpoint` with
    its suffix replaced by .history.json; None when neither is given."""
    if explicit:
        return Path(explicit)
    if checkpoint is None:
        return None
    path = Path(checkpoint)
    return path.with_name((path.stem if path.suffix else path.name) + HISTORY_SUFFIX)


def _clean(value):
    """JSON-safe: floats that are not finite become None, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def load_history(path) -> Dict:
    """A history file's contents (ValueError when it is not one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a training history (not JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a training history (no \"format\": \"{FORMAT}\")")
    return data


class RunHistory:
    """The history of one run, written to `path` after every epoch or evaluation."""

    def __init__(self, path, args, unit: str, resume_at: Optional[int] = None):
        self.path = Path(path)
        self.started = time.perf_counter()
        self.data = {"format": FORMAT, "model": args.model, "unit": unit,
                     "argv": list(getattr(args, "argv", None) or []),
                     "args": _clean({k: v for k, v in vars(args).items() if k not in _SKIPPED_ARGS}),
                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "epochs": [], "steps": [], "evals": [], "finished": False}
        if resume_at is not None:
            self.resume_from(resume_at)

    def resume_from(self, position: int) -> None:
        """Carry over the old file's entries up to `position` (the resumed epoch or step)."""
        self.data["resumed_at"] = position
        try:
            old = load_history(self.path)
        except (OSError, ValueError):
            return  # no history to continue (or not ours): start afresh
        key = "epoch" if self.data["unit"] == "epoch" else "step"
        for name in ("epochs", "steps", "evals"):
            self.data[name] = [e for e in old.get(name, []) if isinstance(e, dict) and e.get(key, 0) <= position]

    def wall_seconds(self) -> float:
        return time.perf_counter() - self.started

    def add_epoch(self, record: Dict) -> None:
        self.data["epochs"].append(_clean(dict(record, wall_seconds=self.wall_seconds())))
        self.write()

    def add_step(self, step: int, train_loss: float, lr: float) -> None:
        """One optimizer step (kept in memory; written with the next evaluation)."""
        self.data["steps"].append(_clean({"step": step, "train_loss": train_loss, "lr": lr}))

    def add_eval(self, record: Dict) -> None:
        self.data["evals"].append(_clean(dict(record, wall_seconds=self.wall_seconds())))
        self.write()

    def finish(self, summary: Dict) -> None:
        self.data["finished"] = True
        self.data["summary"] = _clean(summary)
        self.write()

    def write(self) -> None:
        text = json.dumps(self.data, indent=1, allow_nan=False) + "\n"

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        write_atomically(self.path, write)
