"""Fuzz case builders of the fused optimizer steps (dlkern.ops.adam_step, sgd_step;
csrc/cpu/optim.h), kept beside tests/fuzz_specs.py, which registers them with its
``builder``. Also the tolerance both these cases and tests/test_optim_kernels.py use.

A drawn call: float32 or float64 contiguous arrays of any shape (size 0 included), values
with NaN / Inf sprinkled in, every option combination; the state arrays are written in
place and compared with dlkern.reference's float64 step of the same values.
"""
import numpy as np

import dlkern.reference as R
from fuzz_cases import FLOATS, Case, choice, rng, size

# Tolerance in ulps of the array's dtype, relative to the magnitude of the terms that
# make each output (step_scales): a handful of roundings each, an fma the compiler may
# contract included. Relative to the output alone it could not be: m <- b1 m + (1 - b1) g
# may cancel to nearly 0, and float32 then carries the terms' rounding into p.
ULPS = 8


def step_scales(name, arrays, kwargs):
    """{arg: magnitude of the terms of its new value}: the reference step run on the
    arrays' absolute values with every term added (lr negated, no maximize), so nothing
    cancels; plus the old value's magnitude."""
    optional = {"adam_step": "max_exp_avg_sq", "sgd_step": "momentum_buffer"}[name]
    arrays = {optional: None, **arrays}
    absolute = {k: None if v is None else np.array(np.abs(np.asarray(v, np.float64))) for k, v in arrays.items()}
    out = {k: None if v is None else v.copy() for k, v in absolute.items()}
    with np.errstate(invalid="ignore", over="ignore"):
        getattr(R, name)(**out, **dict(kwargs, lr=-kwargs["lr"], maximize=False))
        return {k: v + absolute[k] for k, v in out.items() if v is not None}


def assert_step_close(name, arg, got, expected, scale):
    """got (the kernel's array) against expected (float64) within ULPS ulps of `scale`
    (step_scales); NaN exactly where expected has NaN, infinities equal."""
    got64, exp64 = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    nan = np.isnan(exp64)
    np.testing.assert_array_equal(np.isnan(got64), nan, err_msg=f"{name}: {arg}'s NaNs differ")
    inf = np.isinf(exp64)
    np.testing.assert_array_equal(got64[inf], exp64[inf], err_msg=f"{name}: {arg}'s infinities differ")
    ok = ~nan & ~inf
    tol = ULPS * np.finfo(np.asarray(got).dtype).eps * np.where(np.isfinite(scale), scale, 0.0)
    with np.errstate(invalid="ignore"):
        err = np.abs(got64 - exp64)
    bad = ok & ~(err <= tol)
    assert not bad.any(), (f"{name}: {arg}: {int(bad.sum())} of {bad.size} elements out of tolerance; first "
                           f"got {got64[bad][0]!r} expected {exp64[bad][0]!r} (tolerance {tol[bad][0]:.3g})")


def _values(r, shape, dt, lo, hi, special):
    v = np.asarray(r.uniform(lo, hi, size=shape))
    if special:
        v = np.where(r.random(shape) < 0.05, r.choice([np.nan, np.inf, -np.inf], size=shape), v)
    return np.array(v, dt)


def _case(data, name, arrays, options):
    """arrays: {arg: (lo, hi) or None (not passed)}; options: the scalars."""
    dt = choice(data, FLOATS, "dtype")
    shape = tuple(size(data, zero=True, label=f"dim{i}") for i in range(choice(data, [0, 1, 2], "ndim")))
    r = rng(data)
    special = choice(data, [False, True], "special")
    kwargs = dict(options)
    for arg, rng_ in arrays.items():
        kwargs[arg] = None if rng_ is None else _values(r, shape, dt, *rng_, special and arg == "grad")
    passed = [a for a, v in arrays.items() if v is not None]
    scales = step_scales(name, {a: kwargs[a] for a in passed}, options)
    expected = {a: np.asarray(kwargs[a], np.float64).copy() for a in passed}
    with np.errstate(invalid="ignore", over="ignore"):  # inf / inf: NaN, as the kernel
        getattr(R, name)(**dict(kwargs, **expected))
    written = [a for a in passed if a != "grad"]

    def check(res):
        assert res is None, f"{name}: returned {res!r}"
        for a in written:
            assert_step_close(name, a, kwargs[a], expected[a], scales[a])

    bad = {"param non-contiguous": dict(param=np.zeros(shape + (2,), dt)[..., 0]) if np.prod(shape) > 1 else
           dict(param=np.zeros((2, 2), dt)[:, 0]),
           "grad wrong shape": dict(grad=np.zeros(shape + (2,), dt)),
           "param read-only": dict(param=_readonly(np.zeros(shape, dt)))}
    return Case(name, kwargs, check, inplace=tuple(written), floats=tuple(passed), required=tuple(passed), bad=bad)


def _readonly(a):
    a.setflags(write=False)
    return a


def build_adam(data, name):
    amsgrad = choice(data, [False, True], "amsgrad")
    options = dict(step=choice(data, [1, 2, 10, 1000], "step"), lr=choice(data, [1e-3, 0.1], "lr"), beta1=0.9,
                   beta2=choice(data, [0.999, 0.5], "beta2"), eps=1e-8,
                   weight_decay=choice(data, [0.0, 0.01], "weight_decay"),
                   decoupled_weight_decay=choice(data, [False, True], "decoupled"), amsgrad=amsgrad,
                   maximize=choice(data, [False, True], "maximize"))
    arrays = dict(param=(-1, 1), grad=(-1, 1), exp_avg=(-0.1, 0.1), exp_avg_sq=(0, 0.01),
                  max_exp_avg_sq=(0, 0.01) if amsgrad else None)
    return _case(data, name, arrays, options)


def build_sgd(data, name):
    momentum = choice(data, [0.0, 0.9], "momentum")
    nesterov = momentum != 0 and choice(data, [False, True], "nesterov")
    options = dict(lr=choice(data, [1e-3, 0.1], "lr"), momentum=momentum,
                   dampening=0.0 if nesterov else choice(data, [0.0, 0.5], "dampening"),
                   weight_decay=choice(data, [0.0, 0.01], "weight_decay"), nesterov=nesterov,
                   maximize=choice(data, [False, True], "maximize"), first=choice(data, [False, True], "first"))
    arrays = dict(param=(-1, 1), grad=(-1, 1), momentum_buffer=(-0.1, 0.1) if momentum != 0 else None)
    return _case(data, name, arrays, options)


def register(builder):
    builder("adam_step")(build_adam)
    builder("sgd_step")(build_sgd)
