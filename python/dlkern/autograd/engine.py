"""The backward engine: an iterative topological walk (no recursion, so a graph
10,000 ops deep works), gradient accumulation into reused nodes, broadcast gradients
summed back to each input's shape, and graph freeing unless retain_graph.

``execute`` also serves autograd.grad (functional.py: a capture instead of .grad) and
runs tensor hooks (hooks.py). Both are off the plain path: a backward with no hook
registered anywhere, no capture and anomaly mode off tests one local flag per node."""

from . import hooks as _hooks
from ..dtypes import summed
from .grad_mode import GradMode
from .hooks import LEAF_HOOKS, leaf_record

_FREED = ("Trying to backward through the graph a second time (or to read saved "
          "arrays after they were freed). Saved arrays are freed after .backward(); "
          "pass retain_graph=True to the first backward if you need to call it twice.")


def sum_to_shape(grad, shape):
    """Sum a broadcast gradient back to `shape` (leading axes, then axes of size 1)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead > 0:
        grad = summed(grad, tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = summed(grad, axes, True)
    if grad.shape != shape:
        grad = grad.reshape(shape)
    return grad


def _accumulate_leaf(tensor, grad, fresh=False):
    """Add `grad` into tensor.grad. A leaf's .grad is later accumulated into in place
    (and by optimizers), so it must own its array: `grad` is stored as is only when the
    caller knows it is `fresh` (a new array nobody else holds); otherwise it is copied."""
    if grad.shape != tensor.data.shape:
        grad = sum_to_shape(grad, tensor.data.shape)
        fresh = fresh or grad.base is None
    existing = tensor.grad
    if existing is None:
        dtype = tensor.data.dtype
        if not fresh or grad.dtype != dtype or grad.base is not None or not grad.flags.writeable:
            grad = grad.astype(dtype, copy=True)
            if grad.__class__ is not tensor.device.array_type:
                grad = tensor.device.asarray(grad)
        tensor.grad = tensor._wrap_grad(grad)
    else:
        existing.data += grad


# --- issue 17: queue_callback (DistributedDataParallel's end-of-backward step) ---
_CALLBACKS = []  # one list per running backward (nested backwards stack): what queue_callback added


def queue_callback(callback):
    """Run ``callback()`` once the running ``backward()`` has finished (PyTorch's
    ``Variable._execution_engine.queue_callback``): a gradient hook that starts work for
    several tensors (DDP's bucketed all-reduce) finishes it there, before .grad is read.
    A backward started inside another one (checkpoint's recomputation) is part of the
    outer one: the callback waits for the outermost, whose hooks are not all run yet."""
    if not _CALLBACKS:
        raise RuntimeError("queue_callback: no backward pass is running; call it from a gradient hook")
    _CALLBACKS[0].append(callback)


def run_with_callbacks(run, *args):
    """``run(*args)`` (one backward pass), then the callbacks queued during it, in order
    (a callback may queue more). None run when the pass raises."""
    queued = []
    _CALLBACKS.append(queued)
    try:
        run(*args)
        i = 0
        while i < len(queued):
            queued[i]()
            i += 1
    finally:
        _CALLBACKS.pop()
# --- end issue 17 ---


def backward(root, grad, retain_graph=False):
    """Backpropagate `grad` (an array shaped like root) from Tensor `root`."""
    run_with_callbacks(_backward, root, grad, retain_graph)


def _backward(root, grad, retain_graph):
    node = root.grad_fn
    if node is None:
        if root.requires_grad:
            if LEAF_HOOKS and leaf_record(root) is not None:
                _finish_leaf(root, grad, False, None)
            else:
                _accumulate_leaf(root, grad)
        return
    # Leaves with hooks get their gradients summed first (a hook sees the total, once).
    pending, leaf_pending = count_edges((node,), LEAF_HOOKS or None)
    execute({node: grad}, [node], pending, leaf_pending, retain_graph)


def count_edges(roots, tracked=None):
    """For every node reachable from `roots` (nodes), how many edges lead into it from
    that part of the graph: a node runs once all of those have delivered. With `tracked`
    (a container of leaf ids), also the edges into those leaves."""
    pending = {}
    for n in roots:
        pending[n] = 0
    leaf_pending = None if tracked is None else {}
    stack = list(roots)
    while stack:
        n = stack.pop()
        parents = n.parents
        if parents is None:
            raise RuntimeError(_FREED)
        for p in parents:
            if p is not None:
                f = p.grad_fn
                if f is not None:
                    if f in pending:
                        pending[f] += 1
                    else:
                        pending[f] = 1
                        stack.append(f)
                elif tracked is not None and id(p) in tracked:
                    k = id(p)
                    leaf_pending[k] = leaf_pending.get(k, 0) + 1
    return pending, leaf_pending


def execute(grads, ready, pending, leaf_pending, retain_graph, capture=None, seeds=()):
    """Run the graph: `grads` maps each root node to its gradient, `ready` lists those
    that no other node leads to; a node runs when its count in `pending` reaches 0 (see
    count_edges). Leaves counted in `leaf_pending` get
    their gradients summed and finished once (hooks, then .grad or the capture); with
    `capture` (autograd.grad), no .grad is touched and only capture.expand nodes run;
    `seeds` are (leaf, gradient) edges delivered first (an output that is an input)."""
    # Read once: without hooks, capture or anomaly mode, a node costs one test more.
    node_hooks = _hooks.STATE.nodes
    special = node_hooks or capture is not None or _hooks.STATE.anomaly
    leaf_grads = None if leaf_pending is None else {}
    prev_mode = GradMode.enabled
    GradMode.enabled = False
    try:
        for p, g in seeds:
            _deliver_leaf(p, g, False, leaf_pending, leaf_grads, capture)
        while ready:
            n = ready.pop()
            g = grads.pop(n)
            if special:
                g, result = _run_node(n, g, node_hooks, capture)
                if result is None:
                    continue
            else:
                result = n.backward(n, g)
            if type(result) is not tuple:
                result = (result,)
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
                    # Fresh: not the incoming gradient passed through, not a view, and
                    # not returned twice by this backward.
                    fresh = gi is not g and gi.base is None
                    if fresh and i:
                        for r in result[:i]:
                            if r is gi:
                                fresh = False
                    if leaf_pending is not None and id(p) in leaf_pending:
                        _deliver_leaf(p, gi, fresh, leaf_pending, leaf_grads, capture)
                    elif capture is None:
                        _accumulate_leaf(p, gi, fresh)
                    continue
                if gi.shape != p.data.shape:
                    gi = sum_to_shape(gi, p.data.shape)
                if f in grads:
                    grads[f] = grads[f] + gi
                else:
                    grads[f] = gi
                left = pending[f] - 1
                pending[f] = left
                if left == 0:
                    ready.append(f)
        if leaf_grads:
            # Some edge delivered None (a backward that gave no gradient for an input):
            # what did arrive still counts.
            for p, total, fresh in list(leaf_grads.values()):
                _finish_leaf(p, total, fresh, capture)
    finally:
        GradMode.enabled = prev_mode


def _run_node(n, g, node_hooks, capture):
    """Node n's backward with what a plain backward skips: its tensor's hooks on g, the
    capture of autograd.grad (None for the result when n need not run), anomaly mode.
    Returns (g after the hooks, the backward's result)."""
    if node_hooks:
        record = n._tensor_hooks
        if record is not None:
            g = record.run(g)
    if capture is not None:
        if n in capture.nodes:
            capture.grads[capture.nodes[n]] = g
        if n not in capture.expand:
            return g, None
    result = n.backward(n, g)
    if _hooks.STATE.anomaly:
        _hooks.check_nan(n, result if type(result) is tuple else (result,))
    return g, result


def _deliver_leaf(p, gi, fresh, leaf_pending, leaf_grads, capture):
    """One edge's gradient into tracked leaf p: summed with the others, finished with
    the last."""
    if gi.shape != p.data.shape:
        gi = sum_to_shape(gi, p.data.shape)
        fresh = fresh or gi.base is None
    k = id(p)
    entry = leaf_grads.get(k)
    if entry is None:
        entry = leaf_grads[k] = [p, gi, fresh]
    else:
        entry[1] = entry[1] + gi
        entry[2] = True
    left = leaf_pending[k] - 1
    leaf_pending[k] = left
    if left == 0:
        del leaf_grads[k]
        _finish_leaf(p, entry[1], entry[2], capture)


def _finish_leaf(p, grad, fresh, capture):
    """Leaf p's total gradient: its hooks, then into .grad (and the post-accumulate
    hooks) or, for autograd.grad, into the capture."""
    record = leaf_record(p) if LEAF_HOOKS else None
    if record is not None and record.pre:
        out = record.run(grad)
        if out is not grad:
            grad, fresh = out, False  # a hook's tensor may be held elsewhere: copy it
    if capture is not None:
        capture.grads[capture.leaves[id(p)]] = grad
        return
    _accumulate_leaf(p, grad, fresh)
    if record is not None and record.post:
        record.run_post(p)
