"""The backward engine's create_graph path: the backward pass recorded as a graph, so
that gradients can be differentiated again (Hessians, gradient penalties, hvp).

Kept apart from engine.execute on purpose: the first-order walk stays exactly as it was
(arrays in, arrays out, grad mode off), and only ``create_graph=True`` pays for Tensors.
Here every gradient is a Tensor and each node runs under grad mode:

- a Function with ``backward_graph(ctx, grad)`` (differentiable Tensor ops in, one
  Tensor or None per forward argument out) records its backward as ordinary ops. It
  reaches its inputs as Tensors through ``ctx.parents`` (kept by Function.apply for
  every input that requires grad, so nothing new is stored on the first-order path) and
  the others through its saved arrays, wrapped as constants (``const``);
- a Function without one still gives the correct first derivative (its array backward),
  but the result carries a ``NoDoubleBackward`` node that raises NotImplementedError
  naming the op if that gradient is ever differentiated again, never a silently
  non-differentiable gradient.
"""

from . import hooks as _hooks
from .engine import count_edges, run_with_callbacks
from .function import Function, TensorBase
from .grad_mode import GradMode
from .hooks import LEAF_HOOKS, leaf_record


def const(like, array):
    """`array` as a Tensor on `like`'s device that needs no gradient."""
    if array.__class__ is not like.device.array_type:
        array = like.device.asarray(array)
    return like._make(array, like.device, False, None)


def arg(ctx, i, array, like):
    """Forward argument i of `ctx` as a Tensor: the input itself when it requires grad
    (so the recorded backward leads back to it), else `array` as a constant (a Python
    number stays a number: Tensor ops take it as a scalar of the tensor's dtype)."""
    p = ctx.parents[i]
    if p is not None:
        return p
    return const(like, array) if isinstance(array, like.device.array_type) else array


class NoDoubleBackward(Function):
    """The node on a gradient computed by an op without ``backward_graph``: its value is
    right, differentiating it again is refused (its parents are the incoming gradient and
    the op's inputs, so it is reached exactly when that would be needed)."""

    def __repr__(self):
        return f"<NoDoubleBackward of {self.op}>"

    @staticmethod
    def backward(ctx, g):
        raise NotImplementedError(f"double backward of {ctx.op} is not implemented "
                                  f"(its gradient was taken with create_graph=True and is differentiated again)")


def sum_to(g, shape):
    """A broadcast gradient Tensor summed back to `shape` (as engine.sum_to_shape)."""
    shape = tuple(shape)
    if tuple(g.data.shape) == shape:
        return g
    lead = g.data.ndim - len(shape)
    if lead > 0:
        g = g.sum(dim=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.data.shape[i] != 1)
    if axes:
        g = g.sum(dim=axes, keepdim=True)
    if tuple(g.data.shape) != shape:
        g = g.reshape(shape)
    return g


def _node_backward(n, g):
    """Node n's gradients as Tensors (a tuple), recorded."""
    bg = getattr(type(n), "backward_graph", None)
    result = _fallback(n, g) if bg is None else bg(n, g)
    return result if type(result) is tuple else (result,)


def _fallback(n, g):
    """The first-order (array) backward of node n, each gradient under a
    NoDoubleBackward node: right values, refused if differentiated again."""
    GradMode.enabled = False
    try:
        result = n.backward(n, g.data)
    finally:
        GradMode.enabled = True
    if type(result) is not tuple:
        result = (result,)
    parents = [g if g.requires_grad else None] + list(n.parents)
    out = []
    for r in result:
        if r is None:
            out.append(None)
            continue
        node = object.__new__(NoDoubleBackward)
        node.parents = parents
        node.saved = None
        node.device = g.device
        node.needs_input_grad = [p is not None for p in parents]
        node.op = type(n).__name__
        out.append(g._make(const(g, r).data, g.device, True, node))
    return tuple(out)


def _run_hooks(record, g):
    """A tensor's pre-hooks and retain_grad on a gradient Tensor (hooks.Record.run for
    the recorded path)."""
    for hook in list(record.pre.values()):
        out = hook(g)
        if out is not None:
            record._checked(hook, out)
            g = out
    if record.retain:
        t = record.ref()
        if t is not None:
            t.grad = g if t.grad is None else t.grad + g
    return g


def _accumulate(p, g):
    """Into leaf p's .grad, out of place and keeping the graph (as PyTorch under
    create_graph). A fresh clone is stored, so that a later first-order backward adding
    into .grad in place touches no array the recorded graph or the caller holds."""
    if g.data.dtype != p.data.dtype:
        g = g.to(p.data.dtype)
    if p.grad is None:
        p.grad = g.clone() if g.requires_grad else const(p, g.data.copy())
    else:
        p.grad = p.grad + g


def _finish_leaf(p, g, capture):
    record = leaf_record(p) if LEAF_HOOKS else None
    if record is not None and record.pre:
        g = _run_hooks(record, g)
    if capture is not None:
        capture.grads[capture.leaves[id(p)]] = g
        return
    _accumulate(p, g)
    if record is not None and record.post:
        record.run_post(p)


def execute_graph(grads, ready, pending, leaf_pending, retain_graph, capture=None, seeds=()):
    """engine.execute with Tensor gradients, recording the backward (arguments as there;
    `grads` and `seeds` hold Tensors)."""
    anomaly = _hooks.STATE.anomaly
    leaf_grads = {}
    prev_mode = GradMode.enabled
    GradMode.enabled = True
    try:
        def deliver(p, gi):
            gi = sum_to(gi, p.data.shape)
            if leaf_pending is None or id(p) not in leaf_pending:
                if capture is None:
                    _finish_leaf(p, gi, None)
                return
            k = id(p)
            entry = leaf_grads.get(k)
            leaf_grads[k] = [p, gi] if entry is None else [p, entry[1] + gi]
            leaf_pending[k] -= 1
            if leaf_pending[k] == 0:
                _finish_leaf(p, leaf_grads.pop(k)[1], capture)

        for p, g in seeds:
            deliver(p, g)
        while ready:
            n = ready.pop()
            g = grads.pop(n)
            record = n._tensor_hooks
            if record is not None and record.alive:
                g = _run_hooks(record, g)
            if capture is not None:
                if n in capture.nodes:
                    capture.grads[capture.nodes[n]] = g
                if n not in capture.expand:
                    continue
            result = _node_backward(n, g)
            if anomaly:
                _hooks.check_nan(n, tuple(None if r is None else r.data for r in result))
            parents = n.parents
            if not retain_graph:
                n.parents = None
                n.saved = None
            for i in range(len(result)):
                gi = result[i]
                if gi is None:
                    continue
                p = parents[i]
                if p is None:
                    continue
                f = p.grad_fn
                if f is None:
                    deliver(p, gi)
                    continue
                gi = sum_to(gi, p.data.shape)
                grads[f] = grads[f] + gi if f in grads else gi
                pending[f] -= 1
                if pending[f] == 0:
                    ready.append(f)
        for p, total in list(leaf_grads.values()):
            _finish_leaf(p, total, capture)
    finally:
        GradMode.enabled = prev_mode


def as_tensor_grad(like, grad):
    """A root gradient (array or Tensor) as a Tensor for execute_graph."""
    return grad if isinstance(grad, TensorBase) else const(like, grad)


def backward(root, grad, retain_graph=True):
    """engine.backward with create_graph=True: `grad` (a Tensor shaped like root, which
    may itself require grad) backpropagated into every leaf's .grad, recorded."""
    run_with_callbacks(_backward, root, grad, retain_graph)  # queue_callback works here too (issue 17)


def _backward(root, grad, retain_graph):
    grad = as_tensor_grad(root, grad)
    node = root.grad_fn
    if node is None:
        if root.requires_grad:
            _finish_leaf(root, grad, None)
        return
    pending, leaf_pending = count_edges((node,), LEAF_HOOKS or None)
    execute_graph({node: grad}, [node], pending, leaf_pending, retain_graph)
