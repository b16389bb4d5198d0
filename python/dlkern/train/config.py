"""What the training commands share: the choices and defaults of ``train`` (MLP/LeNet on
images, train.cli) and ``train --model gpt|lstm|gru`` / ``generate`` (train.lm), and the optimizer
and learning-rate schedule a command line names, built in one place for both."""

from __future__ import annotations

import argparse

from .. import optim
from .._cli import UsageError
from ..optim import lr_scheduler as sched

MODELS = ("mlp", "lenet", "gpt", "lstm", "gru")
LM_MODELS = ("gpt", "lstm", "gru")  # the character-level language models (train.lm)
DATASETS = ("digits", "fashion-mnist")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "radam")
SCHEDULERS = ("none", "step", "cosine", "onecycle", "exponential", "warmup-cosine")

# Defaults that reach the accuracy targets on digits in seconds.
DEFAULTS = {
    "mlp": {"epochs": 30, "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "weight_decay": 0.0,
            "scheduler": "cosine"},
    "lenet": {"epochs": 30, "optimizer": "sgd", "lr": 0.05, "batch_size": 64, "weight_decay": 0.0,
              "scheduler": "cosine"},
}

DEFAULT_GPT_CHECKPOINT = "dlkern-gpt.npz"

# A model that learns words and speaker turns from Shakespeare in a few minutes on two
# cores; the benchmark model is --n-layer 6 --d-model 192 --n-head 6.
GPT_DEFAULTS = {"steps": 1500, "optimizer": "adamw", "lr": 2e-3, "batch_size": 16, "weight_decay": 0.01,
                "scheduler": "warmup-cosine"}
# Per language model: the layer count (--n-layer) and the recurrent width (--hidden-size).
LM_ARCH_DEFAULTS = {"gpt": {"n_layer": 4}, "lstm": {"n_layer": 2, "hidden_size": 256},
                    "gru": {"n_layer": 2, "hidden_size": 256}}

_OPTIMIZER_CLASSES = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSprop,
                      "adagrad": optim.Adagrad, "radam": optim.RAdam}


def _int_at_least(least: int, what: str):
    """An argparse type: an int >= `least` (else an argparse error, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value
    return parse


non_negative_int = _int_at_least(0, "an integer >= 0")  # a seed
positive_int = _int_at_least(1, "a positive integer")   # counts: threads, steps, batches


# --momentum when not given: SGD's CLI default, RMSprop's PyTorch default.
MOMENTUM_DEFAULTS = {"sgd": 0.9, "rmsprop": 0.0}


def make_optimizer(args, params):
    """The optimizer args.optimizer names, with args.lr and args.weight_decay (and
    args.momentum for SGD and RMSprop, the ones that take a momentum; None: their
    MOMENTUM_DEFAULTS)."""
    cls = _OPTIMIZER_CLASSES[args.optimizer]
    options = {"lr": args.lr, "weight_decay": args.weight_decay}
    if args.optimizer in MOMENTUM_DEFAULTS:
        momentum = getattr(args, "momentum", None)
        options["momentum"] = MOMENTUM_DEFAULTS[args.optimizer] if momentum is None else momentum
    try:
        return cls(params, **options)
    except ValueError as exc:  # a negative --momentum or --weight-decay, a NaN --lr: the command line's
        raise UsageError(f"--optimizer {args.optimizer}: {exc}") from None


def make_scheduler(args, opt, steps_per_epoch, epochs=None):
    """(scheduler or None, step it per batch?) for args.scheduler over `epochs` scheduler
    steps (default args.epochs; the GPT trainer passes its optimizer steps)."""
    name = args.scheduler
    epochs = args.epochs if epochs is None else epochs
    if name == "none":
        return None, False
    if name == "step":
        return sched.StepLR(opt, step_size=max(1, epochs // 3), gamma=0.1), False
    if name == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=epochs), False
    if name == "exponential":
        return sched.ExponentialLR(opt, gamma=0.95), False
    if name == "onecycle":
        # OneCycle also cycles the momentum (or Adam's beta1); an optimizer with neither
        # (Adagrad) gets the learning-rate cycle alone instead of PyTorch's ValueError.
        defaults = opt.defaults
        cycle = "momentum" in defaults or "betas" in defaults
        return sched.OneCycleLR(opt, max_lr=args.lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                cycle_momentum=cycle), True
    warmup = max(1, epochs // 10)  # warmup-cosine: linear warm-up, then cosine decay
    return sched.SequentialLR(opt, [sched.LinearLR(opt, start_factor=0.1, total_iters=warmup),
                                     sched.CosineAnnealingLR(opt, T_max=max(1, epochs - warmup))],
                              milestones=[warmup]), False
