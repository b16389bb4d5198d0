"""Tensor math breadth (issue 13): cumsum, cumprod, prod, norm / linalg.vector_norm, einsum,
bmm, baddbmm, outer, any/all, lerp, add/sub(alpha=), and the dtype conversions.

One table (ROWS): per op its cases (shapes and parameters: size-0, 0-d where PyTorch
allows them, non-contiguous inputs), the dlkern call, an independent float64 NumPy
reference written here (loops, slices and matrix products: never the NumPy function
the op itself calls) and the PyTorch twin. Each row and case is checked forward against
the reference in float32 and float64, its float64 gradients against central finite
differences, and forward and gradients against PyTorch when it is installed. Then the
zero cases of prod/cumprod, the CUDA namespace (host twin) and the error cases.
"""

import functools
import math
from typing import Callable, NamedTuple

import numpy as np
import pytest

import dlkern
from dlkern.device import CUDADevice

import host_cuda
from helpers import numeric_grad

INF = math.inf


class Row(NamedTuple):
    name: str
    cases: list            # (shapes of the inputs, parameters) pairs
    call: Callable         # (p, *dlkern tensors) -> tensor
    ref: Callable          # (p, *float64 arrays) -> array
    twin: Callable         # (torch, p, *torch tensors) -> tensor
    grad: bool = True      # differentiable: gradients checked


def _moved(f):
    """A reference over the last axis, applied along p['dim'] (0-d read as shape (1,))."""
    def ref(p, x):
        flat = x.reshape(1) if x.ndim == 0 else x
        out = np.moveaxis(f(np.moveaxis(flat, p["dim"], -1)), -1, p["dim"])
        return out.reshape(x.shape)
    return ref


def _ref_cumsum(x):
    n = x.shape[-1]
    return x @ np.triu(np.ones((n, n)))  # out[k] = sum over i <= k


def _ref_cumprod(x):
    out = np.empty_like(x)
    for k in range(x.shape[-1]):
        out[..., k] = functools.reduce(np.multiply, [x[..., i] for i in range(k + 1)], np.ones(x.shape[:-1]))
    return out


def _ref_prod(p, x):
    dim = p.get("dim")
    if dim is None:
        return np.asarray(functools.reduce(lambda a, b: a * b, x.reshape(-1).tolist(), 1.0))
    flat = x.reshape(1) if x.ndim == 0 else x
    parts = [np.take(flat, i, axis=dim) for i in range(flat.shape[dim])]
    out = functools.reduce(np.multiply, parts, np.ones(np.delete(flat.shape, dim)))
    if p.get("keepdim"):
        out = np.expand_dims(out, dim)
    return out.reshape(()) if x.ndim == 0 else out


def _ref_norm(p, x):
    ord = p.get("ord", 2)
    dim = p.get("dim")
    axes = tuple(range(x.ndim)) if dim is None else ((dim,) if isinstance(dim, int) else dim)
    a = np.abs(x)
    if ord == INF:
        y = a.max(axis=axes, keepdims=True)
    elif ord == -INF:
        y = a.min(axis=axes, keepdims=True)
    elif ord == 0:
        y = (a > 0).sum(axis=axes, keepdims=True).astype(float)
    else:
        y = (a ** ord).sum(axis=axes, keepdims=True) ** (1.0 / ord)
    return y if p.get("keepdim") else y.reshape([n for i, n in enumerate(x.shape) if i not in
                                                 tuple(d % max(x.ndim, 1) for d in axes)])


def _ref_bmm(a, b):
    return (a[:, :, :, None] * b[:, None, :, :]).sum(axis=2)


def _count_nonzero(p, x):
    dim = p.get("dim") if x.ndim else None
    return np.count_nonzero(x, axis=dim, keepdims=p.get("keepdim", False)), (
        x.size if dim is None else int(np.prod([x.shape[d] for d in ((dim,) if isinstance(dim, int) else dim)])))


NORM_CASES = [((3, 4), dict(ord=o, dim=d, keepdim=k, nc=nc)) for o, d, k, nc in [
    (2, None, False, False), (2, 1, False, False), (2, (0, 1), True, False), (1, 0, False, False),
    (0, 1, False, False), (INF, 1, False, False), (-INF, None, False, False), (3, -1, True, False),
    (0.5, 0, False, False), (-1.5, 1, False, False), (1.5, None, False, False), (2, 1, False, True)]]
NORM_CASES += [((), dict(ord=2)), ((0,), dict(ord=2)), ((0, 3), dict(ord=1, dim=0)), ((0, 3), dict(ord=INF, dim=1)),
               ((2, 3, 4), dict(ord=2, dim=(0, 2)))]

ROWS = [
    Row("cumsum", [((3, 4), dict(dim=1)), ((3, 4), dict(dim=-2, nc=True)), ((2, 0, 3), dict(dim=1)),
                   ((2, 0, 3), dict(dim=2)), ((), dict(dim=0)), ((7,), dict(dim=-1))],
        lambda p, x: x.cumsum(p["dim"]), _moved(_ref_cumsum), lambda torch, p, x: x.cumsum(p["dim"])),
    Row("dlkern.cumprod", [((3, 5), dict(dim=1)), ((4, 3), dict(dim=0, nc=True)), ((3, 5), dict(dim=1, zeros=1)),
                           ((3, 6), dict(dim=1, zeros=2)), ((2, 0), dict(dim=1)), ((), dict(dim=-1))],
        lambda p, x: dlkern.cumprod(x, p["dim"]), _moved(_ref_cumprod), lambda torch, p, x: torch.cumprod(x, p["dim"])),
    Row("prod", [((3, 4), {}), ((3, 4), dict(dim=1)), ((3, 4), dict(dim=0, keepdim=True, nc=True)),
                 ((3, 4), dict(dim=1, zeros=1)), ((3, 4), dict(zeros=1)), ((3, 4), dict(zeros=2)),
                 ((3, 4), dict(dim=0, zeros=2)), ((2, 0, 3), dict(dim=1)), ((2, 0, 3), {}), ((), {}), ((), dict(dim=0))],
        lambda p, x: x.prod() if "dim" not in p else x.prod(p["dim"], p.get("keepdim", False)), _ref_prod,
        lambda torch, p, x: x.prod() if "dim" not in p else x.prod(p["dim"], p.get("keepdim", False))),
    Row("linalg.vector_norm", NORM_CASES,
        lambda p, x: dlkern.linalg.vector_norm(x, p["ord"], p.get("dim"), p.get("keepdim") is True), _ref_norm,
        lambda torch, p, x: torch.linalg.vector_norm(x, p["ord"], p.get("dim"), p.get("keepdim") is True)),
    Row("norm", [((3, 4), dict(p="fro")), ((3, 4), dict(p="fro", dim=1, ord=2)), ((2, 3, 4), dict(p="fro", dim=(1, 2))),
                 ((3, 4), dict(p=3, ord=3, dim=0, keepdim=True)), ((3, 4), dict(p=INF, ord=INF)), ((0, 2), dict(p="fro"))],
        lambda p, x: dlkern.norm(x, p["p"], p.get("dim"), p.get("keepdim", False)), _ref_norm,
        lambda torch, p, x: torch.norm(x, p["p"], p.get("dim"), p.get("keepdim", False))),
    Row("bmm", [(((2, 3, 4), (2, 4, 5)), {}), (((2, 3, 4), (2, 4, 5)), dict(nc=True)), (((0, 3, 4), (0, 4, 2)), {}),
                (((2, 3, 0), (2, 0, 4)), {}), (((1, 1, 1), (1, 1, 1)), {})],
        lambda p, a, b: a.bmm(b), lambda p, a, b: _ref_bmm(a, b), lambda torch, p, a, b: a.bmm(b)),
    Row("baddbmm", [(((2, 3, 5), (2, 3, 4), (2, 4, 5)), dict(beta=0.5, alpha=2.0)),
                    (((5,), (2, 3, 4), (2, 4, 5)), dict(beta=1, alpha=1)),
                    (((3, 1), (2, 3, 4), (2, 4, 5)), dict(beta=-2.0, alpha=0.25, nc=True)),
                    (((2, 3, 5), (2, 3, 4), (2, 4, 5)), dict(beta=0, alpha=1.5)),
                    (((0, 3, 2), (0, 3, 4), (0, 4, 2)), dict(beta=2.0, alpha=3.0))],
        lambda p, c, a, b: dlkern.baddbmm(c, a, b, beta=p["beta"], alpha=p["alpha"]),
        lambda p, c, a, b: (p["beta"] * c if p["beta"] else 0) + p["alpha"] * _ref_bmm(a, b),
        lambda torch, p, c, a, b: torch.baddbmm(c, a, b, beta=p["beta"], alpha=p["alpha"])),
    Row("outer", [(((3,), (4,)), {}), (((0,), (4,)), {}), (((1,), (1,)), {})],
        lambda p, a, b: dlkern.outer(a, b), lambda p, a, b: np.array([[u * v for v in b] for u in a]).reshape(
            len(a), len(b)), lambda torch, p, a, b: torch.outer(a, b)),
    Row("lerp_scalar", [(((3, 4), (3, 4)), dict(w=w)) for w in (0.25, 0.5, 1.0, -0.7, 1.8)] +
        [(((3, 4), (4,)), dict(w=0.3, nc=True)), (((0, 4), (4,)), dict(w=0.6)), (((), ()), dict(w=0.75))],
        lambda p, a, b: a.lerp(b, p["w"]), lambda p, a, b: a + p["w"] * (b - a),
        lambda torch, p, a, b: a.lerp(b, p["w"])),
    Row("lerp_tensor", [(((3,), (2, 3), (4, 1, 1)), {}), (((3, 4), (3, 4), (3, 4)), dict(nc=True)),
                        (((2, 0), (2, 0), ()), {})],
        lambda p, a, b, w: dlkern.lerp(a, b, w), lambda p, a, b, w: a + w * (b - a),
        lambda torch, p, a, b, w: torch.lerp(a, b, w)),
    Row("add_alpha", [(((3, 4), (4,)), dict(alpha=2.5)), (((3, 4), (3, 4)), dict(alpha=1, nc=True)),
                      (((0, 4), (4,)), dict(alpha=-1.0)), (((), ()), dict(alpha=3))],
        lambda p, a, b: a.add(b, alpha=p["alpha"]), lambda p, a, b: a + p["alpha"] * b,
        lambda torch, p, a, b: a.add(b, alpha=p["alpha"])),
    Row("dlkern.sub_alpha", [(((3, 4), (3, 1)), dict(alpha=-0.5)), (((2, 3), (2, 3)), dict(alpha=4))],
        lambda p, a, b: dlkern.sub(a, b, alpha=p["alpha"]), lambda p, a, b: a - p["alpha"] * b,
        lambda torch, p, a, b: torch.sub(a, b, alpha=p["alpha"])),
    Row("any", [((3, 4), dict(zeros=2)), ((3, 4), dict(dim=1, zeros=2, zero_row=True)), ((3, 4), dict(dim=(0, 1), keepdim=True)),
                ((3, 4), dict(dim=0, zeros=3, nc=True)), ((0, 3), dict(dim=0)), ((0, 3), {}), ((), dict(dim=0, zeros=1)),
                ((2, 3), dict(zeros=3))],
        lambda p, x: x.any(p.get("dim"), p.get("keepdim", False)), lambda p, x: _count_nonzero(p, x)[0] > 0,
        lambda torch, p, x: x.any() if p.get("dim") is None else x.any(p["dim"], p.get("keepdim", False)), grad=False),
    Row("all", [((3, 4), dict(zeros=2)), ((3, 4), dict(dim=1, zeros=3)), ((3, 4), dict(dim=0, zero_row=True)), ((3, 4), dict(dim=-1, keepdim=True)),
                ((0, 3), dict(dim=1)), ((0, 3), {}), ((), dict(zeros=1))],
        lambda p, x: dlkern.all(x, p.get("dim"), p.get("keepdim", False)),
        lambda p, x: _count_nonzero(p, x)[0] == _count_nonzero(p, x)[1],
        lambda torch, p, x: x.all() if p.get("dim") is None else x.all(p["dim"], p.get("keepdim", False)), grad=False),
]

# einsum: (equation, operand shapes, reference); every row also runs with the operands as one list
EINSUM = [
    ("ij,jk->ik", [(2, 3), (3, 4)], lambda a, b: a @ b),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], lambda a, b: a @ b),
    ("ii", [(3, 3)], lambda a: np.trace(a)),
    ("ii->i", [(4, 4)], lambda a: np.array([a[i, i] for i in range(4)])),
    ("iij->j", [(3, 3, 2)], lambda a: sum(a[i, i] for i in range(3))),
    ("i,j->ij", [(3,), (4,)], lambda a, b: a[:, None] * b[None, :]),
    ("ij->ji", [(2, 3)], lambda a: a.T),
    ("ba", [(2, 3)], lambda a: a.T),  # implicit output: letters in ASCII order
    ("Ab,bc", [(2, 3), (3, 4)], lambda a, b: a @ b),
    ("...ij->...ji", [(2, 3, 4)], lambda a: np.swapaxes(a, -1, -2)),
    ("...->", [(2, 3)], lambda a: a.sum()),
    ("...i->i", [(2, 3, 4)], lambda a: a.sum(axis=(0, 1))),  # ellipsis left out of the output: summed
    ("...i,...i->...", [(2, 1, 3), (4, 3)], lambda a, b: (a * b).sum(-1)),
    ("i...,i...", [(3, 2), (3, 2)], lambda a, b: (a * b).sum(0)),
    ("ij,ij->", [(3, 4), (3, 4)], lambda a, b: (a * b).sum()),
    ("i,i", [(1,), (3,)], lambda a, b: a[0] * b.sum()),  # size 1 broadcasts
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)], lambda a, b, c: a @ b @ c),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)],
     lambda x, w, y: np.array([[x[b] @ w[a] @ y[b] for a in range(4)] for b in range(2)])),
    ("ij->j", [(3, 4)], lambda a: a.sum(0)),
    ("i->", [(0,)], lambda a: np.float64(0)),
    ("ij,jk->ik", [(2, 0), (0, 3)], lambda a, b: np.zeros((2, 3))),
    (",i->i", [(), (3,)], lambda s, v: s * v),
    ("ij,j->ij", [(3, 4), (4,)], lambda a, b: a * b),
]
for _i, (_eq, _shapes, _ref) in enumerate(EINSUM):
    ROWS.append(Row(f"einsum{_i}[{_eq}]", [(tuple(_shapes), dict(eq=_eq)), (tuple(_shapes), dict(eq=_eq, as_list=True))],
                    (lambda p, *ts: dlkern.einsum(p["eq"], list(ts)) if p.get("as_list")
                     else dlkern.einsum(p["eq"], *ts)),
                    (lambda ref: lambda p, *xs: np.asarray(ref(*xs)))(_ref),
                    lambda torch, p, *ts: torch.einsum(p["eq"], *ts)))
ROWS.append(Row("einsum[nc]", [(((3, 4), (4, 5)), dict(eq="ij,jk->ik", nc=True))],
                lambda p, *ts: dlkern.einsum(p["eq"], *ts), lambda p, a, b: a @ b,
                lambda torch, p, *ts: torch.einsum(p["eq"], *ts)))

CASES = [pytest.param(row, shapes, p, id=f"{row.name}-{i}") for row in ROWS for i, (shapes, p) in enumerate(row.cases)]
GRAD_CASES = [c for c in CASES if c.values[0].grad]


def _shapes(shapes):
    return [shapes] if not shapes or isinstance(shapes[0], int) else list(shapes)


def make_inputs(shapes, p, seed=0):
    """Float64 inputs in [-1, 1] (away from 0, so no norm sits on a kink by chance); with
    p['zeros'] = k, k exact zeros in each lane of the first input's last axis, and with
    p['zero_row'] its first row all zeros."""
    rng = np.random.default_rng(seed)
    out = []
    for s in _shapes(shapes):
        a = np.asarray(rng.uniform(0.2, 1.0, s) * rng.choice([-1.0, 1.0], s))
        out.append(a)
    z = p.get("zeros", 0)
    if z and out[0].ndim:
        a = out[0]
        for lane in np.ndindex(a.shape[:-1]):
            a[lane][rng.choice(a.shape[-1], size=min(z, a.shape[-1]), replace=False)] = 0.0
    elif z:
        out[0][()] = 0.0
    if p.get("zero_row") and out[0].size:
        out[0][0] = 0.0
    return out


def noncontiguous(a):
    """The same values through a strided view (every other element of a wider array)."""
    if a.ndim == 0:
        return a
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or view.size <= 1
    return view


def tensors(arrays, p, dtype, requires_grad=False):
    out = []
    for i, a in enumerate(arrays):
        a = a.astype(dtype)
        if p.get("nc") and i == 0:
            a = noncontiguous(a)
        t = dlkern.from_numpy(a)
        out.append(t.requires_grad_() if requires_grad else t)
    return out


def host(t):
    return t.detach().cpu().numpy()


@pytest.mark.parametrize("row, shapes, p", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_forward_matches_reference(row, shapes, p, dtype):
    xs = make_inputs(shapes, p)
    out = row.call(p, *tensors(xs, p, dtype))
    expected = np.asarray(row.ref(p, *xs))
    got = host(out)
    assert got.shape == expected.shape
    if row.grad:
        assert got.dtype == dtype
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
    else:
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("row, shapes, p", GRAD_CASES)
def test_gradients_match_finite_differences(row, shapes, p):
    xs = [np.array(a, order="C") for a in make_inputs(shapes, p)]  # perturbed in place (0-d stays 0-d)
    ts = tensors(xs, {}, np.float64, requires_grad=True)
    out = row.call(p, *ts)
    w = np.random.default_rng(1).standard_normal(out.shape)
    (out * dlkern.from_numpy(w)).sum().backward()

    def loss():
        return float((host(row.call(p, *tensors(xs, {}, np.float64))) * w).sum())

    for i, (x, t) in enumerate(zip(xs, ts)):
        expected = numeric_grad(loss, x) if x.size else np.zeros_like(x)
        got = np.zeros_like(x) if t.grad is None else host(t.grad)
        assert got.shape == x.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8, err_msg=f"gradient of input {i}")


@pytest.mark.parametrize("row, shapes, p", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_forward_and_gradients_match_torch(row, shapes, p, dtype):
    torch = pytest.importorskip("torch")
    xs = make_inputs(shapes, p)
    ts = tensors(xs, p, dtype, requires_grad=row.grad)
    tts = [torch.tensor(a.astype(dtype), requires_grad=row.grad) for a in xs]
    out, tout = row.call(p, *ts), row.twin(torch, p, *tts)
    assert out.shape == tuple(tout.shape)
    assert out.dtype == np.dtype(str(tout.dtype).replace("torch.", ""))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(host(out), tout.detach().numpy(), rtol=tol, atol=tol)
    if not row.grad:
        assert not out.requires_grad
        return
    w = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    (out * dlkern.from_numpy(w)).sum().backward()
    (tout * torch.from_numpy(w)).sum().backward()
    for i, (t, tt) in enumerate(zip(ts, tts)):
        expected = np.zeros(tt.shape, dtype) if tt.grad is None else tt.grad.numpy()
        got = np.zeros(t.shape, dtype) if t.grad is None else host(t.grad)
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol, err_msg=f"gradient of input {i}")


# ---------------------------------------------------------------------- zeros, subgradients, dtypes

def _product_of_others(x, axis):
    """d prod(x, axis) / d x by brute force: each element's product of the other elements."""
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        lane = list(idx)
        lane[axis] = slice(None)
        others = np.delete(x[tuple(lane)], idx[axis])
        out[idx] = functools.reduce(lambda a, b: a * b, others.tolist(), 1.0)
    return out


@pytest.mark.parametrize("lane", [[2.0, 0.0, 3.0, -1.5], [0.0, 2.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0],
                                  [1.5, -2.0, 0.5, 4.0], [5.0, 0.0, 0.0, 0.0], [0.0]])
def test_prod_and_cumprod_gradients_with_zeros(lane):
    x = np.array([lane, [v + 1 for v in lane]], np.float64)
    t = dlkern.tensor(x, requires_grad=True)
    t.prod(1).sum().backward()
    np.testing.assert_array_equal(host(t.grad), _product_of_others(x, 1))
    t.grad = None
    t.prod().backward()
    np.testing.assert_allclose(host(t.grad), _product_of_others(x.reshape(1, -1), 1).reshape(x.shape), rtol=1e-14)
    # cumprod: d y_i / d x_k = product of x_0..x_i without x_k (i >= k), summed over i
    t.grad = None
    t.cumprod(1).sum().backward()
    n = x.shape[1]
    expected = np.zeros_like(x)
    for k in range(n):
        for i in range(k, n):
            expected[:, k] += _product_of_others(x[:, :i + 1], 1)[:, k]
    np.testing.assert_allclose(host(t.grad), expected, rtol=1e-14)


@pytest.mark.parametrize("ord", [2, 1, 3, 1.5, 0.5, -1, INF, -INF, 0])
@pytest.mark.parametrize("values", [[0.0, 0.0, 0.0], [0.0, 1.5, -2.0], [3.0, -3.0, 1.0]], ids=["zeros", "some0", "tie"])
def test_vector_norm_subgradients(ord, values):
    """At a zero norm the 2-norm (and p > 1) gradient is 0, not NaN; ord 1 gives sign(x);
    the inf-norm ties share the gradient; negative and fractional p give 0 at x == 0."""
    x = dlkern.tensor(values, dtype="float64", requires_grad=True)
    dlkern.linalg.vector_norm(x, ord).backward()
    if ord == 0:  # a count: no gradient reaches x (PyTorch leaves .grad None too)
        assert x.grad is None
        return
    g = host(x.grad)
    assert not np.isnan(g).any() or ord < 1  # NaN only where PyTorch has it too (checked below)
    v = np.array(values)
    if not v.any() and ord >= 1:
        np.testing.assert_array_equal(g, np.zeros(3))
    if ord == 1:
        np.testing.assert_array_equal(g, np.sign(v))
    if ord == INF and values[0] == 3.0:
        np.testing.assert_array_equal(g, [0.5, -0.5, 0.0])
    torch = pytest.importorskip("torch")
    tx = torch.tensor(values, dtype=torch.float64, requires_grad=True)
    torch.linalg.vector_norm(tx, ord).backward()
    np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-14, equal_nan=True)


def test_result_dtypes_and_dtype_arguments():
    i32 = dlkern.tensor(np.array([[1, 2, 3], [4, 5, 6]], np.int32))
    assert i32.cumsum(1).dtype == np.int64 and i32.cumprod(0).dtype == np.int64 and i32.prod().dtype == np.int64
    assert i32.prod().item() == 720 and host(i32.cumprod(1)).tolist() == [[1, 2, 6], [4, 20, 120]]
    b = dlkern.tensor([True, True, False])
    assert b.cumsum(0).dtype == np.int64 and host(b.cumsum(0)).tolist() == [1, 2, 2]
    assert i32.cumsum(1, dtype="float64").dtype == np.float64
    assert dlkern.prod(i32, 1, dtype=dlkern.float64).dtype == np.float64
    f = dlkern.tensor([3.0, 4.0])
    assert dlkern.norm(f, dtype=dlkern.float64).dtype == np.float64 and dlkern.norm(f).item() == 5.0
    assert i32.any().dtype == np.bool_ and dlkern.all(i32, 1).dtype == np.bool_


def test_conversions():
    x = dlkern.tensor([[1.7, -0.2], [0.0, 300.0]], requires_grad=True)
    h = x.half()
    assert h.dtype == np.float16 and h.requires_grad
    h.sum().backward()
    assert x.grad.dtype == np.float32 and host(x.grad).tolist() == [[1, 1], [1, 1]]
    for name, dtype, expected in [("int", np.int32, [[1, 0], [0, 300]]), ("short", np.int16, [[1, 0], [0, 300]]),
                                  ("byte", np.uint8, [[1, 0], [0, 44]]),
                                  ("bool", np.bool_, [[True, True], [False, True]])]:
        y = getattr(x, name)()
        assert y.dtype == dtype and not y.requires_grad and y.grad_fn is None, name
        assert host(y).tolist() == expected, name
    i = dlkern.tensor([1, 2]).int()
    assert i.int() is i  # already that dtype: the tensor itself, as PyTorch


def test_conversions_match_torch():
    torch = pytest.importorskip("torch")
    a = np.array([[1.7, -0.2], [0.0, 100.0]], np.float32)
    for name in ("half", "int", "short", "bool"):
        got, want = getattr(dlkern.tensor(a), name)(), getattr(torch.tensor(a), name)()
        assert got.dtype == np.dtype(str(want.dtype).replace("torch.", "")), name
        np.testing.assert_array_equal(host(got), want.numpy(), err_msg=name)


def test_add_sub_alpha_integers_and_numbers():
    a = dlkern.tensor([1, 2, 3])
    assert host(a.add(a, alpha=2)).tolist() == [3, 6, 9] and a.add(a, alpha=2).dtype == np.int64
    assert host(a.sub(1, alpha=3)).tolist() == [-2, -1, 0]
    assert host(dlkern.add(1.0, dlkern.tensor([1.0, 2.0]), alpha=2)).tolist() == [3.0, 5.0]
    assert host(dlkern.sub(1.0, dlkern.tensor([1.0, 2.0]), alpha=2)).tolist() == [-1.0, -3.0]
    b = dlkern.tensor([True, False])
    assert host(b.add(b, alpha=True)).tolist() == [True, False]
    x = dlkern.tensor([1.0, 2.0], requires_grad=True)
    y = dlkern.tensor([3.0, 4.0], requires_grad=True)
    x.sub(y, alpha=-2.5).sum().backward()
    assert host(x.grad).tolist() == [1.0, 1.0] and host(y.grad).tolist() == [2.5, 2.5]


def test_baddbmm_beta_zero_ignores_input_and_lerp_endpoints():
    a, b = dlkern.ones(2, 3, 4), dlkern.ones(2, 4, 5)
    c = dlkern.full((2, 3, 5), float("nan"))
    out = dlkern.baddbmm(c, a, b, beta=0, alpha=2)
    assert host(out).tolist() == np.full((2, 3, 5), 8.0).tolist()
    start = dlkern.tensor([0.1, -3.0, 1e8])
    end = dlkern.tensor([0.3, 7.0, -1e-8])
    assert host(start.lerp(end, 1.0)).tolist() == host(end).tolist()  # weight 1 gives end exactly
    assert host(start.lerp(end, 0.0)).tolist() == host(start).tolist()
    assert host(start.lerp(end, dlkern.tensor([1.0, 0.0, 1.0]))).tolist() == [
        host(end)[0], host(start)[1], host(end)[2]]


def test_any_all_on_int_and_bool_inputs_and_no_grad():
    x = dlkern.tensor([[0, 3], [0, 0]])
    assert host(x.any(1)).tolist() == [True, False] and host(x.all(0)).tolist() == [False, False]
    assert host(dlkern.tensor([[True, True], [False, True]]).all(dim=1, keepdim=True)).tolist() == [[True], [False]]
    f = dlkern.tensor([1.0, 0.0], requires_grad=True)
    assert not f.any().requires_grad and f.any().grad_fn is None


# ---------------------------------------------------------------------- CUDA namespace (host twin)

ON_CUDA = ["linalg.vector_norm", "norm", "bmm", "baddbmm", "outer", "lerp_scalar", "lerp_tensor", "add_alpha",
           "dlkern.sub_alpha", "any", "all"]
CUDA_CASES = [c for c in CASES if c.values[0].name in ON_CUDA]


@pytest.mark.parametrize("row, shapes, p", CUDA_CASES)
def test_cuda_host_twin_matches_cpu(row, shapes, p):
    """The ops built on the CUDA module's primitives give the CPU's values and gradients
    on the host twin of dlkern._C_cuda (float64)."""
    dev = CUDADevice(0, module=host_cuda)
    xs = make_inputs(shapes, p)
    cpu = tensors(xs, {}, np.float64, requires_grad=row.grad)
    gpu = [dlkern.tensor(x, dtype="float64", device=dev, requires_grad=row.grad) for x in xs]
    out, dout = row.call(p, *cpu), row.call(p, *gpu)
    assert dout.device == dev and dout.dtype == out.dtype and dout.shape == out.shape
    np.testing.assert_allclose(host(dout), host(out), rtol=1e-12, atol=1e-12)
    if row.grad:
        w = np.random.default_rng(3).standard_normal(out.shape)
        (out * dlkern.from_numpy(w)).sum().backward()
        (dout * dlkern.tensor(w, device=dev)).sum().backward()
        for t, d in zip(cpu, gpu):
            assert (t.grad is None) == (d.grad is None)
            if t.grad is not None:
                assert d.grad.device == dev
                np.testing.assert_allclose(host(d.grad), host(t.grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, call", [
    ("cumsum", lambda x: x.cumsum(0)), ("cumprod", lambda x: dlkern.cumprod(x, 1)), ("prod", lambda x: x.prod()),
    ("prod", lambda x: x.prod(1)), ("einsum", lambda x: dlkern.einsum("ij->j", x)),
], ids=["cumsum", "cumprod", "prod", "prod-dim", "einsum"])
def test_cuda_refuses_ops_without_a_primitive(name, call):
    """No scan, product or einsum primitive in the CUDA module: a clear NotImplementedError
    naming the op and 'cuda', not a silent host round trip."""
    x = dlkern.ones(2, 3, device=CUDADevice(0, module=host_cuda))
    with pytest.raises(NotImplementedError, match=rf"op '{name}' is not implemented on device 'cuda'"):
        call(x)


# ---------------------------------------------------------------------- errors

def _f(*shape, dtype="float32"):
    return dlkern.ones(*shape, dtype=dtype)


ERRORS = [
    ("cumsum-dim-range", lambda: _f(2, 3).cumsum(2), IndexError, r"cumsum: Dimension out of range .*\[-2, 1\].* 2\)"),
    ("cumsum-dim-missing", lambda: _f(2, 3).cumsum(), TypeError, r"dim"),
    ("cumsum-dim-float", lambda: _f(2, 3).cumsum(1.0), TypeError, r"cumsum: dim must be an int, got float"),
    ("cumprod-0d-range", lambda: dlkern.tensor(2.0).cumprod(1), IndexError, r"cumprod: .*\[-1, 0\]"),
    ("prod-dim-range", lambda: dlkern.prod(_f(2), -2), IndexError, r"prod: Dimension out of range"),
    ("prod-dim-tuple", lambda: _f(2, 3).prod((0, 1)), TypeError, r"prod: dim must be an int, got tuple"),
    ("norm-int", lambda: dlkern.linalg.vector_norm(dlkern.tensor([1, 2])), RuntimeError,
     r"vector_norm: Expected a floating point tensor as input. Got int64"),
    ("norm-ord-str", lambda: dlkern.linalg.vector_norm(_f(2), "fro"), TypeError, r"ord must be a number, got str"),
    ("norm-dup-dims", lambda: dlkern.linalg.vector_norm(_f(2, 3), dim=(0, -2)), RuntimeError,
     r"dim 0 appears multiple times"),
    ("norm-dim-range", lambda: dlkern.linalg.vector_norm(_f(2, 3), dim=2), IndexError, r"out of range"),
    ("norm-inf-empty", lambda: dlkern.linalg.vector_norm(_f(0), INF), RuntimeError,
     r"cannot compute the inf norm on an empty tensor"),
    ("norm-neg-empty-dim", lambda: dlkern.linalg.vector_norm(_f(0, 3), -1, dim=0), RuntimeError,
     r"cannot compute the -1 norm on the dimension 0"),
    ("norm-dtype-int", lambda: dlkern.linalg.vector_norm(_f(2), dtype="int64"), RuntimeError,
     r"dtype must be floating point"),
    ("norm-not-tensor", lambda: dlkern.linalg.vector_norm([1.0, 2.0]), TypeError, r"x must be a Tensor, got list"),
    ("norm-nuc", lambda: _f(2, 3).norm("nuc"), NotImplementedError, r"nuclear norm"),
    ("norm-order-str", lambda: _f(2, 3).norm("abc"), RuntimeError, r"norm: order 'abc' is not supported"),
    ("norm-fro-3dims", lambda: dlkern.norm(_f(2, 3, 4), "fro", dim=(0, 1, 2)), RuntimeError, r"at most 2 dims"),
    ("einsum-fewer", lambda: dlkern.einsum("ij,jk->ik", _f(2, 3)), RuntimeError, r"fewer operands"),
    ("einsum-more", lambda: dlkern.einsum("ij", _f(2, 3), _f(2)), RuntimeError, r"more operands"),
    ("einsum-bad-char", lambda: dlkern.einsum("i1", _f(2, 3)), RuntimeError,
     r"invalid subscript given at index 1 in the equation string, subscripts must be in \[a-zA-Z\]"),
    ("einsum-bad-out", lambda: dlkern.einsum("ij->i.", _f(2, 3)), RuntimeError, r"invalid subscript given at index 5"),
    ("einsum-ndim", lambda: dlkern.einsum("ijk", _f(2, 3)), RuntimeError,
     r"number of subscripts in the equation \(3\) does not match the number of dimensions \(2\) for operand 0"),
    ("einsum-ndim-ellipsis", lambda: dlkern.einsum("...ijk", _f(2, 3)), RuntimeError, r"is more than the number"),
    ("einsum-diag-sizes", lambda: dlkern.einsum("ii", _f(2, 3)), RuntimeError,
     r"subscript i is repeated for operand 0 but the sizes don't match, 3 != 2"),
    ("einsum-broadcast", lambda: dlkern.einsum("ij,jk", _f(2, 3), _f(4, 5)), RuntimeError,
     r"subscript j has size 4 for operand 1 which does not broadcast with previously seen size 3"),
    ("einsum-ellipsis-broadcast", lambda: dlkern.einsum("...i,...i", _f(2, 3), _f(4, 3)), RuntimeError,
     r"an ellipsis dimension has size 4 for operand 1"),
    ("einsum-out-unknown", lambda: dlkern.einsum("ij->ijk", _f(2, 3)), RuntimeError,
     r"output subscript k does not appear in the equation for any input operand"),
    ("einsum-out-repeat", lambda: dlkern.einsum("ij->ii", _f(2, 3)), RuntimeError,
     r"output subscript i appears more than once in the output"),
    ("einsum-two-ellipses", lambda: dlkern.einsum("...i...", _f(2, 3)), RuntimeError, r"more than one ellipsis"),
    ("einsum-two-arrows", lambda: dlkern.einsum("i->i->i", _f(2)), RuntimeError, r"more than one '->'"),
    ("einsum-not-tensor", lambda: dlkern.einsum("i,i", _f(2), [1.0, 2.0]), TypeError,
     r"operand 1 must be a Tensor, got list"),
    ("einsum-dtypes", lambda: dlkern.einsum("i,i", _f(2), _f(2, dtype="float64")), TypeError,
     r"operands must share one dtype: operand 0 is float32, operand 1 is float64"),
    ("einsum-equation-type", lambda: dlkern.einsum(3, _f(2)), TypeError, r"equation must be a string, got int"),
    ("bmm-2d-first", lambda: dlkern.bmm(_f(2, 3), _f(2, 3, 4)), RuntimeError, r"bmm: batch1 must be a 3D tensor"),
    ("bmm-2d-second", lambda: _f(2, 3, 4).bmm(_f(2, 3)), RuntimeError, r"bmm: batch2 must be a 3D tensor, got 2-D"),
    ("bmm-inner", lambda: _f(2, 3, 4).bmm(_f(2, 5, 4)), RuntimeError,
     r"first two dimensions of batch2 tensor to be: \[2, 4\] but got: \[2, 5\]"),
    ("bmm-batch", lambda: _f(2, 3, 4).bmm(_f(3, 4, 4)), RuntimeError, r"to be: \[2, 4\] but got: \[3, 4\]"),
    ("bmm-dtype", lambda: _f(2, 3, 4).bmm(_f(2, 4, 4, dtype="float64")), TypeError, r"bmm: dtype mismatch"),
    ("bmm-not-tensor", lambda: _f(2, 3, 4).bmm(np.ones((2, 4, 4))), TypeError, r"bmm: expected a Tensor"),
    ("baddbmm-input", lambda: dlkern.baddbmm(_f(3, 3), _f(2, 3, 4), _f(2, 4, 4)), RuntimeError,
     r"baddbmm: input of shape \(3, 3\) does not broadcast to the result's shape \(2, 3, 4\)"),
    ("baddbmm-beta", lambda: dlkern.baddbmm(_f(4), _f(2, 3, 4), _f(2, 4, 4), beta="1"), TypeError,
     r"beta must be a number, got str"),
    ("baddbmm-batch", lambda: dlkern.baddbmm(_f(4), _f(3, 4), _f(2, 4, 4)), RuntimeError, r"batch1 must be a 3D"),
    ("baddbmm-positional-beta", lambda: dlkern.baddbmm(_f(4), _f(2, 3, 4), _f(2, 4, 4), 0.5), TypeError,
     r"positional"),
    ("outer-2d-self", lambda: dlkern.outer(_f(2, 3), _f(3)), RuntimeError, r"outer: Expected 1-D argument self, but got 2-D"),
    ("outer-2d-vec2", lambda: _f(3).outer(_f(2, 3)), RuntimeError, r"outer: Expected 1-D argument vec2, but got 2-D"),
    ("outer-not-tensor", lambda: _f(3).outer([1.0]), TypeError, r"outer: vec2 must be a Tensor, got list"),
    ("any-dim-range", lambda: _f(2, 3).any(2), IndexError, r"out of range"),
    ("all-0d-dim", lambda: dlkern.tensor(1.0).all(1), IndexError, r"all: Dimension out of range"),
    ("lerp-int", lambda: dlkern.tensor([1, 2]).lerp(dlkern.tensor([1, 2]), 0.5), NotImplementedError,
     r"lerp: not implemented for dtype int64"),
    ("lerp-end-number", lambda: _f(3).lerp(2.0, 0.5), TypeError, r"lerp: expected a Tensor, got float"),
    ("lerp-end-dtype", lambda: _f(3).lerp(_f(3, dtype="float64"), 0.5), TypeError, r"lerp: dtype mismatch"),
    ("lerp-weight-dtype", lambda: _f(3).lerp(_f(3), _f(3, dtype="float64")), TypeError, r"lerp: dtype mismatch"),
    ("lerp-weight-type", lambda: _f(3).lerp(_f(3), "0.5"), TypeError, r"weight must be a number or a Tensor, got str"),
    ("add-float-alpha-int", lambda: dlkern.tensor([1, 2]).add(dlkern.tensor([1, 2]), alpha=0.5), RuntimeError,
     r"add: For integral input tensors, argument alpha must not be a floating point number"),
    ("sub-bool-alpha", lambda: _f(2).sub(_f(2), alpha=True), RuntimeError,
     r"sub: Boolean alpha only supported for Boolean results"),
    ("add-alpha-type", lambda: _f(2).add(_f(2), alpha="2"), TypeError, r"add: alpha must be a number, got str"),
    ("add-alpha-positional", lambda: _f(2).add(_f(2), 2), TypeError, r"positional"),
    ("add-two-numbers", lambda: dlkern.add(1.0, 2.0), TypeError, r"add: expected a Tensor, got float and float"),
]


@pytest.mark.parametrize("name, call, exc, pattern", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(name, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()
