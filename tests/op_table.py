"""The op table: one row per kernel family, run by test_op_table.py on every device present,
every ISA path and 1 and 2 threads.

A row says how to make inputs for each of its cases (sizes 0, 1, odd, prime and a
non-contiguous first input; float32 and float64), how to call its forward and backward
on a device namespace (``dlkern.device(...)``, the CUDA host twin, or ``dlkern.reference``,
which has the same names and signatures), which inputs are differentiated, the length of
the reductions behind each output (for the tolerance) and, where PyTorch has the op, how
to compute it there. The oracle is always dlkern.reference (float64 NumPy, never dlkern's
own kernels); the gradient check is central differences of the device's own forward.

Adding an op is adding a Row here.
"""

import dataclasses
import math
from typing import Callable, Optional

import numpy as np


@dataclasses.dataclass
class Row:
    name: str
    cases: list                     # [(id, params)]: make's keyword arguments
    make: Callable                  # make(rng, dtype, **params) -> (arrays: dict, static: dict)
    fwd: Callable                   # fwd(ns, a, s) -> output or tuple of outputs (the first is differentiated)
    k: Callable                     # k(a, s) -> length of the reductions behind each output (tolerance)
    bwd: Optional[Callable] = None  # bwd(ns, cot, out, a, s) -> gradients of `diff`, in order
    diff: tuple = ()                # names of the differentiated arrays
    torch: Optional[Callable] = None  # torch(F, t, a, s) -> the first output, a: dict of float64 tensors
    cuda: bool = True               # dlkern._C_cuda has the kernels (else the CUDA namespace must refuse them)
    cpu_only: tuple = ()            # case ids of forms only the CPU ops take (normalised in Python above CUDA)
    no_torch: tuple = ()            # case ids PyTorch cannot reproduce (e.g. dlkern's own dropout hash)
    tol: float = 1.0                # a multiple of the default tolerance, for ops whose error grows faster
    grad_case: str = "grad"         # the (small) case whose float64 gradients are checked numerically


def u(rng, shape, dtype, low=-1.0, high=1.0):
    """Uniform values, exactly representable in dtype."""
    return rng.uniform(low, high, size=shape).astype(dtype)


def _cases(*pairs):
    return [(name, params) for name, params in pairs]


# ----------------------------------------------------------------------------- matmul


def _make_matmul(rng, dtype, a, b):
    return {"a": u(rng, a, dtype), "b": u(rng, b, dtype)}, {}


def _make_gemm(rng, dtype, m, k, n, trans_a, trans_b, alpha):
    a = u(rng, (k, m) if trans_a else (m, k), dtype)
    b = u(rng, (n, k) if trans_b else (k, n), dtype)
    return {"a": a, "b": b}, dict(alpha=alpha, trans_a=trans_a, trans_b=trans_b)


# ----------------------------------------------------------------------------- softmax


def _make_rows(rng, dtype, shape, dim=-1):
    return {"x": u(rng, shape, dtype, -4, 4)}, {"dim": dim}


def _softmax_row(name):
    backward = name + "_backward"
    return Row(
        name, _cases(("0", dict(shape=(0, 5))), ("1", dict(shape=(1, 1))), ("odd", dict(shape=(3, 7, 9))),
                     ("prime", dict(shape=(5, 131))), ("dim0", dict(shape=(17, 3), dim=0)),
                     ("noncontig", dict(shape=(6, 11))), ("grad", dict(shape=(2, 3, 5), dim=1))),
        _make_rows, lambda ns, a, s: getattr(ns, name)(a["x"], s["dim"]), lambda a, s: a["x"].shape[s["dim"]],
        bwd=lambda ns, cot, out, a, s: (getattr(ns, backward)(cot, out[0], s["dim"]),), diff=("x",),
        torch=lambda F, t, a, s: getattr(t, name)(a["x"], s["dim"]), tol=2.0)


# ----------------------------------------------------------------------------- norms


def _make_norm(rng, dtype, shape, nd=1, affine=True, eps=1e-5):
    a = {"x": u(rng, shape, dtype, -2, 3)}
    if affine:
        a["weight"], a["bias"] = u(rng, shape[-nd:], dtype), u(rng, shape[-nd:], dtype)
    return a, {"shape": tuple(shape[-nd:]), "eps": eps}


_NORM_CASES = _cases(("0", dict(shape=(0, 4))), ("1", dict(shape=(1, 1))), ("odd", dict(shape=(3, 5, 7))),
                     ("prime", dict(shape=(7, 257))), ("2d", dict(shape=(2, 3, 5, 6), nd=2)),
                     ("plain", dict(shape=(4, 9), affine=False)), ("noncontig", dict(shape=(5, 13))),
                     ("grad", dict(shape=(2, 3, 4), nd=2, eps=0.1)))


def _norm_k(a, s):
    return math.prod(s["shape"])


def _make_group_norm(rng, dtype, n, c, spatial, groups, affine=True):
    a = {"x": u(rng, (n, c) + spatial, dtype, -2, 3)}
    if affine:
        a["weight"], a["bias"] = u(rng, (c,), dtype), u(rng, (c,), dtype)
    return a, {"groups": groups}


def _make_batch_norm(rng, dtype, n, c, spatial, affine=True):
    a = {"x": u(rng, (n, c) + spatial, dtype, -2, 3)}
    if affine:
        a["weight"], a["bias"] = u(rng, (c,), dtype), u(rng, (c,), dtype)
    return a, {}


_CHANNEL_CASES = _cases(("1", dict(n=1, c=1, spatial=(2,))), ("odd", dict(n=3, c=5, spatial=(7,))),
                        ("prime", dict(n=2, c=7, spatial=(11, 13))),
                        ("plain", dict(n=4, c=3, spatial=(), affine=False)),
                        ("noncontig", dict(n=3, c=4, spatial=(5, 6))), ("grad", dict(n=2, c=4, spatial=(3,))))
_GROUPS = {"1": 1, "odd": 5, "prime": 7, "plain": 1, "noncontig": 2, "grad": 2}  # channels per group: 1 to c


# ----------------------------------------------------------------------------- conv


def _make_conv(rng, dtype, x, w, bias=True, stride=1, padding=0, dilation=1, groups=1):
    a = {"x": u(rng, x, dtype), "weight": u(rng, w, dtype)}
    if bias:
        a["bias"] = u(rng, (w[0],), dtype)
    return a, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def _conv_k(a, s):
    w = a["weight"]
    return math.prod(w.shape[1:])


def _conv_bwd(name):
    def bwd(ns, cot, out, a, s):
        return getattr(ns, name)(cot, a["x"], a["weight"], s["stride"], s["padding"], s["dilation"], s["groups"])[
            :2 + ("bias" in a)]
    return bwd


def _make_causal(rng, dtype, x, w, bias=True, dilation=1, groups=1):
    a = {"x": u(rng, x, dtype), "weight": u(rng, w, dtype)}
    if bias:
        a["bias"] = u(rng, (w[0],), dtype)
    return a, dict(dilation=dilation, groups=groups)


def _torch_causal(F, t, a, s):
    context = (a["weight"].shape[2] - 1) * s["dilation"]
    return F.conv1d(F.pad(a["x"], (context, 0)), a["weight"], a.get("bias"), dilation=s["dilation"],
                    groups=s["groups"])


# ----------------------------------------------------------------------------- pooling


def _make_pool(rng, dtype, x, **static):
    return {"x": u(rng, x, dtype, -3, 3)}, static


_POOL_CASES = _cases(("1", dict(x=(1, 1, 1, 1), kernel_size=1)),
                     ("odd", dict(x=(2, 3, 7, 9), kernel_size=3, stride=2, padding=1)),
                     ("prime", dict(x=(1, 5, 13, 11), kernel_size=(2, 3), stride=(3, 1), ceil_mode=True)),
                     ("unbatched", dict(x=(3, 5, 6), kernel_size=2)),
                     ("noncontig", dict(x=(2, 2, 6, 5), kernel_size=2, stride=1)),
                     ("grad", dict(x=(1, 2, 5, 4), kernel_size=2, stride=1, padding=1)))


def _max_pool_fwd(ns, a, s):
    return ns.max_pool2d_forward(a["x"], s["kernel_size"], s.get("stride"), s.get("padding", 0),
                                 s.get("dilation", 1), s.get("ceil_mode", False))


def _avg_pool_args(s):
    return (s["kernel_size"], s.get("stride"), s.get("padding", 0), s.get("ceil_mode", False),
            s.get("count_include_pad", True), s.get("divisor_override"))


def _window_k(a, s):
    k = s.get("kernel_size", 1)
    return math.prod(k) if isinstance(k, tuple) else k * k


# ----------------------------------------------------------------------------- cross-entropy


def _make_ce(rng, dtype, shape, weighted=False, ignore=False, reduction="mean", label_smoothing=0.0):
    x = u(rng, shape, dtype, -3, 3)
    c = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    target = rng.integers(0, c, size=tshape).astype(np.int64)
    if ignore and target.size > 1:
        target.reshape(-1)[::3] = -100
    a = {"input": x, "target": target}
    if weighted:
        a["weight"] = u(rng, (c,), dtype, 0.2, 2.0)
    return a, dict(reduction=reduction, label_smoothing=label_smoothing)


def _ce_fwd(ns, a, s):
    return ns.cross_entropy_forward(a["input"], a["target"], a.get("weight"), -100, s["reduction"],
                                    s["label_smoothing"])


def _ce_bwd(ns, cot, out, a, s):
    return (ns.cross_entropy_backward(cot, a["input"], a["target"], out[1], a.get("weight"), -100, s["reduction"],
                                      s["label_smoothing"]),)


# ----------------------------------------------------------------------------- attention


def _make_attention(rng, dtype, b, hq, hkv, tq, tk, d, dv=None, mask=None, is_causal=False, scale=None,
                    dropout_p=0.0, seed=0):
    a = {"q": u(rng, (b, hq, tq, d), dtype, -2, 2), "k": u(rng, (b, hkv, tk, d), dtype, -2, 2),
         "v": u(rng, (b, hkv, tk, dv or d), dtype)}
    if mask == "float":
        a["attn_mask"] = u(rng, (tq, tk), dtype, -2, 0)
    return a, dict(is_causal=is_causal, scale=scale, dropout_p=dropout_p, seed=seed)


def _attn_fwd(ns, a, s):
    return ns.attention_forward(a["q"], a["k"], a["v"], a.get("attn_mask"), s["is_causal"], s["scale"],
                                s["dropout_p"], s["seed"])


def _attn_bwd(ns, cot, out, a, s):
    return ns.attention_backward(cot, a["q"], a["k"], a["v"], out[0], out[1], a.get("attn_mask"), s["is_causal"],
                                 s["scale"], s["dropout_p"], s["seed"])


def _torch_attention(F, t, a, s):
    mask, causal = a.get("attn_mask"), s["is_causal"]
    if mask is not None and causal:  # PyTorch takes one or the other: fold the causal limit into the mask
        tq, tk = mask.shape[-2:]
        mask = mask.masked_fill(t.arange(tk)[None, :] > t.arange(tq)[:, None], float("-inf"))
        causal = False
    return F.scaled_dot_product_attention(a["q"], a["k"], a["v"], attn_mask=mask, is_causal=causal,
                                          scale=s["scale"], enable_gqa=True)


def _make_decode(rng, dtype, b, hq, hkv, tq, cache, length, d):
    a = {"q": u(rng, (b, hq, tq, d), dtype, -2, 2), "k_cache": u(rng, (b, hkv, cache, d), dtype, -2, 2),
         "v_cache": u(rng, (b, hkv, cache, d), dtype)}
    return a, {"length": length}


def _torch_decode(F, t, a, s):
    length, tq = s["length"], a["q"].shape[2]
    allowed = t.arange(length)[None, :] <= t.arange(tq)[:, None] + (length - tq)  # bottom-right causal
    return F.scaled_dot_product_attention(a["q"], a["k_cache"][:, :, :length], a["v_cache"][:, :, :length],
                                          attn_mask=allowed, enable_gqa=True)


def _make_kv(rng, dtype, cache, t, offset):
    return {"cache": u(rng, cache, dtype), "new": u(rng, cache[:2] + (t,) + cache[3:], dtype)}, {"offset": offset}


def _kv_fwd(ns, a, s):
    cache = ns.contiguous(a["cache"]) if hasattr(ns, "contiguous") else a["cache"].copy()
    end = ns.kv_cache_append(cache, a["new"], s["offset"])
    assert end == s["offset"] + a["new"].shape[2], f"kv_cache_append returned {end}"
    return cache


def _make_rope(rng, dtype, shape, offset=0, base=10000.0):
    return {"x": u(rng, shape, dtype)}, dict(offset=offset, base=base)


def _make_x(rng, dtype, shape):
    return {"x": u(rng, shape, dtype, -4, 4)}, {}


# ---- convert (issue 16): a round trip through a 16-bit format, back in the case's dtype
def _make_convert(rng, dtype, shape, via):
    return {"x": u(rng, shape, dtype, -6e4, 6e4)}, {"via": via}


def _convert_fwd(ns, a, s):
    convert = ns.convert  # looked up first: the CUDA namespace refuses it here
    return convert(convert(a["x"], s["via"]), a["x"].dtype)
# ---- end convert


# ----------------------------------------------------------------------------- recurrent cells


_RNN_CASES = _cases(("0", dict(b=0, h=3)), ("1", dict(b=1, h=1)), ("odd", dict(b=3, h=7)),
                    ("prime", dict(b=13, h=37)), ("wide", dict(b=2, h=131)), ("noncontig", dict(b=5, h=11)),
                    ("grad", dict(b=2, h=3)))


def _make_lstm(rng, dtype, b, h):
    return {"gates": u(rng, (b, 4 * h), dtype, -3, 3), "c_prev": u(rng, (b, h), dtype, -2, 2)}, {}


def _make_gru(rng, dtype, b, h):
    """gh is h_prev W^T + bias for a drawn W and bias (static), so PyTorch's gru_cell, which
    computes gh itself, is a twin; the kernels take gh as an input like any other."""
    h_prev = u(rng, (b, h), dtype)
    w, bias = u(rng, (3 * h, h), dtype, -2, 2), u(rng, (3 * h,), dtype)
    gh = (h_prev.astype(np.float64) @ w.T.astype(np.float64) + bias).astype(dtype)
    return {"gi": u(rng, (b, 3 * h), dtype, -3, 3), "gh": gh, "h_prev": h_prev}, {"w_hh": w, "b_hh": bias}


def _torch_lstm(F, t, a, s):
    """PyTorch's own LSTM cell (h, c) with the identity as W_ih, so its gates are ours."""
    b, h = a["c_prev"].shape
    eye, zeros = t.eye(4 * h, dtype=t.float64), t.zeros(4 * h, h, dtype=t.float64)
    return t.lstm_cell(a["gates"], (t.zeros(b, h, dtype=t.float64), a["c_prev"]), eye, zeros)


def _torch_gru(F, t, a, s):
    h = a["h_prev"].shape[1]
    w, bias = (t.from_numpy(s[k].astype(np.float64)) for k in ("w_hh", "b_hh"))
    return t.gru_cell(a["gi"], a["h_prev"], t.eye(3 * h, dtype=t.float64), w, None, bias)


def _lstm_row(name, first):
    """The LSTM cell with output `first` (0: h, 1: c) differentiated: the gradient check
    sends the cotangent through dh or through dc, the other zero."""
    order = (first, 1 - first, 2)

    def fwd(ns, a, s):
        out = ns.lstm_cell_forward(a["gates"], a["c_prev"])
        return tuple(out[i] for i in order)

    def bwd(ns, cot, out, a, s):
        c = out[order.index(1)]
        dh, dc = (cot, cot * 0) if first == 0 else (cot * 0, cot)
        return ns.lstm_cell_backward(dh, dc, out[2], a["c_prev"], c)

    return Row(name, _RNN_CASES, _make_lstm, fwd, lambda a, s: 1, bwd=bwd, diff=("gates", "c_prev"),
               torch=lambda F, t, a, s: _torch_lstm(F, t, a, s)[first], tol=4.0)


_ATTN = dict(b=1, hq=1, hkv=1)

ROWS = [
    Row("matmul", _cases(("0", dict(a=(0, 3), b=(3, 4))), ("1", dict(a=(1, 1), b=(1, 1))),
                         ("odd", dict(a=(3, 5), b=(5, 7))), ("prime", dict(a=(2, 13, 17), b=(17, 11))),
                         ("vector", dict(a=(7,), b=(3, 7, 5))), ("noncontig", dict(a=(9, 6), b=(6, 5)))),
        _make_matmul, lambda ns, a, s: ns.matmul(a["a"], a["b"]), lambda a, s: a["a"].shape[-1],
        torch=lambda F, t, a, s: t.matmul(a["a"], a["b"])),
    Row("gemm", _cases(("1", dict(m=1, k=1, n=1, trans_a=False, trans_b=False, alpha=1.0)),
                       ("odd", dict(m=5, k=7, n=3, trans_a=True, trans_b=False, alpha=-0.5)),
                       ("prime", dict(m=13, k=31, n=17, trans_a=False, trans_b=True, alpha=2.0)),
                       ("noncontig", dict(m=6, k=4, n=5, trans_a=True, trans_b=True, alpha=1.0))),
        _make_gemm, lambda ns, a, s: ns.gemm(a["a"], a["b"], None, s["alpha"], 0.0, s["trans_a"], s["trans_b"]),
        lambda a, s: a["a"].shape[0 if s["trans_a"] else 1],
        torch=lambda F, t, a, s: s["alpha"] * ((a["a"].T if s["trans_a"] else a["a"])
                                               @ (a["b"].T if s["trans_b"] else a["b"]))),
    _softmax_row("softmax"),
    _softmax_row("log_softmax"),
    Row("layer_norm", _NORM_CASES, _make_norm,
        lambda ns, a, s: ns.layer_norm_forward(a["x"], s["shape"], a.get("weight"), a.get("bias"), s["eps"]), _norm_k,
        bwd=lambda ns, cot, out, a, s: ns.layer_norm_backward(cot, a["x"], s["shape"], a.get("weight"), out[1],
                                                              out[2])[:1 + 2 * ("weight" in a)],
        diff=("x", "weight", "bias"),
        torch=lambda F, t, a, s: F.layer_norm(a["x"], s["shape"], a.get("weight"), a.get("bias"), s["eps"]), tol=4.0),
    Row("rms_norm", _NORM_CASES, _make_norm,
        lambda ns, a, s: ns.rms_norm_forward(a["x"], s["shape"], a.get("weight"), s["eps"]), _norm_k,
        bwd=lambda ns, cot, out, a, s: ns.rms_norm_backward(cot, a["x"], s["shape"], a.get("weight"),
                                                            out[1])[:1 + ("weight" in a)],
        diff=("x", "weight"), torch=lambda F, t, a, s: F.rms_norm(a["x"], s["shape"], a.get("weight"), s["eps"]),
        tol=4.0),
    Row("group_norm", [(n, dict(p, groups=_GROUPS[n])) for n, p in _CHANNEL_CASES], _make_group_norm,
        lambda ns, a, s: ns.group_norm_forward(a["x"], s["groups"], a.get("weight"), a.get("bias"), 1e-5),
        lambda a, s: a["x"][0].size // s["groups"],
        bwd=lambda ns, cot, out, a, s: ns.group_norm_backward(cot, a["x"], s["groups"], a.get("weight"), out[1],
                                                              out[2])[:1 + 2 * ("weight" in a)],
        diff=("x", "weight", "bias"),
        torch=lambda F, t, a, s: F.group_norm(a["x"], s["groups"], a.get("weight"), a.get("bias"), 1e-5),
        cuda=False, tol=4.0),
    Row("batch_norm", _CHANNEL_CASES, _make_batch_norm,
        lambda ns, a, s: ns.batch_norm_forward(a["x"], None, None, a.get("weight"), a.get("bias"), True, 0.1, 1e-5),
        lambda a, s: a["x"].size // a["x"].shape[1],
        bwd=lambda ns, cot, out, a, s: ns.batch_norm_backward(cot, a["x"], a.get("weight"), out[1], out[2],
                                                              True)[:1 + 2 * ("weight" in a)],
        diff=("x", "weight", "bias"),
        torch=lambda F, t, a, s: F.batch_norm(a["x"], None, None, a.get("weight"), a.get("bias"), True, 0.1, 1e-5),
        cuda=False, tol=4.0),
    Row("conv2d", _cases(("0", dict(x=(0, 2, 5, 5), w=(3, 2, 3, 3))), ("1", dict(x=(1, 1, 1, 1), w=(1, 1, 1, 1))),
                         ("odd", dict(x=(2, 3, 9, 7), w=(5, 3, 3, 3), stride=2, padding=1)),
                         ("prime", dict(x=(1, 4, 13, 11), w=(6, 2, 3, 2), padding=(2, 1), dilation=(2, 3), groups=2)),
                         ("same", dict(x=(2, 3, 8, 6), w=(4, 3, 4, 3), padding="same", bias=False)),
                         ("noncontig", dict(x=(2, 2, 6, 7), w=(3, 2, 2, 3), stride=(1, 2))),
                         ("grad", dict(x=(2, 2, 5, 4), w=(2, 1, 2, 3), stride=(2, 1), padding=1, groups=2))),
        _make_conv, lambda ns, a, s: ns.conv2d(a["x"], a["weight"], a.get("bias"), **s), _conv_k,
        bwd=_conv_bwd("conv2d_backward"), diff=("x", "weight", "bias"),
        torch=lambda F, t, a, s: F.conv2d(a["x"], a["weight"], a.get("bias"), **s)),
    Row("conv1d", _cases(("1", dict(x=(1, 1, 1), w=(1, 1, 1))),
                         ("odd", dict(x=(3, 5, 11), w=(3, 5, 3), stride=2, padding=2)),
                         ("prime", dict(x=(2, 6, 17), w=(9, 2, 5), dilation=3, padding=7, groups=3)),
                         ("same", dict(x=(1, 2, 10), w=(3, 2, 4), padding="same", dilation=2)),
                         ("noncontig", dict(x=(2, 3, 8), w=(2, 3, 3))),
                         ("grad", dict(x=(2, 2, 6), w=(3, 2, 2), stride=2, padding=1))),
        _make_conv, lambda ns, a, s: ns.conv1d(a["x"], a["weight"], a.get("bias"), **s), _conv_k,
        bwd=_conv_bwd("conv1d_backward"), diff=("x", "weight", "bias"),
        torch=lambda F, t, a, s: F.conv1d(a["x"], a["weight"], a.get("bias"), **s)),
    Row("causal_conv1d", _cases(("1", dict(x=(1, 1, 1), w=(1, 1, 1))), ("odd", dict(x=(3, 5, 9), w=(7, 5, 3))),
                                ("prime", dict(x=(2, 4, 13), w=(6, 2, 5), dilation=2, groups=2)),
                                ("long", dict(x=(1, 2, 3), w=(2, 2, 4), dilation=5, bias=False)),
                                ("noncontig", dict(x=(2, 3, 7), w=(3, 3, 2))),
                                ("grad", dict(x=(2, 2, 5), w=(2, 2, 3), dilation=2))),
        _make_causal, lambda ns, a, s: ns.causal_conv1d(a["x"], a["weight"], a.get("bias"), **s), _conv_k,
        bwd=lambda ns, cot, out, a, s: ns.causal_conv1d_backward(cot, a["x"], a["weight"], **s)[:2 + ("bias" in a)],
        diff=("x", "weight", "bias"), torch=_torch_causal),
    Row("max_pool2d", _POOL_CASES + _cases(("dilated", dict(x=(1, 2, 9, 8), kernel_size=2, dilation=(2, 3)))),
        _make_pool, _max_pool_fwd, lambda a, s: 1,
        bwd=lambda ns, cot, out, a, s: (ns.max_pool2d_backward(cot, out[1], a["x"].shape),), diff=("x",),
        torch=lambda F, t, a, s: F.max_pool2d(a["x"], s["kernel_size"], s.get("stride"), s.get("padding", 0),
                                              s.get("dilation", 1), s.get("ceil_mode", False))),
    Row("avg_pool2d", _POOL_CASES + _cases(
        ("exclude_pad", dict(x=(2, 3, 7, 6), kernel_size=3, stride=2, padding=1, count_include_pad=False)),
        ("divisor", dict(x=(1, 2, 5, 5), kernel_size=2, divisor_override=3))),
        _make_pool, lambda ns, a, s: ns.avg_pool2d(a["x"], *_avg_pool_args(s)), _window_k,
        bwd=lambda ns, cot, out, a, s: (ns.avg_pool2d_backward(cot, a["x"].shape, *_avg_pool_args(s)),),
        diff=("x",), torch=lambda F, t, a, s: F.avg_pool2d(a["x"], *_avg_pool_args(s))),
    Row("adaptive_avg_pool2d", _cases(("1", dict(x=(1, 1, 1, 1), output_size=1)),
                                      ("odd", dict(x=(2, 3, 7, 9), output_size=(3, 4))),
                                      ("prime", dict(x=(1, 2, 13, 11), output_size=(5, 7))),
                                      ("grow", dict(x=(1, 2, 3, 2), output_size=(5, 3))),
                                      ("unbatched", dict(x=(3, 6, 5), output_size=2)),
                                      ("noncontig", dict(x=(2, 2, 6, 7), output_size=(2, 3))),
                                      ("grad", dict(x=(1, 2, 5, 4), output_size=(2, 3)))),
        _make_pool, lambda ns, a, s: ns.adaptive_avg_pool2d(a["x"], s["output_size"]),
        lambda a, s: a["x"].shape[-1] * a["x"].shape[-2],
        bwd=lambda ns, cot, out, a, s: (ns.adaptive_avg_pool2d_backward(cot, a["x"].shape),), diff=("x",),
        torch=lambda F, t, a, s: F.adaptive_avg_pool2d(a["x"], s["output_size"])),
    Row("cross_entropy", _cases(("1", dict(shape=(1, 1))), ("odd", dict(shape=(7, 5), weighted=True)),
                                ("prime", dict(shape=(3, 11, 5), ignore=True, reduction="sum")),
                                ("none", dict(shape=(5, 13), reduction="none", label_smoothing=0.1)),
                                ("unbatched", dict(shape=(7,), weighted=True)),
                                ("noncontig", dict(shape=(6, 4), ignore=True, label_smoothing=0.2)),
                                ("grad", dict(shape=(4, 3, 2), weighted=True, ignore=True, label_smoothing=0.3))),
        _make_ce, _ce_fwd, lambda a, s: a["input"].size, bwd=_ce_bwd, diff=("input",), cpu_only=("unbatched",),
        torch=lambda F, t, a, s: F.cross_entropy(a["input"], a["target"], a.get("weight"), ignore_index=-100,
                                                 reduction=s["reduction"], label_smoothing=s["label_smoothing"]),
        tol=4.0),
    Row("attention", _cases(("1", dict(_ATTN, tq=1, tk=1, d=1)),
                            ("odd", dict(b=2, hq=3, hkv=3, tq=5, tk=7, d=9)),
                            ("prime", dict(b=1, hq=4, hkv=2, tq=13, tk=17, d=11, dv=7, is_causal=True)),
                            ("mask", dict(b=2, hq=2, hkv=1, tq=6, tk=5, d=8, mask="float", scale=0.3)),
                            ("long", dict(_ATTN, tq=3, tk=131, d=16)),
                            ("noncontig", dict(b=1, hq=2, hkv=2, tq=4, tk=6, d=5)),
                            ("dropout", dict(b=2, hq=2, hkv=1, tq=5, tk=7, d=4, dropout_p=0.3, seed=2 ** 63 + 5)),
                            ("grad", dict(b=1, hq=2, hkv=1, tq=3, tk=4, d=3, dv=2, mask="float", is_causal=True))),
        _make_attention, _attn_fwd, lambda a, s: a["k"].shape[2] * a["q"].shape[3], bwd=_attn_bwd,
        diff=("q", "k", "v"), torch=_torch_attention, no_torch=("dropout",), tol=4.0),
    Row("decode_attention", _cases(("1", dict(_ATTN, tq=1, cache=1, length=1, d=1)),
                                   ("odd", dict(b=2, hq=3, hkv=1, tq=1, cache=9, length=7, d=5)),
                                   ("prime", dict(b=1, hq=4, hkv=2, tq=3, cache=19, length=13, d=7)),
                                   ("noncontig", dict(b=1, hq=2, hkv=2, tq=2, cache=8, length=8, d=6))),
        _make_decode, lambda ns, a, s: ns.decode_attention(a["q"], a["k_cache"], a["v_cache"], s["length"]),
        lambda a, s: s["length"] * a["q"].shape[3], torch=_torch_decode, tol=4.0),
    Row("kv_cache_append", _cases(("1", dict(cache=(1, 1, 1, 1), t=1, offset=0)),
                                  ("odd", dict(cache=(2, 3, 9, 5), t=3, offset=4)),
                                  ("prime", dict(cache=(1, 2, 13, 7), t=0, offset=13))),
        _make_kv, _kv_fwd, lambda a, s: 0),
    Row("rope", _cases(("1", dict(shape=(1, 2))), ("odd", dict(shape=(3, 5, 7, 6), offset=11)),
                       ("prime", dict(shape=(2, 13, 10), offset=997, base=500.0)),
                       ("noncontig", dict(shape=(2, 6, 8))), ("grad", dict(shape=(2, 3, 4), offset=2))),
        _make_rope, lambda ns, a, s: ns.rope(a["x"], s["offset"], s["base"]), lambda a, s: 2,
        bwd=lambda ns, cot, out, a, s: (ns.rope_backward(cot, s["offset"], s["base"]),), diff=("x",), tol=16.0),
    Row("gelu_tanh", _cases(("0", dict(shape=(0,))), ("1", dict(shape=(1,))), ("odd", dict(shape=(3, 5, 7))),
                            ("prime", dict(shape=(1009,))), ("noncontig", dict(shape=(7, 9))),
                            ("grad", dict(shape=(3, 4)))),
        _make_x, lambda ns, a, s: ns.gelu_tanh(a["x"]), lambda a, s: 1,
        bwd=lambda ns, cot, out, a, s: (ns.gelu_tanh_backward(cot, a["x"]),), diff=("x",),
        torch=lambda F, t, a, s: F.gelu(a["x"], approximate="tanh"), tol=4.0),
    Row("gelu_erf", _cases(("0", dict(shape=(0,))), ("1", dict(shape=(1,))), ("odd", dict(shape=(3, 5, 7))),
                           ("prime", dict(shape=(1009,))), ("noncontig", dict(shape=(7, 9))),
                           ("grad", dict(shape=(3, 4)))),
        _make_x, lambda ns, a, s: ns.gelu_erf(a["x"]), lambda a, s: 1,
        bwd=lambda ns, cot, out, a, s: (ns.gelu_erf_backward(cot, a["x"]),), diff=("x",),
        torch=lambda F, t, a, s: F.gelu(a["x"]), tol=4.0),
    Row("erf", _cases(("0", dict(shape=(0,))), ("1", dict(shape=(1,))), ("odd", dict(shape=(3, 5, 7))),
                      ("prime", dict(shape=(1009,))), ("noncontig", dict(shape=(7, 9)))),
        _make_x, lambda ns, a, s: ns.erf(a["x"]), lambda a, s: 1, torch=lambda F, t, a, s: t.erf(a["x"])),
    Row("convert", _cases(("0", dict(shape=(0, 3), via="bfloat16")), ("1", dict(shape=(1,), via="float16")),
                          ("odd", dict(shape=(3, 5, 7), via="bfloat16")), ("prime", dict(shape=(1009,), via="float16")),
                          ("noncontig", dict(shape=(7, 9), via="float16"))),
        _make_convert, _convert_fwd, lambda a, s: 1, cuda=False),
    _lstm_row("lstm_cell", 0),
    _lstm_row("lstm_cell_c", 1),
    Row("gru_cell", _RNN_CASES, _make_gru, lambda ns, a, s: ns.gru_cell_forward(a["gi"], a["gh"], a["h_prev"]),
        lambda a, s: 1, bwd=lambda ns, cot, out, a, s: ns.gru_cell_backward(cot, out[1], a["h_prev"]),
        diff=("gi", "gh", "h_prev"), torch=_torch_gru, tol=4.0),
]

# The recurrent layers' time loops: their rows live beside (they import Row from here).
from op_table_rnn_layer import ROWS as _RNN_LAYER_ROWS  # noqa: E402

ROWS += _RNN_LAYER_ROWS
