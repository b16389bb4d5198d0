"""``python -m dlkern train``: train a model on a real data set from one command."""

from __future__ import annotations

import math
import sys
import textwrap
import time

import dlkern

from .. import data
from ..models import LeNet5, MLP
from .._cli import DefaultsHelpFormatter, RunError
from .config import (DATASETS, DEFAULT_GPT_CHECKPOINT, DEFAULTS, LM_MODELS, MODELS, OPTIMIZERS, SCHEDULERS,
                     make_optimizer, make_scheduler, non_negative_int, positive_int)
from .amp import MixedPrecision, add_amp_argument
from .distributed import add_distributed_argument, start as start_run
from .history import HISTORY_SUFFIX, RunHistory, history_path
from .lm import add_gpt_arguments, run_train_gpt
from .loop import evaluate, fit
from .options import defaults_table, resolve, shown_default
from .robust import InputSpace, add_robust_arguments, check_robust_arguments, make_batch_loss, report_robust

__all__ = ["DATASETS", "DEFAULTS", "MODELS", "OPTIMIZERS", "SCHEDULERS", "add_train_command", "positive_int",
           "run_train"]


def add_train_command(commands) -> None:
    p = commands.add_parser(
        "train", help="train a model on a real data set (default: an MLP on the 8x8 digits)",
        formatter_class=DefaultsHelpFormatter, epilog=defaults_table(),
        description=textwrap.fill(
            "Train MLP or LeNet-5 on the scikit-learn digits or Fashion-MNIST, with progress, "
            "per-epoch accuracy, checkpoints and resume; prints a summary at the end. "
            "--model gpt|lstm|gru trains a character-level GPT, LSTM or GRU language model on a "
            "text instead (see the language-model options) and saves a checkpoint for 'generate'. "
            "Every run with a checkpoint writes its history (losses, accuracy, lr, throughput per epoch "
            "or evaluation) to <checkpoint>.history.json beside it: 'plot' draws it.", 88))
    p.add_argument("--model", choices=MODELS, default="mlp", help="what to train (see the table below)")
    p.add_argument("--dataset", choices=DATASETS, default=None, help="(mlp / lenet)")
    p.add_argument("--data-dir", default=None,
                   help="directory of the MNIST-format files (fashion-mnist; default "
                        "/usr/share/datasets/fashion-mnist from Debian's dataset-fashion-mnist)")
    p.add_argument("--epochs", type=int, default=None, help="(mlp / lenet)")
    p.add_argument("--batch-size", type=int, default=None, help="samples (language models: windows) per step")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="as torch.optim's")
    p.add_argument("--momentum", type=float, default=None, help="momentum of --optimizer sgd or rmsprop")
    p.add_argument("--weight-decay", type=float, default=None, help="the optimizer's weight_decay")
    p.add_argument("--scheduler", choices=SCHEDULERS, default=None,
                   help="learning-rate schedule (language models: over the steps)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="kernel threads (default: all cores; --distributed: per rank, the cores mpirun bound "
                        "it to, else this host's cores shared out among its ranks)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (needs a CUDA build and a GPU)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds the weights, the shuffling and the sampling")
    p.add_argument("--batch-norm", action="store_true", default=None,
                   help="(lenet) BatchNorm after each convolution (SyncBatchNorm with --distributed)")
    p.add_argument("--checkpoint", default=None,
                   help="save a checkpoint here after every epoch (language models: every evaluation)"
                   ).shown_default = f"none; gpt/lstm/gru {DEFAULT_GPT_CHECKPOINT}"
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--history", default=None, metavar="PATH",
                   help="write the run's history (JSON) here, updated at every epoch or evaluation"
                   ).shown_default = f"beside the checkpoint, its .npz replaced by {HISTORY_SUFFIX}; none without one"
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (there are none off a terminal, without tqdm, or on ranks other than 0)")
    p.add_argument("--log-grad-norm", action="store_true",
                   help="print the total gradient norm and the largest per-parameter one at each log "
                        "(every epoch; language models: every --eval-interval steps)")
    add_amp_argument(p)
    add_distributed_argument(p)
    add_gpt_arguments(p)
    add_robust_arguments(p)
    for action in p._actions:  # (argparse has no public list of a parser's options)
        shown = shown_default(action.dest)
        if action.default is None and shown is not None:
            action.shown_default = shown
    p.set_defaults(handler=run_train)


def _datasets(args, flatten):
    if args.dataset == "digits":
        return data.digits(flatten=flatten, seed=args.seed), 8
    return data.fashion_mnist(root=args.data_dir, flatten=flatten), 28


def _model(name, side, batch_norm=False):
    if name == "mlp":
        return MLP(side * side, (256, 256), 10)
    return LeNet5(1, 10, input_size=side, batch_norm=batch_norm)


def _shard(dataset, run):
    """This rank's part of the test set: every world_size-th sample (each counted once)."""
    if run.world_size == 1:
        return dataset
    return data.Subset(dataset, list(range(run.rank, len(dataset), run.world_size)))


def _history_recorder(args, run):
    """fit()'s on_epoch for this run: append the epoch to the history file (rank 0, when
    there is a file) and stop with exit status 1 once the loss is not finite."""
    path = history_path(args.checkpoint, args.history) if run.is_main else None
    history = RunHistory(path, args, "epoch") if path is not None else None

    def record(entry):
        if history is not None:
            if args.resume and "resumed_at" not in history.data:  # the first epoch after the resume point
                history.resume_from(entry["epoch"] - 1)
            history.add_epoch(entry)
        if not math.isfinite(entry["train_loss"]):
            raise RunError(f"the loss became {entry['train_loss']} in epoch {entry['epoch']}; lower --lr")
    record.history = history
    return record


def run_train(args) -> int:
    resolve(args)
    if args.model in LM_MODELS:
        return run_train_gpt(args)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        print(f"error: train: --epochs and --batch-size must be >= 1 and --lr > 0 "
              f"(got {args.epochs}, {args.batch_size}, {args.lr})", file=sys.stderr)
        return 2
    problem = check_robust_arguments(args)
    if problem:
        print(f"error: train: {problem}", file=sys.stderr)
        return 2
    if args.resume and not args.checkpoint:
        print("error: train: --resume needs --checkpoint PATH", file=sys.stderr)
        return 2
    if args.distributed and (args.adversarial or args.eps is not None):
        print("error: train: --distributed does not combine with --adversarial / --eps (their attacks would "
              "run backward passes through the gradient all-reduce)", file=sys.stderr)
        return 2
    run = start_run(args)
    if isinstance(run, int):
        return run
    say = run.print
    dlkern.manual_seed(args.seed)

    (train_set, test_set), side = _datasets(args, flatten=False)
    if run.distributed:
        sampler = data.DistributedSampler(train_set, seed=args.seed)
        train_loader = data.DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    else:
        train_loader = data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=args.seed)
    test_loader = data.DataLoader(_shard(test_set, run), batch_size=512)
    try:
        device = dlkern.device(args.device)
    except (RuntimeError, ValueError) as exc:
        print(f"error: train: --device {args.device}: {exc}", file=sys.stderr)
        return 2
    model = run.wrap(_model(args.model, side, args.batch_norm).to(device))
    amp = MixedPrecision(args.amp, device.type)
    space = InputSpace(train_set.tensors[0])
    opt = make_optimizer(args, model.parameters())
    scheduler, per_batch = make_scheduler(args, opt, len(train_loader))

    batch = (f"batch {args.batch_size}" if not run.distributed else
             f"batch {args.batch_size} per rank ({args.batch_size * run.world_size} in all)")
    say(f"training {args.model} on {args.dataset}: {len(train_set)} train / {len(test_set)} test samples, "
        f"{args.epochs} epochs, {batch}, {args.optimizer} lr {args.lr}, "
        f"scheduler {args.scheduler}, {amp.describe()}, "
        f"on {device}, {dlkern.get_num_threads()} CPU thread(s), ISA {dlkern.get_isa()}{run.describe()}")
    if run.is_main:
        # per sample (batch 1); eval mode and its own inputs: the training run is unchanged
        print(dlkern.utils.summary(getattr(model, "module", model), (1, 1, side, side), depth=2))
    record = _history_recorder(args, run)
    started = time.perf_counter()
    history = fit(model, opt, train_loader, args.epochs, test_loader=test_loader, scheduler=scheduler,
                  scheduler_per_batch=per_batch, checkpoint=args.checkpoint, resume=args.resume,
                  progress=run.progress(args.no_progress), log=say, device=device,
                  log_grad_norm=args.log_grad_norm, batch_loss=make_batch_loss(args, space, 10), amp=amp,
                  on_epoch=record)
    wall = time.perf_counter() - started
    if not history.epochs:
        # Resumed from a checkpoint that has done every requested epoch: say so, and report
        # the checkpoint's real test accuracy (one pass over the test set), not a NaN.
        accuracy = evaluate(model, test_loader, device, amp)
        say(f"checkpoint already trained for {history.start_epoch} epochs (--epochs {args.epochs}): "
            f"nothing to do")
        say(f"done: test accuracy {accuracy:.4f} | checkpoint {args.checkpoint}")
        report_robust(args, model, test_loader, space, device, accuracy)
        return 0
    final = history.test_accuracy[-1] if history.test_accuracy else float("nan")
    # samples/s: the training steps' throughput (evaluation, checkpoints and the set-up
    # before the first epoch are in the wall time only)
    say(f"done: test accuracy {final:.4f} | wall time {wall:.1f} s | "
        f"{history.samples_per_second:.0f} train samples/s (training steps only)"
        + (f" | checkpoint {args.checkpoint}" if args.checkpoint else "")
        + (f" | history {record.history.path}" if record.history is not None else ""))
    if record.history is not None:
        record.history.finish({"test_accuracy": final, "wall_seconds": wall,
                               "samples_per_second": history.samples_per_second, "epochs": history.epochs[-1]})
    report_robust(args, model, test_loader, space, device, final)
    return 0
