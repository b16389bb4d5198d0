"""Training: a small fit loop with progress, evaluation, and crash-safe checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .loop import History, evaluate, fit

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "History", "evaluate", "fit"]
