"""Tensor gradient hooks (``register_hook``, ``retain_grad``,
``register_post_accumulate_grad_hook``) and anomaly mode, as the engine sees them.

Where hooks live, so that a tensor without hooks costs nothing:
- a non-leaf's hooks sit on its grad_fn node (``node._tensor_hooks``; a Function has a
  ``__dict__``, and one node makes exactly one tensor);
- a leaf's in its ``_hooks`` slot, which ``Tensor._make`` never sets (read with a
  default, only here).
A hook often refers to its own tensor (``p.register_post_accumulate_grad_hook(lambda t:
sync(p))``): the tensor, its record and the hook then form a cycle that the GC frees, so
no global table may hold a record. The global tables hold weak references to the tensors
only, with a callback that forgets the entry: ``LEAF_HOOKS`` (id of a leaf with hooks ->
its weak reference) tells the engine which leaves to watch, and ``STATE.nodes`` counts
the non-leaves with hooks (in ``_NODE_WATCH``); the engine reads both once per backward
and looks at nodes only when the count is non-zero.

The engine calls ``record.run(grad)`` with the gradient flowing into the tensor (the
total, once every edge into it has delivered); the hooks run in registration order,
each one's replacement feeding the next, then ``retain_grad`` stores the result
(PyTorch runs retains_grad last whatever the order of registration).
"""

import functools
import itertools
import warnings
import weakref

import numpy as np

from .function import Function, TensorBase

LEAF_HOOKS = {}  # id(leaf tensor with hooks) -> weakref to it
_NODE_WATCH = {}  # id(non-leaf tensor with hooks) -> weakref to it


class STATE:
    nodes = 0  # len(_NODE_WATCH): live records on non-leaf tensors (grad_fn nodes)
    anomaly = False  # detect_anomaly: check every backward's results for NaN


Function._tensor_hooks = None  # the default: a node whose tensor has no hooks

_ids = itertools.count()


def _forget(key, leaf, ref):
    """Drop a watch entry, if `ref` is still the one registered under `key` (so that a
    tensor's death and the removal of its last hook are counted once)."""
    table = LEAF_HOOKS if leaf else _NODE_WATCH
    if table.get(key) is ref:
        del table[key]
        if not leaf:
            STATE.nodes -= 1


class RemovableHandle:
    """What register_hook returns: ``handle.remove()`` unregisters the hook (a second
    remove does nothing); usable as a context manager that removes it on exit."""

    __slots__ = ("_record", "_key")

    def __init__(self, record, key):
        self._record = record
        self._key = key

    def remove(self):
        record = self._record
        if record is not None:
            self._record = None
            record.discard(self._key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class _Record:
    """The hooks of one tensor. Holds the tensor only weakly: its `ref` is the weak
    reference registered in the watch table, whose callback (holding no record) drops
    the entry when the tensor dies."""

    __slots__ = ("ref", "make", "device", "dtype", "shape", "pre", "post", "retain", "leaf", "alive")

    def __init__(self, tensor, leaf):
        key = id(tensor)
        self.ref = weakref.ref(tensor, functools.partial(_forget, key, leaf))
        self.make = type(tensor)._make
        self.device = tensor.device
        self.dtype = tensor.data.dtype
        self.shape = tuple(tensor.data.shape)
        self.pre = {}  # key -> hook(grad), in registration order
        self.post = {}  # key -> hook(tensor), leaves only
        self.retain = False
        self.leaf = leaf
        self.alive = True
        if leaf:
            LEAF_HOOKS[key] = self.ref
            tensor._hooks = self
        else:
            _NODE_WATCH[key] = self.ref
            STATE.nodes += 1
            tensor.grad_fn._tensor_hooks = self

    def _close(self):
        if self.alive:
            self.alive = False
            t = self.ref()
            if t is not None:
                _forget(id(t), self.leaf, self.ref)

    def __reduce__(self):
        # A copy or a pickle of the tensor starts without hooks: they belong to this
        # tensor (and a weak reference can be neither pickled nor retargeted).
        return (_no_record, ())

    def add(self, table, hook):
        key = next(_ids)
        table[key] = hook
        return RemovableHandle(self, key)

    def discard(self, key):
        self.pre.pop(key, None)
        self.post.pop(key, None)
        if not (self.pre or self.post or self.retain):
            self._close()  # nothing left: the engine's fast path again

    def run(self, grad):
        """The hooks on `grad` (an array shaped like the tensor); returns what flows on."""
        if grad.__class__ is not self.device.array_type:
            grad = self.device.asarray(grad)  # NumPy's 0-d math gives scalars; a Tensor holds arrays
        if self.pre:
            for hook in list(self.pre.values()):
                out = hook(self.make(grad, self.device, False, None))
                if out is not None:
                    grad = self._checked(hook, out)
        if self.retain:
            t = self.ref()
            if t is not None:
                # Out of place, as PyTorch does for a retained non-leaf: .grad owns its array.
                t.grad = self.make(grad.copy() if t.grad is None else t.grad.data + grad, self.device, False, None)
        return grad

    def run_post(self, tensor):
        for hook in list(self.post.values()):
            hook(tensor)

    def _checked(self, hook, out):
        name = getattr(hook, "__name__", type(hook).__name__)
        if not isinstance(out, TensorBase):
            raise TypeError(f"expected a Tensor or None, but hook '{name}' returned '{type(out).__name__}'")
        if tuple(out.data.shape) != self.shape:
            raise RuntimeError(f"hook '{name}' has changed the size of value (was {self.shape}, "
                               f"got {tuple(out.data.shape)})")
        if out.data.dtype != self.dtype:
            raise RuntimeError(f"hook '{name}' has changed the type of value (was {self.dtype}, got {out.data.dtype})")
        if out.device != self.device:
            raise RuntimeError(f"hook '{name}' has changed the device of value (was {self.device}, got {out.device})")
        return out.data


def _no_record():
    return None


def leaf_record(tensor):
    """The live hook record of leaf `tensor`, or None."""
    record = getattr(tensor, "_hooks", None)
    return record if record is not None and record.alive and record.ref() is tensor else None


def _record(tensor):
    """The live record of `tensor`, made on first use."""
    node = tensor.grad_fn
    if node is None:
        record = leaf_record(tensor)
        return record if record is not None else _Record(tensor, leaf=True)
    record = node._tensor_hooks
    if record is None or not record.alive:
        record = _Record(tensor, leaf=False)
    return record


def _check_hook(tensor, hook, what):
    if not tensor.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if not callable(hook):
        raise TypeError(f"{what}: hook must be callable, got {type(hook).__name__}")


def register_hook(tensor, hook):
    _check_hook(tensor, hook, "register_hook")
    record = _record(tensor)
    return record.add(record.pre, hook)


def register_post_accumulate_grad_hook(tensor, hook):
    if tensor.grad_fn is not None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    _check_hook(tensor, hook, "register_post_accumulate_grad_hook")
    record = _record(tensor)
    return record.add(record.post, hook)


def retain_grad(tensor):
    if not tensor.requires_grad:
        raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
    if tensor.grad_fn is None:
        return  # a leaf keeps its .grad anyway
    _record(tensor).retain = True


def retains_grad(tensor):
    node = tensor.grad_fn
    if node is None:
        return False
    record = node._tensor_hooks
    return record is not None and record.alive and record.retain


# ---------------------------------------------------------------------------- anomaly mode

def check_nan(node, results):
    """Anomaly mode, after `node`'s backward: refuse a NaN in any returned gradient."""
    for i, g in enumerate(results):
        if getattr(g, "dtype", None) is None:
            continue  # no gradient, or not an array (nn.hooks' gradient packs carry checked arrays)
        host = g if isinstance(g, np.ndarray) else g.numpy()
        if host.dtype.kind in "fc" and np.isnan(host).any():
            raise RuntimeError(f"Function '{node.name}' returned nan values in its {i}th output.")


def is_anomaly_enabled():
    return STATE.anomaly


class set_detect_anomaly:
    """``set_detect_anomaly(True)`` turns anomaly detection on at once (off with False);
    as a context manager it restores the previous mode on exit. While on, every backward
    checks each Function's returned gradients and raises RuntimeError naming the first
    Function that returned NaN. (PyTorch also records the forward's traceback; this does
    not.)"""

    def __init__(self, mode, check_nan=True):
        self.prev = STATE.anomaly
        STATE.anomaly = bool(mode) and bool(check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        STATE.anomaly = self.prev
        return False


class detect_anomaly:
    """Context manager (or decorator): anomaly detection on inside it (see
    set_detect_anomaly). Off by default: the engine then does no checking at all."""

    def __init__(self, check_nan=True):
        self.check_nan = bool(check_nan)
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime and should only be "
                      "enabled for debugging.", stacklevel=2)

    def __enter__(self):
        self.mode = set_detect_anomaly(True, self.check_nan)
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)

    def __call__(self, fn):
        check_nan = self.check_nan

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_detect_anomaly(True, check_nan):
                return fn(*args, **kwargs)
        return wrapper
