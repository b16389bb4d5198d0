"""The fused optimizer steps dlkern.ops.adam_step / sgd_step (csrc/cpu/optim.h): every
option combination against dlkern.reference (float64) and against the NumPy composition
the optimizers used before (python/dlkern/optim/adam.py, sgd.py with the fused kernel
off), on every ISA at 1 and 2 threads, sizes 0/1/odd/prime/large; dlkern.optim.Adam /
AdamW / SGD against torch.optim over several steps; NaN/Inf propagation; the error cases.
"""
import itertools
import numpy as np
import pytest

import dlkern
import dlkern.ops as ops
import dlkern.reference as R
from dlkern.device import array_namespace
from dlkern.optim.adam import _adam_update
from dlkern.optim.sgd import _sgd_update

from fuzz_specs_optim import assert_step_close, step_scales
from helpers import raises_each

SIZES = [0, 1, 7, 31, 257, 100_003]  # 0, 1, odd, primes, large (many blocks: threads)
ENVS = [pytest.param((isa, n), id=f"{isa}-{n}thr") for isa in dlkern.supported_isas() for n in (1, 2)]

ADAM_OPTIONS = [dict(weight_decay=wd, decoupled_weight_decay=dec, amsgrad=ams, maximize=mx)
                for wd, dec, ams, mx in itertools.product((0.0, 0.05), (False, True), (False, True), (False, True))]
SGD_OPTIONS = [dict(momentum=mom, dampening=damp, weight_decay=wd, nesterov=nest, maximize=mx)
               for mom, damp, wd, nest, mx in itertools.product((0.0, 0.9), (0.0, 0.3), (0.0, 0.05), (False, True),
                                                                (False, True))
               if not (nest and (mom == 0 or damp != 0))]


class Param:
    """An optimizer parameter (hashable, unlike SimpleNamespace): .data and .grad arrays."""

    def __init__(self, data, grad=None):
        self.data, self.grad = data, grad


@pytest.fixture(params=ENVS)
def env(request):
    """The CPU kernels on one ISA at 1 or 2 threads (at 2 the work thresholds are off, so
    small arrays take the threaded path too); the previous settings restored after."""
    isa, n = request.param
    prev = dlkern.get_isa(), dlkern.get_num_threads(), dlkern._C.get_min_work_scale()
    dlkern.set_isa(isa)
    dlkern.set_num_threads(n)
    dlkern._C.set_min_work_scale(0.0 if n > 1 else prev[2])
    yield request.param
    dlkern.set_isa(prev[0])
    dlkern.set_num_threads(prev[1])
    dlkern._C.set_min_work_scale(prev[2])


def _state(rng, n, dtype, names):
    """Arrays of n elements: param and grad in [-1, 1], moments of Adam's usual sizes."""
    ranges = dict(param=(-1, 1), grad=(-1, 1), exp_avg=(-0.1, 0.1), exp_avg_sq=(0, 0.01), max_exp_avg_sq=(0, 0.02),
                  momentum_buffer=(-0.1, 0.1))
    return {k: rng.uniform(*ranges[k], size=n).astype(dtype) for k in names}


def _check_all(name, got, expected, old, kwargs):
    """Every written array of got against expected, within a few ulps of its terms."""
    op = "adam_step" if "beta1" in kwargs else "sgd_step"
    scales = step_scales(op, old, kwargs)
    for k in got:
        if k != "grad":
            assert_step_close(name, k, got[k], expected[k], scales[k])


@pytest.fixture
def composition(monkeypatch):
    """The optimizers' NumPy composition: the CPU namespace's fused kernels turned off."""
    monkeypatch.setattr(type(array_namespace(np.zeros(1))), "fused", lambda self, name: None)


def _adam_args(step, opts):
    return dict(step=step, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, **opts)


def _run_adam(arrays, kwargs, fused):
    args = dict(arrays)
    if fused:
        ops.adam_step(args["param"], args["grad"], args["exp_avg"], args["exp_avg_sq"], args.get("max_exp_avg_sq"),
                      **kwargs)
    else:
        kw = dict(kwargs)
        b1, b2 = kw.pop("beta1"), kw.pop("beta2")
        _adam_update(args["param"], args["grad"], args["exp_avg"], args["exp_avg_sq"], args.get("max_exp_avg_sq"),
                     beta1=b1, beta2=b2, work=[np.empty_like(args["param"]) for _ in range(2)], **kw)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_step_every_option_against_the_reference(env, n, dtype):
    rng = np.random.default_rng(n)
    for opts, step in itertools.product(ADAM_OPTIONS, (1, 7)):
        names = ("param", "grad", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if opts["amsgrad"] else ())
        got = _state(rng, n, dtype, names)
        old = {k: v.copy() for k, v in got.items()}
        expected = {k: v.astype(np.float64) for k, v in got.items()}
        kwargs = _adam_args(step, opts)
        _run_adam(got, kwargs, fused=True)
        R.adam_step(expected["param"], expected["grad"], expected["exp_avg"], expected["exp_avg_sq"],
                    expected.get("max_exp_avg_sq"), **kwargs)
        _check_all(f"adam_step {opts} step={step}", got, expected, old, kwargs)
        np.testing.assert_array_equal(got["grad"], old["grad"])  # read only


def _sgd_args(opts, first):
    return dict(lr=0.1, first=first, **opts)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_step_every_option_against_the_reference(env, n, dtype):
    rng = np.random.default_rng(n + 1)
    for opts, first in itertools.product(SGD_OPTIONS, (True, False)):
        names = ("param", "grad") + (("momentum_buffer",) if opts["momentum"] else ())
        got = _state(rng, n, dtype, names)
        old = {k: v.copy() for k, v in got.items()}
        expected = {k: v.astype(np.float64) for k, v in got.items()}
        kwargs = _sgd_args(opts, first)
        ops.sgd_step(got["param"], got["grad"], got.get("momentum_buffer"), **kwargs)
        R.sgd_step(expected["param"], expected["grad"], expected.get("momentum_buffer"), **kwargs)
        _check_all(f"sgd_step {opts} first={first}", got, expected, old, kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_step_against_the_numpy_composition(composition, dtype):
    rng = np.random.default_rng(3)
    for opts, step in itertools.product(ADAM_OPTIONS, (1, 7)):
        names = ("param", "grad", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if opts["amsgrad"] else ())
        fused = _state(rng, 1001, dtype, names)
        old = {k: v.copy() for k, v in fused.items()}
        composed = {k: v.copy() for k, v in fused.items()}
        kwargs = _adam_args(step, opts)
        ops.adam_step(fused["param"], fused["grad"], fused["exp_avg"], fused["exp_avg_sq"],
                      fused.get("max_exp_avg_sq"), **kwargs)
        _run_adam(composed, kwargs, fused=False)  # the fused kernel is off (fixture)
        _check_all(f"adam_step {opts} step={step} vs NumPy", fused, composed, old, kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_step_against_the_numpy_composition(composition, dtype):
    rng = np.random.default_rng(4)
    for opts, first in itertools.product(SGD_OPTIONS, (True, False)):
        names = ("param", "grad") + (("momentum_buffer",) if opts["momentum"] else ())
        fused = _state(rng, 1001, dtype, names)
        old = {k: v.copy() for k, v in fused.items()}
        composed = {k: v.copy() for k, v in fused.items()}
        ops.sgd_step(fused["param"], fused["grad"], fused.get("momentum_buffer"), **_sgd_args(opts, first))
        buf = _sgd_update(composed["param"], composed["grad"], None if first else composed.get("momentum_buffer"),
                          lr=0.1, work=[np.empty_like(composed["param"]) for _ in range(2)], **opts)
        if opts["momentum"]:
            composed["momentum_buffer"] = buf
        _check_all(f"sgd_step {opts} first={first} vs NumPy", fused, composed, old, _sgd_args(opts, first))


def test_nan_and_inf_propagate_as_the_reference():
    special = np.array([np.nan, np.inf, -np.inf, 0.0, 1.0, -2.0, np.nan, 3.0], np.float32)
    for opts in ADAM_OPTIONS:
        names = ("param", "grad", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if opts["amsgrad"] else ())
        got = _state(np.random.default_rng(5), special.size, np.float32, names)
        got["grad"] = special.copy()
        if opts["amsgrad"]:
            got["max_exp_avg_sq"][[3, 5]] = np.nan  # a NaN already in the running maximum stays
        old = {k: v.copy() for k, v in got.items()}
        expected = {k: v.astype(np.float64) for k, v in got.items()}
        kwargs = _adam_args(3, opts)
        _run_adam(got, kwargs, fused=True)
        with np.errstate(invalid="ignore"):
            R.adam_step(expected["param"], expected["grad"], expected["exp_avg"], expected["exp_avg_sq"],
                        expected.get("max_exp_avg_sq"), **kwargs)
        _check_all(f"adam_step {opts} NaN/Inf", got, expected, old, kwargs)
        assert np.isnan(got["param"][[0, 1, 2, 6]]).all()  # Inf gradients give inf / inf, as in torch
    for opts in SGD_OPTIONS:
        got = _state(np.random.default_rng(6), special.size, np.float32, ("param", "momentum_buffer"))
        got["grad"] = special.copy()
        old = {k: v.copy() for k, v in got.items()}
        expected = {k: v.astype(np.float64) for k, v in got.items()}
        ops.sgd_step(got["param"], got["grad"], got["momentum_buffer"], **_sgd_args(opts, False))
        R.sgd_step(expected["param"], expected["grad"], expected["momentum_buffer"], **_sgd_args(opts, False))
        _check_all(f"sgd_step {opts} NaN/Inf", got, expected, old, _sgd_args(opts, False))


def test_the_cpu_optimizers_use_the_fused_kernels(monkeypatch):
    calls = []
    xp = array_namespace(np.zeros(1))
    assert xp.fused("adam_step") is ops.adam_step and xp.fused("sgd_step") is ops.sgd_step
    assert xp.fused("lamb_step") is None
    real = type(xp).fused
    monkeypatch.setattr(type(xp), "fused", lambda self, name: calls.append(name) or real(self, name))
    p = Param(data=np.ones((3, 4), np.float32), grad=np.ones((3, 4), np.float32))
    dlkern.optim.AdamW([p]).step()
    dlkern.optim.SGD([p], lr=0.1, momentum=0.9).step()
    assert calls == ["adam_step", "sgd_step"]
    # non-contiguous, 16-bit or mixed-dtype arrays take the NumPy composition
    for data, grad in [(np.ones((4, 3), np.float32).T, np.ones((3, 4), np.float32)),
                       (np.ones(5, np.float16), np.ones(5, np.float16)),
                       (np.ones(5, np.float64), np.ones(5, np.float32))]:
        q = Param(data=data, grad=grad)
        dlkern.optim.Adam([q], lr=0.1).step()
        assert np.all(q.data < 1)


TORCH_CASES = [("Adam", dict(lr=1e-2, weight_decay=0.1)), ("Adam", dict(lr=1e-2, amsgrad=True, maximize=True)),
               ("AdamW", dict(lr=1e-2)), ("AdamW", dict(lr=1e-2, weight_decay=0.5, amsgrad=True)),
               ("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=0.01)),
               ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True))]


@pytest.mark.parametrize("name,kwargs", TORCH_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_CASES)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizers_match_torch_over_steps(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    shapes = [(), (1,), (31,), (257, 3), (100_003,)]
    params = [Param(data=rng.standard_normal(s).astype(dtype), grad=None) for s in shapes]
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = getattr(dlkern.optim, name)(params, **kwargs)
    topt = getattr(torch.optim, name)(tparams, foreach=False, **kwargs)
    for _ in range(5):
        for p, t in zip(params, tparams):
            g = rng.standard_normal(p.data.shape).astype(dtype)
            p.grad = g
            t.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=rtol, atol=rtol * 1e-2)


def _a(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _ro(a):
    a.setflags(write=False)
    return a


ADAM_KW = dict(step=1, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False,
               amsgrad=False, maximize=False)
SGD_KW = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False, first=False)
_base = np.zeros(8, np.float32)

test_errors = raises_each([
    ("adam shape", lambda: ops.adam_step(_a(4, 3), _a(3, 4), _a(4, 3), _a(4, 3), None, **ADAM_KW), ValueError,
     r"adam_step: grad has shape \(3, 4\) but param has shape \(4, 3\)"),
    ("adam dtype", lambda: ops.adam_step(_a(4), _a(4), _a(4, dtype=np.float64), _a(4), None, **ADAM_KW), TypeError,
     r"adam_step: exp_avg has dtype float64 but param has dtype float32"),
    ("adam int", lambda: ops.adam_step(_a(4, dtype=np.int32), _a(4), _a(4), _a(4), None, **ADAM_KW), TypeError,
     r"adam_step: param has dtype int32"),
    ("adam float16", lambda: ops.adam_step(*[_a(4, dtype=np.float16)] * 4, None, **ADAM_KW), TypeError,
     r"adam_step: param has dtype float16"),
    ("adam non-contiguous", lambda: ops.adam_step(_a(4), _a(4), _a(4, 2)[:, 0], _a(4), None, **ADAM_KW), ValueError,
     r"adam_step: exp_avg must be contiguous"),
    ("adam read-only", lambda: ops.adam_step(_a(4), _a(4), _a(4), _ro(_a(4)), None, **ADAM_KW), ValueError,
     r"adam_step: exp_avg_sq is read-only"),
    ("adam amsgrad buffer", lambda: ops.adam_step(_a(4), _a(4), _a(4), _a(4), None, **dict(ADAM_KW, amsgrad=True)),
     ValueError, r"adam_step: amsgrad=True needs max_exp_avg_sq"),
    ("adam amsgrad shape", lambda: ops.adam_step(_a(4), _a(4), _a(4), _a(4), _a(5), **dict(ADAM_KW, amsgrad=True)),
     ValueError, r"adam_step: max_exp_avg_sq has shape \(5,\) but param has shape \(4,\)"),
    ("adam step 0", lambda: ops.adam_step(_a(4), _a(4), _a(4), _a(4), None, **dict(ADAM_KW, step=0)), ValueError,
     r"adam_step: step counts from 1, got 0"),
    ("adam lr nan", lambda: ops.adam_step(_a(4), _a(4), _a(4), _a(4), None, **dict(ADAM_KW, lr=float("nan"))),
     ValueError, r"adam_step: lr must be finite"),
    ("adam list", lambda: ops.adam_step([0.0], _a(1), _a(1), _a(1), None, **ADAM_KW), TypeError,
     r"adam_step: param must be a numpy.ndarray"),
    ("adam overlap", lambda: ops.adam_step(_base[:4], _a(4), _base[2:6], _a(4), None, **ADAM_KW), ValueError,
     r"adam_step: exp_avg overlaps param"),
    ("sgd buffer", lambda: ops.sgd_step(_a(4), _a(4), None, **dict(SGD_KW, momentum=0.9)), ValueError,
     r"sgd_step: momentum != 0 needs momentum_buffer"),
    ("sgd shape", lambda: ops.sgd_step(_a(4), _a(4), _a(3), **dict(SGD_KW, momentum=0.9)), ValueError,
     r"sgd_step: momentum_buffer has shape \(3,\) but param has shape \(4,\)"),
    ("sgd non-contiguous", lambda: ops.sgd_step(_a(4), _a(4, 2)[:, 0], None, **SGD_KW), ValueError,
     r"sgd_step: grad must be contiguous"),
    ("sgd read-only", lambda: ops.sgd_step(_ro(_a(4)), _a(4), None, **SGD_KW), ValueError,
     r"sgd_step: param is read-only"),
    ("sgd dtype", lambda: ops.sgd_step(_a(4), _a(4, dtype=np.float64), None, **SGD_KW), TypeError,
     r"sgd_step: grad has dtype float64 but param has dtype float32"),
    ("sgd dampening inf", lambda: ops.sgd_step(_a(4), _a(4), None, **dict(SGD_KW, dampening=float("inf"))),
     ValueError, r"sgd_step: dampening must be finite"),
])


def test_the_same_array_as_two_arguments_is_elementwise():
    """param passed as its own gradient (allowed: each element is read before written)."""
    p = np.linspace(-1, 1, 37).astype(np.float32)
    q = p.copy()
    ops.sgd_step(p, p, None, **SGD_KW)
    np.testing.assert_allclose(p, q - 0.1 * q, rtol=1e-6)
