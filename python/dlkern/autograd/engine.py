"""The backward engine: an iterative topological walk (no recursion, so a graph
10,000 ops deep works), gradient accumulation into reused nodes, broadcast gradients
summed back to each input's shape, and graph freeing unless retain_graph."""

from .grad_mode import GradMode

_FREED = ("Trying to backward through the graph a second time (or to read saved "
          "arrays after they were freed). Saved arrays are freed after .backward(); "
          "pass retain_graph=True to the first backward if you need to call it twice.")


def sum_to_shape(grad, shape):
    """Sum a broadcast gradient back to `shape` (leading axes, then axes of size 1)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead > 0:
        grad = grad.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
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


def backward(root, grad, retain_graph=False):
    """Backpropagate `grad` (an array shaped like root) from Tensor `root`."""
    node = root.grad_fn
    if node is None:
        if root.requires_grad:
            _accumulate_leaf(root, grad)
        return
    # Count, for every node, how many edges lead into it from the part of the graph
    # reachable from root; a node runs once all of those have delivered.
    pending = {node: 0}
    stack = [node]
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
    grads = {node: grad}
    ready = [node]
    prev_mode = GradMode.enabled
    GradMode.enabled = False
    try:
        while ready:
            n = ready.pop()
            g = grads.pop(n)
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
    finally:
        GradMode.enabled = prev_mode
