"""Indexing and reordering ops of dlkern.Tensor beside the parity table of
test_tensor_indexing.py: the free functions dlkern.<name>, the errors (type and message,
as PyTorch), the in-place forms (scatter_, scatter_add_, masked_fill_) and details the
table does not reach (masked_fill's 0-d tensor value, integer and bool sorts)."""

import numpy as np
import pytest

import dlkern
from dlkern.device import CUDADevice

import host_cuda
from helpers import raises_each


def host(t):
    return t.detach().cpu().numpy()


@pytest.fixture
def twin():
    return CUDADevice(0, module=host_cuda)


# ---------------------------------------------------------------------- free functions

def test_free_functions_are_the_methods():
    rng = np.random.default_rng(7)
    x = dlkern.tensor(rng.uniform(-1, 1, (3, 4)))
    i = dlkern.tensor([[2, 0, 1, 1]])
    pairs = [
        (dlkern.gather(x, 0, i), x.gather(0, i)),
        (dlkern.scatter(x, 0, i, 5.0), x.scatter(0, i, value=5.0)),
        (dlkern.scatter(x, 0, i, value=5.0), x.scatter(0, i, 5.0)),
        (dlkern.scatter_add(x, 0, i, x), x.scatter_add(0, i, x)),
        (dlkern.index_select(x, 1, i[0]), x.index_select(1, i[0])),
        (dlkern.masked_fill(x, x > 0, 0.0), x.masked_fill(x > 0, 0.0)),
        (dlkern.sort(x, 0, True).values, x.sort(0, descending=True).values),
        (dlkern.sort(x, stable=True).indices, x.argsort(stable=True)),
        (dlkern.argsort(x, 0, True), x.argsort(0, True)),
        (dlkern.topk(x, 2, 0, False).indices, x.topk(2, 0, largest=False).indices),
        (dlkern.flip(x, (1,)), x.flip(1)),
        (dlkern.roll(x, 2), x.roll(2)),
        (dlkern.tile(x, (2,)), x.repeat(1, 2)),
        (dlkern.repeat_interleave(x, 2, 0), x.repeat_interleave(2, dim=0)),
        (dlkern.diag(x, 1), x.diag(1)),
    ]
    for a, b in pairs:
        np.testing.assert_array_equal(a.data, b.data)
    res = x.topk(2)
    assert type(res).__name__ == "topk" and res._fields == ("values", "indices")
    assert type(x.sort()).__name__ == "sort"
    # torch.repeat_interleave(repeats): the positions, each repeated
    np.testing.assert_array_equal(dlkern.repeat_interleave(dlkern.tensor([1, 0, 3])).data, [0, 2, 2, 2])


# ---------------------------------------------------------------------- errors

X = dlkern.tensor(np.arange(6.0).reshape(2, 3))
I = dlkern.tensor([[2], [0]])

test_errors = raises_each([
    ("gather-negative", lambda: X.gather(1, dlkern.tensor([[-1], [0]])), RuntimeError,
     r"^gather\(\): index -1 is out of bounds for dimension 1 with size 3 \(argument 'index'\)"),
    ("gather-too-big", lambda: X.gather(1, dlkern.tensor([[3], [0]])), RuntimeError, r"index 3 is out of bounds"),
    ("gather-dim", lambda: X.gather(2, I), IndexError, r"^gather\(\): Dimension out of range .* but got 2"),
    ("gather-float-index", lambda: X.gather(1, dlkern.tensor([[1.0]])), RuntimeError,
     r"Expected dtype int32/int64 for index"),
    ("gather-sparse", lambda: dlkern.gather(X, 1, I, sparse_grad=True), NotImplementedError, r"sparse_grad=True"),
    ("gather-list-index", lambda: X.gather(1, [[1]]), TypeError, r"argument 'index' must be Tensor, not list"),
    ("gather-ndim", lambda: X.gather(1, dlkern.tensor([1, 0])), RuntimeError, r"same number of dimensions"),
    ("gather-size", lambda: X.gather(0, dlkern.tensor([[1, 0, 0, 0]])), RuntimeError,
     r"Size does not match at dimension 1"),
    ("scatter-negative", lambda: X.scatter(1, dlkern.tensor([[-1], [0]]), 1.0), RuntimeError,
     r"^scatter\(\): index -1 is out of bounds"),
    ("scatter-dtype", lambda: X.scatter(1, I, dlkern.ones(2, 1)), RuntimeError,
     r"Expected self.dtype to be equal to src.dtype"),
    ("scatter-src-small", lambda: X.scatter(1, I, dlkern.ones(1, 1, dtype=dlkern.float64)), RuntimeError,
     r"no larger size than src"),
    ("scatter-reduce", lambda: X.scatter(1, I, 1.0, reduce="add"), NotImplementedError, r"reduce='add'"),
    ("scatter-nothing", lambda: X.scatter(1, I), TypeError, r"expected src"),
    ("scatter-value-str", lambda: X.scatter(1, I, value="a"), TypeError, r"argument 'value' must be a number"),
    ("scatter_add-number", lambda: X.scatter_add(1, I, 1.0), TypeError, r"argument 'src' must be Tensor"),
    ("scatter_add-range", lambda: X.scatter_add(1, dlkern.tensor([[3], [0]]), X), RuntimeError,
     r"^scatter_add\(\): index 3 is out of bounds for dimension 1 with size 3"),
    ("index_select-range", lambda: X.index_select(1, dlkern.tensor([3])), RuntimeError,
     r"^index_select\(\): index 3 is out of bounds"),
    ("index_select-negative", lambda: X.index_select(0, dlkern.tensor([-1])), RuntimeError, r"index -1"),
    ("index_select-2d", lambda: X.index_select(1, I), IndexError, r"Index is supposed to be a vector"),
    ("index_select-scalar", lambda: dlkern.tensor(1.0).index_select(0, dlkern.tensor([0, 0])), RuntimeError,
     r"Index to scalar can have only 1 value"),
    ("masked_fill-int-mask", lambda: X.masked_fill(dlkern.tensor([1, 0, 1]), 1.0), TypeError, r"boolean masks"),
    ("masked_fill-shape", lambda: X.masked_fill(dlkern.tensor([True, False]), 1.0), RuntimeError,
     r"must be broadcastable"),
    ("masked_fill-1d-value", lambda: X.masked_fill(X > 1, dlkern.tensor([2.0])), RuntimeError,
     r"only supports a 0-dimensional value tensor"),
    ("masked_fill-str", lambda: X.masked_fill(X > 1, "a"), TypeError, r"must be a number or a 0-dim Tensor"),
    ("masked_fill_-grows", lambda: X.clone().masked_fill_(dlkern.tensor([[[True, False, True]]]), 1.0),
     RuntimeError, r"output with shape \[2, 3\] doesn't match the broadcast shape \[1, 2, 3\]"),
    ("sort-dim", lambda: X.sort(dim=2), IndexError, r"^sort\(\): Dimension out of range"),
    ("sort-dim-0d", lambda: dlkern.tensor(1.0).sort(dim=1), IndexError, r"range of \[-1, 0\]"),
    ("topk-k", lambda: X.topk(4), RuntimeError, r"^topk\(\): selected index k out of range"),
    ("topk-negative-k", lambda: X.topk(-1), RuntimeError, r"selected index k out of range"),
    ("topk-float-k", lambda: X.topk(1.5), TypeError, r"argument 'k' must be int"),
    ("flip-repeated", lambda: X.flip(0, 0), RuntimeError, r"appears multiple times"),
    ("flip-no-dims", lambda: X.flip(), TypeError, r"missing 1 required positional argument: 'dims'"),
    ("flip-dim", lambda: X.flip(2), IndexError, r"^flip\(\): Dimension out of range"),
    ("roll-align", lambda: X.roll((1, 2), 0), RuntimeError, r"shifts and dimensions must align"),
    ("roll-0d-dims", lambda: dlkern.tensor(1.0).roll(1, 0), IndexError, r"tensor has no dimensions"),
    ("repeat-few", lambda: X.repeat(2), RuntimeError, r"can not be smaller than number of dimensions"),
    ("repeat-negative", lambda: X.repeat(-1, 1), RuntimeError, r"negative dimension"),
    ("repeat-float", lambda: X.repeat(2.0, 1), TypeError, r"must be an int or a tuple of ints"),
    ("repeat_interleave-negative", lambda: X.repeat_interleave(-1, 1), RuntimeError, r"can not be negative"),
    ("repeat_interleave-size", lambda: X.repeat_interleave(dlkern.tensor([1, 2]), 1), RuntimeError,
     r"repeats must have the same size as input along dim"),
    ("repeat_interleave-2d", lambda: X.repeat_interleave(dlkern.tensor([[1, 2, 1]]), 1), RuntimeError,
     r"0-dim or 1-dim"),
    ("repeat_interleave-float", lambda: X.repeat_interleave(dlkern.tensor([1.0, 2.0, 1.0]), 1), RuntimeError,
     r"integer tensor"),
    ("repeat_interleave-output_size", lambda: X.repeat_interleave(2, 1, output_size=5), RuntimeError,
     r"Invalid output_size, expected 6 but got 5"),
    ("diag-3d", lambda: dlkern.zeros(2, 2, 2).diag(), RuntimeError, r"Supports 1D or 2D tensors. Got 3D"),
    ("diag-0d", lambda: dlkern.tensor(1.0).diag(), RuntimeError, r"Got 0D"),
    ("diag-float", lambda: X.diag(1.5), TypeError, r"argument 'diagonal' must be int"),
    ("device-mix", lambda: X.gather(1, I.to(CUDADevice(0, module=host_cuda))), RuntimeError,
     r"index is on cuda:0 but the tensor is on cpu"),
])


# ---------------------------------------------------------------------- in place

def test_inplace_forms_write_through_and_follow_the_inplace_rules():
    base = dlkern.zeros(3, 4, dtype=dlkern.float64)
    row = base[1]                                   # a view: the write reaches base
    assert row.scatter_(0, dlkern.tensor([3, 0]), dlkern.tensor([1.0, 2.0], dtype=dlkern.float64)) is row
    row.scatter_add_(0, dlkern.tensor([3, 3]), dlkern.tensor([0.5, 0.25], dtype=dlkern.float64))
    base.masked_fill_(dlkern.tensor([True, False, False, False]), -1.0)   # the mask broadcasts over rows
    base.scatter_(1, dlkern.tensor([[1], [2], [2]]), value=7.0)
    want = np.zeros((3, 4))
    want[1, [3, 0]] = [1.0, 2.0]
    want[1, 3] += 0.75
    want[:, 0] = -1.0
    want[[0, 1, 2], [1, 2, 2]] = 7.0
    np.testing.assert_array_equal(base.data, want)
    leaf = dlkern.zeros(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        leaf.masked_fill_(dlkern.tensor([True, False, True]), 1.0)
    with dlkern.no_grad():
        leaf.masked_fill_(dlkern.tensor([True, False, True]), 1.0)
    np.testing.assert_array_equal(leaf.data, [1.0, 0.0, 1.0])
    s = dlkern.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="scatter_: in-place operation with an argument that requires grad"):
        dlkern.zeros(3).scatter_(0, dlkern.tensor([0, 1]), s)
    v = dlkern.tensor(2.0, requires_grad=True)
    with pytest.raises(RuntimeError, match="masked_fill_: in-place operation with an argument"):
        dlkern.zeros(3).masked_fill_(dlkern.tensor([True, False, True]), v)


def test_inplace_forms_on_the_cuda_twin(twin):
    t = dlkern.zeros(2, 3, dtype=dlkern.float64).to(twin)
    t.scatter_add_(1, dlkern.tensor([[0, 0], [2, 1]]).to(twin), dlkern.ones(2, 2, dtype=dlkern.float64).to(twin))
    t.masked_fill_(dlkern.tensor([False, True, False]).to(twin), 5.0)
    np.testing.assert_array_equal(host(t), [[2.0, 5.0, 0.0], [0.0, 5.0, 1.0]])


def test_masked_fill_value_tensor_gets_the_gradient_of_the_filled_positions():
    x = dlkern.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    v = dlkern.tensor(2.0, dtype=dlkern.float64, requires_grad=True)
    mask = dlkern.tensor([True, False, True])
    g = np.arange(6.0).reshape(2, 3) + 1
    y = x.masked_fill(mask, v)
    y.backward(g)
    np.testing.assert_array_equal(x.grad.data, np.where(mask.data, 0.0, g))
    assert v.grad.shape == () and v.grad.item() == 1 + 3 + 4 + 6
    # a float64 value into a float32 tensor is cast, and its gradient keeps float64
    w = dlkern.tensor(np.float64(0.5), requires_grad=True)
    z = dlkern.zeros(3).masked_fill(dlkern.tensor([True, True, False]), w)
    assert z.dtype == np.float32
    z.sum().backward()
    assert w.grad.dtype == np.float64 and w.grad.item() == 2.0
    # an int tensor takes a float value truncated, as PyTorch
    np.testing.assert_array_equal(dlkern.tensor([1, 2]).masked_fill(dlkern.tensor([True, False]), 2.7).data, [2, 2])


def test_sort_of_integers_and_bools_and_topk_indices_without_ties():
    ints = dlkern.tensor([5, -3, 5, 0, 2])
    s = ints.sort(descending=True, stable=True)
    assert s.values.dtype == np.int64
    np.testing.assert_array_equal(s.values.data, [5, 5, 2, 0, -3])
    np.testing.assert_array_equal(s.indices.data, [0, 2, 4, 3, 1])
    b = dlkern.tensor(np.array([True, False, True]))
    np.testing.assert_array_equal(b.sort().values.data, [False, True, True])
    x = dlkern.tensor([0.3, -1.0, 2.0, 0.7], dtype=dlkern.float64)
    r = x.topk(2, sorted=False)
    np.testing.assert_array_equal(np.sort(r.indices.data), [2, 3])
