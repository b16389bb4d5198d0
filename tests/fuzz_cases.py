"""Building blocks of the fuzz suite: drawn arrays and layouts, the tolerance check,
and ``Case``, one drawn call of an op with its reference check and the ways to break it.

A case builder (see fuzz_specs.py) draws a *valid* call; ``Case.mutations()`` lists
invalid variants of it (generic ones derived from the declared array arguments plus
op-specific geometry), each of which must raise TypeError/ValueError naming the op.
"""

import contextlib
import math
import os

import numpy as np
from hypothesis import strategies as st

import dlkern

F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
FLOATS = (F32, F64)
# 1 first: hypothesis shrinks a sampled_from towards its first element.
SIZES = (1, 2, 3, 5, 4, 7, 8, 11, 13, 16, 17)
MAX_ELEMS = 4096

LAYOUTS = ("contiguous", "fortran", "swapped", "strided", "reversed", "broadcast", "readonly", "unaligned")


# ----------------------------------------------------------------------------- drawing


def size(data, lo=1, hi=17, zero=False, label=None):
    choices = [s for s in SIZES if lo <= s <= hi]
    if zero:
        choices.insert(1, 0)
    return data.draw(st.sampled_from(choices), label=label)


def dtype(data):
    return data.draw(st.sampled_from(FLOATS), label="dtype")


def flag(data, label=None):
    return data.draw(st.booleans(), label=label)


def choice(data, options, label=None):
    return data.draw(st.sampled_from(list(options)), label=label)


def rng(data):
    return np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1), label="values_seed"))


def values(data, shape, dt, lo=-1.0, hi=1.0, special=(), ties=False):
    """Random values of `shape`, exactly representable in dt. `special` lists values
    (nan, inf, ...) sprinkled in with a drawn probability; ties draws from a few levels."""
    r = rng(data)
    if ties:
        a = r.integers(-2, 3, size=shape).astype(np.float64) * (hi / 2)
    else:
        a = r.uniform(lo, hi, size=shape)
    if special and a.size:
        p = data.draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]), label="special_fraction")
        mask = r.random(shape) < p
        a = np.where(mask, r.choice(np.asarray(special, np.float64), size=shape), a)
    return a.astype(dt)


def arrange(data, a, layouts=LAYOUTS, label="layout"):
    """A view holding a's values (broadcast: values made constant along one axis) in a
    drawn memory layout: contiguous, Fortran order, last two axes swapped, every axis
    stepped by 2, every axis reversed (negative strides), zero-stride broadcast,
    read-only, or misaligned."""
    layout = data.draw(st.sampled_from(list(layouts)), label=label)
    return layout_as(a, layout, data)


def layout_as(a, layout, data=None):
    a = np.asarray(a)
    nd = a.ndim
    if layout == "contiguous" or nd == 0 and layout not in ("readonly", "unaligned"):
        return a.copy()
    if layout == "fortran":
        return np.asfortranarray(a)
    if layout == "swapped":
        if nd < 2:
            return a.copy()
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if layout == "strided":
        base = np.full(tuple(2 * s for s in a.shape), np.nan, a.dtype)
        v = base[(slice(None, None, 2),) * nd]
        v[...] = a
        return v
    if layout in ("strided_lead", "reversed_lead"):  # the last axis keeps unit stride
        if nd < 2:
            return a.copy()
        step = 2 if layout == "strided_lead" else -1
        base = np.full(tuple(2 * s for s in a.shape[:-1]) + a.shape[-1:], np.nan, a.dtype)
        if step == 2:
            v = base[(slice(None, None, 2),) * (nd - 1)]
        else:
            v = np.empty_like(a)[(slice(None, None, -1),) * (nd - 1)]
        v[...] = a
        return v
    if layout == "reversed":
        base = np.empty_like(a)
        v = base[(slice(None, None, -1),) * nd]
        v[...] = a
        return v
    if layout in ("broadcast", "broadcast_lead"):
        last = nd - 1 if layout == "broadcast" or nd < 2 else nd - 2
        axis = 0 if data is None else data.draw(st.integers(0, last), label="broadcast_axis")
        if a.shape[axis] == 0:
            return np.broadcast_to(a, a.shape)
        return np.broadcast_to(np.take(a, [0], axis=axis), a.shape)
    if layout == "readonly":
        v = a.copy()
        v.setflags(write=False)
        return v
    if layout == "unaligned":
        buf = np.empty(a.nbytes + 1, np.uint8)
        v = buf[1:].view(a.dtype).reshape(a.shape)
        v[...] = a
        return v
    raise AssertionError(layout)


def array(data, shape, dt, layouts=LAYOUTS, label="layout", **kw):
    return arrange(data, values(data, shape, dt, **kw), layouts, label)


@contextlib.contextmanager
def kernel_env(data):
    """Run under a drawn ISA path and thread count (restored afterwards)."""
    isa = data.draw(st.sampled_from(dlkern.supported_isas()), label="isa")
    threads = data.draw(st.sampled_from([1, 2]), label="threads")
    prev_isa, prev_threads = dlkern.get_isa(), dlkern.get_num_threads()
    dlkern.set_isa(isa)
    dlkern.set_num_threads(threads)
    try:
        yield
    finally:
        dlkern.set_isa(prev_isa)
        dlkern.set_num_threads(prev_threads)


# ----------------------------------------------------------------------------- checking


def close(name, got, expected, dt, scale=1.0, factor=32.0):
    """got (dtype dt) against the float64 `expected`: the same NaN pattern and
    infinities, and |err| <= factor * eps(dt) * (scale + |expected|) elsewhere.
    `scale` (broadcastable) is the magnitude of the terms an element sums, times
    sqrt(their count) for reductions; a wrong index errs by O(scale) and is caught."""
    assert isinstance(got, np.ndarray), f"{name}: expected an ndarray, got {type(got).__name__}"
    expected = np.asarray(expected, np.float64)
    assert got.dtype == np.dtype(dt), f"{name}: dtype {got.dtype}, expected {np.dtype(dt)}"
    assert got.shape == expected.shape, f"{name}: shape {got.shape}, expected {expected.shape}"
    g = got.astype(np.float64)
    nan_e, nan_g = np.isnan(expected), np.isnan(g)
    if not np.array_equal(nan_e, nan_g):
        where = np.argwhere(nan_e != nan_g)[0]
        raise AssertionError(f"{name}: NaN pattern differs ({int(nan_e.sum())} expected, {int(nan_g.sum())} got); "
                             f"first at {tuple(where)}: got {g[tuple(where)]!r}, expected {expected[tuple(where)]!r}")
    inf_e = np.isinf(expected)
    inf_g = np.isinf(g)
    if not (np.array_equal(inf_e, inf_g) and np.array_equal(g[inf_e], expected[inf_e])):
        where = np.argwhere((inf_e != inf_g) | (inf_e & (g != expected)))[0]
        raise AssertionError(f"{name}: infinities differ; first at {tuple(where)}: got {g[tuple(where)]!r}, "
                             f"expected {expected[tuple(where)]!r}")
    finite = ~(nan_e | inf_e)
    eps = float(np.finfo(dt).eps)
    tol = factor * eps * (np.broadcast_to(np.asarray(scale, np.float64), expected.shape) + np.abs(expected))
    err = np.abs(np.where(finite, g, 0.0) - np.where(finite, expected, 0.0))
    bad = finite & ~(err <= tol)
    if bad.any():
        idx = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), 0.0)), bad.shape)
        raise AssertionError(f"{name}: {int(bad.sum())} of {bad.size} elements out of tolerance ({np.dtype(dt)}); "
                             f"worst at {tuple(int(i) for i in idx)}: got {g[idx]!r}, expected {expected[idx]!r}, "
                             f"|err|={err[idx]:.3g} > tol={tol[idx]:.3g}")


def amax(*arrays):
    """Largest finite magnitude over arrays (1 if none), for tolerance scales."""
    m = 0.0
    for a in arrays:
        if a is None:
            continue
        a = np.asarray(a, np.float64)
        a = a[np.isfinite(a)]
        if a.size:
            m = max(m, float(np.abs(a).max()))
    return m or 1.0


def snapshot(kwargs, skip=()):
    return {k: np.array(v, copy=True) for k, v in kwargs.items() if isinstance(v, np.ndarray) and k not in skip}


def assert_unchanged(op, kwargs, before):
    for k, old in before.items():
        new = kwargs[k]
        assert new.shape == old.shape and np.array_equal(new, old, equal_nan=True), (
            f"{op} modified its input {k!r} (not documented as in place)")


def op_names(name):
    """Names an error message may use for `name` (*_forward ops may say the plain name)."""
    names = {name}
    if name.endswith("_forward"):
        names.add(name[: -len("_forward")])
    return names


# ----------------------------------------------------------------------------- tracing

_TRACE = os.environ.get("DLKERN_FUZZ_TRACE")  # a file: tests/fuzz_isolated.py shows its last line after a crash


def describe_arg(v):
    if isinstance(v, np.ndarray):
        flags = "" if v.flags.writeable else " readonly"
        return f"ndarray(shape={v.shape}, dtype={v.dtype}, strides={v.strides}{flags})"
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], np.ndarray):
        return "[" + ", ".join(describe_arg(a) for a in v) + "]"
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def trace(op, label, kwargs):
    """Append the call about to run to $DLKERN_FUZZ_TRACE (only when set)."""
    if _TRACE:
        args = ", ".join(f"{k}={describe_arg(v)}" for k, v in kwargs.items())
        with open(_TRACE, "a") as f:
            f.write(f"{op} [{label}]: {args}\n")


# ----------------------------------------------------------------------------- cases

WRONG_DTYPES = (np.int64, np.int16, np.bool_, np.complex64, np.int32)


class Case:
    """One drawn, valid call of an op.

    kwargs: the arguments (the op is called as op(**kwargs) unless `call` is given);
    check(result): compares the result (and in-place arguments) with the reference;
    inplace: arguments the op may modify; floats: float array arguments that must share
    one dtype; ndims: argument -> the ndims it accepts; required: array arguments that
    must be arrays; bad: op-specific {label: kwargs overrides} that must be rejected;
    extreme: int64-sized geometry, which the op may refuse with a TypeError/ValueError naming it
    instead of computing the result.
    """

    def __init__(self, name, kwargs, check, *, call=None, inplace=(), floats=(), ndims=None, required=(),
                 bad=None, extreme=False):
        self.name, self.kwargs, self.check, self.extreme = name, kwargs, check, extreme
        self.call = call or (lambda kw: getattr(dlkern.ops, name)(**kw))
        self.inplace, self.floats, self.required = tuple(inplace), tuple(floats), tuple(required)
        self.ndims = ndims or {}
        self.bad = bad or {}

    def mutations(self):
        """{label: kwargs overrides}, every one invalid."""
        muts = {}
        kw = self.kwargs
        for name in self.required:
            a = kw[name]
            muts[f"{name}=None"] = {name: None}
            muts[f"{name}=list"] = {name: np.asarray(a).tolist()}
            muts[f"{name}=str"] = {name: "abc"}
        present = [n for n in self.floats if isinstance(kw.get(n), np.ndarray)]
        for name in present:
            a = kw[name]
            for wrong in WRONG_DTYPES:
                muts[f"{name}.dtype={np.dtype(wrong).name}"] = {name: np.asarray(a).astype(wrong)}
            muts[f"{name}.dtype=>f{a.dtype.itemsize}"] = {name: np.asarray(a).astype(a.dtype.newbyteorder(">"))}
            if len(present) > 1:
                other = F64 if a.dtype == F32 else F32
                muts[f"{name}.dtype=mixed"] = {name: np.asarray(a).astype(other)}
        for name, allowed in self.ndims.items():
            a = kw.get(name)
            if not isinstance(a, np.ndarray):
                continue
            for nd in range(0, 6):
                if nd not in allowed:
                    muts[f"{name}.ndim={nd}"] = {name: np.ones((2,) * nd, a.dtype)}
        muts.update(self.bad)
        return muts


def scale_dot(*pairs):
    """sqrt(count) * max|a| * max|b| summed over (a, b, count) triples."""
    return sum(math.sqrt(n + 1) * amax(a) * amax(b) for a, b, n in pairs)
