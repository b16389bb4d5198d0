"""``dlkern.autograd.grad`` (gradients of outputs with respect to chosen inputs, without
touching any .grad) and ``dlkern.autograd.gradcheck`` (finite differences against it)."""

import numpy as np

from . import higher as _higher
from .engine import count_edges, execute
from .function import TensorBase
from .grad_mode import no_grad

_NEVER = -1  # a pending count that never reaches 0: the node is not on a path to an input


class _Capture:
    """What execute fills for autograd.grad: grads[k] for input k, reached through
    `nodes` (a non-leaf input's grad_fn -> k) and `leaves` (id(leaf input) -> k). Only
    the `expand` nodes run their backward (those with an input beyond them)."""

    def __init__(self, nodes, leaves, count):
        self.nodes = nodes
        self.leaves = leaves
        self.expand = set()
        self.grads = [None] * count


def _tensors(value, what):
    if isinstance(value, TensorBase):
        return (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"autograd.grad: {what} must be a Tensor or a sequence of Tensors, "
                        f"got {type(value).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, TensorBase):
            raise TypeError(f"autograd.grad: {what}[{i}] must be a Tensor, got {type(t).__name__}")
    return items


def _root_grad(out, go, index):
    """The gradient array that starts the walk from output `out`."""
    if go is None:
        if out.data.size != 1:
            raise RuntimeError("grad can be implicitly created only for scalar outputs; "
                               f"output {index} has shape {tuple(out.data.shape)}: pass grad_outputs")
        return out.device.ones_like(out.data)
    if not isinstance(go, TensorBase):
        raise TypeError(f"autograd.grad: grad_outputs[{index}] must be a Tensor or None, got {type(go).__name__}")
    if go.device != out.device:
        raise RuntimeError(f"autograd.grad: grad_outputs[{index}] is on {go.device} but output {index} is on "
                           f"{out.device}")
    if tuple(go.data.shape) != tuple(out.data.shape):
        raise RuntimeError(f"Mismatch in shape: grad_output[{index}] has a shape of {tuple(go.data.shape)} and "
                           f"output[{index}] has a shape of {tuple(out.data.shape)}.")
    g = go.data
    if g.dtype != out.data.dtype:
        g = g.astype(out.data.dtype)  # as PyTorch, which casts the cotangent to the output's dtype
    return g


def _mark(pending, nodes, leaves):
    """Which reachable nodes lead to an input: those run (capture.expand); the others
    never become ready. Parents come after their children in a topological order, so
    walking one backwards settles each node after all of its parents."""
    counts = dict(pending)
    order = []
    ready = [n for n, c in counts.items() if c == 0]
    while ready:
        n = ready.pop()
        order.append(n)
        for p in n.parents:
            if p is not None and p.grad_fn is not None:
                f = p.grad_fn
                counts[f] -= 1
                if counts[f] == 0:
                    ready.append(f)
    needed, expand = set(), set()
    for n in reversed(order):
        for p in n.parents:
            if p is None:
                continue
            f = p.grad_fn
            if (id(p) in leaves) if f is None else (f in needed):
                expand.add(n)
                break
        if n in expand or n in nodes:
            needed.add(n)
    for n in pending:
        if n not in needed:
            pending[n] = _NEVER
    return expand


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, only_inputs=True,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """The gradients of `outputs` (weighted by `grad_outputs`, ones for scalars) with
    respect to each of `inputs`, as a tuple; no .grad is changed. Hooks on the inputs and
    on the tensors in between run as in backward. An input the outputs do not depend on
    raises RuntimeError unless allow_unused (then None, or zeros with materialize_grads).
    The graph is freed unless retain_graph (default: create_graph). With create_graph
    the backward is recorded (autograd/higher.py): the gradients returned carry a graph
    and can be differentiated again, with respect to the inputs and to grad_outputs."""
    if is_grads_batched:
        raise NotImplementedError("dlkern.autograd.grad: is_grads_batched=True is not supported")
    del only_inputs  # deprecated in PyTorch, and ignored there too
    if allow_unused is None:
        allow_unused = materialize_grads
    elif materialize_grads and not allow_unused:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True, "
                         "but got: allow_unused=False.")
    retain_graph = create_graph if retain_graph is None else retain_graph
    outputs = _tensors(outputs, "outputs")
    inputs = _tensors(inputs, "inputs")
    if grad_outputs is None or isinstance(grad_outputs, TensorBase):
        grad_outputs = (grad_outputs,) * len(outputs) if grad_outputs is None else (grad_outputs,)
    else:
        grad_outputs = tuple(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad_outputs has {len(grad_outputs)} entries but there are {len(outputs)} outputs")
    nodes, leaves = {}, {}
    for k, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
        if t.grad_fn is None:
            leaves.setdefault(id(t), k)
        else:
            nodes.setdefault(t.grad_fn, k)
    roots, seeds = {}, []
    for i, (out, go) in enumerate(zip(outputs, grad_outputs)):
        if not out.requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        g = _root_grad(out, go, i)
        if create_graph:
            # The cotangent itself when it is a Tensor of the right dtype: the gradient
            # then depends on it differentiably (jvp by the double-vjp trick needs that).
            g = go if go is not None and go.data.dtype == out.data.dtype else _higher.const(out, g)
        node = out.grad_fn
        if node is None:
            if id(out) in leaves:
                seeds.append((out, g))  # an output that is itself an input leaf
        elif node in roots:
            roots[node] = roots[node] + g
        else:
            roots[node] = g
    capture = _Capture(nodes, leaves, len(inputs))
    pending, leaf_pending = count_edges(tuple(roots), leaves)
    for out, _ in seeds:
        leaf_pending[id(out)] = leaf_pending.get(id(out), 0) + 1
    capture.expand = _mark(pending, nodes, leaves)
    # A root on no path to an input runs nothing; seeds go first, as extra edges.
    grads = {n: g for n, g in roots.items() if pending[n] != _NEVER}
    ready = [n for n in grads if pending[n] == 0]
    (_higher.execute_graph if create_graph else execute)(grads, ready, pending, leaf_pending, retain_graph, capture,
                                                          seeds)
    result = []
    for k, t in enumerate(inputs):
        first = leaves.get(id(t)) if t.grad_fn is None else nodes.get(t.grad_fn)
        g = capture.grads[first]
        if g is None:
            if not allow_unused:
                raise RuntimeError(f"The differentiated Tensor at index {k} appears to not have been used in the "
                                   f"graph. Set allow_unused=True if this is the desired behavior.")
            result.append(t._make(t.device.zeros_like(t.data), t.device, False, None) if materialize_grads
                          else None)
        elif create_graph:
            result.append(g)
        else:
            if g.__class__ is not t.device.array_type:
                g = t.device.asarray(g)  # NumPy's 0-d math gives scalars; a Tensor holds arrays
            result.append(t._make(g, t.device, False, None))
    return tuple(result)


# ---------------------------------------------------------------------------- gradcheck

class GradcheckError(RuntimeError):
    """gradcheck found an analytical gradient that disagrees with finite differences."""


def _host64(t):
    return np.array(t.data if isinstance(t.data, np.ndarray) else t.data.numpy(), dtype=np.float64, copy=True)


def _outputs(func, inputs):
    out = func(*inputs)
    if isinstance(out, TensorBase):
        return (out,)
    if not isinstance(out, (tuple, list)):
        raise TypeError(f"gradcheck: func must return a Tensor or a sequence of Tensors, got {type(out).__name__}")
    outs = tuple(out)
    for j, o in enumerate(outs):
        if not isinstance(o, TensorBase):
            raise TypeError(f"gradcheck: func must return a Tensor or a sequence of Tensors; output {j} is a "
                            f"{type(o).__name__}")
    return outs


def _numerical(func, inputs, t, eps, n_outs):
    """d(outputs)/d(t) by central differences: for output j, an (out size, t size) array."""
    x = t.data
    jac = [None] * n_outs
    for col, idx in enumerate(np.ndindex(x.shape)):
        orig = x[idx]
        x[idx] = orig + eps
        plus = [_host64(o).ravel() for o in _outputs(func, inputs)]
        x[idx] = orig - eps
        minus = [_host64(o).ravel() for o in _outputs(func, inputs)]
        x[idx] = orig
        for j in range(n_outs):
            if jac[j] is None:
                jac[j] = np.zeros((plus[j].size, x.size))
            jac[j][:, col] = (plus[j] - minus[j]) / (2 * eps)
    return [np.zeros((0, 0)) if m is None else m for m in jac]


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Check the gradients of `func(*inputs)` (a Tensor or a tuple of Tensors) with
    respect to every input that requires grad: the full Jacobian by autograd.grad (one
    backward per output element) against central differences with step `eps`, element
    by element |analytical - numerical| <= atol + rtol * |numerical|. The inputs that
    require grad must be float64 CPU tensors (float32 differences are too coarse to
    tell a wrong gradient from rounding). A mismatch raises GradcheckError naming the
    output, the input and the largest error (or returns False when raise_exception is
    False); True when every Jacobian agrees."""
    inputs = (inputs,) if isinstance(inputs, TensorBase) else tuple(inputs)
    diff = [k for k, t in enumerate(inputs) if isinstance(t, TensorBase) and t.requires_grad]
    if not diff:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but none of them have "
                         "requires_grad=True.")
    for k in diff:
        t = inputs[k]
        if t.data.dtype != np.float64:
            raise ValueError(f"gradcheck: input {k} requires grad and has dtype {t.data.dtype}; gradcheck needs "
                             f"float64 inputs (use .double())")
        if not isinstance(t.data, np.ndarray):
            raise ValueError(f"gradcheck: input {k} is on {t.device}; gradcheck runs on CPU tensors")
    outs = _outputs(func, inputs)
    checked = [j for j, o in enumerate(outs) if o.requires_grad]
    with no_grad():
        numerical = {k: _numerical(func, inputs, inputs[k], eps, len(outs)) for k in diff}
    for j, o in enumerate(outs):
        if j in checked or o.data.dtype.kind != "f":
            continue
        for k in diff:  # an output without a graph must not depend on the inputs
            if np.abs(numerical[k][j]).max(initial=0.0) > atol:
                return _fail(f"Numerical gradient for function expected to be zero: output {j} does not require "
                             f"grad but changes with input {k}", raise_exception)
    for j in checked:
        o = outs[j]
        analytical = {k: np.zeros((o.data.size, inputs[k].data.size)) for k in diff}
        for row in range(o.data.size):
            unit = np.zeros(o.data.size)
            unit[row] = 1.0
            go = o._make(o.device.from_host(unit.reshape(o.data.shape).astype(o.data.dtype)), o.device, False, None)
            grads = grad(o, [inputs[k] for k in diff], go, retain_graph=True, allow_unused=True)
            for k, g in zip(diff, grads):
                if g is not None:
                    analytical[k][row] = _host64(g).ravel()
        for k in diff:
            a, n = analytical[k], numerical[k][j]
            err = np.abs(a - n)
            bad = err > atol + rtol * np.abs(n)
            if bad.any():
                at = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), err.shape)
                return _fail(f"Jacobian mismatch for output {j} with respect to input {k}, max abs error "
                             f"{err.max():.6g} (the largest out of tolerance at output element {at[0]}, input element "
                             f"{at[1]}: analytical {a[at]:.6g}, numerical {n[at]:.6g}),\nnumerical:{n}\n"
                             f"analytical:{a}\n", raise_exception)
    return True


def _fail(message, raise_exception):
    if raise_exception:
        raise GradcheckError(message)
    return False


# --- issue 15: torch.autograd.functional's API (jacobians.py) ---
from .jacobians import hessian, hvp, jacobian, jvp, vhp, vjp  # noqa: E402,F401
# --- end issue 15 ---
