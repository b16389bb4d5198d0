"""One case builder per public op of dlkern.ops: ``BUILDERS[name](data) -> Case``.

Each builder draws a valid call (shapes with 0/1/odd/prime sizes, float32/float64,
memory layouts from fuzz_cases.LAYOUTS), the float64 reference of its result
(fuzz_refs), and the op-specific invalid variants. Documented behaviour only.
"""

import math

import numpy as np
from hypothesis import strategies as st

import dlkern
from dlkern import reference
import fuzz_refs as ref
from fuzz_cases import (F32, F64, Case, amax, array, arrange, choice, close, dtype, flag, layout_as, rng, size,
                        values)

ops = dlkern.ops
BUILDERS = {}
HUGE = 2 ** 63 - 1


def builder(*names):
    def register(fn):
        for n in names:
            BUILDERS[n] = (lambda n: lambda data: fn(data, n))(n)
        return fn
    return register


def ro(shape, dt):
    a = np.zeros(shape, dt)
    a.setflags(write=False)
    return a


# ----------------------------------------------------------------------------- matmul


@builder("gemm")
def build_gemm(data, name):
    dt = dtype(data)
    m, n, k = (size(data, zero=True, label=x) for x in "mnk")
    ta, tb = flag(data, "trans_a"), flag(data, "trans_b")
    a = array(data, (k, m) if ta else (m, k), dt, label="a_layout")
    b = array(data, (n, k) if tb else (k, n), dt, label="b_layout")
    alpha = choice(data, [1.0, 0.5, -2.0, 0.0], "alpha")
    mode = choice(data, ["none", "fresh", "row_strided", "rows_reversed"], "c_mode")
    base = c = None
    beta = 0.0
    if mode != "none":
        beta = choice(data, [0.0, 1.0, -0.5], "beta")
        # beta = 0 must ignore c's contents, NaN included.
        cv = values(data, (m, n), dt) if beta else np.full((m, n), np.nan, dt)
        if mode == "fresh":
            base = c = cv.copy()
        elif mode == "row_strided":
            base = np.full((m, n + 3), 7.0, dt)
            c = base[:, :n]
        else:
            base = np.empty((m, n), dt)
            c = base[::-1]
        c[...] = cv
    c0 = None if c is None else c.copy()
    base0 = None if base is None else base.copy()
    exp = ref.gemm(a, b, c0, alpha, beta, ta, tb)
    scale = abs(alpha) * math.sqrt(k + 1) * amax(a) * amax(b) + abs(beta) * amax(c0)

    def check(res):
        close("gemm", res, exp, dt, scale)
        if c is not None:
            assert np.shares_memory(res, c) or res.size == 0, "gemm: with c given, c is updated and returned"
            close("gemm c", c, exp, dt, scale)
            if mode == "row_strided":
                assert np.array_equal(base[:, n:], base0[:, n:]), "gemm wrote outside c"

    sq = np.ones((3, 3), dt)
    bad = {
        "beta!=0 without c": dict(c=None, beta=1.0),
        "k mismatch": dict(b=np.ones((n, k + 1) if tb else (k + 1, n), dt)),
        "trans_a=str": dict(trans_a="yes"),
        "c wrong shape": dict(c=np.zeros((m + 1, n), dt), beta=1.0),
        "c readonly": dict(c=ro((m, n), dt), beta=1.0),
        "c aliases a": dict(a=sq, b=np.ones((3, 3), dt), c=sq, beta=1.0, trans_a=False, trans_b=False),
    }
    if n > 1 and m > 0:  # an empty c (NumPy 2: zero strides) has no layout to get wrong
        bad["c last stride 2"] = dict(c=np.zeros((m, 2 * n), dt)[:, ::2], beta=1.0)
    return Case(name, dict(a=a, b=b, c=c, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb), check,
                inplace=("c",), floats=("a", "b", "c"), ndims={"a": {2}, "b": {2}, "c": {2}}, required=("a", "b"),
                bad=bad)


@builder("matmul")
def build_matmul(data, name):
    dt = dtype(data)
    form = choice(data, ["1x1", "1x2", "2x1", "2x2", "batched"], "form")
    m, n, k = (size(data, hi=11, zero=True, label=x) for x in "mnk")
    abatch, bbatch = (), ()
    if form == "batched":
        for _ in range(data.draw(st.integers(1, 2), label="batch_ndim")):
            s = size(data, hi=5, zero=True, label="batch")
            sa, sb = choice(data, [(s, s), (1, s), (s, 1)], "broadcast")
            abatch, bbatch = abatch + (sa,), bbatch + (sb,)
        if flag(data, "drop_a_batch"):
            abatch = abatch[1:]
    ashape = (k,) if form[0] == "1" else abatch + (m, k)
    bshape = (k,) if form[-1] == "1" else bbatch + (k, n)
    a = array(data, ashape, dt, label="a_layout")
    b = array(data, bshape, dt, label="b_layout")
    exp = np.matmul(ref.f64(a), ref.f64(b))
    out_mode = choice(data, ["none", "fresh", "strided", "reversed"], "out_mode")
    out = None
    if out_mode != "none":
        out = layout_as(np.zeros(exp.shape, dt), {"fresh": "contiguous"}.get(out_mode, out_mode))
    scale = math.sqrt(k + 1) * amax(a) * amax(b)

    def check(res):
        close("matmul", res, exp, dt, scale)
        if out is not None:
            assert np.shares_memory(res, out) or res.size == 0, "matmul: out is filled and returned"
            close("matmul out", out, exp, dt, scale)

    bad = {
        "inner mismatch": dict(b=np.ones(bshape[:-2] + (k + 1, n) if len(bshape) > 1 else (k + 1,), dt)),
        "batch no broadcast": dict(a=np.ones((2, 3, 4), dt), b=np.ones((3, 4, 5), dt), out=None),
        "out wrong shape": dict(out=np.zeros(exp.shape + (2,), dt)),
        "out wrong dtype": dict(out=np.zeros(exp.shape, F64 if dt == F32 else F32)),
        "out readonly": dict(out=ro(exp.shape, dt)),
        "out int": dict(out=np.zeros(exp.shape, np.int64)),
    }
    return Case(name, dict(a=a, b=b, out=out), check, inplace=("out",), floats=("a", "b"),
                ndims={"a": {1, 2, 3, 4, 5}, "b": {1, 2, 3, 4, 5}}, required=("a", "b"), bad=bad)


# ----------------------------------------------------------------------------- conv


def conv_geometry(data, nd, causal=False):
    """Drawn conv shapes/arguments, always a valid geometry. Large dilations come with
    just enough padding, so the kernel's span sits right against the padded input."""
    g = {}
    g["dt"] = dtype(data)
    groups = choice(data, [1, 1, 2, 3], "groups")
    cg, og = size(data, hi=3, label="C/groups"), size(data, hi=2, label="O/groups")
    g.update(groups=groups, C=groups * cg, O=groups * og, cg=cg)
    g["N"] = size(data, hi=3, zero=True, label="N")
    g["K"] = tuple(size(data, hi=5, label="kernel") for _ in range(nd))
    # A kernel of 1 (or causal padding) makes any dilation valid, 2**63-1 included.
    g["dil"] = tuple(choice(data, [1, 1, 2, 3, 7, 50, 100] + ([HUGE] if k == 1 or causal else []), "dilation")
                     for k in g["K"])
    spans = [d * (k - 1) + 1 for d, k in zip(g["dil"], g["K"])]
    if causal:
        g["L"] = (size(data, hi=17, label="L"),)
        g["stride"], g["pads"] = (1,), [((g["K"][0] - 1) * g["dil"][0], 0)]
        return g
    g["S"] = tuple(size(data, hi=13 if nd == 2 else 17, label="size") for _ in range(nd))
    mode = choice(data, ["int", "tuple", "valid", "same"], "padding_mode")
    g["stride"] = (1,) * nd if mode == "same" else tuple(choice(data, [1, 1, 2, 3, HUGE], "stride") for _ in range(nd))
    if mode == "valid" and any(s < sp for s, sp in zip(g["S"], spans)):
        mode = "tuple"
    if mode in ("valid", "same"):
        g["padding"] = mode
        g["pads"] = [ref.conv_pads(s, k, 1, d, mode) for s, k, d in zip(g["S"], g["K"], g["dil"])]
    else:
        p = [choice(data, [0, 0, 1, 2, 3], "padding") for _ in range(nd)]
        p = [max(pi, -(-(sp - s) // 2)) for pi, s, sp in zip(p, g["S"], spans)]
        if mode == "int":
            p = [max(p)] * nd
        g["padding"] = p[0] if mode == "int" else tuple(p)
        g["pads"] = [(pi, pi) for pi in p]
    g["out"] = tuple((s + a + b - sp) // st_ + 1 for s, (a, b), sp, st_ in zip(g["S"], g["pads"], spans, g["stride"]))
    return g


def _extreme(g):
    """An int64-sized stride or dilation: a valid geometry the op may also refuse (TypeError/ValueError)."""
    return HUGE in g["stride"] or HUGE in g["dil"]


def _arg(v, nd):
    return v[0] if nd == 1 and isinstance(v, tuple) else v


def conv_bad(g, nd, dt, kwargs, causal=False):
    spatial = g["L"] if causal else g["S"]
    bad = {
        "dilation=0": dict(dilation=0),
        "dilation=-1": dict(dilation=-1),
        "groups=0": dict(groups=0),
        "groups=-1": dict(groups=-1),
        "groups=True": dict(groups=True),
        "groups=1.0": dict(groups=1.0),
        "groups not dividing": dict(groups=g["C"] + 1),
        "weight C/groups mismatch": dict(weight=np.ones((g["O"], g["cg"] + 1) + g["K"], dt)),
        "weight empty kernel": dict(weight=np.ones((g["O"], g["cg"]) + (0,) * nd, dt)),
        "dilation float": dict(dilation=1.5),
    }
    if not causal:
        bad["dilation huge with kernel 2"] = dict(dilation=HUGE, weight=np.ones((g["O"], g["cg"]) + (2,) * nd, dt),
                                                  padding=0, stride=1)
    if "bias" in kwargs:
        bad["bias wrong shape"] = dict(bias=np.ones((g["O"] + 1,), dt))
        bad["bias list"] = dict(bias=[0.0] * g["O"])
        bad["bias mixed dtype"] = dict(bias=np.ones((g["O"],), F64 if dt == F32 else F32))
    if causal:
        bad["x no time steps"] = dict(x=np.ones((g["N"], g["C"], 0), dt))
        return bad
    bad.update({
        "stride=0": dict(stride=0),
        "stride=-2": dict(stride=-2),
        "stride 2**64": dict(stride=2 ** 64),
        "padding=-1": dict(padding=-1),
        "padding huge": dict(padding=2 ** 40, stride=1),
        "padding 2**63": dict(padding=2 ** 63, stride=1),
        "padding='full'": dict(padding="full"),
        "padding same with stride 2": dict(padding="same", stride=2),
        "padding wrong tuple length": dict(padding=(0,) * (nd + 1)),
        "stride wrong tuple length": dict(stride=(1,) * (nd + 1)),
        "stride=None": dict(stride=None),
        "kernel larger than padded input": dict(weight=np.ones((g["O"], g["cg"]) + tuple(s + 1 for s in spatial), dt),
                                                padding=0, dilation=1, stride=1),
    })
    return bad


def close_result(name, plain, res, dt, parts):
    """A kernel with two forms: `plain` returns the first of `parts` alone, the other form
    a tuple of all of them. parts: (label, expected, scale) each, checked with close."""
    if name == plain:
        _, expected, scale = parts[0]
        close(name, res, expected, dt, scale)
        return
    assert isinstance(res, tuple) and len(res) == len(parts), f"{name}: expected a {len(parts)}-tuple"
    for (label, expected, scale), got in zip(parts, res):
        close(f"{name} {label}", got, expected, dt, scale)


def _conv_ref(name, g, *arrays):
    """The NumPy reference of conv kernel `name` (forward or backward) for geometry g."""
    if name.startswith("causal"):
        geom = (g["dil"][0], g["groups"])
    elif name.startswith("conv2d"):
        geom = (g["stride"], g["pads"], g["dil"], g["groups"])
    else:
        geom = (g["stride"][0], g["pads"][0], g["dil"][0], g["groups"])
    return getattr(ref, name)(*arrays, *geom)


def _conv_arrays(data, g, nd, causal):
    dt = g["dt"]
    spatial = g["L"] if causal else g["S"]
    x = array(data, (g["N"], g["C"]) + spatial, dt, label="x_layout")
    w = array(data, (g["O"], g["cg"]) + g["K"], dt, label="weight_layout")
    return x, w


def _conv_setup(data, name):
    """What a conv case and its backward's case share: (nd, causal, geometry, x, weight)."""
    nd = 2 if name.startswith("conv2d") else 1
    causal = name.startswith("causal")
    g = conv_geometry(data, nd, causal)
    x, w = _conv_arrays(data, g, nd, causal)
    return nd, causal, g, x, w


def _conv_geom_kwargs(g, nd, causal):
    if causal:
        return dict(dilation=g["dil"][0], groups=g["groups"])
    return dict(stride=_arg(g["stride"], nd), padding=g["padding"], dilation=_arg(g["dil"], nd), groups=g["groups"])


@builder("conv2d", "conv1d", "causal_conv1d")
def build_conv(data, name):
    nd, causal, g, x, w = _conv_setup(data, name)
    dt = g["dt"]
    b = array(data, (g["O"],), dt, label="bias_layout") if flag(data, "bias") else None
    exp = _conv_ref(name, g, x, w, b)
    scale = math.sqrt(g["cg"] * math.prod(g["K"]) + 1) * amax(x) * amax(w) + amax(b)
    kwargs = dict(x=x, weight=w, bias=b, **_conv_geom_kwargs(g, nd, causal))
    return Case(name, kwargs, lambda res: close(name, res, exp, dt, scale), extreme=_extreme(g),
                floats=("x", "weight", "bias"),
                ndims={"x": {nd + 2}, "weight": {nd + 2}, "bias": {1}}, required=("x", "weight"),
                bad=conv_bad(g, nd, dt, kwargs, causal))


@builder("conv2d_backward", "conv1d_backward", "causal_conv1d_backward")
def build_conv_backward(data, name):
    nd, causal, g, x, w = _conv_setup(data, name)
    dt = g["dt"]
    out = g["L"] if causal else g["out"]
    go = array(data, (g["N"], g["O"]) + out, dt, label="grad_out_layout")
    need = tuple(flag(data, f"need_{k}") for k in ("dx", "dw", "db"))
    dx, dw, db = _conv_ref(name, g, go, x, w)
    n_out = g["N"] * math.prod(out)
    scales = (math.sqrt(g["O"] * math.prod(g["K"]) + 1) * amax(go) * amax(w),
              math.sqrt(n_out + 1) * amax(go) * amax(x), math.sqrt(n_out + 1) * amax(go))

    def check(res):
        assert isinstance(res, tuple) and len(res) == 3, f"{name}: expected a 3-tuple"
        for label, got, exp, wanted, s in zip(("dx", "dweight", "dbias"), res, (dx, dw, db), need, scales):
            if wanted:
                close(f"{name} {label}", got, exp, dt, s)
            else:
                assert got is None, f"{name}: {label} not requested but returned"

    kwargs = dict(grad_out=go, x=x, weight=w, need=need, **_conv_geom_kwargs(g, nd, causal))
    bad = conv_bad(g, nd, dt, kwargs, causal)
    bad["grad_out wrong shape"] = dict(grad_out=np.ones((g["N"], g["O"] + 1) + out, dt))
    bad["need of 2"] = dict(need=(True, True))
    return Case(name, kwargs, check, floats=("grad_out", "x", "weight"), extreme=_extreme(g),
                ndims={"x": {nd + 2}, "weight": {nd + 2}}, required=("grad_out", "x", "weight"), bad=bad)


@builder("Conv1dStream")
def build_conv1d_stream(data, name):
    g = conv_geometry(data, 1, causal=True)
    dt = g["dt"]
    x, w = _conv_arrays(data, g, 1, True)
    b = array(data, (g["O"],), dt, label="bias_layout") if flag(data, "bias") else None
    L = g["L"][0]
    cuts = sorted(data.draw(st.lists(st.integers(0, L), max_size=4), label="chunk_cuts"))
    bounds = [0] + cuts + [L]
    chunks = [layout_as(x[:, :, s:e], choice(data, ["contiguous", "reversed", "strided", "readonly"], "chunk_layout"))
              for s, e in zip(bounds[:-1], bounds[1:])]
    exp = ref.causal_conv1d(x, w, b, g["dil"][0], g["groups"])
    scale = math.sqrt(g["cg"] * g["K"][0] + 1) * amax(x) * amax(w) + amax(b)

    def call(kw):
        s = ops.Conv1dStream(kw["weight"], kw["bias"], dilation=kw["dilation"], groups=kw["groups"])
        first = [s.step(c) for c in kw["chunks"]]
        s.reset()
        return first, s.step(kw["chunks"][0] if len(kw["chunks"]) == 1 else np.concatenate(kw["chunks"], axis=2))

    def check(res):
        pieces, whole = res
        for p, (s, e) in zip(pieces, zip(bounds[:-1], bounds[1:])):
            close(f"Conv1dStream.step chunk [{s}:{e}]", p, exp[:, :, s:e], dt, scale)
        close("Conv1dStream after reset()", whole, exp, dt, scale)

    other = F64 if dt == F32 else F32
    bad = {
        "chunk wrong channels": dict(chunks=[np.ones((g["N"], g["C"] + 1, 2), dt)]),
        "chunk mixed dtype": dict(chunks=[np.ones((g["N"], g["C"], 2), other)]),
        "chunk int": dict(chunks=[np.ones((g["N"], g["C"], 2), np.int64)]),
        "chunk 2-D": dict(chunks=[np.ones((g["C"], 2), dt)]),
        "chunk list": dict(chunks=[[[0.0]]]),
        "batch changes without reset": dict(chunks=[np.ones((g["N"], g["C"], 1), dt),
                                                    np.ones((g["N"] + 1, g["C"], 1), dt)]),
        "weight 2-D": dict(weight=np.ones((g["O"], g["cg"]), dt)),
        "weight int": dict(weight=np.ones((g["O"], g["cg"], 2), np.int64)),
        "weight None": dict(weight=None),
        "groups=0": dict(groups=0),
        "groups=True": dict(groups=True),
        "groups not dividing": dict(groups=g["O"] + 1),
        "dilation=0": dict(dilation=0),
        "bias wrong shape": dict(bias=np.ones((g["O"] + 1,), dt)),
        "bias mixed dtype": dict(bias=np.ones((g["O"],), other)),
        "weight empty kernel": dict(weight=np.ones((g["O"], g["cg"], 0), dt)),
    }
    return Case(name, dict(weight=w, bias=b, dilation=g["dil"][0], groups=g["groups"], chunks=chunks), check,
                call=call, bad=bad, extreme=_extreme(g))


# ----------------------------------------------------------------------------- pooling


def _pool_x(data, dt, min_hw, special=(), ties=False):
    batched = flag(data, "batched")
    n = size(data, hi=3, zero=True, label="N")
    c = size(data, hi=5, zero=True, label="C")
    h = max(size(data, hi=13, label="H"), min_hw[0])
    w = max(size(data, hi=13, label="W"), min_hw[1])
    shape = ((n,) if batched else ()) + (c, h, w)
    return array(data, shape, dt, label="x_layout", special=special, ties=ties), batched


def _pair_arg(data, pair, label):
    """An int when both entries agree and the draw says so, else a tuple or list."""
    form = choice(data, ["int", "tuple", "list"], label + "_form")
    if form == "int" and pair[0] == pair[1]:
        return pair[0]
    return list(pair) if form == "list" else tuple(pair)


def _as4(a):
    a = np.asarray(a)
    return a if a.ndim == 4 else a[None]


def max_pool_geometry(data):
    k = tuple(size(data, hi=4, label="kernel") for _ in range(2))
    d = tuple(choice(data, [1, 1, 2, 3], "dilation") for _ in range(2))
    p = tuple(data.draw(st.integers(0, ((ki - 1) * di + 1) // 2), label="padding") for ki, di in zip(k, d))
    stride = None if flag(data, "stride_none") else tuple(choice(data, [1, 2, 3], "stride") for _ in range(2))
    ceil = flag(data, "ceil_mode")
    min_hw = tuple(max(1, di * (ki - 1) + 1 - 2 * pi) for ki, di, pi in zip(k, d, p))
    return k, d, p, stride, ceil, min_hw


def pool_bad(dt, x_shape, extra=None):
    bad = {
        "kernel_size=0": dict(kernel_size=0),
        "kernel_size=-1": dict(kernel_size=-1),
        "kernel_size huge": dict(kernel_size=2 ** 62),
        "kernel_size 2**64": dict(kernel_size=2 ** 64),
        "kernel_size of 3": dict(kernel_size=(1, 1, 1)),
        "kernel_size float": dict(kernel_size=1.5),
        "kernel_size True": dict(kernel_size=True),
        "kernel_size None": dict(kernel_size=None),
        "stride=0": dict(stride=0),
        "stride=-1": dict(stride=(1, -1)),
        "padding=-1": dict(padding=-1),
        "padding above half kernel": dict(kernel_size=1, padding=1),
        "padding huge": dict(padding=2 ** 62),
        "x 2-D": dict(x=np.ones((3, 3), dt)),
        "x 5-D": dict(x=np.ones((1, 1, 1, 3, 3), dt)),
        "x zero height": dict(x=np.ones((1, 1, 0, 3), dt), kernel_size=1),
        "x int": dict(x=np.ones(x_shape, np.int64)),
        "x int16": dict(x=np.ones(x_shape, np.int16)),
        "x None": dict(x=None),
        "x list": dict(x=np.ones(x_shape).tolist()),
        "kernel larger than input": dict(x=np.ones((1, 1, 2, 2), dt), kernel_size=3, padding=0, stride=1),
    }
    bad.update(extra or {})
    return bad


@builder("max_pool2d", "max_pool2d_forward")
def build_max_pool(data, name):
    dt = dtype(data)
    k, d, p, stride, ceil, min_hw = max_pool_geometry(data)
    x, batched = _pool_x(data, dt, min_hw, special=(np.nan, -np.inf, np.inf), ties=flag(data, "ties"))
    y_exp, i_exp = ref.max_pool2d(_as4(x), k, stride or k, p, d, ceil)
    if not batched:
        y_exp, i_exp = y_exp[0], i_exp[0]
    with_idx = name == "max_pool2d_forward" or flag(data, "return_indices")
    kwargs = dict(x=x, kernel_size=_pair_arg(data, k, "kernel"), stride=stride and _pair_arg(data, stride, "stride"),
                  padding=_pair_arg(data, p, "padding"), dilation=_pair_arg(data, d, "dilation"), ceil_mode=ceil)
    if name == "max_pool2d":
        kwargs["return_indices"] = with_idx

    def check(res):
        y, idx = res if with_idx else (res, None)
        close(f"{name} y", y, y_exp, dt, 0.0, factor=0.0)
        if with_idx:
            assert isinstance(idx, np.ndarray) and idx.dtype == np.int64, f"{name}: indices must be int64"
            assert idx.shape == i_exp.shape and np.array_equal(idx, i_exp), (
                f"{name}: indices differ at {np.argwhere(idx != i_exp)[:3].tolist()} "
                f"(got {idx[idx != i_exp][:3]}, expected {i_exp[idx != i_exp][:3]})")

    bad = pool_bad(dt, x.shape, {"dilation=0": dict(dilation=0), "dilation huge": dict(dilation=2 ** 62)})
    return Case(name, kwargs, check, bad=bad)


@builder("max_pool2d_backward")
def build_max_pool_backward(data, name):
    dt = dtype(data)
    k, d, p, stride, ceil, min_hw = max_pool_geometry(data)
    x, batched = _pool_x(data, dt, min_hw, ties=True)
    _, idx = ref.max_pool2d(_as4(x), k, stride or k, p, d, ceil)
    if not batched:
        idx = idx[0]
    go = array(data, idx.shape, dt, label="grad_out_layout")
    idx_v = arrange(data, idx, ("contiguous", "fortran", "reversed", "readonly", "strided"), "indices_layout")
    shape = x.shape if flag(data, "shape_tuple") else list(x.shape)
    exp = ref.max_pool2d_backward(_as4(go), _as4(idx), _as4(x).shape).reshape(x.shape)
    scale = amax(go) * math.sqrt(math.prod(k) + 1)
    hw = x.shape[-1] * x.shape[-2]
    bad = {} if idx.size == 0 else {
        "index out of range": dict(indices=np.full(idx.shape, hw, np.int64)),
        "index -2": dict(indices=np.full(idx.shape, -2, np.int64)),
        "index huge": dict(indices=np.full(idx.shape, 2 ** 62, np.int64)),
        "index int64 min": dict(indices=np.full(idx.shape, -2 ** 63, np.int64)),
    }
    bad.update({
        "indices int32": dict(indices=idx.astype(np.int32)),
        "indices float": dict(indices=idx.astype(dt)),
        "indices wrong shape": dict(indices=np.zeros(idx.shape[:-1] + (idx.shape[-1] + 1,), np.int64)),
        "indices list": dict(indices=idx.tolist()),
        "input_shape wrong length": dict(input_shape=tuple(x.shape) + (1,)),
        "input_shape zero height": dict(input_shape=tuple(x.shape[:-2]) + (0, x.shape[-1])),
        "input_shape negative": dict(input_shape=tuple(x.shape[:-2]) + (-1, x.shape[-1])),
        "input_shape channel mismatch": dict(input_shape=tuple(x.shape[:-3]) + (x.shape[-3] + 1,) + x.shape[-2:]),
        "input_shape None": dict(input_shape=None),
        "input_shape floats": dict(input_shape=tuple(float(s) for s in x.shape)),
        "input_shape huge": dict(input_shape=tuple(x.shape[:-2]) + (2 ** 62, 2 ** 62)),
        "grad_out 2-D": dict(grad_out=np.ones((2, 2), dt), indices=np.zeros((2, 2), np.int64)),
        "grad_out int": dict(grad_out=np.ones(idx.shape, np.int64)),
        "grad_out None": dict(grad_out=None),
    })
    return Case(name, dict(grad_out=go, indices=idx_v, input_shape=shape),
                lambda res: close(name, res, exp, dt, scale), bad=bad)


def avg_geometry(data):
    k = tuple(size(data, hi=4, label="kernel") for _ in range(2))
    p = tuple(data.draw(st.integers(0, ki // 2), label="padding") for ki in k)
    stride = None if flag(data, "stride_none") else tuple(choice(data, [1, 2, 3], "stride") for _ in range(2))
    ceil, cip = flag(data, "ceil_mode"), flag(data, "count_include_pad")
    div = choice(data, [None, None, 1, 3, 7], "divisor_override")
    min_hw = tuple(max(1, ki - 2 * pi) for ki, pi in zip(k, p))
    return k, p, stride, ceil, cip, div, min_hw


@builder("avg_pool2d", "avg_pool2d_backward")
def build_avg_pool(data, name):
    dt = dtype(data)
    k, p, stride, ceil, cip, div, min_hw = avg_geometry(data)
    x, batched = _pool_x(data, dt, min_hw)
    geo = dict(kernel_size=_pair_arg(data, k, "kernel"), stride=stride and _pair_arg(data, stride, "stride"),
               padding=_pair_arg(data, p, "padding"), ceil_mode=ceil, count_include_pad=cip, divisor_override=div)
    bad = pool_bad(dt, x.shape, {"divisor_override=0": dict(divisor_override=0),
                                 "divisor_override float": dict(divisor_override=2.5),
                                 "divisor_override huge": dict(divisor_override=2 ** 64)})
    if name == "avg_pool2d":
        exp = ref.avg_pool2d(_as4(x), k, stride or k, p, ceil, cip, div)
        exp = exp if batched else exp[0]
        return Case(name, dict(x=x, **geo), lambda res: close(name, res, exp, dt, amax(x)), bad=bad)
    out_shape = ref.avg_pool2d(np.zeros(_as4(x).shape), k, stride or k, p, ceil, cip, div).shape
    out_shape = out_shape if batched else out_shape[1:]
    go = array(data, out_shape, dt, label="grad_out_layout")
    exp = ref.avg_pool2d_backward(_as4(go), _as4(x).shape, k, stride or k, p, ceil, cip, div).reshape(x.shape)
    scale = amax(go) * math.prod(k)
    renamed = {}
    for lbl, v in bad.items():  # the forward's x mutations apply to grad_out
        v = dict(v)
        if "x" in v:
            v["grad_out"] = v.pop("x")
        renamed[lbl] = v
    bad = renamed
    for lbl in ("x zero height", "kernel larger than input", "x 5-D"):
        bad.pop(lbl, None)
    bad.update({
        "grad_out wrong shape": dict(grad_out=np.ones(out_shape[:-1] + (out_shape[-1] + 1,), dt)),
        "input_shape wrong length": dict(input_shape=(1,) + tuple(x.shape) + (1,)),
        "input_shape None": dict(input_shape=None),
        "input_shape channel mismatch": dict(input_shape=tuple(x.shape[:-3]) + (x.shape[-3] + 1,) + x.shape[-2:]),
    })
    return Case(name, dict(grad_out=go, input_shape=tuple(x.shape), **geo),
                lambda res: close(name, res, exp, dt, scale), bad=bad)


@builder("adaptive_avg_pool2d", "adaptive_avg_pool2d_backward")
def build_adaptive(data, name):
    dt = dtype(data)
    x, batched = _pool_x(data, dt, (1, 1))
    h, w = x.shape[-2:]
    oh, ow = size(data, hi=7, label="out_h"), size(data, hi=7, label="out_w")
    form = choice(data, ["int", "tuple", "list", "none_h", "none_w"], "output_size_form")
    if form == "int":
        ow = oh
        osz = oh
    elif form == "none_h":
        oh, osz = h, (None, ow)
    elif form == "none_w":
        ow, osz = w, (oh, None)
    else:
        osz = (oh, ow) if form == "tuple" else [oh, ow]
    if name == "adaptive_avg_pool2d":
        exp = ref.adaptive_avg_pool2d(_as4(x), (oh, ow))
        exp = exp if batched else exp[0]
        bad = {
            "output_size=0": dict(output_size=0),
            "output_size=-1": dict(output_size=(-1, 2)),
            "output_size of 3": dict(output_size=(1, 2, 3)),
            "output_size float": dict(output_size=1.5),
            "output_size str": dict(output_size="a"),
            "output_size huge": dict(output_size=2 ** 62),
            "output_size 2**64": dict(output_size=2 ** 64),
            "x 2-D": dict(x=np.ones((3, 3), dt)),
            "x int": dict(x=np.ones(x.shape, np.int64)),
            "x None": dict(x=None),
            "x zero width": dict(x=np.ones((1, 1, 3, 0), dt)),
        }
        return Case(name, dict(x=x, output_size=osz), lambda res: close(name, res, exp, dt, amax(x)), bad=bad)
    gshape = x.shape[:-2] + (oh, ow)
    go = array(data, gshape, dt, label="grad_out_layout")
    exp = ref.adaptive_avg_pool2d_backward(_as4(go), _as4(x).shape).reshape(x.shape)
    bad = {
        "input_shape wrong length": dict(input_shape=(1,) + tuple(x.shape) + (1,)),
        "input_shape None": dict(input_shape=None),
        "input_shape zero height": dict(input_shape=tuple(x.shape[:-2]) + (0, w)),
        "input_shape channel mismatch": dict(input_shape=tuple(x.shape[:-3]) + (x.shape[-3] + 1,) + x.shape[-2:]),
        "input_shape huge": dict(input_shape=tuple(x.shape[:-2]) + (2 ** 62, 2 ** 62)),
        "grad_out 2-D": dict(grad_out=np.ones((2, 2), dt)),
        "grad_out int": dict(grad_out=np.ones(gshape, np.int64)),
        "grad_out None": dict(grad_out=None),
    }
    return Case(name, dict(grad_out=go, input_shape=tuple(x.shape)),
                lambda res: close(name, res, exp, dt, amax(go)), bad=bad)


# ----------------------------------------------------------------------------- softmax


def _any_shape(data, max_ndim=4, zero=True, min_ndim=1):
    nd = data.draw(st.integers(min_ndim, max_ndim), label="ndim")
    shape = tuple(size(data, hi=17 if nd <= 2 else 7, zero=zero, label="dim_size") for _ in range(nd))
    return shape


def _fill_slice(data, x, dim, value):
    """Sets one whole slice along dim to value (an all -inf or all NaN row)."""
    if x.size == 0:
        return x
    r = rng(data)
    idx = [int(r.integers(0, s)) for s in x.shape]
    idx[dim] = slice(None)
    x = x.copy()
    x[tuple(idx)] = value
    return x


def _softmax_out(data, shape, dt):
    if flag(data, "out_given"):
        return np.full(shape, np.nan, dt)
    return None


def _softmax_bad(dt, x, nd, out_name="out"):
    other = F64 if dt == F32 else F32
    bad = {
        "dim=ndim": dict(dim=nd),
        "dim=-ndim-1": dict(dim=-nd - 1),
        "dim huge": dict(dim=2 ** 62),
        "dim 2**64": dict(dim=2 ** 64),
        "dim float": dict(dim=1.0),
        "dim True": dict(dim=True),
        "dim None": dict(dim=None),
        "out wrong shape": {out_name: np.zeros(x.shape + (1,), dt)},
        "out wrong dtype": {out_name: np.zeros(x.shape, other)},
        "out readonly": {out_name: ro(x.shape, dt)},
        "out list": {out_name: np.zeros(x.shape).tolist()},
    }
    if x.size > 1 and x.shape[-1] > 1:
        bad["out not contiguous"] = {out_name: np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dt)[..., ::2]}
    return bad


def _softmax_geometry(data):
    """The dtype, shape, rank and dim of a softmax case (forward or backward)."""
    dt = dtype(data)
    shape = _any_shape(data)
    nd = len(shape)
    return dt, shape, nd, data.draw(st.integers(-nd, nd - 1), label="dim")


@builder("softmax", "log_softmax")
def build_softmax(data, name):
    dt, shape, nd, dim = _softmax_geometry(data)
    x = values(data, shape, dt, lo=-3, hi=3, special=(np.nan, -np.inf, np.inf, 0.0))
    slice_fill = choice(data, [None, -np.inf, np.nan], "all_slice")
    if slice_fill is not None:
        x = _fill_slice(data, x, dim, slice_fill)
    x = arrange(data, x, label="x_layout")
    out = _softmax_out(data, shape, dt)
    fn = ref.softmax if name == "softmax" else ref.log_softmax
    exp = fn(x, dim)
    n = shape[dim]
    scale = 1 + 2 * amax(x) + math.log(n + 1)

    def check(res):
        close(name, res, exp, dt, scale)
        if out is not None:
            assert np.shares_memory(res, out) or res.size == 0, f"{name}: out is filled and returned"

    bad = _softmax_bad(dt, x, nd)
    if x.size:
        xx = np.array(x, copy=True)
        bad["out aliases x"] = dict(x=xx, out=xx)
    bad["x int"] = dict(x=np.ones(shape, np.int64), out=None)
    return Case(name, dict(x=x, dim=dim, out=out), check, inplace=("out",), floats=("x",), required=("x",),
                bad=bad)


@builder("softmax_backward", "log_softmax_backward")
def build_softmax_backward(data, name):
    dt, shape, nd, dim = _softmax_geometry(data)
    x = values(data, shape, dt, lo=-3, hi=3)
    fwd = ref.softmax if name == "softmax_backward" else ref.log_softmax
    y = arrange(data, fwd(x, dim).astype(dt), label="y_layout")
    g = array(data, shape, dt, label="grad_out_layout")
    out = _softmax_out(data, shape, dt)
    bwd = ref.softmax_backward if name == "softmax_backward" else ref.log_softmax_backward
    exp = bwd(g, y, dim)
    scale = amax(g) * (1 + math.sqrt(shape[dim] + 1))

    def check(res):
        close(name, res, exp, dt, scale)
        if out is not None:
            assert np.shares_memory(res, out) or res.size == 0, f"{name}: out is filled and returned"

    bad = _softmax_bad(dt, g, nd)
    bad["y wrong shape"] = dict(y=np.zeros(shape + (2,), dt))
    return Case(name, dict(grad_out=g, y=y, dim=dim, out=out), check, inplace=("out",), floats=("grad_out", "y"),
                required=("grad_out", "y"), bad=bad)


# ----------------------------------------------------------------------------- norms


def _norm_shapes(data):
    lead = tuple(size(data, hi=7, zero=True, label="lead") for _ in range(data.draw(st.integers(0, 2), label="nlead")))
    norm = tuple(size(data, hi=17, label="norm") for _ in range(data.draw(st.integers(1, 2), label="nnorm")))
    return lead, norm


def _ns_arg(data, norm):
    form = choice(data, ["tuple", "list", "int", "np_int"], "normalized_shape_form")
    if len(norm) == 1 and form == "int":
        return norm[0]
    if len(norm) == 1 and form == "np_int":
        return np.int64(norm[0])
    return list(norm) if form == "list" else tuple(norm)


def _norm_grads_check(name, exp, scales, dt):
    """The check of a norm backward: a tuple (dx, dweight[, dbias]) matching `exp`, where an
    expected None (no weight, or need_bias=False) must come back as None."""

    def check(res):
        assert isinstance(res, tuple) and len(res) == len(exp), f"{name}: expected a {len(exp)}-tuple"
        for label, got, e, s in zip(("dx", "dweight", "dbias"), res, exp, scales):
            if e is None:
                assert got is None, f"{name}: {label} should be None"
            else:
                close(f"{name} {label}", got, e, dt, s)

    return check


def _norm_bad(dt, x, norm, with_bias=True):
    other = F64 if dt == F32 else F32
    bad = {
        "normalized_shape mismatch": dict(normalized_shape=tuple(norm[:-1]) + (norm[-1] + 1,)),
        "normalized_shape too long": dict(normalized_shape=(1,) * (x.ndim + 1)),
        "normalized_shape empty": dict(normalized_shape=()),
        "normalized_shape None": dict(normalized_shape=None),
        "normalized_shape str": dict(normalized_shape="ab"),
        "normalized_shape negative": dict(normalized_shape=(-1,)),
        "weight wrong shape": dict(weight=np.ones(norm + (2,), dt)),
        "weight mixed dtype": dict(weight=np.ones(norm, other)),
        "weight list": dict(weight=np.ones(norm).tolist()),
        "x None": dict(x=None),
        "x int": dict(x=np.ones(x.shape, np.int64)),
        "x list": dict(x=np.ones(x.shape).tolist()),
        "x 0-d": dict(x=np.ones((), dt)),
    }
    if with_bias:
        bad["bias wrong shape"] = dict(bias=np.ones((norm[-1] + 1,), dt))
        bad["bias mixed dtype"] = dict(bias=np.ones(norm, other))
    return bad


def _norm_scales(x, rstd, w, n):
    xa, r = amax(x), amax(rstd)
    return amax(w) * (xa * r + 1) * math.sqrt(n + 1)


@builder("layer_norm", "layer_norm_forward", "rms_norm", "rms_norm_forward")
def build_norm(data, name):
    dt = dtype(data)
    rms = name.startswith("rms")
    lead, norm = _norm_shapes(data)
    k, n = len(norm), math.prod(norm)
    x = values(data, lead + norm, dt, lo=-2, hi=2)
    if flag(data, "constant_rows") and x.size:
        x = np.broadcast_to(x.reshape(lead + (-1,))[..., :1], lead + (n,)).reshape(x.shape).copy()
    x = arrange(data, x, label="x_layout")
    w = array(data, norm, dt, label="weight_layout") if flag(data, "weight") else None
    b = None if rms or not flag(data, "bias") else array(data, norm, dt, label="bias_layout")
    if rms:
        eps = choice(data, [None, 1e-5, 1e-3, 0.25], "eps")
        y, rstd = ref.rms_norm(x, k, w, float(np.finfo(dt).eps) if eps is None else eps)
        stats, kwargs = (rstd,), dict(x=x, normalized_shape=_ns_arg(data, norm), weight=w, eps=eps)
    else:
        eps = choice(data, [1e-5, 1e-3, 0.25], "eps")
        y, mean, rstd = ref.layer_norm(x, k, w, b, eps)
        stats, kwargs = (mean, rstd), dict(x=x, normalized_shape=_ns_arg(data, norm), weight=w, bias=b, eps=eps)
    r = amax(rstd)
    y_scale = _norm_scales(x, rstd, w, n) + amax(b)
    stat_scales = ((r ** 3 * amax(x) ** 2 * math.sqrt(n + 1) + r,) if rms else
                   (amax(x) * math.sqrt(n + 1), r ** 3 * amax(x) ** 2 * math.sqrt(n + 1) + r))

    def check(res):
        if not name.endswith("_forward"):
            close(name, res, y, dt, y_scale)
            return
        assert isinstance(res, tuple) and len(res) == 1 + len(stats), f"{name}: expected a {1 + len(stats)}-tuple"
        close(f"{name} y", res[0], y, dt, y_scale)
        for label, got, exp, s in zip(("rstd",) if rms else ("mean", "rstd"), res[1:], stats, stat_scales):
            close(f"{name} {label}", got, exp, dt, s)

    bad = _norm_bad(dt, x, norm, with_bias=not rms)
    bad["eps None" if not rms else "eps str"] = dict(eps=None if not rms else "small")
    return Case(name, kwargs, check, floats=("x", "weight", "bias"), required=("x",), bad=bad)


@builder("layer_norm_backward", "rms_norm_backward")
def build_norm_backward(data, name):
    dt = dtype(data)
    rms = name.startswith("rms")
    lead, norm = _norm_shapes(data)
    k, n, m = len(norm), math.prod(norm), math.prod(lead)
    x = array(data, lead + norm, dt, label="x_layout", lo=-2, hi=2)
    g = array(data, lead + norm, dt, label="grad_out_layout")
    w = array(data, norm, dt, label="weight_layout") if flag(data, "weight") else None
    if rms:
        _, rstd = ref.rms_norm(x, k, None, 1e-5)
        rstd = rstd.astype(dt)
        dx, dw = ref.rms_norm_backward(g, x, k, w, rstd)
        exp = (dx, dw)
        kwargs = dict(grad_out=g, x=x, normalized_shape=_ns_arg(data, norm), weight=w, rstd=rstd)
    else:
        _, mean, rstd = ref.layer_norm(x, k, None, None, 1e-5)
        mean, rstd = mean.astype(dt), rstd.astype(dt)
        need_bias = flag(data, "need_bias")
        dx, dw, db = ref.layer_norm_backward(g, x, k, w, mean, rstd)
        exp = (dx, dw, db if need_bias else None)
        kwargs = dict(grad_out=g, x=x, normalized_shape=_ns_arg(data, norm), weight=w, mean=mean, rstd=rstd,
                      need_bias=need_bias)
    r, xa, ga = amax(rstd), amax(x), amax(g)
    xhat = xa * r * 2
    scales = (r * ga * amax(w) * (1 + xhat) ** 2 * math.sqrt(n + 1) * (1 + xa * r),
              ga * (1 + xhat) * math.sqrt(m + 1) * (1 + xa * r), ga * math.sqrt(m + 1))

    check = _norm_grads_check(name, exp, scales, dt)

    bad = _norm_bad(dt, x, norm, with_bias=False)
    bad = {lbl: v for lbl, v in bad.items() if "bias" not in lbl}
    bad["grad_out wrong shape"] = dict(grad_out=np.ones(lead + norm + (1,), dt))
    bad["rstd wrong shape"] = dict(rstd=np.ones(lead + (2,), dt))
    bad["rstd None"] = dict(rstd=None)
    if not rms:
        bad["mean wrong shape"] = dict(mean=np.ones(lead + (2,), dt))
        bad["mean None"] = dict(mean=None)
    stats = ("rstd",) if rms else ("mean", "rstd")
    return Case(name, kwargs, check, floats=("grad_out", "x", "weight") + stats, required=("grad_out", "x") + stats,
                bad=bad)


def _gn_shapes(data):
    groups = size(data, hi=4, label="num_groups")
    cpg = size(data, hi=4, label="channels_per_group")
    n = size(data, hi=3, zero=True, label="N")
    spatial = tuple(size(data, hi=7, label="spatial") for _ in range(data.draw(st.integers(0, 2), label="nspatial")))
    return groups, (n, groups * cpg) + spatial


@builder("group_norm", "group_norm_forward")
def build_group_norm(data, name):
    dt = dtype(data)
    groups, shape = _gn_shapes(data)
    c = shape[1]
    x = array(data, shape, dt, label="x_layout", lo=-2, hi=2)
    w = array(data, (c,), dt, label="weight_layout") if flag(data, "weight") else None
    b = array(data, (c,), dt, label="bias_layout") if flag(data, "bias") else None
    eps = choice(data, [1e-5, 1e-3, 0.25], "eps")
    y, mean, rstd = ref.group_norm(x, groups, w, b, eps)
    n = math.prod(shape[1:]) // groups
    r = amax(rstd)
    y_scale = _norm_scales(x, rstd, w, n) + amax(b)
    stat_scales = (amax(x) * math.sqrt(n + 1), r ** 3 * amax(x) ** 2 * math.sqrt(n + 1) + r)

    def check(res):
        close_result(name, "group_norm", res, dt,
                     [("y", y, y_scale), ("mean", mean, stat_scales[0]), ("rstd", rstd, stat_scales[1])])

    other = F64 if dt == F32 else F32
    bad = {
        "num_groups not dividing": dict(num_groups=c + 1),
        "num_groups=0": dict(num_groups=0),
        "num_groups=-1": dict(num_groups=-1),
        "num_groups None": dict(num_groups=None),
        "num_groups float 1.5": dict(num_groups=1.5),
        "num_groups huge": dict(num_groups=2 ** 64),
        "x 1-D": dict(x=np.ones((c,), dt)),
        "x int": dict(x=np.ones(shape, np.int64)),
        "x None": dict(x=None),
        "weight wrong shape": dict(weight=np.ones((c + 1,), dt)),
        "bias wrong shape": dict(bias=np.ones((c, 1), dt)),
        "weight mixed dtype": dict(weight=np.ones((c,), other)),
        "eps None": dict(eps=None),
    }
    return Case(name, dict(x=x, num_groups=groups, weight=w, bias=b, eps=eps), check,
                floats=("x", "weight", "bias"), required=("x",), bad=bad)


@builder("group_norm_backward")
def build_group_norm_backward(data, name):
    dt = dtype(data)
    groups, shape = _gn_shapes(data)
    c = shape[1]
    x = array(data, shape, dt, label="x_layout", lo=-2, hi=2)
    g = array(data, shape, dt, label="grad_out_layout")
    w = array(data, (c,), dt, label="weight_layout") if flag(data, "weight") else None
    _, mean, rstd = ref.group_norm(x, groups, None, None, 1e-5)
    mean, rstd = mean.astype(dt), rstd.astype(dt)
    need_bias = flag(data, "need_bias")
    dx, dw, db = ref.group_norm_backward(g, x, groups, w, mean, rstd)
    exp = (dx, dw, db if need_bias else None)
    n = math.prod(shape[1:]) // groups
    m = shape[0] * math.prod(shape[2:])
    r, xa, ga = amax(rstd), amax(x), amax(g)
    xhat = xa * r * 2
    scales = (r * ga * amax(w) * (1 + xhat) ** 2 * math.sqrt(n + 1) * (1 + xa * r),
              ga * (1 + xhat) * math.sqrt(m + 1) * (1 + xa * r), ga * math.sqrt(m + 1))

    check = _norm_grads_check(name, exp, scales, dt)

    bad = {
        "num_groups not dividing": dict(num_groups=c + 1),
        "num_groups=0": dict(num_groups=0),
        "num_groups None": dict(num_groups=None),
        "mean wrong shape": dict(mean=np.ones((shape[0], groups + 1), dt)),
        "rstd wrong shape": dict(rstd=np.ones((shape[0] + 1, groups), dt)),
        "mean None": dict(mean=None),
        "grad_out wrong shape": dict(grad_out=np.ones(shape + (1,), dt)),
        "weight wrong shape": dict(weight=np.ones((c + 1,), dt)),
    }
    return Case(name, dict(grad_out=g, x=x, num_groups=groups, weight=w, mean=mean, rstd=rstd, need_bias=need_bias),
                check, floats=("grad_out", "x", "weight", "mean", "rstd"),
                required=("grad_out", "x", "mean", "rstd"), bad=bad)


def _bn_shape(data, min_count=1):
    n = size(data, hi=5, label="N")
    c = size(data, hi=7, label="C")
    spatial = tuple(size(data, hi=5, label="spatial") for _ in range(data.draw(st.integers(0, 2), label="nspatial")))
    shape = (n, c) + spatial
    if n * math.prod(spatial) < min_count:
        shape = (2,) + shape[1:]
    return shape


@builder("batch_norm", "batch_norm_forward")
def build_batch_norm(data, name):
    dt = dtype(data)
    training = flag(data, "training")
    shape = _bn_shape(data, 2 if training else 1)
    c = shape[1]
    x = array(data, shape, dt, label="x_layout", lo=-2, hi=2)
    w = array(data, (c,), dt, label="weight_layout") if flag(data, "weight") else None
    b = array(data, (c,), dt, label="bias_layout") if flag(data, "bias") else None
    running = not training or flag(data, "running_stats")
    rm = values(data, (c,), dt) if running else None
    rv = values(data, (c,), dt, lo=0.5, hi=2.0) if running else None
    momentum = choice(data, [0.1, 0.5, 1.0, 0.0], "momentum")
    eps = choice(data, [1e-5, 1e-3, 0.25], "eps")
    y, mean, rstd, rm_new, rv_new = ref.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    count = x.size // c
    r = amax(rstd)
    y_scale = _norm_scales(x, rstd, w, count) + amax(b)

    def check(res):
        close_result(name, "batch_norm", res, dt,
                     [("y", y, y_scale), ("save_mean", mean, amax(x) * math.sqrt(count + 1)),
                      ("save_rstd", rstd, r ** 3 * amax(x) ** 2 * math.sqrt(count + 1) + r)])
        if running:
            close(f"{name} running_mean (in place)", rm, rm_new, dt, 1 + amax(x) * math.sqrt(count + 1))
            close(f"{name} running_var (in place)", rv, rv_new, dt, 1 + amax(x) ** 2 * math.sqrt(count + 1))

    other = F64 if dt == F32 else F32
    bad = {
        "x 1-D": dict(x=np.ones((c,), dt)),
        "x int": dict(x=np.ones(shape, np.int64)),
        "x None": dict(x=None),
        "running_mean wrong shape": dict(running_mean=np.zeros((c + 1,), dt), running_var=np.ones((c + 1,), dt)),
        "running_mean only": dict(running_mean=np.zeros((c,), dt), running_var=None),
        "running stats None in eval": dict(running_mean=None, running_var=None, training=False),
        "running_var mixed dtype": dict(running_mean=np.zeros((c,), dt), running_var=np.ones((c,), other)),
        "running_mean readonly in training": dict(running_mean=ro((c,), dt), running_var=np.ones((c,), dt),
                                                  training=True, x=np.ones((2,) + shape[1:], dt)),
        "running stats share memory in training": (lambda s: dict(running_mean=s, running_var=s, training=True,
                                                                  x=np.ones((2,) + shape[1:], dt)))(np.ones((c,), dt)),
        "one value per channel when training": dict(x=np.ones((1, c), dt), training=True),
        "weight wrong shape": dict(weight=np.ones((c + 1,), dt)),
        "bias mixed dtype": dict(bias=np.ones((c,), other)),
        "eps None": dict(eps=None),
    }
    if c > 1:  # a single element is always contiguous
        bad["running_var not contiguous"] = dict(running_mean=np.zeros((c,), dt),
                                                 running_var=np.ones((2 * c,), dt)[::2])
    return Case(name, dict(x=x, running_mean=rm, running_var=rv, weight=w, bias=b, training=training,
                           momentum=momentum, eps=eps), check, inplace=("running_mean", "running_var"),
                floats=("x", "weight", "bias", "running_mean", "running_var"), required=("x",), bad=bad)


@builder("batch_norm_backward")
def build_batch_norm_backward(data, name):
    dt = dtype(data)
    training = flag(data, "training")
    shape = _bn_shape(data, 2)
    c = shape[1]
    x = array(data, shape, dt, label="x_layout", lo=-2, hi=2)
    g = array(data, shape, dt, label="grad_out_layout")
    w = array(data, (c,), dt, label="weight_layout") if flag(data, "weight") else None
    if training:
        _, mean, rstd, _, _ = ref.batch_norm(x, None, None, None, None, True, 0.1, 1e-5)
    else:
        mean, rstd = values(data, (c,), F64), 1 / np.sqrt(values(data, (c,), F64, lo=0.5, hi=2.0))
    mean, rstd = mean.astype(dt), rstd.astype(dt)
    need_bias = flag(data, "need_bias")
    dx, dw, db = ref.batch_norm_backward(g, x, w, mean, rstd, training)
    exp = (dx, dw, db if need_bias else None)
    m = x.size // c
    r, xa, ga = amax(rstd), amax(x), amax(g)
    xhat = (xa + amax(mean)) * r
    scales = (r * ga * amax(w) * (1 + xhat) ** 2 * math.sqrt(m + 1) * (1 + xa * r),
              ga * (1 + xhat) * math.sqrt(m + 1) * (1 + xa * r), ga * math.sqrt(m + 1))

    check = _norm_grads_check(name, exp, scales, dt)

    bad = {
        "save_mean wrong shape": dict(save_mean=np.ones((c + 1,), dt)),
        "save_rstd None": dict(save_rstd=None),
        "grad_out wrong shape": dict(grad_out=np.ones(shape + (1,), dt)),
        "weight wrong shape": dict(weight=np.ones((c + 1,), dt)),
        "x 1-D": dict(x=np.ones((c,), dt), grad_out=np.ones((c,), dt)),
    }
    return Case(name, dict(grad_out=g, x=x, weight=w, save_mean=mean, save_rstd=rstd, training=training,
                           need_bias=need_bias), check,
                floats=("grad_out", "x", "weight", "save_mean", "save_rstd"),
                required=("grad_out", "x", "save_mean", "save_rstd"), bad=bad)


# ----------------------------------------------------------------------------- cross-entropy


def _ce_case(data):
    dt = dtype(data)
    c = size(data, hi=17, label="C")
    form = choice(data, ["(N, C)", "(N, C, d...)", "(C,)"], "input_form")
    if form == "(C,)":
        sample = ()
        xshape = (c,)
    else:
        n = size(data, hi=7, zero=True, label="N")
        extra = tuple(size(data, hi=5, zero=True, label="d") for _ in range(1 if form == "(N, C)" else
                                                                            data.draw(st.integers(1, 2), label="nd")))
        extra = () if form == "(N, C)" else extra
        sample = (n,) + extra
        xshape = (n, c) + extra
    x = array(data, xshape, dt, label="input_layout", lo=-4, hi=4)
    ignore_index = choice(data, [-100, -1, 0, c - 1], "ignore_index")
    r = rng(data)
    t = r.integers(0, c, size=sample)
    t = np.where(r.random(sample) < data.draw(st.sampled_from([0.0, 0.3, 1.0]), label="ignored_fraction"),
                 ignore_index, t)
    tdt = choice(data, [np.int64, np.int64, np.int32, np.int16] + ([np.uint8] if ignore_index >= 0 else []),
                 "target_dtype")
    target = arrange(data, np.asarray(t).astype(tdt), ("contiguous", "reversed", "readonly", "strided"),
                     "target_layout")
    w = array(data, (c,), dt, label="weight_layout", lo=0.1, hi=2.0) if flag(data, "weight") else None
    reduction = choice(data, ["mean", "sum", "none"], "reduction")
    smoothing = choice(data, [0.0, 0.0, 0.1, 1.0], "label_smoothing")
    xb = ref.f64(x)[None] if form == "(C,)" else x
    tb = np.asarray(t)[None] if form == "(C,)" else t
    return dt, form, x, target, w, ignore_index, reduction, smoothing, xb, tb, sample, c


def _ce_bad(dt, x, c, sample):
    other = F64 if dt == F32 else F32
    bad = {} if 0 in sample else {
        "target out of range (C)": dict(target=np.full(sample, c, np.int64)),
        "target -2": dict(target=np.full(sample, -2, np.int64), ignore_index=-100),
        "target huge uint64": dict(target=np.full(sample, 2 ** 64 - 1, np.uint64)),
        "target int64 min": dict(target=np.full(sample, -2 ** 63, np.int64)),
    }
    return {
        **bad,
        "target float": dict(target=np.zeros(sample, dt)),
        "target bool": dict(target=np.zeros(sample, bool)),
        "target wrong shape": dict(target=np.zeros(sample + (2,), np.int64)),
        "target None": dict(target=None),
        "target list": dict(target=np.zeros(sample, np.int64).tolist()),
        "input 0-d": dict(input=np.ones((), dt)),
        "input int": dict(input=np.ones(x.shape, np.int64)),
        "input None": dict(input=None),
        "input no classes": dict(input=np.ones((len(sample) and sample[0], 0) + sample[1:], dt)),
        "weight wrong shape": dict(weight=np.ones((c + 1,), dt)),
        "weight mixed dtype": dict(weight=np.ones((c,), other)),
        "reduction 'avg'": dict(reduction="avg"),
        "reduction None": dict(reduction=None),
        "label_smoothing 1.5": dict(label_smoothing=1.5),
        "label_smoothing -0.1": dict(label_smoothing=-0.1),
        "label_smoothing nan": dict(label_smoothing=float("nan")),
        "ignore_index float": dict(ignore_index=1.5),
        "ignore_index True": dict(ignore_index=True),
        "ignore_index 2**64": dict(ignore_index=2 ** 64),
    }


@builder("cross_entropy", "cross_entropy_forward")
def build_cross_entropy(data, name):
    dt, form, x, target, w, ii, red, ls, xb, tb, sample, c = _ce_case(data)
    loss, lse = ref.cross_entropy(xb, tb, w, ii, red, ls)
    if form == "(C,)":
        loss, lse = loss.reshape(()) if red == "none" else loss, lse.reshape(())
    n = max(1, int(np.prod(sample)))
    loss_scale = (4 + amax(x)) * amax(w) * (n if red != "none" else 1) * math.sqrt(c + 1)

    def check(res):
        close_result(name, "cross_entropy", res, dt,
                     [("loss", loss, loss_scale), ("lse", lse, 4 + amax(x) + math.log(c + 1))])

    return Case(name, dict(input=x, target=target, weight=w, ignore_index=ii, reduction=red, label_smoothing=ls),
                check, floats=("input", "weight"), required=("input", "target"), bad=_ce_bad(dt, x, c, sample))


@builder("cross_entropy_backward")
def build_cross_entropy_backward(data, name):
    dt, form, x, target, w, ii, red, ls, xb, tb, sample, c = _ce_case(data)
    _, lse = ref.cross_entropy(xb, tb, w, ii, red, ls)
    lse = lse.astype(dt).reshape(sample)
    if red == "none":
        gl = array(data, sample, dt, label="grad_loss_layout")
        glb = ref.f64(gl)[None] if form == "(C,)" else gl
    else:
        gl_value = choice(data, [1.0, -0.5, 3.0], "grad_loss")
        gl = np.asarray(gl_value, dt) if flag(data, "grad_loss_array") else gl_value
        glb = gl_value
    exp = ref.cross_entropy_backward(glb, xb, tb, w, ii, red, ls)
    if form == "(C,)":
        exp = exp[0]
    out = np.full(x.shape, np.nan, dt) if flag(data, "out_given") else None
    scale = amax(gl) * amax(w) * 4

    def check(res):
        close(name, res, exp, dt, scale)
        if out is not None:
            assert np.shares_memory(res, out) or res.size == 0, f"{name}: out is filled and returned"

    bad = _ce_bad(dt, x, c, sample)
    bad.update({
        "lse wrong shape": dict(lse=np.zeros(sample + (2,), dt)),
        "lse mixed dtype": dict(lse=lse.astype(F64 if dt == F32 else F32)),
        "lse None": dict(lse=None),
        "grad_loss wrong shape": dict(grad_loss=np.ones(sample + (3,), dt)),
        "grad_loss str": dict(grad_loss="1"),
        "out wrong shape": dict(out=np.zeros(x.shape + (1,), dt)),
        "out with a leading 1": dict(out=np.zeros((1,) + x.shape, dt)),
        "out readonly": dict(out=ro(x.shape, dt)),
        "out wrong dtype": dict(out=np.zeros(x.shape, np.int64)),
    })
    if x.size:
        xx = np.array(x, copy=True)
        bad["out aliases input"] = dict(input=xx, out=xx)
    return Case(name, dict(grad_loss=gl, input=x, target=target, lse=lse, weight=w, ignore_index=ii, reduction=red,
                           label_smoothing=ls, out=out), check, inplace=("out",),
                floats=("input", "weight", "lse"), required=("input", "target", "lse"), bad=bad)


# ----------------------------------------------------------------------------- attention

# q, k, v views as the kernels document: strided, transposed (B, T, H, D) -> (B, H, T, D),
# negative strides, zero-stride broadcast, read-only, misaligned.
ATT_LAYOUTS = ("contiguous", "bthd", "strided", "reversed", "broadcast", "readonly", "unaligned", "fortran")


def att_array(data, shape, dt, label, special=()):
    a = values(data, shape, dt, special=special)
    layout = choice(data, ATT_LAYOUTS, label)
    if layout == "bthd":
        return np.ascontiguousarray(a.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    return layout_as(a, layout, data)


def _att_shapes(data, decode=False):
    b = size(data, hi=3, zero=not decode, label="B")
    hkv = size(data, hi=2, label="Hkv")
    hq = hkv * size(data, hi=3, label="group")
    tq = size(data, hi=17, zero=not decode, label="Tq")
    tk = size(data, hi=17, zero=not decode, label="Tk")
    d = choice(data, [1, 2, 3, 4, 8, 16, 17], "D")
    dv = d if flag(data, "Dv=D") else choice(data, [1, 3, 8], "Dv")
    return b, hkv, hq, tq, tk, d, dv


def _mask(data, b, hq, tq, tk, dt, kind=None):
    kind = kind or choice(data, ["none", "bool", "float"], "mask_kind")
    if kind == "none":
        return None
    shape = choice(data, [(tq, tk), (1, 1, tq, tk), (b, 1, 1, tk), (b, hq, tq, tk), (hq, 1, tk)], "mask_shape")
    r = rng(data)
    if kind == "bool":
        m = r.random(shape) < data.draw(st.sampled_from([0.5, 0.9, 1.0]), label="keep_fraction")
    else:
        m = r.uniform(-2, 2, size=shape)
        m = np.where(r.random(shape) < 0.2, -np.inf, m).astype(dt)
    return layout_as(m, choice(data, ["contiguous", "broadcast", "reversed", "readonly", "strided"], "mask_layout"),
                     data)


def _att_bad(dt, q, k, v, with_mask=True):
    b, hq, tq, d = q.shape
    other = F64 if dt == F32 else F32
    bad = {
        "head_dim mismatch": dict(k=np.ones(k.shape[:3] + (d + 1,), dt)),
        "heads not a multiple": dict(q=np.ones((b, k.shape[1] + 1 if k.shape[1] > 1 else 3, tq, d), dt),
                                     k=np.ones((b, 2) + k.shape[2:], dt), v=np.ones((b, 2) + v.shape[2:], dt)),
        "batch mismatch": dict(k=np.ones((b + 1,) + k.shape[1:], dt)),
        "v length mismatch": dict(v=np.ones(v.shape[:2] + (v.shape[2] + 1, v.shape[3]), dt)),
        "q 0-d": dict(q=np.ones((), dt)),
        "k 0-d": dict(k=np.ones((), dt)),
        "q 3-D": dict(q=np.ones(q.shape[1:], dt)),
        "q None": dict(q=None),
        "v list": dict(v=np.ones(v.shape).tolist()),
        "q int": dict(q=np.ones(q.shape, np.int64)),
        "k mixed dtype": dict(k=np.ones(k.shape, other)),
        "head_dim 0": dict(q=np.ones(q.shape[:3] + (0,), dt), k=np.ones(k.shape[:3] + (0,), dt)),
    }
    if with_mask:
        bad.update({
            "mask not broadcastable": dict(attn_mask=np.ones((tq + 2, k.shape[2] + 2), bool)),
            "mask 5-D": dict(attn_mask=np.ones((1, 1, 1, tq, k.shape[2]), bool)),
            "mask int": dict(attn_mask=np.ones((tq, k.shape[2]), np.int64)),
            "mask mixed float dtype": dict(attn_mask=np.zeros((tq, k.shape[2]), other)),
            "mask list": dict(attn_mask=[[True]]),
        })
    return bad


def _att_scale(q, k, v, d, tk):
    return math.sqrt(tk + 1) * amax(v) * (1 + amax(q) * amax(k) * math.sqrt(d + 1))


@builder("attention_forward")
def build_attention_forward(data, name):
    dt = dtype(data)
    b, hkv, hq, tq, tk, d, dv = _att_shapes(data)
    kind = choice(data, ["none", "bool", "float"], "mask_kind")
    # NaN / inf in keys and values must not leak out of masked (causal or bool) positions.
    special = (np.nan, np.inf) if kind != "float" and flag(data, "nonfinite_kv") else ()
    q = att_array(data, (b, hq, tq, d), dt, "q_layout")
    k = att_array(data, (b, hkv, tk, d), dt, "k_layout", special[:1])
    v = att_array(data, (b, hkv, tk, dv), dt, "v_layout", special)
    mask = _mask(data, b, hq, tq, tk, dt, kind)
    causal = flag(data, "is_causal")
    scale = choice(data, [None, None, 0.5, 2.0], "scale")
    out, lse, _ = ref.attention(q, k, v, mask, 0 if causal else None, scale)
    s_out = _att_scale(q, k, v, d, tk) * (1 if scale is None else abs(scale) * math.sqrt(d) + 1)
    s_lse = 2 + amax(q) * amax(k) * math.sqrt(d + 1) * (1 if scale is None else abs(scale) * math.sqrt(d) + 1) \
        + amax(mask) + math.log(tk + 1)

    def check(res):
        assert isinstance(res, tuple) and len(res) == 2, f"{name}: expected (out, lse)"
        close(f"{name} out", res[0], out, dt, s_out)
        close(f"{name} lse", res[1], lse, dt, s_lse)

    bad = _att_bad(dt, q, k, v)
    bad.update({"dropout_p=1": dict(dropout_p=1.0), "dropout_p<0": dict(dropout_p=-0.1),
                "dropout_p nan": dict(dropout_p=float("nan")), "dropout_p str": dict(dropout_p="x")})
    return Case(name, dict(q=q, k=k, v=v, attn_mask=mask, is_causal=causal, scale=scale), check,
                floats=("q", "k", "v"), required=("q", "k", "v"), bad=bad)


@builder("attention_backward")
def build_attention_backward(data, name):
    dt = dtype(data)
    b, hkv, hq, tq, tk, d, dv = _att_shapes(data)
    q = att_array(data, (b, hq, tq, d), dt, "q_layout")
    k = att_array(data, (b, hkv, tk, d), dt, "k_layout")
    v = att_array(data, (b, hkv, tk, dv), dt, "v_layout")
    go = att_array(data, (b, hq, tq, dv), dt, "grad_out_layout")
    mask = _mask(data, b, hq, tq, tk, dt)
    causal = flag(data, "is_causal")
    scale = choice(data, [None, None, 0.5, 2.0], "scale")
    off = 0 if causal else None
    out, lse, _ = ref.attention(q, k, v, mask, off, scale)
    out_v = layout_as(out.astype(dt), choice(data, ["contiguous", "reversed", "strided", "readonly"], "out_layout"))
    lse = lse.astype(dt)
    dq, dk, dv_ = ref.attention_backward(go, q, k, v, mask, off, scale)
    sc = 1 if scale is None else abs(scale) * math.sqrt(d) + 1
    base = amax(go) * (1 + amax(v)) * (1 + amax(q) * amax(k) * math.sqrt(d + 1) * sc) * math.sqrt(tk + 1) * \
        math.sqrt(hq * tq + 1)
    scales = (base * amax(k) * sc, base * amax(q) * sc, amax(go) * math.sqrt(hq * tq + 1))

    def check(res):
        assert isinstance(res, tuple) and len(res) == 3, f"{name}: expected (dq, dk, dv)"
        for label, got, e, s in zip(("dq", "dk", "dv"), res, (dq, dk, dv_), scales):
            close(f"{name} {label}", got, e, dt, s)

    bad = _att_bad(dt, q, k, v)
    bad.update({
        "lse wrong shape": dict(lse=np.zeros((b, hq, tq + 1), dt)),
        "lse None": dict(lse=None),
        "out wrong shape": dict(out=np.zeros((b, hq, tq, dv + 1), dt)),
        "grad_out wrong shape": dict(grad_out=np.zeros((b, hq, tq + 1, dv), dt)),
        "grad_out 0-d": dict(grad_out=np.ones((), dt)),
        "dropout_p=1": dict(dropout_p=1.0),
    })
    return Case(name, dict(grad_out=go, q=q, k=k, v=v, out=out_v, lse=lse, attn_mask=mask, is_causal=causal,
                           scale=scale), check, floats=("grad_out", "q", "k", "v", "out", "lse"),
                required=("grad_out", "q", "k", "v", "out", "lse"), bad=bad)


@builder("kv_cache_append")
def build_kv_cache_append(data, name):
    dt = dtype(data)
    b, h = size(data, hi=3, zero=True, label="B"), size(data, hi=3, label="H")
    s = size(data, hi=17, label="max_seq")
    t = data.draw(st.integers(0, s), label="T")
    d = choice(data, [1, 2, 3, 8, 17], "D")
    offset = data.draw(st.integers(0, s - t), label="offset")
    layout = choice(data, ["contiguous", "seq_slice", "batch_strided", "reversed_seq"], "cache_layout")
    base = values(data, (b + 1, h, s + 3, d), dt)
    if layout == "contiguous":
        base = base[:b, :, :s].copy()
        cache = base
    elif layout == "seq_slice":
        cache = base[:b, :, 1:s + 1]
    elif layout == "batch_strided":
        base = np.concatenate([base, base], axis=0)
        cache = base[: 2 * b: 2, :, :s]
    else:
        cache = base[:b, :, s - 1::-1] if s else base[:b, :, :0]
    base0 = base.copy()
    new = att_array(data, (b, h, t, d), dt, "new_layout")
    exp = np.array(cache, copy=True)
    exp[:, :, offset:offset + t] = new

    def check(res):
        assert isinstance(res, int) and res == offset + t, f"{name}: returned {res!r}, expected {offset + t}"
        assert np.array_equal(cache, exp, equal_nan=True), f"{name}: cache contents differ from the reference"
        # Nothing outside the cache view (a slice of `base`) may change.
        outside = np.ones(base.shape, bool)
        view_mask = np.zeros(base.shape, bool)
        if layout == "contiguous":
            view_mask[...] = True
        elif layout == "seq_slice":
            view_mask[:b, :, 1:s + 1] = True
        elif layout == "batch_strided":
            view_mask[: 2 * b: 2, :, :s] = True
        else:
            view_mask[:b, :, :s] = True
        outside &= ~view_mask
        assert np.array_equal(base[outside], base0[outside], equal_nan=True), f"{name} wrote outside the cache view"

    other = F64 if dt == F32 else F32
    bad = {
        "offset=-1": dict(offset=-1),
        "offset overflow": dict(offset=s - t + 1),
        "offset 2**63-1": dict(offset=HUGE),
        "offset 2**62": dict(offset=2 ** 62),
        "offset 2**64": dict(offset=2 ** 64),
        "offset -2**63": dict(offset=-2 ** 63),
        "offset float": dict(offset=1.0),
        "offset None": dict(offset=None),
        "cache readonly": dict(cache=ro(cache.shape, dt)),
        "cache mixed dtype": dict(cache=np.zeros(cache.shape, other)),
        "cache int": dict(cache=np.zeros(cache.shape, np.int64), new=np.zeros(new.shape, np.int64)),
        "cache 3-D": dict(cache=np.zeros(cache.shape[1:], dt)),
        "cache 0-d": dict(cache=np.zeros((), dt)),
        "new 0-d": dict(new=np.zeros((), dt)),
        "new D mismatch": dict(new=np.zeros((b, h, t, d + 1), dt)),
        "new H mismatch": dict(new=np.zeros((b, h + 1, t, d), dt)),
        "cache None": dict(cache=None),
        "new list": dict(new=np.zeros(new.shape).tolist()),
    }
    if d > 1 and cache.size:  # one element, or an empty array (NumPy 2: zero strides), has no stride to get wrong
        bad["cache last stride 2"] = dict(cache=np.zeros(cache.shape[:3] + (2 * d,), dt)[..., ::2])
    if b:
        bad["new shares memory with cache"] = dict(new=cache[:, :, :1], offset=s - 1)
    return Case(name, dict(cache=cache, new=new, offset=offset), check, inplace=("cache",), bad=bad)


@builder("decode_attention")
def build_decode_attention(data, name):
    dt = dtype(data)
    b, hkv, hq, tq, s, d, dv = _att_shapes(data, decode=True)
    tq = min(tq, s)
    length = data.draw(st.integers(tq, s), label="length")
    q = att_array(data, (b, hq, tq, d), dt, "q_layout")
    # Beyond `length` the cache holds NaN: decode_attention must never read it.
    kc = np.full((b, hkv, s, d), np.nan, dt)
    vc = np.full((b, hkv, s, dv), np.nan, dt)
    kind = choice(data, ["none", "bool", "float"], "mask_kind")
    # NaN / inf at masked (causal or bool) positions must not leak into the output.
    special = (np.nan, np.inf) if kind != "float" and flag(data, "nonfinite_kv") else ()
    kc[:, :, :length] = values(data, (b, hkv, length, d), dt, special=special[:1])
    vc[:, :, :length] = values(data, (b, hkv, length, dv), dt, special=special)
    # The caches are read in place, so only views with a unit-stride last axis are valid.
    cache_layouts = ("contiguous", "reversed_lead", "strided_lead", "readonly", "broadcast_lead")
    kc = layout_as(kc, choice(data, cache_layouts, "k_cache_layout"), data)
    vc = layout_as(vc, choice(data, cache_layouts, "v_cache_layout"), data)
    mask = _mask(data, b, hq, tq, length, dt, kind)
    scale = choice(data, [None, None, 0.5], "scale")
    out, _, _ = ref.attention(q, kc[:, :, :length], vc[:, :, :length], mask, length - tq, scale)
    kk, vv = kc[:, :, :length], vc[:, :, :length]
    s_out = _att_scale(q, kk, vv, d, length) * (1 if scale is None else abs(scale) * math.sqrt(d) + 1)

    def check(res):
        close(name, res, out, dt, s_out)

    bad = _att_bad(dt, q, kc, vc, with_mask=False)
    bad = {lbl.replace("k ", "k_cache ").replace("v ", "v_cache "): {
        {"k": "k_cache", "v": "v_cache"}.get(a, a): val for a, val in v.items()} for lbl, v in bad.items()}
    bad.update({
        "length > capacity": dict(length=s + 1),
        "length < Tq": dict(length=tq - 1),
        "length=-1": dict(length=-1),
        "length 2**63-1": dict(length=HUGE),
        "length 2**64": dict(length=2 ** 64),
        "length None": dict(length=None),
        "length float": dict(length=1.0),
        "mask not broadcastable": dict(attn_mask=np.ones((tq + 2, length + 2), bool)),
        "mask int": dict(attn_mask=np.ones((tq, length), np.int64)),
    })
    return Case(name, dict(q=q, k_cache=kc, v_cache=vc, length=length, attn_mask=mask, scale=scale), check,
                floats=("q", "k_cache", "v_cache"), required=("q", "k_cache", "v_cache"), bad=bad)


@builder("rope", "rope_backward")
def build_rope(data, name):
    dt = dtype(data)
    lead = tuple(size(data, hi=5, zero=True, label="lead") for _ in range(data.draw(st.integers(0, 2), label="nlead")))
    t = size(data, hi=17, zero=True, label="T")
    d = choice(data, [0, 2, 4, 6, 8, 16, 34], "D")
    offset = choice(data, [0, 0, 1, 7, 1000, 123456], "offset")
    base = choice(data, [10000.0, 10.0, 1.5, 500000.0], "base")
    arg = "x" if name == "rope" else "grad_out"
    x = array(data, lead + (t, d), dt, label=f"{arg}_layout", lo=-2, hi=2)
    exp = ref.rope(x, offset, base, inverse=name == "rope_backward")
    # The rotation runs in dt (|err| ~ eps(dt) |x|); the angles in double, whose error grows
    # with the position: ~ eps(float64) * (|offset| + T) radians.
    scale = amax(x) * (2 + 4 * (abs(offset) + t) * float(np.finfo(F64).eps) / float(np.finfo(dt).eps))
    bad = {
        "D odd": {arg: np.ones(lead + (t, 3), dt)},
        f"{arg} 1-D": {arg: np.ones((4,), dt)},
        f"{arg} 0-d": {arg: np.ones((), dt)},
        f"{arg} int": {arg: np.ones(lead + (t, d), np.int64)},
        f"{arg} int16": {arg: np.ones(lead + (t, d), np.int16)},
        f"{arg} None": {arg: None},
        f"{arg} list": {arg: np.ones((2, 2)).tolist()},
        "base=0": dict(base=0.0),
        "base<0": dict(base=-10.0),
        "base nan": dict(base=float("nan")),
        "base None": dict(base=None),
        "offset 2**64": dict(offset=2 ** 64),
        "offset float": dict(offset=1.5),
        "offset < 0": dict(offset=-5),  # a position in a sequence: never negative
    }
    return Case(name, {arg: x, "offset": offset, "base": base}, lambda res: close(name, res, exp, dt, scale),
                bad=bad)


# ----------------------------------------------------------------------------- activation


# Every activation of csrc/cpu/activation.h's list (dlkern._C.ACTIVATIONS) and its backward.
@builder(*(n for a in dlkern._C.ACTIVATIONS for n in (a, f"{a}_backward")))
def build_activation(data, name):
    base = name.removesuffix("_backward")
    dt = dtype(data)
    shape = _any_shape(data, min_ndim=0)
    mag = choice(data, [1.0, 5.0, 50.0], "magnitude")
    x = array(data, shape, dt, label="x_layout", lo=-mag, hi=mag, special=(np.nan, 0.0, -0.0))
    scale = 1 + amax(x)
    other = F64 if dt == F32 else F32
    bad = {"x int": dict(x=np.ones(shape, np.int64)), "x None": dict(x=None), "x list": dict(x=[1.0]),
           "x int16": dict(x=np.ones(shape, np.int16)), "x bool": dict(x=np.ones(shape, bool))}
    if name == base:
        exp = getattr(reference, base)(x)
        return Case(name, dict(x=x), lambda res: close(name, res, exp, dt, scale), bad=bad)
    g = array(data, shape, dt, label="grad_out_layout")
    exp = getattr(reference, name)(g, x)
    bad.update({"grad_out wrong shape": dict(grad_out=np.ones(shape + (2,), dt)),
                "grad_out mixed dtype": dict(grad_out=np.ones(shape, other)),
                "grad_out None": dict(grad_out=None)})
    return Case(name, dict(grad_out=g, x=x), lambda res: close(name, res, exp, dt, scale * (1 + amax(g)) * 4),
                bad=bad)


# The forward-only elementwise kernels of csrc/cpu/activation.h (dlkern._C.UNARY_KERNELS):
# <name>(x, out=None) with x of any layout and out fresh, x itself or a strided view.
@builder(*dlkern._C.UNARY_KERNELS)
def build_unary(data, name):
    dt = dtype(data)
    shape = _any_shape(data, min_ndim=0)
    mag = choice(data, [1.0, 5.0, 50.0], "magnitude")
    x = array(data, shape, dt, label="x_layout", lo=-mag, hi=mag, special=(np.nan, np.inf, -np.inf, 0.0, -0.0))
    exp = getattr(reference, name)(x)
    kwargs = dict(x=x)
    mode = choice(data, ["none", "fresh", "x", "strided"], "out_mode")
    if mode == "x" and not (x.flags.writeable and x.flags.aligned):
        mode = "fresh"  # a read-only or misaligned x cannot be written in place (bad cases below)
    if mode == "fresh":
        kwargs["out"] = np.full(shape, 7.0, dt)
    elif mode == "x":
        kwargs["out"] = x
    elif mode == "strided":
        kwargs["out"] = np.full(shape + (2,), 7.0, dt)[..., 0]
    other = F64 if dt == F32 else F32
    bad = {"x int": dict(x=np.ones(shape, np.int64)), "x None": dict(x=None), "x list": dict(x=[1.0]),
           "x int16": dict(x=np.ones(shape, np.int16)), "x bool": dict(x=np.ones(shape, bool)),
           "out wrong shape": dict(out=np.ones(shape + (2,), dt)), "out mixed dtype": dict(out=np.ones(shape, other)),
           "out read-only": dict(out=ro(shape, dt)), "out list": dict(out=[0.0])}
    if int(np.prod(shape)):
        raw = np.zeros(int(np.prod(shape)) * np.dtype(dt).itemsize + 1, np.uint8)
        bad["out misaligned"] = dict(out=raw[1:].view(dt).reshape(shape))
    return Case(name, kwargs, lambda res: close(name, res, exp, dt, 1.0), bad=bad,
                inplace=() if mode == "none" else ("out", "x") if mode == "x" else ("out",))


# ----------------------------------------------------------------------------- recurrent cells


# The pointwise LSTM/GRU steps of csrc/cpu/rnn.h: (B, k H) gate blocks, B and H each 0, 1,
# odd or prime, any layout. Forwards take NaN/inf (saturating gates, NaN propagating);
# backwards NaN (an inf would overflow float32 products the float64 oracle keeps finite).
_RNN_INPUTS = {  # name -> (argument, gate blocks: its columns are blocks * H) in call order
    "lstm_cell_forward": (("gates", 4), ("c_prev", 1)),
    "lstm_cell_backward": (("dh", 1), ("dc", 1), ("act", 4), ("c_prev", 1), ("c", 1)),
    "gru_cell_forward": (("gi", 3), ("gh", 3), ("h_prev", 1)),
    "gru_cell_backward": (("dh", 1), ("saved", 4), ("h_prev", 1)),
}
# Arguments that hold activations (sigmoid / tanh outputs): drawn in [-1, 1].
_RNN_ACTIVATED = ("act", "saved")


@builder(*_RNN_INPUTS)
def build_rnn_cell(data, name):
    dt = dtype(data)
    b, h = size(data, zero=True, label="batch"), size(data, zero=True, label="hidden")
    mag = choice(data, [1.0, 5.0, 50.0], "magnitude")
    special = (np.nan, np.inf, -np.inf, 0.0) if name.endswith("forward") else (np.nan, 0.0)
    kwargs = {}
    for arg, blocks in _RNN_INPUTS[name]:
        lim = 1.0 if arg in _RNN_ACTIVATED else mag
        kwargs[arg] = array(data, (b, blocks * h), dt, label=f"{arg}_layout", lo=-lim, hi=lim, special=special)
    exp = getattr(reference, name)(*kwargs.values())
    # The size of the terms behind each output: a wrong index errs by O(scale).
    scale = 4 * math.prod(1 + amax(a) for a in kwargs.values())

    def check(res):
        assert isinstance(res, tuple) and len(res) == len(exp), f"{name}: expected a {len(exp)}-tuple"
        for i, (got, e) in enumerate(zip(res, exp)):
            close(f"{name} output {i}", got, e, dt, scale)

    args = [arg for arg, _ in _RNN_INPUTS[name]]
    other = F64 if dt == F32 else F32
    bad = {}
    for arg, blocks in _RNN_INPUTS[name]:
        bad[f"{arg} one row too many"] = {arg: np.ones((b + 1, blocks * h), dt)}
        bad[f"{arg} one column too many"] = {arg: np.ones((b, blocks * h + 1), dt)}
    bad[f"{args[-1]} mixed dtype"] = {args[-1]: np.ones((b, h), other)}
    return Case(name, kwargs, check, floats=args, ndims={a: (2,) for a in args}, required=args, bad=bad)


# The recurrent layers' time loops (csrc/cpu/rnn_layer.h): their builders live beside.
from fuzz_specs_rnn_layer import register as _register_rnn_layers  # noqa: E402

_register_rnn_layers(builder)

# The float format conversion (dlkern.ops.convert): its builder lives beside.
from fuzz_specs_convert import register as _register_convert  # noqa: E402

_register_convert(builder)

# The fused optimizer steps (dlkern.ops.adam_step, sgd_step): their builders live beside.
from fuzz_specs_optim import register as _register_optim  # noqa: E402

_register_optim(builder)
