"""Contractions beyond a plain matmul: einsum (its equation parsed here, so the backward
can build the equations of the gradients) and baddbmm.

einsum computes through ``ctx.device.einsum`` with NumPy's contraction order
(optimize=True: NumPy's einsum_path, pairwise contractions through BLAS). The CUDA module
has no einsum, so there the namespace refuses it (NotImplementedError naming 'cuda').
baddbmm runs on dlkern's own matmul kernel (``ctx.device.matmul``) on every device."""

import string

import numpy as np

from ..autograd import Function

# Subscript letters in ASCII order (PyTorch and NumPy sort implicit outputs this way).
_LETTERS = string.ascii_uppercase + string.ascii_lowercase
_ELLIPSIS = "..."


def _tokens(term, offset, operand):
    """The subscripts of one term: letters and at most one '...'."""
    out, i = [], 0
    while i < len(term):
        if term.startswith(_ELLIPSIS, i):
            if _ELLIPSIS in out:
                where = f"operand {operand}" if operand is not None else "the output"
                raise RuntimeError(f"einsum(): found more than one ellipsis ('...') in {where}")
            out.append(_ELLIPSIS)
            i += 3
        elif term[i] in _LETTERS:
            out.append(term[i])
            i += 1
        else:
            raise RuntimeError(f"einsum(): invalid subscript given at index {offset + i} in the equation string, "
                               "subscripts must be in [a-zA-Z]")
    return out


def einsum_spec(equation, shapes):
    """(input terms, output term, result shape) of `equation` over operands of `shapes`,
    with every '...' written out as letters the equation does not use, so each term
    has one letter per dimension. Implicit output (no '->'): the ellipsis dimensions,
    then the letters that occur once, in ASCII order. Ellipsis dimensions left out of an
    explicit output are summed (as PyTorch). Sizes follow PyTorch's rules: a letter
    repeated in one operand needs equal sizes (its diagonal); across operands sizes must
    match or be 1 (broadcast)."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum(): the equation must be a string, got {type(equation).__name__}")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    if "->" in rhs:
        raise RuntimeError("einsum(): the equation has more than one '->'")
    raw = lhs.split(",")
    if len(raw) > len(shapes):
        raise RuntimeError("einsum(): fewer operands were provided than specified in the equation")
    if len(raw) < len(shapes):
        raise RuntimeError("einsum(): more operands were provided than specified in the equation")
    terms, offset = [], 0
    for k, (term, shape) in enumerate(zip(raw, shapes)):
        toks = _tokens(term, offset, k)
        offset += len(term) + 1
        letters = len(toks) - (_ELLIPSIS in toks)
        if _ELLIPSIS in toks and letters > len(shape):
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({letters}) is more than the "
                               f"number of dimensions ({len(shape)}) for operand {k}")
        if _ELLIPSIS not in toks and letters != len(shape):
            raise RuntimeError(f"einsum(): the number of subscripts in the equation ({letters}) does not match the "
                               f"number of dimensions ({len(shape)}) for operand {k} and no ellipsis was given")
        terms.append(toks)
    out_toks = _tokens(rhs, len(lhs) + 2, None) if arrow else None

    # the ellipsis, written out: letters the equation does not use, right-aligned per operand
    n_ell = max((len(s) - len(t) + 1 for t, s in zip(terms, shapes) if _ELLIPSIS in t), default=0)
    free = [c for c in _LETTERS if c not in eq]
    if n_ell > len(free):
        raise RuntimeError(f"einsum(): too many dimensions: {n_ell} under the ellipsis and only {len(free)} "
                           "unused subscript letters")
    ell = "".join(free[:n_ell])
    full = []
    for t, s in zip(terms, shapes):
        if _ELLIPSIS in t:
            at = t.index(_ELLIPSIS)
            k = len(s) - len(t) + 1
            t = t[:at] + list(ell[n_ell - k:]) + t[at + 1:]
        full.append("".join(t))

    sizes = {}
    for k, (term, shape) in enumerate(zip(full, shapes)):
        mine = {}
        for c, n in zip(term, shape):
            if c in mine and mine[c] != n:
                raise RuntimeError(f"einsum(): subscript {c} is repeated for operand {k} but the sizes don't match, "
                                   f"{n} != {mine[c]}")
            mine[c] = n
        for c, n in mine.items():
            seen = sizes.get(c)
            if seen is not None and n != seen and n != 1 and seen != 1:
                what = f"subscript {c}" if c not in ell else "an ellipsis dimension"
                raise RuntimeError(f"einsum(): {what} has size {n} for operand {k} which does not broadcast with "
                                   f"previously seen size {seen}")
            if seen is None or seen == 1:
                sizes[c] = n

    if out_toks is None:
        counts = {}
        for term in full:
            for c in term:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = ""
        for c in out_toks:
            if c == _ELLIPSIS:
                out += ell
                continue
            if c in out:
                raise RuntimeError(f"einsum(): output subscript {c} appears more than once in the output")
            if c not in sizes:
                raise RuntimeError(f"einsum(): output subscript {c} does not appear in the equation for any input "
                                   "operand")
            out += c
    return tuple(full), out, tuple(sizes[c] for c in out)


class Einsum(Function):
    """einsum over operands already checked by einsum_spec: ``apply((terms, out), *ops)``.
    The gradient of operand i is itself an einsum: the output gradient with the other
    operands into operand i's letters (see _operand_grad)."""

    @staticmethod
    def forward(ctx, spec, *ops):
        terms, out = spec
        ctx.spec = spec
        ctx.saved = ops
        y = ctx.device.einsum(",".join(terms) + "->" + out, *ops, optimize=True)
        # (NumPy's contraction of 16-bit operands can come back float32; keep their dtype)
        return y if y.dtype == ops[0].dtype else y.astype(ops[0].dtype)

    @staticmethod
    def backward(ctx, g):
        terms, out = ctx.spec
        ops = ctx.saved
        need = ctx.needs_input_grad
        return (None,) + tuple(_operand_grad(ctx.device, g, out, terms, ops, i) if need[i + 1] else None
                               for i in range(len(ops)))


def _operand_grad(dev, g, out, terms, ops, i):
    """d(sum(g * einsum))/d ops[i]. Letters of ops[i] that reach the output or another
    operand come from einsum(out, other terms -> those letters); a letter that only ops[i]
    has was summed out, so the gradient is constant along it (broadcast). Sizes of 1 that
    broadcast in the forward are summed back; a repeated letter (a diagonal) puts the
    gradient on that diagonal of a zero array."""
    term, x = terms[i], ops[i]
    unique = list(dict.fromkeys(term))
    size = {c: n for c, n in zip(term, x.shape)}
    others = [t for j, t in enumerate(terms) if j != i]
    reach = set(out).union(*others)
    keep = [c for c in unique if c in reach]
    eq = ",".join([out] + others) + "->" + "".join(keep)
    gx = dev.asarray(dev.einsum(eq, g, *(o for j, o in enumerate(ops) if j != i), optimize=True))
    summed = tuple(a for a, c in enumerate(keep) if size[c] == 1 and gx.shape[a] != 1)
    if summed:
        gx = gx.sum(axis=summed, keepdims=True)
    alone = [a for a, c in enumerate(unique) if c not in reach]
    if alone:
        gx = dev.expand_dims(gx, alone)
    gx = dev.broadcast_to(gx, [size[c] for c in unique])
    if len(unique) == len(term):
        return gx
    full = dev.zeros(x.shape, dtype=g.dtype)
    # the diagonal of `full` as a writeable view: one axis per distinct letter, its stride
    # the sum of the strides of the positions that letter labels (einsum runs on the CPU)
    strides = [sum(s for t, s in zip(term, full.strides) if t == c) for c in unique]
    np.lib.stride_tricks.as_strided(full, gx.shape, strides)[...] = gx
    return full


class BaddBmm(Function):
    """beta * input + alpha * (batch1 @ batch2) for 3-D batches; input broadcasts to the
    result. With beta == 0 input is not read (its NaN and Inf do not reach the result)."""

    @staticmethod
    def forward(ctx, c, a, b, beta, alpha):
        dev = ctx.device
        ctx.saved = (a, b)
        ctx.beta, ctx.alpha = beta, alpha
        y = dev.matmul(a, b)
        if alpha != 1:
            y = y * alpha
        if beta != 0:
            y = y + (c if beta == 1 else c * beta)
        return y

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved
        dev = ctx.device
        need = ctx.needs_input_grad
        beta, alpha = ctx.beta, ctx.alpha
        gc = (g if beta == 1 else g * beta) if need[0] else None  # summed to input's shape by the engine
        ga = gb = None
        if need[1]:
            ga = dev.matmul(g, b.swapaxes(-1, -2))
            ga = ga if alpha == 1 else ga * alpha
        if need[2]:
            gb = dev.matmul(a.swapaxes(-1, -2), g)
            gb = gb if alpha == 1 else gb * alpha
        return gc, ga, gb, None, None
