"""The Function base class: one differentiable op, forward and backward side by side."""

from .autocast_state import AutocastState
from .grad_mode import GradMode


class TensorBase:
    """The base class of dlkern.Tensor. Autograd recognises tensors by it, so it needs no
    import of dlkern.tensor (whose methods import the Functions, which import autograd).
    A tensor has data, device, requires_grad, grad_fn and grad; ``t._make(data, device,
    requires_grad, grad_fn)`` makes a new plain Tensor."""

    __slots__ = ()


class Function:
    """Subclass with static ``forward(ctx, *args)`` (arrays in, one array out) and
    ``backward(ctx, grad)`` (one gradient array in; a tuple with one entry per forward
    argument out: an array or None). ``ctx.save_for_backward(...)`` keeps arrays for the
    backward (``ctx.saved``); ``ctx.device`` is the device namespace to compute with;
    ``ctx.needs_input_grad[i]`` says whether input i wants a gradient.

    ``autocast`` is the op's policy under dlkern.autocast (dlkern/amp/autocast.py sets it
    per class from one table): "lower" (computes in the autocast dtype), "float32" (16-bit
    inputs computed in float32), "promote" (mixed floating inputs cast to the widest; the
    default) or None (never cast: the casts themselves)."""

    __slots__ = ("parents", "saved", "device", "needs_input_grad", "__dict__")
    autocast = "promote"

    def save_for_backward(self, *arrays):
        self.saved = arrays

    @classmethod
    def apply(cls, *args):
        # The hot path of every op: one pass over the arguments, no generators. Under
        # no_grad nothing is recorded (inference, generation: dozens of ops on tiny tensors
        # per decode step), so no needs list is built and no parents are kept.
        if AutocastState.active:  # (the one check autocast costs while it is off)
            args = AutocastState.cast_args(cls, args)
        ctx = object.__new__(cls)
        device = first = None
        need = False
        arrays = []
        needs = [] if GradMode.enabled else None
        for a in args:
            if isinstance(a, TensorBase):
                if device is None:
                    device = a.device
                    first = a
                elif a.device is not device:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, got {device} and {a.device}")
                arrays.append(a.data)
                if needs is not None:
                    if a.requires_grad:
                        need = True
                        needs.append(True)
                        continue
                    needs.append(False)
            else:
                arrays.append(a)
                if needs is not None:
                    needs.append(False)
        ctx.device = device
        # (under no_grad no input will get a gradient)
        ctx.needs_input_grad = (False,) * len(args) if needs is None else needs
        out = cls.forward(ctx, *arrays)
        if out.__class__ is not device.array_type:
            out = device.asarray(out)  # NumPy returns scalars from 0-d math; keep arrays
        if need:
            ctx.parents = [a if n else None for a, n in zip(args, needs)]
            return first._make(out, device, True, ctx)
        return first._make(out, device, False, None)

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__}Backward>"

    @property
    def name(self):
        return type(self).__name__ + "Backward"
