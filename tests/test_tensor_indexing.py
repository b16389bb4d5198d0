"""Indexing and reordering ops of dlkern.Tensor (gather, scatter, scatter_add,
index_select, masked_fill, sort, argsort, topk, flip, roll, repeat, tile,
repeat_interleave, diag) and their free functions.

One table (ROWS): each row has cases (input shape and layout, the op's arguments), the
call (the same lambda runs on dlkern and on torch tensors), and an independent NumPy
reference written here. Each case is checked: forward against the reference (both
dtypes); forward and gradient against PyTorch; the float64 gradient against central
finite differences; and on the CUDA host twin (tests/host_cuda.py) against the CPU, or,
for the ops with no CUDA primitive (sort, argsort, topk), the refusal. Then the errors
and the in-place forms.
"""

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

import dlkern
from dlkern.device import CUDADevice

import host_cuda
from helpers import numeric_grad

DTYPES = (np.float32, np.float64)


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def make_x(rng, shape, layout, dtype):
    """The input array: contiguous, transposed (every axis reversed), strided (every other
    element of the last axis), ties (small integers), or nan (some entries NaN/inf)."""
    if layout == "T":
        return rng.uniform(-1, 1, shape[::-1]).astype(dtype).T
    if layout == "strided":
        return rng.uniform(-1, 1, shape[:-1] + (2 * shape[-1],)).astype(dtype)[..., ::2]
    if layout == "ties":
        return rng.integers(-2, 3, shape).astype(dtype)
    x = rng.uniform(-1, 1, shape).astype(dtype)
    if layout == "nan":
        flat = x.reshape(-1)
        flat[::3] = np.nan
        flat[1::5] = np.inf
        flat[2::7] = -np.inf
    return x


# ---------------------------------------------------------------------- argument makers

def gather_index(rng, shape, dim, index_shape):
    return rng.integers(0, shape[dim], index_shape).astype(np.int64)


def distinct_index(rng, shape, dim, index_shape):
    """An index whose entries are distinct along dim in every lane (so scatter's result
    does not depend on the order of the writes)."""
    full = tuple(shape[d] if d == dim else n for d, n in enumerate(index_shape))
    perm = np.argsort(rng.uniform(size=full), axis=dim)
    return perm[tuple(slice(0, n) for n in index_shape)].astype(np.int64)


def src(rng, shape):
    return rng.uniform(-2, 2, shape)  # cast to x's dtype with the other float arguments


def with_src(make_index, dim, index_shape, src_shape=None):
    """The arguments (dim, index made by make_index, src) of a scatter case."""
    return lambda r, s: dict(dim=dim, index=make_index(r, s, dim, index_shape), src=src(r, src_shape or index_shape))


# ---------------------------------------------------------------------- NumPy references

def ref_gather(x, dim, index):
    if x.ndim == 0:  # a 0-d x is one element; every index is 0
        assert not index.any()
        return np.full(index.shape, x, x.dtype)
    coords = list(np.indices(index.shape, sparse=True))
    coords[dim] = index
    return x[tuple(coords)]


def ref_scatter(x, dim, index, src=None, value=None, add=False):
    if x.ndim == 0:  # as the 1-element 1-D array
        src = None if src is None else src.reshape(-1)
        return ref_scatter(x.reshape(1), 0, index.reshape(-1), src, value, add).reshape(())
    out = x.copy()
    coords = list(np.indices(index.shape, sparse=True))
    coords[dim] = index
    vals = value if src is None else src[tuple(slice(0, n) for n in index.shape)]
    if add:
        np.add.at(out, tuple(coords), vals)
    else:
        out[tuple(coords)] = vals
    return out


def lane_order(v, descending):
    """Python's stable sort of one lane, NaN as the largest value."""
    def key(i):
        nan = math.isnan(v[i])
        return (0, 0.0) if nan and descending else (1, 0.0) if nan else (1, -v[i]) if descending else (0, v[i])
    return sorted(range(len(v)), key=key)


def ref_sort(x, dim=-1, descending=False, k=None):
    if x.ndim == 0:
        return x.copy(), np.zeros((), np.int64)
    moved = np.moveaxis(x, dim, -1)
    idx = np.empty(moved.shape, np.int64)
    for lane in np.ndindex(moved.shape[:-1]):
        idx[lane] = lane_order(moved[lane].tolist(), descending)
    idx = idx[..., :k] if k is not None else idx
    vals = np.take_along_axis(moved, idx, -1)
    return np.moveaxis(vals, -1, dim), np.moveaxis(idx, -1, dim)


def ref_diag(x, k):
    if x.ndim == 1:
        m = x.shape[0] + abs(k)
        out = np.zeros((m, m), x.dtype)
        for i, v in enumerate(x):
            out[i + max(-k, 0), i + max(k, 0)] = v
        return out
    return np.array([x[i, i + k] for i in range(x.shape[0]) if 0 <= i + k < x.shape[1]], x.dtype).reshape(-1)


# ---------------------------------------------------------------------- the table

@dataclass
class Row:
    name: str
    cases: list      # (shape, layout, args(rng, shape) -> dict of the op's arguments)
    call: object     # call(x, **args), the same on dlkern and torch tensors
    ref: object      # ref(x, **args) on NumPy arrays
    out: str = "tensor"   # "tensor", "pair" (values, indices) or "index"
    cuda: bool = True     # runs on the CUDA namespace (else: refused there)
    torch_grad: bool = True


def C(shape, layout, args, torch_grad=True):
    return (tuple(shape), layout, args, torch_grad)


ROWS = [
    Row("gather", [
        C((3, 4), "contig", lambda r, s: dict(dim=1, index=gather_index(r, s, 1, (3, 6)))),
        C((3, 4), "T", lambda r, s: dict(dim=0, index=gather_index(r, s, 0, (5, 2)))),
        C((2, 3, 4), "strided", lambda r, s: dict(dim=-1, index=gather_index(r, s, 2, (2, 2, 3)))),
        C((0, 3), "contig", lambda r, s: dict(dim=1, index=np.zeros((0, 2), np.int64))),
        C((3, 4), "contig", lambda r, s: dict(dim=1, index=np.zeros((3, 0), np.int64))),
        C((), "contig", lambda r, s: dict(dim=0, index=np.zeros((), np.int64))),
        C((), "contig", lambda r, s: dict(dim=-1, index=np.zeros(3, np.int64))),
    ], lambda x, dim, index: x.gather(dim, index), ref_gather),
    Row("scatter", [
        C((3, 4), "contig", with_src(distinct_index, 1, (3, 2))),
        C((4, 3), "T", with_src(distinct_index, 0, (2, 3))),
        C((2, 3, 4), "strided", with_src(distinct_index, 2, (2, 2, 4))),
        # src larger than index: torch's backward refuses it (shape [2, 1] vs [2, 3]); ours is zero there
        C((2, 3), "contig", with_src(distinct_index, 1, (2, 1), (2, 3)), torch_grad=False),
        C((0, 3), "contig", with_src(distinct_index, 0, (0, 3))),
        C((), "contig", lambda r, s: dict(dim=0, index=np.zeros((), np.int64), src=src(r, ()))),
    ], lambda x, dim, index, src: x.scatter(dim, index, src), ref_scatter),
    Row("scatter_value", [
        C((3, 4), "T", lambda r, s: dict(dim=0, index=distinct_index(r, s, 0, (2, 4)), value=2.5)),
        C((3, 4), "contig", lambda r, s: dict(dim=-1, index=distinct_index(r, s, 1, (1, 3)), value=-1)),
    ], lambda x, dim, index, value: x.scatter(dim, index, value=value), ref_scatter),
    Row("scatter_add", [   # repeated indices: the adds accumulate
        C((3, 4), "contig", with_src(gather_index, 1, (3, 7))),
        C((4, 3), "T", with_src(gather_index, 0, (9, 2))),
        C((2, 3, 4), "strided", with_src(gather_index, 1, (2, 5, 3))),
        C((2, 3), "contig", with_src(gather_index, 0, (3, 2), (4, 3)), torch_grad=False),
        C((0, 2), "contig", with_src(gather_index, 1, (0, 2))),
        C((), "contig", lambda r, s: dict(dim=0, index=np.zeros(3, np.int64), src=src(r, (3,)))),
    ], lambda x, dim, index, src: x.scatter_add(dim, index, src),
        lambda x, dim, index, src: ref_scatter(x, dim, index, src, add=True)),
    Row("index_select", [
        C((4, 3), "T", lambda r, s: dict(dim=0, index=np.array([3, 0, 3, 1]))),
        C((2, 3, 4), "strided", lambda r, s: dict(dim=-1, index=np.array([0]))),
        C((2, 3), "contig", lambda r, s: dict(dim=1, index=np.array([2, 2, 0], np.int32))),
        C((3, 0), "contig", lambda r, s: dict(dim=1, index=np.zeros(0, np.int64))),
        C((0, 3), "contig", lambda r, s: dict(dim=1, index=np.array([2, 2]))),
        C((3, 4), "contig", lambda r, s: dict(dim=0, index=np.array(1))),
        C((), "contig", lambda r, s: dict(dim=0, index=np.array([0]))),
    ], lambda x, dim, index: x.index_select(dim, index),
        lambda x, dim, index: np.take(x.reshape(1), index.reshape(-1), 0).reshape(())
        if x.ndim == 0 else np.take(x, index.reshape(-1), dim)),
    Row("masked_fill", [
        C((3, 4), "contig", lambda r, s: dict(mask=r.uniform(size=4) < 0.5, value=-1.5)),
        C((3, 4), "T", lambda r, s: dict(mask=r.uniform(size=s) < 0.5, value=np.array(0.25))),  # 0-d tensor value
        C((2, 3), "strided", lambda r, s: dict(mask=r.uniform(size=(4, 1, 3)) < 0.5, value=2)),  # mask grows x
        C((0, 3), "contig", lambda r, s: dict(mask=np.ones(3, bool), value=1.0)),
        C((), "contig", lambda r, s: dict(mask=np.array(True), value=np.array(-3.0))),
        C((3,), "nan", lambda r, s: dict(mask=np.array([True, False, False]), value=float("nan"))),
    ], lambda x, mask, value: x.masked_fill(mask, value),
        lambda x, mask, value: np.where(mask, np.asarray(value, x.dtype), x)),
    Row("sort", [
        C((3, 5), "contig", lambda r, s: dict()),
        C((4, 3), "T", lambda r, s: dict(dim=0, descending=True)),
        C((2, 3, 4), "strided", lambda r, s: dict(dim=1)),
        C((4, 7), "ties", lambda r, s: dict(descending=True, stable=True)),
        C((4, 7), "ties", lambda r, s: dict(stable=True)),
        C((5, 6), "ties", lambda r, s: dict(dim=0, descending=True)),   # unstable: ties in any order
        C((2, 50), "ties", lambda r, s: dict(stable=True)),   # lanes past NumPy's insertion-sort size
        C((50, 3), "ties", lambda r, s: dict(dim=0, descending=True, stable=True)),
        C((2, 50), "ties", lambda r, s: dict()),
        C((3, 8), "nan", lambda r, s: dict(stable=True)),
        C((3, 8), "nan", lambda r, s: dict(descending=True, stable=True)),
        C((0, 3), "contig", lambda r, s: dict(dim=1)),
        C((), "contig", lambda r, s: dict()),
    ], lambda x, **kw: x.sort(**kw), lambda x, dim=-1, descending=False, stable=False: ref_sort(x, dim, descending),
        out="pair", cuda=False),
    Row("argsort", [
        C((3, 5), "T", lambda r, s: dict(dim=0)),
        C((4, 7), "ties", lambda r, s: dict(descending=True, stable=True)),
        C((4, 7), "ties", lambda r, s: dict()),
        C((3, 8), "nan", lambda r, s: dict(stable=True)),
        C((), "contig", lambda r, s: dict()),
    ], lambda x, **kw: x.argsort(**kw),
        lambda x, dim=-1, descending=False, stable=False: ref_sort(x, dim, descending)[1], out="index", cuda=False),
    Row("topk", [
        C((3, 6), "contig", lambda r, s: dict(k=2)),
        C((5, 4), "T", lambda r, s: dict(k=3, dim=0, largest=False)),
        C((2, 3, 6), "strided", lambda r, s: dict(k=6, dim=-1)),
        C((3, 6), "contig", lambda r, s: dict(k=0)),
        C((4, 7), "ties", lambda r, s: dict(k=3)),
        C((2, 60), "ties", lambda r, s: dict(k=20, largest=False)),
        C((3, 8), "nan", lambda r, s: dict(k=4)),
        C((3, 8), "nan", lambda r, s: dict(k=4, largest=False)),
        C((), "contig", lambda r, s: dict(k=1)),
    ], lambda x, **kw: x.topk(**kw),
        lambda x, k, dim=-1, largest=True, sorted=True: ref_sort(x, dim, largest, k), out="pair", cuda=False),
    Row("flip", [
        C((3, 4), "contig", lambda r, s: dict(dims=(0, 1))),
        C((2, 3, 4), "strided", lambda r, s: dict(dims=(-1,))),
        C((4, 3), "T", lambda r, s: dict(dims=[0])),
        C((0, 3), "contig", lambda r, s: dict(dims=(0,))),
        C((), "contig", lambda r, s: dict(dims=())),
    ], lambda x, dims: x.flip(dims), lambda x, dims: np.flip(x, dims) if dims else x.copy()),
    Row("roll", [
        C((3, 4), "contig", lambda r, s: dict(shifts=1)),
        C((3, 4), "T", lambda r, s: dict(shifts=(1, -5), dims=(0, 1))),
        C((2, 3, 4), "strided", lambda r, s: dict(shifts=7, dims=2)),
        C((0, 3), "contig", lambda r, s: dict(shifts=2, dims=0)),
        C((), "contig", lambda r, s: dict(shifts=1)),
    ], lambda x, **kw: x.roll(**kw), lambda x, shifts, dims=None: np.roll(x, shifts, dims)),
    Row("repeat", [
        C((2, 3), "contig", lambda r, s: dict(sizes=(2, 1))),
        C((2, 3), "T", lambda r, s: dict(sizes=(1, 2, 3))),
        C((3,), "strided", lambda r, s: dict(sizes=(0, 2))),
        C((), "contig", lambda r, s: dict(sizes=(3,))),
        C((), "contig", lambda r, s: dict(sizes=())),
    ], lambda x, sizes: x.repeat(sizes), lambda x, sizes: np.tile(x, sizes) if sizes else x.copy()),
    Row("tile", [
        C((2, 3), "contig", lambda r, s: dict(dims=(2,))),
        C((2, 3), "T", lambda r, s: dict(dims=(2, 1, 2))),
        C((0, 2), "contig", lambda r, s: dict(dims=(3, 1))),
    ], lambda x, dims: x.tile(dims), lambda x, dims: np.tile(x, dims)),
    Row("repeat_interleave", [
        C((2, 3), "contig", lambda r, s: dict(repeats=2)),
        C((2, 3), "T", lambda r, s: dict(repeats=np.array([1, 0, 2]), dim=1)),
        C((3, 2), "strided", lambda r, s: dict(repeats=np.array([2]), dim=0)),
        C((3, 2), "contig", lambda r, s: dict(repeats=np.array(3, np.int32), dim=-1)),
        C((0, 3), "contig", lambda r, s: dict(repeats=2, dim=0)),
        C((), "contig", lambda r, s: dict(repeats=3)),
    ], lambda x, **kw: x.repeat_interleave(**kw),
        lambda x, repeats, dim=None: np.repeat(x, np.asarray(repeats).reshape(-1) if np.ndim(repeats) else repeats,
                                               axis=dim)),
    Row("diag", [
        C((4,), "contig", lambda r, s: dict(diagonal=0)),
        C((4,), "strided", lambda r, s: dict(diagonal=-2)),
        C((3, 5), "T", lambda r, s: dict(diagonal=1)),
        C((3, 5), "contig", lambda r, s: dict(diagonal=-2)),
        C((3, 5), "contig", lambda r, s: dict(diagonal=7)),
        C((0,), "contig", lambda r, s: dict(diagonal=1)),
    ], lambda x, diagonal: x.diag(diagonal), lambda x, diagonal: ref_diag(x, diagonal)),
]

CASES = [pytest.param(row, i, id=f"{row.name}-{i}-{row.cases[i][0]}-{row.cases[i][1]}")
         for row in ROWS for i in range(len(row.cases))]


def case_inputs(row, i, dtype):
    shape, layout, args, _ = row.cases[i]
    rng = rng_for(row.name, i)
    x = make_x(rng, shape, layout, dtype)
    kw = args(rng, shape)
    # float arguments (src, value tensors) take x's dtype
    kw = {k: v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v for k, v in kw.items()}
    return x, kw


def is_float_arg(v):
    return isinstance(v, np.ndarray) and v.dtype.kind == "f"


def run(lib, x, kw, grad, device=None):
    """(x, the arguments) as tensors of lib (the string 'dlkern' or the torch module), the
    float ones requiring grad when `grad`."""
    if lib == "dlkern":
        def wrap(v, rg):
            t = dlkern.tensor(v, dtype=v.dtype)
            t = t.to(device) if device is not None else t
            return t.requires_grad_() if rg else t
    else:
        def wrap(v, rg):
            return lib.tensor(v, requires_grad=rg)
    tx = wrap(x, grad)
    targs = {k: wrap(v, grad and is_float_arg(v)) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    return tx, targs


def host(t):
    return t.detach().cpu().numpy()


def outputs(row, out):
    """The op's results as a list, the differentiable one first."""
    return [out[0], out[1]] if row.out == "pair" else [out]


# ---------------------------------------------------------------------- forward vs NumPy

def exact_indices(row, kw, k):
    """Whether output k (of `row` called with kw) is fixed by the reference: values
    always, indices only from a stable sort (else equal entries come in any order)."""
    is_index = row.out == "index" or (row.out == "pair" and k == 1)
    return not is_index or kw.get("stable")


def assert_indices_pick(x, idx, values, dim):
    """idx (sort/topk indices of x along dim) are distinct per lane and pick `values`."""
    if x.ndim == 0:
        assert idx.shape == () and idx == 0
        return
    ordered = np.sort(idx, axis=dim)
    assert (ordered >= 0).all() and (ordered < x.shape[dim]).all() and (np.diff(ordered, axis=dim) > 0).all()
    np.testing.assert_array_equal(np.take_along_axis(x, idx, dim), values)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("row, i", CASES)
def test_forward_matches_numpy_reference(row, i, dtype):
    x, kw = case_inputs(row, i, dtype)
    x_before = x.copy()
    tx, targs = run("dlkern", x, kw, grad=False)
    got = outputs(row, row.call(tx, **targs))
    want = row.ref(x, **kw)
    want = list(want) if row.out == "pair" else [want]
    for k, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        if not exact_indices(row, kw, k):  # ties in any order: the sorted values must come out
            dim = kw.get("dim", -1)
            values = want[0] if row.out == "pair" else ref_sort(x, dim, kw.get("descending", False))[0]
            assert_indices_pick(x, g.data, np.asarray(values), dim)
        elif row.name == "scatter_add" and dtype == np.float32:  # sums: rounding of a few adds
            np.testing.assert_allclose(g.data, w, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(g.data, w)
        assert not np.shares_memory(g.data, x), "the result must not alias the input"
    np.testing.assert_array_equal(x, x_before)  # the input is left alone


# ---------------------------------------------------------------------- vs PyTorch

def backward_through(lib, row, tx, targs, out, w):
    first = outputs(row, out)[0]
    (first * (lib.tensor(w) if lib is not dlkern else dlkern.tensor(w, device=first.device))).sum().backward()
    grads = [tx.grad] + [v.grad for v in targs.values() if getattr(v, "requires_grad", False)]
    return [None if g is None else host(g) for g in grads]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("row, i", CASES)
def test_forward_and_gradient_match_torch(row, i, dtype):
    torch = pytest.importorskip("torch")
    x, kw = case_inputs(row, i, dtype)
    diff = row.out != "index"
    dx, dargs = run("dlkern", x, kw, grad=diff)
    tx, targs = run(torch, x, kw, grad=diff)
    ours, theirs = row.call(dx, **dargs), row.call(tx, **targs)
    for k, (a, b) in enumerate(zip(outputs(row, ours), outputs(row, theirs))):
        a, b = host(a), host(b)
        assert a.shape == b.shape and a.dtype == b.dtype
        if not exact_indices(row, kw, k):
            # indices may differ from torch's only among equal values: ours pick torch's values
            dim = kw.get("dim", -1)
            if row.out == "pair":
                values = host(outputs(row, theirs)[0])
            else:
                values = np.take_along_axis(x, b, dim) if x.ndim else x
            assert_indices_pick(x, a, values, dim)
            continue
        tol = dict(rtol=1e-6, atol=1e-6) if row.name == "scatter_add" else dict(rtol=0, atol=0)
        np.testing.assert_allclose(a, b, **tol)
    if not diff or not row.cases[i][3] or x.size == 0 or row.cases[i][1] in ("ties", "nan"):
        return  # ties: torch may route a gradient to another of the equal entries
    w = rng_for("w", row.name, i).standard_normal(outputs(row, ours)[0].shape).astype(dtype)
    got = backward_through(dlkern, row, dx, dargs, ours, w)
    want = backward_through(torch, row, tx, targs, theirs, w)
    assert len(got) == len(want)
    for g, t in zip(got, want):
        np.testing.assert_allclose(g, t, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- finite differences

@pytest.mark.parametrize("row, i", [c for c in CASES if c.values[0].out != "index"
                                    and c.values[0].cases[c.values[1]][1] not in ("ties", "nan")])
def test_float64_gradient_matches_finite_differences(row, i):
    x, kw = case_inputs(row, i, np.float64)
    dx, dargs = run("dlkern", x, kw, grad=True)
    out = row.call(dx, **dargs)
    w = rng_for("w", row.name, i).standard_normal(outputs(row, out)[0].shape)
    got = backward_through(dlkern, row, dx, dargs, out, w)
    # the same function of contiguous copies, perturbed in place
    xc = x.copy(order="C")  # (np.ascontiguousarray would make a 0-d x 1-d)
    floats = {k: v.copy(order="C") for k, v in kw.items() if is_float_arg(v)}

    def loss():
        args = {k: dlkern.from_numpy(floats[k]) if k in floats else
                (dlkern.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
        return float((outputs(row, row.call(dlkern.from_numpy(xc), **args))[0].data * w).sum())

    for g, arr in zip(got, [xc] + list(floats.values())):
        assert g.shape == arr.shape
        if arr.size == 0:
            continue  # nothing to perturb
        np.testing.assert_allclose(g, numeric_grad(loss, arr), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------- CUDA (host twin)

@pytest.fixture
def twin():
    return CUDADevice(0, module=host_cuda)


@pytest.mark.parametrize("row, i", [c for c in CASES if c.values[0].cuda])
def test_cuda_host_twin_matches_cpu(row, i, twin):
    x, kw = case_inputs(row, i, np.float64)
    # CUDA arrays have no int32: those index arguments go as int64
    kw = {k: v.astype(np.int64) if isinstance(v, np.ndarray) and v.dtype == np.int32 else v for k, v in kw.items()}
    cx, cargs = run("dlkern", x, kw, grad=True)
    gx, gargs = run("dlkern", x, kw, grad=True, device=twin)
    ours, theirs = row.call(gx, **gargs), row.call(cx, **cargs)
    assert ours.device == twin
    np.testing.assert_allclose(host(ours), host(theirs), rtol=1e-15, atol=1e-15)
    w = rng_for("w", row.name, i).standard_normal(ours.shape)
    for g, c in zip(backward_through(dlkern, row, gx, gargs, ours, w),
                    backward_through(dlkern, row, cx, cargs, theirs, w)):
        np.testing.assert_allclose(g, c, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", ["sort", "argsort", "topk"])
def test_sorting_ops_are_refused_on_cuda(name, twin):
    x = dlkern.tensor([3.0, 1.0, 2.0]).to(twin)
    call = {"sort": lambda: x.sort(), "argsort": lambda: dlkern.argsort(x), "topk": lambda: x.topk(2)}[name]
    with pytest.raises(NotImplementedError, match=rf"^{name}\(\) is not implemented on device 'cuda'"):
        call()


def test_a_0d_tensor_stays_0d_on_cuda(twin):
    t = dlkern.tensor(2.5, dtype=dlkern.float64).to(twin)
    assert t.shape == () and t.item() == 2.5
    assert dlkern.tensor(1.0, device=twin).shape == ()


def test_cuda_index_range_is_checked_before_the_kernel(twin):
    # The CUDA kernels wrap negative indices as NumPy does; PyTorch refuses them.
    x = dlkern.tensor(np.arange(6.0).reshape(2, 3)).to(twin)
    with pytest.raises(RuntimeError, match=r"^gather\(\): index -1 is out of bounds for dimension 1 with size 3"):
        x.gather(1, dlkern.tensor([[-1], [0]]).to(twin))
    with pytest.raises(RuntimeError, match=r"^index_select\(\): index 2 is out of bounds for dimension 0"):
        x.index_select(0, dlkern.tensor([2]).to(twin))
