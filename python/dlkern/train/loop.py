"""``fit``: the training loop (train, evaluate, checkpoint, resume) with progress."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np

from .. import nn, no_grad
from ..generator import default_generator
from ..utils.grad_norms import format_grad_norms, grad_norms
from .amp import MixedPrecision
from .checkpoint import load_checkpoint, mismatch_error, save_checkpoint
from .progress import tqdm_or_none

# What applying a checkpoint of the wrong structure raises (another model's weights,
# missing entries, wrong types): turned into one CheckpointError.
_MISMATCH_ERRORS = (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError)


def _check_schedule_length(scheduler, per_batch, epochs, steps_per_epoch) -> None:
    """A resumed schedule of fixed length (OneCycleLR's total_steps, restored from the
    checkpoint) must cover the run's epochs: raise a ValueError saying so now, rather than
    the scheduler's own error in the middle of the first epoch past its end."""
    total = getattr(scheduler, "total_steps", None)
    if total is None or not per_batch or epochs * steps_per_epoch <= total:
        return
    raise ValueError(f"its {type(scheduler).__name__} schedule ends after {total} steps "
                     f"({total // steps_per_epoch} epochs of {steps_per_epoch} batches) and {epochs} epochs "
                     f"need {epochs * steps_per_epoch}; a one-cycle schedule cannot be extended: resume "
                     f"with the epochs it was started with")


@dataclass
class History:
    """Per-epoch metrics of a fit() run (lists indexed by epoch, resumed epochs included
    only from the resume point on)."""

    epochs: List[int] = field(default_factory=list)
    train_loss: List[float] = field(default_factory=list)
    train_accuracy: List[float] = field(default_factory=list)
    test_accuracy: List[float] = field(default_factory=list)
    seconds: float = 0.0        # wall time of the run, evaluation and checkpoints included
    train_seconds: float = 0.0  # time spent in training steps
    samples: int = 0
    start_epoch: int = 0        # epochs already done by the checkpoint resumed from (0: none)

    @property
    def samples_per_second(self) -> float:
        """Training throughput: samples per second of training-step time."""
        return self.samples / self.train_seconds if self.train_seconds > 0 else 0.0


def _data_parallel(model) -> bool:
    """Whether `model` trains data-parallel (a DistributedDataParallel on several ranks)."""
    from ..nn.parallel import DistributedDataParallel
    return isinstance(model, DistributedDataParallel)


def _unwrapped(model):
    """The model whose weights a checkpoint holds: DDP's inner module, so a checkpoint
    resumes on any number of ranks, or in a plain single-process run."""
    return model.module if _data_parallel(model) else model


def _sum_over_ranks(model, values):
    """`values` summed over the ranks when `model` trains data-parallel, else unchanged."""
    if not _data_parallel(model):
        return values
    from .. import distributed as dist
    total = np.array(values, dtype=np.float64)
    dist.all_reduce(total)
    return [type(v)(t) for v, t in zip(values, total)]


def evaluate(model, loader, device=None, amp=None) -> float:
    """Classification accuracy of `model` over `loader` (eval mode, no graph); batches
    are moved to `device` (default: where they are); `amp`: a train.amp.MixedPrecision
    whose autocast the forward runs under (the precision the model was trained in).
    A DistributedDataParallel model counts over every rank's `loader` (each rank passes
    its own shard of the test set)."""
    wrapper, model = model, _unwrapped(model)
    was_training = model.training
    model.eval()
    correct = total = 0
    with no_grad(), (amp or MixedPrecision()).autocast():
        for xb, yb in loader:
            if device is not None:
                xb, yb = xb.to(device), yb.to(device)
            pred = model(xb).data.argmax(axis=1)
            labels = yb.data if hasattr(yb, "data") else np.asarray(yb)
            correct += int((pred == labels).sum())
            total += labels.shape[0]
    model.train(was_training)
    correct, total = _sum_over_ranks(wrapper, [correct, total])
    return correct / max(total, 1)


def _progress(iterable, total, desc, enabled):
    """tqdm over `iterable` when it is installed and stderr is a terminal."""
    tqdm = tqdm_or_none(enabled)
    return iterable if tqdm is None else tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _rng_state(loader):
    gen = getattr(loader, "generator", None)
    return {"dlkern": default_generator().bit_generator.state,
            "loader": gen.bit_generator.state if gen is not None else None}


def _set_rng_state(loader, state):
    default_generator().bit_generator.state = state["dlkern"]
    gen = getattr(loader, "generator", None)
    if gen is not None and state.get("loader") is not None:
        gen.bit_generator.state = state["loader"]


def fit(model, optimizer, train_loader, epochs: int, *, loss_fn: Callable = None, test_loader=None,
        scheduler=None, scheduler_per_batch: bool = False, checkpoint=None, resume: bool = False,
        progress: Optional[bool] = None, log: Callable[[str], None] = print, device=None,
        log_grad_norm: bool = False, batch_loss: Callable = None, amp: MixedPrecision = None,
        on_epoch: Callable[[dict], None] = None) -> History:
    """Train `model` for `epochs` epochs and return a History.

    Each epoch: train on every batch of `train_loader` (zero_grad, forward, loss,
    backward, step), step the scheduler (per batch with `scheduler_per_batch`, else
    per epoch), measure test accuracy on `test_loader`, and save a checkpoint to
    `checkpoint` (model, optimizer, scheduler, RNG states, epoch). With `resume`,
    training continues from that checkpoint and ends with the same weights as an
    uninterrupted run. `progress`: tqdm bars (None: only on a terminal). `device`:
    where each batch is moved before the step (the model must already be there).
    A checkpoint that does not fit the model, optimizer or scheduler raises
    CheckpointError; one that has already done `epochs` epochs trains nothing (the
    History is empty and its start_epoch says how many the checkpoint holds).
    `log_grad_norm`: each epoch's log also gives the gradient norms of its last batch
    (total and largest parameter, before the optimizer step).
    `batch_loss(model, xb, yb) -> (output, loss)` replaces the step's forward and loss
    (adversarial training, mixup); the train accuracy compares that output with yb.
    `amp`: a train.amp.MixedPrecision (autocast around forward and loss, a GradScaler for
    float16; its state is checkpointed); default: float32.
    `on_epoch(record)` is called after each epoch (before its checkpoint) with a dict of
    its metrics: epoch, train_loss, train_accuracy, test_accuracy, lr (of the epoch's
    last step), samples_per_second and train_seconds (the training steps alone).
    A DistributedDataParallel `model` trains data-parallel: the epoch's loss, accuracy and
    samples are summed over the ranks (samples/s is then the job's), a DistributedSampler
    behind `train_loader` gets set_epoch each epoch, rank 0 alone writes the checkpoint,
    and the checkpoint holds the inner module's weights.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    amp = amp or MixedPrecision()
    history = History()
    start_epoch = 0
    if resume:
        if checkpoint is None:
            raise ValueError("fit: resume=True needs a checkpoint path")
        state = load_checkpoint(checkpoint)
        try:
            if not isinstance(state, dict):
                raise ValueError(f"it holds a {type(state).__name__}, not a dict")
            if state.get("kind") is not None:  # fit() writes no kind; train --model gpt writes "gpt"
                raise ValueError(f"it is a {state['kind']!r} checkpoint, not one written by fit()")
            start_epoch = int(state["epoch"])
            _unwrapped(model).load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
                _check_schedule_length(scheduler, scheduler_per_batch, epochs, len(train_loader))
            _set_rng_state(train_loader, state["rng"])
            amp.load_state_dict(state.get("amp"))
        except _MISMATCH_ERRORS as exc:
            raise mismatch_error(checkpoint, f"this {type(model).__name__} model and optimizer", exc) from exc
        history.start_epoch = start_epoch
        log(f"resumed from {checkpoint} at epoch {start_epoch}")

    from .. import distributed as dist
    saves = dist.get_rank() == 0 or not _data_parallel(model)  # one writer per checkpoint
    sampler = getattr(train_loader, "sampler", None)
    started = time.perf_counter()
    epoch_walls = []  # whole epochs (evaluation and checkpoint included): the bar's estimate of the rest
    for epoch in range(start_epoch, epochs):
        wall_started = time.perf_counter()
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # a DistributedSampler's shuffle follows the epoch
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        batches = _progress(train_loader, len(train_loader), f"epoch {epoch + 1}/{epochs}", progress)
        epoch_started = time.perf_counter()
        norms = None
        lr = optimizer.param_groups[0]["lr"]
        bar = batches if hasattr(batches, "set_postfix") else None  # a tqdm bar (progress=None/True with tqdm)
        # The epochs after this one, at the mean pace so far (shown in the bar).
        then = _clock(sum(epoch_walls) / len(epoch_walls) * (epochs - epoch - 1)) \
            if epoch_walls and epoch + 1 < epochs else None
        for xb, yb in batches:
            if device is not None:
                xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            with amp.autocast():
                if batch_loss is None:
                    out = model(xb)
                    loss = loss_fn(out, yb)
                else:
                    out, loss = batch_loss(model, xb, yb)
            amp.backward(loss)
            if log_grad_norm:
                amp.unscale_(optimizer)  # (the true gradients, not the loss-scaled ones)
                norms = grad_norms(model)
            lr = optimizer.param_groups[0]["lr"]
            amp.step(optimizer)
            if scheduler is not None and scheduler_per_batch:
                scheduler.step()
            n = yb.shape[0]
            value = float(loss.item())
            loss_sum += value * n
            correct += int((out.data.argmax(axis=1) == yb.data).sum())
            seen += n
            if bar is not None:
                postfix = {"loss": f"{value:.4f}"}
                if then is not None:
                    postfix["then"] = then
                bar.set_postfix(postfix, refresh=False)
        epoch_seconds = time.perf_counter() - epoch_started
        history.train_seconds += epoch_seconds
        if scheduler is not None and not scheduler_per_batch:
            scheduler.step()
        loss_sum, correct, seen = _sum_over_ranks(model, [loss_sum, correct, seen])
        history.epochs.append(epoch + 1)
        history.train_loss.append(loss_sum / max(seen, 1))
        history.train_accuracy.append(correct / max(seen, 1))
        history.samples += seen
        test_acc = evaluate(model, test_loader, device, amp) if test_loader is not None else float("nan")
        history.test_accuracy.append(test_acc)
        log(f"epoch {epoch + 1:3d}/{epochs}  train loss {history.train_loss[-1]:.4f}  "
            f"train acc {history.train_accuracy[-1]:.4f}  test acc {test_acc:.4f}"
            + (f"  {format_grad_norms(norms)}" if norms is not None else ""))
        if on_epoch is not None:  # before the save: an exception from it keeps the last checkpoint
            on_epoch({"epoch": epoch + 1, "train_loss": history.train_loss[-1],
                      "train_accuracy": history.train_accuracy[-1], "test_accuracy": test_acc, "lr": lr,
                      "samples_per_second": seen / epoch_seconds if epoch_seconds > 0 else 0.0,
                      "train_seconds": epoch_seconds})
        if checkpoint is not None and saves:
            save_checkpoint(checkpoint, {
                "epoch": epoch + 1,
                "model": _unwrapped(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": _rng_state(train_loader),
                "amp": amp.state_dict(),
            })
        epoch_walls.append(time.perf_counter() - wall_started)
    history.seconds = time.perf_counter() - started
    return history


def _clock(seconds: float) -> str:
    """h:mm:ss or m:ss, as tqdm shows its own estimate."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
