"""``dlkern.autograd.functional``'s higher-level API, with PyTorch's signatures and result
shapes: vjp, jvp, jacobian, hessian, hvp, vhp. All of them are built on
``autograd.grad`` (reverse mode); the ones that need a second derivative use its
create_graph path (higher.py).

Structure rules (as torch.autograd.functional): a Tensor argument gives Tensor results
and a tuple of Tensors gives tuples, for inputs and outputs independently; with
create_graph=False the results carry no graph; an output that does not depend on an
input gives zeros there, or a RuntimeError with strict=True."""

from .function import TensorBase
from .grad_mode import enable_grad


def _as_tuple(value, what, fn_name):
    if isinstance(value, TensorBase):
        return False, (value,)
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"The {what} given to {fn_name} must be either a Tensor or a tuple of Tensors but the value "
                        f"given has type {type(value).__name__}.")
    value = tuple(value)
    for i, t in enumerate(value):
        if not isinstance(t, TensorBase):
            raise TypeError(f"The {what} given to {fn_name} must be either a Tensor or a tuple of Tensors but the "
                            f"value at index {i} has type {type(t).__name__}.")
    return True, value


def _untuple(values, is_tuple):
    return tuple(values) if is_tuple else values[0]


def _prepare(inputs, create_graph):
    """Fresh differentiable aliases of the inputs: with create_graph an input that
    requires grad stays connected (so results can be differentiated back to it)."""
    from ..functions.shape import Reshape
    out = []
    for t in inputs:
        if create_graph and t.requires_grad:
            out.append(Reshape.apply(t, t.data.shape))
        else:
            a = t.detach()
            a.requires_grad = True
            out.append(a)
    return tuple(out)


def _call(func, inputs, fn_name):
    out = func(*inputs)
    is_tuple, outs = _as_tuple_outputs(out, fn_name)
    return is_tuple, outs


def _as_tuple_outputs(out, fn_name):
    if isinstance(out, TensorBase):
        return False, (out,)
    if isinstance(out, (tuple, list)) and all(isinstance(o, TensorBase) for o in out):
        return True, tuple(out)
    raise TypeError(f"The outputs of the user-provided function given to {fn_name} must be either a Tensor or a "
                    f"tuple of Tensors but the given outputs of the user-provided function has type "
                    f"{type(out).__name__}.")


def _validate_v(v, others, is_tuple, what, fn_name):
    """v given for `others` (the outputs for vjp, the inputs for jvp/hvp/vhp)."""
    if v is None:
        if len(others) != 1 or others[0].data.size != 1:
            raise RuntimeError(f"{fn_name}: the {what} is not a single-element Tensor, so v must be given")
        o = others[0]
        return (o._make(o.device.ones_like(o.data), o.device, False, None),)
    _, v = _as_tuple(v, "v", fn_name)
    if len(v) != len(others):
        raise RuntimeError(f"{fn_name}: v has {len(v)} Tensors but the {what} has {len(others)}")
    for i, (a, b) in enumerate(zip(v, others)):
        if tuple(a.data.shape) != tuple(b.data.shape):
            raise RuntimeError(f"{fn_name}: entry {i} of v has shape {tuple(a.data.shape)} but the {what} "
                               f"entry {i} has shape {tuple(b.data.shape)}")
    return v


def _grads(outputs, inputs, grad_outputs, create_graph):
    from .functional import grad
    outs, gos = [], []
    for o, g in zip(outputs, grad_outputs):
        if o.requires_grad:
            outs.append(o)
            gos.append(g)
    if not outs:
        return (None,) * len(inputs)
    return grad(outs, inputs, gos, retain_graph=True, create_graph=create_graph, allow_unused=True)


def _fill(grads, refs, strict, fn_name, what="output"):
    """None (no dependence) -> zeros shaped as refs[i], or the strict-mode error."""
    out = []
    for i, (g, r) in enumerate(zip(grads, refs)):
        if g is None:
            if strict:
                raise RuntimeError(f"{fn_name}: the {what} of the user-provided function is independent of input "
                                   f"{i}. This is not allowed in strict mode.")
            g = r._make(r.device.zeros_like(r.data), r.device, False, None)
        out.append(g)
    return out


def _detached(ts, create_graph):
    return [t if create_graph or t is None else t.detach() for t in ts]


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), v^T J): the vector-Jacobian product at `inputs`."""
    with enable_grad():
        is_in_tuple, inputs = _as_tuple(inputs, "inputs", "vjp")
        inputs = _prepare(inputs, create_graph)
        is_out_tuple, outputs = _call(func, inputs, "vjp")
        v = _validate_v(v, outputs, is_out_tuple, "output", "vjp")
        res = _fill(_grads(outputs, inputs, v, create_graph), inputs, strict, "vjp")
    return (_untuple(_detached(outputs, create_graph), is_out_tuple),
            _untuple(_detached(res, create_graph), is_in_tuple))


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), J v), by the double-vjp trick: u -> J^T u is linear, so the
    gradient of <J^T u, v> with respect to u is J v."""
    with enable_grad():
        is_in_tuple, inputs = _as_tuple(inputs, "inputs", "jvp")
        inputs = _prepare(inputs, create_graph)
        v = _validate_v(v, inputs, is_in_tuple, "input", "jvp")
        is_out_tuple, outputs = _call(func, inputs, "jvp")
        us = [o._make(o.device.zeros_like(o.data), o.device, True, None) for o in outputs]
        back = _fill(_grads(outputs, inputs, us, True), inputs, strict, "jvp")
        res = _grads(back, us, v, create_graph)
        res = _fill(res, outputs, strict, "jvp")
    return (_untuple(_detached(outputs, create_graph), is_out_tuple),
            _untuple(_detached(res, create_graph), is_out_tuple))


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """d func(*inputs) / d inputs: for output i and input j a Tensor of shape
    outputs[i].shape + inputs[j].shape, nested as tuples where the arguments were tuples
    (one reverse pass per output element; vectorize is accepted and changes nothing)."""
    if strategy not in ("forward-mode", "reverse-mode"):
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode". Hint: If your '
                         'function has more outputs than inputs, "forward-mode" tends to be more performant. '
                         'Otherwise, prefer to use "reverse-mode".')
    if strategy == "forward-mode" and not vectorize:
        raise NotImplementedError("torch.autograd.functional.jacobian: `strategy=\"forward-mode\"` only works "
                                  "with `vectorize=True`")
    with enable_grad():
        is_in_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
        inputs = _prepare(inputs, create_graph)
        is_out_tuple, outputs = _call(func, inputs, "jacobian")
        rows = []
        for i, out in enumerate(outputs):
            per_input = [[] for _ in inputs]
            n = out.data.size
            flat = out.reshape(-1)
            for k in range(n):
                unit = out.device.zeros(n, dtype=out.data.dtype)
                unit[k] = 1
                g = (_grads((flat,), inputs, (out._make(unit, out.device, False, None),), create_graph)
                     if out.requires_grad else (None,) * len(inputs))
                for j, gj in enumerate(g):
                    if gj is None and strict:
                        raise RuntimeError(f"jacobian: output {i} of the user-provided function is independent "
                                           f"of input {j}. This is not allowed in strict mode.")
                    per_input[j].append(gj)
            rows.append([_stack_rows(per_input[j], out, inputs[j], create_graph) for j in range(len(inputs))])
    if is_out_tuple:
        return tuple(_untuple(r, is_in_tuple) for r in rows)
    return _untuple(rows[0], is_in_tuple)


def _stack_rows(grads, out, inp, create_graph):
    """Rows d out[k] / d inp as one Tensor of shape out.shape + inp.shape."""
    from ..creation import stack, zeros
    shape = tuple(out.data.shape) + tuple(inp.data.shape)
    if not grads:
        return zeros(shape, dtype=inp.dtype, device=inp.device)
    rows = [g if g is not None else inp._make(inp.device.zeros_like(inp.data), inp.device, False, None)
            for g in grads]
    rows = [r if create_graph else r.detach() for r in rows]
    return stack(rows).reshape(shape)


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False, outer_jacobian_strategy="reverse-mode"):
    """The Hessian of the scalar func(*inputs): shape inputs[i].shape + inputs[j].shape
    for each pair, nested as tuples of tuples when inputs is a tuple."""
    is_in_tuple, tupled = _as_tuple(inputs, "inputs", "hessian")

    def scalar(*xs):
        is_tuple, outs = _as_tuple_outputs(func(*xs), "hessian")
        if is_tuple or outs[0].data.size != 1:
            raise RuntimeError("The function given to hessian should return a single Tensor with one element")
        return outs[0].reshape(())

    def jac_func(*xs):
        return jacobian(scalar, xs, create_graph=True, strict=strict)

    res = jacobian(jac_func, tupled, create_graph=create_graph, strict=strict, vectorize=vectorize,
                   strategy=outer_jacobian_strategy)
    if not is_in_tuple:
        return res[0][0]
    return res


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), v^T H) for a scalar func: the gradient of <grad func, v>."""
    with enable_grad():
        is_in_tuple, inputs = _as_tuple(inputs, "inputs", "vhp")
        inputs = _prepare(inputs, create_graph)
        v = _validate_v(v, inputs, is_in_tuple, "input", "vhp")
        out = _single(func, inputs, "vhp")
        jac = _fill(_grads((out,), inputs, (None,), True), inputs, strict, "vhp")
        res = _fill(_grads(jac, inputs, v, create_graph), inputs, strict, "vhp")
    return (out if create_graph else out.detach()), _untuple(_detached(res, create_graph), is_in_tuple)


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(*inputs), H v) for a scalar func. The Hessian of a twice-differentiable
    scalar function is symmetric, so H v = (v^T H)^T: computed as vhp, one
    double-backward pass, where PyTorch's double-vjp trick takes two."""
    return vhp(func, inputs, v, create_graph, strict)


def _single(func, inputs, fn_name):
    is_tuple, outs = _as_tuple_outputs(func(*inputs), fn_name)
    if is_tuple or outs[0].data.size != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {fn_name} should contain a single element")
    return outs[0]
