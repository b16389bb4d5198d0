"""Module hooks (torch.nn.Module's forward pre-hooks, forward hooks and full backward
hooks) and their removable handles.

A module without hooks keeps ``_hooks = None`` (the class attribute), so Module.__call__
pays one attribute test; the first register_* call gives the instance a ``_Hooks`` and
removing the last hook sets it back to None.

Full backward hooks work as PyTorch's: the module's tensor inputs and its tensor outputs
each pass through one joint identity node of the graph. The engine runs a node once
every gradient reachable from the root has reached it, so the output node sees all of
grad_output together and the input node all of grad_input together; the input node then
calls the hooks (whose replacement grad_input is what flows on to the inputs). The
autograd Functions here have one output each, so a joint node is built by hand: every
wrapped tensor gets its own selector node whose one parent is a 0-d placeholder tensor
made by the joint node; the selectors hand back ``_GradPack`` objects ({index:
gradient}) that the engine sums (merges) into the joint node's incoming gradient.
"""

import itertools
import weakref
from collections import OrderedDict

import numpy as np

from ..autograd.function import Function
from ..autograd.grad_mode import GradMode
from ..tensor import Tensor

_ids = itertools.count()


class RemovableHandle:
    """What register_*_hook returns: ``handle.remove()`` unregisters the hook (again is a
    no-op); also a context manager that removes it on exit."""

    def __init__(self, module, table):
        self.id = next(_ids)
        self._module = weakref.ref(module)
        self._table = table

    def remove(self):
        module = self._module()
        hooks = None if module is None else module.__dict__.get("_hooks")
        if hooks is None:
            return
        getattr(hooks, self._table).pop(self.id, None)
        if hooks.empty():
            object.__setattr__(module, "_hooks", None)  # back to the hook-free fast path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class _Hooks:
    __slots__ = ("forward_pre", "forward", "backward", "backward_pre")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, OrderedDict())

    def empty(self):
        return not (self.forward_pre or self.forward or self.backward or self.backward_pre)

    def call(self, module, args, kwargs):
        """Module.__call__ with hooks, in PyTorch's order: pre-hooks, (inputs wrapped for
        backward hooks), forward, forward hooks, (outputs wrapped)."""
        for hook, with_kwargs in list(self.forward_pre.values()):
            if with_kwargs:
                result = hook(module, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError("forward pre-hook must return None or a tuple of (new_args, new_kwargs), "
                                           f"but got {result}.")
                    args, kwargs = result
            else:
                result = hook(module, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        backward = None
        if (self.backward or self.backward_pre) and GradMode.enabled:
            backward = _BackwardHookCall(module, list(self.backward.values()), list(self.backward_pre.values()))
            args = backward.wrap_inputs(args)
        out = module.forward(*args, **kwargs)
        for hook, with_kwargs in list(self.forward.values()):
            result = hook(module, args, kwargs, out) if with_kwargs else hook(module, args, out)
            if result is not None:
                out = result
        if backward is not None:
            out = backward.wrap_outputs(out)
        return out


def register(module, table, hook, prepend=False, value=None):
    """Add `hook` to module's hook table `table`; returns its RemovableHandle."""
    if not callable(hook):
        raise TypeError(f"{type(module).__name__}.register_{table}_hook: hook must be callable, "
                        f"got {type(hook).__name__}")
    hooks = module.__dict__.get("_hooks")
    if hooks is None:
        hooks = _Hooks()
        object.__setattr__(module, "_hooks", hooks)
    handle = RemovableHandle(module, table)
    entries = getattr(hooks, table)
    entries[handle.id] = hook if value is None else value
    if prepend:
        entries.move_to_end(handle.id, last=False)
    return handle


# ---------------------------------------------------------------------- backward hooks

class _GradPack:
    """Gradients of some of a joint node's tensors by index; the engine adds packs."""

    __slots__ = ("grads",)
    shape = ()  # the placeholder's shape, so the engine sums nothing

    def __init__(self, grads):
        self.grads = grads

    def __add__(self, other):
        merged = dict(self.grads)
        for i, g in other.grads.items():
            merged[i] = g if i not in merged else merged[i] + g
        return _GradPack(merged)


class _Select(Function):
    """Identity on one tensor of a joint node: its gradient goes to the node as a pack."""

    @staticmethod
    def backward(ctx, grad):
        return _GradPack({ctx.index: grad})


class _Joint(Function):
    """The joint identity node of a module's inputs or outputs. ``on_grads(grads)``
    (grads: a list with an array or None per wrapped tensor) returns the arrays to pass on."""

    @staticmethod
    def backward(ctx, pack):
        grads = [pack.grads.get(i) for i in range(len(ctx.parents))]
        grads = ctx.on_grads(grads)
        out = []
        for p, g in zip(ctx.parents, grads):
            # A leaf keeps the array it is given (and later adds into it in place), so
            # it gets its own copy of what may be another node's gradient.
            out.append(g.copy() if g is not None and p is not None and p.grad_fn is None else g)
        return tuple(out)


def _wrap(values, on_grads):
    """values (a tuple) with every tensor that requires grad replaced by an identity of it
    through one _Joint node; returns (new values, indices of the tensors in values) or
    (values, None) when no tensor requires grad."""
    index = [i for i, v in enumerate(values) if isinstance(v, Tensor)]
    tensors = [values[i] for i in index]
    if not any(t.requires_grad for t in tensors):
        return values, None
    joint = object.__new__(_Joint)
    joint.parents = [t if t.requires_grad else None for t in tensors]
    joint.saved = None
    joint.on_grads = on_grads
    first = next(t for t in tensors if t.requires_grad)
    placeholder = Tensor._make(np.zeros(()), first.device, True, joint)
    out = list(values)
    for k, (i, t) in enumerate(zip(index, tensors)):
        if t.requires_grad:
            node = object.__new__(_Select)
            node.parents = [placeholder]
            node.saved = None
            node.index = k
            out[i] = Tensor._make(t.data, t.device, True, node)
    return tuple(out), index


def _as_tensor(g, device):
    return None if g is None else Tensor._make(g, device, False, None)


def _as_array(g, like):
    if g is None:
        return None
    if isinstance(g, Tensor):
        return g.data
    return like.device.from_host(np.asarray(g, dtype=like.dtype))


class _BackwardHookCall:
    """One call of a module with full backward (pre-)hooks: the gradients of its
    outputs, then of its inputs, handed to the hooks."""

    def __init__(self, module, hooks, pre_hooks):
        self.module, self.hooks, self.pre_hooks = module, hooks, pre_hooks
        self.grad_outputs = None
        self.n_inputs = 0
        self.input_index = None
        self.inputs = None

    def wrap_inputs(self, args):
        self.n_inputs = len(args)
        args, self.input_index = _wrap(args, self._input_grads)
        self.inputs = args
        return args

    def wrap_outputs(self, out):
        single = not isinstance(out, tuple)
        values = (out,) if single else out
        self.outputs = values
        wrapped, self.output_index = _wrap(values, self._output_grads)
        return wrapped[0] if single else wrapped

    @staticmethod
    def _pack(index, grads, values):
        # one entry per value (None where it is not a tensor or got no gradient), as torch
        res = [None] * len(values)
        for i, g in zip(index, grads):
            res[i] = _as_tensor(g, values[i].device)
        return tuple(res)

    def _output_grads(self, grads):
        self.grad_outputs = self._pack(self.output_index, grads, self.outputs)
        for hook in self.pre_hooks:
            result = hook(self.module, self.grad_outputs)
            if result is None:
                continue
            if len(result) != len(self.grad_outputs):
                raise RuntimeError("Backward pre hook returned an invalid number of grad_output, got "
                                   f"{len(result)}, but expected {len(self.grad_outputs)}")
            self.grad_outputs = tuple(result)
        current = self.grad_outputs
        if self.input_index is None:
            # No input wants a gradient: the hooks run now, with grad_input all None.
            grad_input = (None,) * self.n_inputs
            for hook in self.hooks:
                result = hook(self.module, grad_input, current)
                if result is not None and not (isinstance(result, tuple) and all(r is None for r in result)):
                    raise RuntimeError("Backward hook for Modules where no input requires gradient should always "
                                       "return None or None for all gradients.")
            self.grad_outputs = None
        # Zeros for an output that got no gradient: the engine runs a node only once every
        # edge into it has delivered, and the nodes behind that output lead to the inputs.
        out = []
        for i in self.output_index:
            g = _as_array(current[i], self.outputs[i])
            t = self.outputs[i]
            out.append(t.device.zeros_like(t.data) if g is None and t.requires_grad else g)
        return out

    def _input_grads(self, grads):
        if self.grad_outputs is None:
            return grads  # the gradient reached the inputs without passing the outputs
        # As torch: every tensor input gets a gradient, zeros where none arrived (one that
        # does not require grad, or one the outputs do not depend on).
        grads = [t.device.zeros_like(t.data) if g is None else g
                 for g, t in zip(grads, (self.inputs[i] for i in self.input_index))]
        res = self._pack(self.input_index, grads, self.inputs)
        for hook in self.hooks:
            result = hook(self.module, res, self.grad_outputs)
            if result is None:
                continue
            if len(result) != len(res):
                raise RuntimeError("Backward hook returned an invalid number of grad_input, got "
                                   f"{len(result)}, but expected {len(res)}")
            res = tuple(result)
        self.grad_outputs = None
        return [_as_array(res[i], self.inputs[i]) for i in self.input_index]
