"""nn.SyncBatchNorm: on 2 and 3 MPI ranks against BatchNorm of the concatenated batch
(tests/mpi_workers/syncbn.py checks each rank against float64 NumPy), and in one process:
the Function's arithmetic (world of one rank) against NumPy and finite differences, the
module against nn.BatchNorm and PyTorch, convert_sync_batchnorm, and the errors."""

import numpy as np
import pytest

import dlkern
from dlkern import nn
from dlkern.devices.cuda import CUDADevice
from dlkern.functions import SyncBatchNorm as SyncBatchNormFn
from dlkern.functions.sync_batch_norm import combine_moments, local_moments
from helpers import numeric_grad
from mpi_support import check_ok, run_mpi

import host_cuda

EPS = 1e-5


# ---------------------------------------------------------------------- several ranks

@pytest.mark.parametrize("n,layout", [(2, "even"), (3, "uneven"), (2, "empty")])
def test_matches_batchnorm_of_the_concatenated_batch(n, layout):
    """Output, dx, running statistics (identical on all ranks) and the rank-summed
    dweight/dbias equal the full-batch BatchNorm's; 2-D to 5-D inputs, float64/float32/
    bfloat16, eval mode, no running stats, a converted model; 'empty': rank 0 has no rows."""
    out = check_ok(run_mpi("syncbn.py", n, layout))
    assert out.count(f"syncbn {layout} ok") == n, out


# ---------------------------------------------------------------------- NumPy reference

def ref_bn(x, w, b, eps=EPS):
    """Training-mode batch norm in float64: (y, mean, biased var)."""
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    if w is not None:
        y = y * w.reshape(shape) + b.reshape(shape)
    return y, mean, var


SHAPES = [(6, 3), (4, 3, 5), (2, 3, 4, 5), (2, 3, 2, 3, 2)]


def _apply(x, w, b, rm=None, rv=None, momentum=0.1):
    return SyncBatchNormFn.apply(x, rm, rv, w, b, momentum, EPS, None)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_function_forward_and_running_stats(shape, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    w, b = rng.standard_normal(3).astype(dtype), rng.standard_normal(3).astype(dtype)
    rm, rv = rng.standard_normal(3).astype(dtype), rng.uniform(1, 2, 3).astype(dtype)
    rm0, rv0 = rm.astype(np.float64), rv.astype(np.float64)
    y = _apply(dlkern.tensor(x), dlkern.tensor(w), dlkern.tensor(b), rm, rv)
    want, mean, var = ref_bn(x, w.astype(np.float64), b.astype(np.float64))
    tol = 1e-13 if dtype == np.float64 else 2e-6
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), want, rtol=tol, atol=tol)
    count = x.size // 3
    np.testing.assert_allclose(rm, 0.9 * rm0 + 0.1 * mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(rv, 0.9 * rv0 + 0.1 * var * count / (count - 1), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_function_gradients_by_finite_differences(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    g = rng.standard_normal(shape)
    xt, wt, bt = (dlkern.tensor(a, requires_grad=True) for a in (x, w, b))
    (_apply(xt, wt, bt) * dlkern.tensor(g)).sum().backward()

    def loss():
        return float(np.sum(ref_bn(x, w, b)[0] * g))
    for name, t, a in (("x", xt, x), ("weight", wt, w), ("bias", bt, b)):
        np.testing.assert_allclose(t.grad.numpy(), numeric_grad(loss, a), rtol=1e-6, atol=1e-8, err_msg=name)


def test_function_without_affine_and_non_contiguous_input():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((5, 4, 3))
    x = base.transpose(2, 1, 0)  # (3, 4, 5), not contiguous
    g = rng.standard_normal(x.shape)
    xt = dlkern.tensor(base, requires_grad=True)
    y = _apply(xt.permute(2, 1, 0), None, None)
    np.testing.assert_allclose(y.detach().numpy(), ref_bn(x, None, None)[0], rtol=1e-13, atol=1e-13)
    (y * dlkern.tensor(g)).sum().backward()
    xc = np.ascontiguousarray(x)
    want = numeric_grad(lambda: float(np.sum(ref_bn(xc, None, None)[0] * g)), xc)
    np.testing.assert_allclose(xt.grad.numpy(), want.transpose(2, 1, 0), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [dlkern.bfloat16, dlkern.float16])
def test_function_16_bit_input_float32_statistics(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 3, 6)).astype(dtype)
    w = dlkern.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    b = dlkern.tensor(rng.standard_normal(3).astype(np.float32), requires_grad=True)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    xt = dlkern.tensor(x, requires_grad=True)
    y = _apply(xt, w, b, rm, rv)
    assert y.dtype == dtype
    want, mean, _ = ref_bn(x, w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64))
    np.testing.assert_allclose(y.detach().numpy().astype(np.float64), want, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(rm, 0.1 * mean, rtol=1e-6, atol=1e-7)  # float32 statistics of the 16-bit values
    y.sum().backward()
    assert xt.grad.dtype == dtype and w.grad.dtype == np.float32


def test_function_under_autocast_computes_in_float32_as_batchnorm():
    rng = np.random.default_rng(12)
    x = dlkern.tensor(rng.standard_normal((4, 3, 5)).astype(np.float32))
    bn = nn.BatchNorm1d(3, affine=False)  # (no float32 weight to promote the input to float32)
    with dlkern.autocast("cpu", dtype=dlkern.bfloat16):
        h = nn.functional.linear(x.transpose(1, 2), dlkern.tensor(np.eye(3, dtype=np.float32))).transpose(1, 2)  # bfloat16
        assert h.dtype == dlkern.bfloat16
        y, want = _apply(h, None, None), bn(h)
    assert y.dtype == want.dtype == np.float32
    np.testing.assert_allclose(y.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_moments_combine_exactly_when_the_mean_dwarfs_the_spread():
    """What the ranks exchange: per-chunk (count, mean, M2) combined equal the full batch's
    statistics to float64 precision even at |mean| = 1e6 std (sum / sum of squares
    would lose ~1e-4 relative here), chunks of 0, 1 and several values included."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 2)) + 1e6
    cpu = dlkern.tensor(x).device
    table = []
    for lo, hi in ((0, 0), (0, 1), (1, 4), (4, 7)):
        n, mean, m2 = local_moments(cpu, np.ascontiguousarray(x[lo:hi]))
        assert n == hi - lo
        table.append(np.concatenate(([n], mean, m2)))
    total, mean, m2 = combine_moments(np.array(table))
    assert total == 7
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-15)
    want = ((x - x.mean(axis=0)) ** 2).sum(axis=0)
    np.testing.assert_allclose(m2, want, rtol=1e-9)
    # (N, C, L) chunks
    x = rng.standard_normal((5, 3, 4)) * 1e-3 + 1e3
    n, mean, m2 = local_moments(cpu, x)
    assert n == 20
    np.testing.assert_allclose(m2, ((x - x.mean(axis=(0, 2), keepdims=True)) ** 2).sum(axis=(0, 2)), rtol=1e-9)


def test_function_on_cuda_is_refused():
    dev = CUDADevice(0, module=host_cuda)
    x = dlkern.tensor(np.ones((2, 3))).to(dev)
    with pytest.raises(NotImplementedError, match="SyncBatchNorm.*cuda"):
        _apply(x, None, None)


def test_double_backward_is_refused_by_name():
    x = dlkern.tensor(np.random.default_rng(5).standard_normal((4, 3)), requires_grad=True)
    y = (_apply(x, None, None) ** 3).sum()
    (gx,) = dlkern.autograd.grad(y, [x], create_graph=True)
    with pytest.raises(NotImplementedError, match="SyncBatchNorm"):
        gx.sum().backward()


# ---------------------------------------------------------------------- the module, one rank

def _twins(cls, n=3, dtype=np.float64, **kw):
    a, b = nn.SyncBatchNorm(n, dtype=dtype, **kw), cls(n, dtype=dtype, **kw)
    rng = np.random.default_rng(6)
    if a.affine:
        for p, q in ((a.weight, b.weight), (a.bias, b.bias)):
            p.data[...] = q.data[...] = rng.standard_normal(n)
    return a, b


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm2d, (4, 3, 5, 5)), (nn.BatchNorm1d, (6, 3)),
                                       (nn.BatchNorm1d, (4, 3, 7))], ids=["2d", "1d-2D", "1d-3D"])
def test_one_rank_is_batchnorm(cls, shape, momentum):
    sync, plain = _twins(cls, momentum=momentum)
    rng = np.random.default_rng(7)
    for step in range(3):
        x = rng.standard_normal(shape) * 2 + 1
        xs, xp = dlkern.tensor(x, requires_grad=True), dlkern.tensor(x, requires_grad=True)
        ys, yp = sync(xs), plain(xp)
        np.testing.assert_array_equal(ys.detach().numpy(), yp.detach().numpy())
        g = dlkern.tensor(rng.standard_normal(shape))
        (ys * g).sum().backward()
        (yp * g).sum().backward()
        np.testing.assert_array_equal(xs.grad.numpy(), xp.grad.numpy())
        np.testing.assert_array_equal(sync.weight.grad.numpy(), plain.weight.grad.numpy())
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_array_equal(getattr(sync, name).numpy(), getattr(plain, name).numpy(), err_msg=name)
    sync.eval(), plain.eval()
    x = dlkern.tensor(rng.standard_normal(shape))
    np.testing.assert_array_equal(sync(x).detach().numpy(), plain(x).detach().numpy())


def test_one_rank_5d_and_no_running_stats():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 2, 3, 4))
    m = nn.SyncBatchNorm(3, affine=False, track_running_stats=False, dtype=np.float64)
    np.testing.assert_allclose(m(dlkern.tensor(x)).numpy(), ref_bn(x, None, None)[0], rtol=1e-12, atol=1e-12)
    m.eval()  # batch statistics in eval too without running statistics
    np.testing.assert_allclose(m(dlkern.tensor(x)).numpy(), ref_bn(x, None, None)[0], rtol=1e-12, atol=1e-12)
    assert m.running_mean is None and "SyncBatchNorm(3, eps=1e-05" in repr(m)
    # PyTorch's argument order: ..., process_group, device, dtype
    m = nn.SyncBatchNorm(2, 1e-3, 0.2, True, True, None, "cpu", np.float64)
    assert m.eps == 1e-3 and m.momentum == 0.2 and m.weight.dtype == np.float64 and m.running_var.device.type == "cpu"


def test_one_rank_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    for ref in (torch.nn.SyncBatchNorm(4, momentum=0.2).double(), torch.nn.BatchNorm2d(4, momentum=0.2).double()):
        ours = nn.SyncBatchNorm(4, momentum=0.2, dtype=np.float64)
        w = rng.standard_normal(4)
        ours.weight.data[...] = w
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(w))
        for _ in range(2):
            x = rng.standard_normal((3, 4, 5, 6))
            xt, xr = dlkern.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            y, yr = ours(xt), ref(xr)
            np.testing.assert_allclose(y.detach().numpy(), yr.detach().numpy(), rtol=1e-12, atol=1e-12)
            (y ** 2).sum().backward()
            (yr ** 2).sum().backward()
            np.testing.assert_allclose(xt.grad.numpy(), xr.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours.weight.grad.numpy(), ref.weight.grad.numpy(), rtol=1e-10)
        np.testing.assert_allclose(ours.running_var.numpy(), ref.running_var.numpy(), rtol=1e-12)
        assert int(ours.num_batches_tracked.numpy()) == int(ref.num_batches_tracked)


# ---------------------------------------------------------------------- convert_sync_batchnorm

def Net(lib):
    """A nested model (Sequential in a ModuleList in a Module) from `lib` (dlkern.nn or torch.nn)."""
    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.Sequential(lib.Conv2d(1, 4, 3), lib.BatchNorm2d(4), lib.ReLU())
            self.heads = lib.ModuleList([lib.Sequential(lib.Flatten(), lib.Linear(64, 5), lib.BatchNorm1d(5)),
                                         lib.BatchNorm1d(5, affine=False, track_running_stats=False)])

        def forward(self, x):
            return self.heads[1](self.heads[0](self.features(x)))
    return Net()


def test_convert_sync_batchnorm_keeps_everything():
    net = Net(nn)
    bn = net.features[1]
    bn.running_mean.data[...] = [1, 2, 3, 4]
    bn.num_batches_tracked.data[...] = 7
    bn.eval()
    bn.bias.requires_grad_(False)
    conv = net.features[0]
    out = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    assert out is net and out.features[0] is conv
    sbn = out.features[1]
    assert type(sbn) is nn.SyncBatchNorm and sbn is not bn
    assert sbn.weight is bn.weight and sbn.bias is bn.bias and not sbn.bias.requires_grad
    assert sbn.running_mean is bn.running_mean and int(sbn.num_batches_tracked.numpy()) == 7
    assert not sbn.training and out.heads[0][2].training
    assert [type(m).__name__ for m in out.modules()].count("SyncBatchNorm") == 3
    last = out.heads[1]
    assert not last.affine and not last.track_running_stats and last.running_mean is None
    # the converted model computes what the original computed (one rank)
    x = dlkern.tensor(np.random.default_rng(10).standard_normal((3, 1, 6, 6)).astype(np.float32))
    before = Net(nn)
    before.load_state_dict(out.state_dict())
    before.features[1].eval()
    np.testing.assert_array_equal(out(x).detach().numpy(), before(x).detach().numpy())
    assert list(out.state_dict()) == list(before.state_dict())
    # a BatchNorm itself becomes a new module
    root = nn.BatchNorm1d(2)
    new = nn.SyncBatchNorm.convert_sync_batchnorm(root, process_group="group")
    assert type(new) is nn.SyncBatchNorm and new.weight is root.weight and new.process_group == "group"


def test_convert_sync_batchnorm_matches_torch_layout():
    torch = pytest.importorskip("torch")
    ours = nn.SyncBatchNorm.convert_sync_batchnorm(Net(nn))
    theirs = torch.nn.SyncBatchNorm.convert_sync_batchnorm(Net(torch.nn))
    assert ([(n, type(m).__name__) for n, m in ours.named_modules()]
            == [(n, type(m).__name__) for n, m in theirs.named_modules()])
    assert list(ours.state_dict()) == list(theirs.state_dict())


# ---------------------------------------------------------------------- errors

@pytest.mark.parametrize("shape,pattern", [((3,), r"SyncBatchNorm: expected at least 2D input \(got 1D"),
                                           ((), r"SyncBatchNorm: expected at least 2D input \(got 0D"),
                                           ((2, 4), r"SyncBatchNorm: input has shape \(2, 4\), expected 3"),
                                           ((1, 3), r"more than 1 value per channel")])
def test_module_errors(shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        nn.SyncBatchNorm(3)(dlkern.zeros(*shape))


def test_zero_channels_refused():
    with pytest.raises(ValueError, match="SyncBatchNorm: number of input channels should be non-zero"):
        nn.SyncBatchNorm(0)(dlkern.zeros(2, 0))


def test_function_errors():
    with pytest.raises(ValueError, match="SyncBatchNorm: expected more than 1 value per channel"):
        _apply(dlkern.zeros(1, 2), None, None)
    with pytest.raises(ValueError, match="SyncBatchNorm: expected more than 1 value per channel"):
        _apply(dlkern.zeros(0, 2, 3), None, None)
    with pytest.raises(TypeError, match="SyncBatchNorm: input must be a floating tensor"):
        _apply(dlkern.tensor(np.ones((2, 2), np.int64)), None, None)
    with pytest.raises(TypeError, match="SyncBatchNorm: weight has dtype float64"):
        _apply(dlkern.zeros(3, 2), dlkern.tensor(np.ones(2)), None)
    with pytest.raises(TypeError, match=r"SyncBatchNorm: bias .* expected float32 .* \(2,\)"):
        _apply(dlkern.zeros(3, 2), None, dlkern.zeros(3))
