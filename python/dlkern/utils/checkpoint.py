"""Gradient (activation) checkpointing: ``checkpoint(fn, *args)`` runs fn without keeping
its intermediate activations and recomputes them during the backward.

Memory for compute: a checkpointed segment keeps only its inputs (and its output, which
the next op saves anyway); its backward reruns fn's forward with autograd recording, then
backpropagates through that fresh graph. Dropout and every other draw from dlkern's
generator see the same random numbers in the rerun (preserve_rng_state=True): the
generator's state is saved before the forward, set for the rerun, and restored after.
"""

from __future__ import annotations

from ..autograd import Function, enable_grad, is_grad_enabled, no_grad
from ..autograd.function import TensorBase
from ..generator import RNG

__all__ = ["checkpoint", "checkpoint_sequential"]


class _Segment:
    """fn and its arguments, with the Tensor arguments found once (positional and keyword)."""

    def __init__(self, fn, args, kwargs, preserve_rng_state):
        self.fn, self.args, self.kwargs = fn, list(args), dict(kwargs)
        self.slots = [(False, i) for i, a in enumerate(self.args) if isinstance(a, TensorBase)]
        self.slots += [(True, k) for k, v in self.kwargs.items() if isinstance(v, TensorBase)]
        self.rng_state = RNG.generator.bit_generator.state if preserve_rng_state else None

    def tensors(self):
        return [self.kwargs[k] if kw else self.args[k] for kw, k in self.slots]

    def run(self, tensors):
        args, kwargs = list(self.args), dict(self.kwargs)
        for (kw, k), t in zip(self.slots, tensors):
            if kw:
                kwargs[k] = t
            else:
                args[k] = t
        return self.fn(*args, **kwargs)


def _check_output(out):
    if not isinstance(out, TensorBase):
        raise TypeError(f"checkpoint: fn must return one Tensor, got {type(out).__name__} (a tuple of outputs "
                        f"is not supported: checkpoint each output's function, or return one Tensor)")
    return out


class CheckpointFunction(Function):
    """forward(ctx, segment, anchor, *tensor arrays): fn under no_grad. The anchor is a
    grad-requiring scalar that makes autograd record this node even when no Tensor
    argument requires grad (fn's parameters may), as PyTorch's non-reentrant variant does."""

    @staticmethod
    def forward(ctx, segment, anchor, *arrays):
        ctx.segment = segment
        with no_grad():
            out = _check_output(segment.run(segment.tensors()))
        ctx.out_meta = (tuple(out.shape), out.dtype)
        return out.data

    @staticmethod
    def backward(ctx, g):
        seg = ctx.segment
        originals = seg.tensors()
        inputs = [t.detach().requires_grad_(t.requires_grad) for t in originals]
        rng_now = RNG.generator.bit_generator.state
        if seg.rng_state is not None:
            RNG.generator.bit_generator.state = seg.rng_state
        try:
            with enable_grad():
                out = _check_output(seg.run(inputs))
        finally:
            RNG.generator.bit_generator.state = rng_now
        if tuple(out.shape) != ctx.out_meta[0] or out.dtype != ctx.out_meta[1]:
            raise RuntimeError(f"checkpoint: the recomputed output has shape {tuple(out.shape)} and dtype "
                               f"{out.dtype}, the forward's had {ctx.out_meta[0]} and {ctx.out_meta[1]}: fn is "
                               f"not deterministic in its shapes")
        if out.requires_grad:
            # Reentrant backward: fn's parameters (leaves) get their .grad here directly,
            # the detached inputs collect the gradients this node returns.
            out.backward(out._make(g, out.device, False, None))
        grads = [t.grad.data if t.requires_grad and t.grad is not None else None for t in inputs]
        return (None, None, *grads)


def checkpoint(function, *args, use_reentrant=False, preserve_rng_state=True, context_fn=None,
               determinism_check="default", debug=False, **kwargs):
    """function(*args, **kwargs) without keeping its activations: they are recomputed in
    the backward. Returns function's output (one Tensor), equal to the plain call's.

    Under no_grad (or when neither an argument nor any parameter can need a gradient),
    function simply runs. The gradients of Tensor arguments are returned through the
    graph; the parameters function uses get theirs accumulated into .grad during the
    backward (so ``autograd.grad`` through a checkpoint also fills parameters' .grad, as
    PyTorch's reentrant variant does). `use_reentrant` is accepted for PyTorch's
    signature; both values run this one implementation. `context_fn`, `determinism_check`
    and `debug` are accepted with their defaults only."""
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got {type(function).__name__}")
    if not isinstance(use_reentrant, bool):
        raise TypeError(f"checkpoint: use_reentrant must be a bool, got {use_reentrant!r}")
    if context_fn is not None or determinism_check != "default" or debug:
        raise NotImplementedError("checkpoint: context_fn, determinism_check and debug are not supported")
    if use_reentrant and kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))  # PyTorch's reentrant rule
    if not is_grad_enabled():
        return function(*args, **kwargs)
    segment = _Segment(function, args, kwargs, preserve_rng_state)
    tensors = segment.tensors()
    if not tensors:
        raise ValueError("checkpoint: function needs at least one Tensor argument (its device and dtype)")
    first = tensors[0]
    anchor = first._make(first.device.zeros((), dtype=first.data.dtype), first.device, True, None)
    return CheckpointFunction.apply(segment, anchor, *tensors)


def checkpoint_sequential(functions, segments, input, use_reentrant=False, **kwargs):
    """Run nn.Sequential-like `functions` in `segments` checkpointed chunks (the last
    chunk runs normally, as PyTorch does)."""
    functions = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if not isinstance(segments, int) or segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be an integer >= 1, got {segments!r}")
    size = max(1, len(functions) // segments)

    def run(start, end):
        def chunk(x):
            for f in functions[start:end]:
                x = f(x)
            return x
        return chunk

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end + 1), input, use_reentrant=use_reentrant, **kwargs)
    return run(end + 1, len(functions))(input)
