"""Plain NumPy float64 references of every dlkern kernel: the oracle of the op table, the
fuzz suite and the benchmarks' validation, and the base of the CUDA host twin.

The module is a device namespace: each kernel has the name, call signature and return
tuple of ``dlkern.device("cpu").<name>`` (``reference.softmax(x, dim)``,
``reference.conv2d_backward(g, x, w, ...)`` -> (dx, dw, db)), so a test can call the same
row on any device and on this one. Results are float64 whatever the input dtype.

Written from the documented semantics (PyTorch's where dlkern follows it), never calling
dlkern: forwards as direct formulas (a loop over kernel taps and einsum), backwards as the
analytic adjoint of the forward. Nothing here is fast; it is meant to be obviously right.
tests/test_fuzz_ops.py::test_reference_adjoints checks every backward here against central
differences of its forward, so the oracle itself is tested.
"""

import math

import numpy as np

# The kernel names this namespace offers (the CPU namespace's ops, one list).
KERNELS = (
    "matmul", "gemm", "convert",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
    "layer_norm", "layer_norm_forward", "layer_norm_backward", "rms_norm", "rms_norm_forward", "rms_norm_backward",
    "group_norm", "group_norm_forward", "group_norm_backward", "batch_norm", "batch_norm_forward",
    "batch_norm_backward",
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "causal_conv1d", "causal_conv1d_backward",
    "max_pool2d", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "cross_entropy", "cross_entropy_forward", "cross_entropy_backward",
    "attention_forward", "attention_backward", "decode_attention", "kv_cache_append", "rope", "rope_backward",
    "gelu_tanh", "gelu_tanh_backward", "gelu_erf", "gelu_erf_backward", "erf", "sigmoid", "relu",
    "lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward",
    "lstm_layer_forward", "lstm_layer_backward", "gru_layer_forward", "gru_layer_backward",
    "rnn_layer_forward", "rnn_layer_backward",
    "adam_step", "sgd_step",
)


# conv, pooling, cross-entropy and attention live in a second module (one file each
# stays readable); they are part of this namespace.
from ._reference_kernels import *  # noqa: E402,F401,F403
from ._reference_kernels import f64

# ----------------------------------------------------------------------------- matmul


def _into(out, y):
    """y, or y written into the caller's `out` (the kernels' out= argument)."""
    if out is None:
        return y
    out[...] = y
    return out


def matmul(a, b, out=None, out_dtype=None):
    """The exact product (out_dtype, which only picks the kernels' result dtype, is moot)."""
    return _into(out, np.matmul(f64(a), f64(b)))


def gemm(a, b, c=None, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, out_dtype=None):
    """alpha op(a) @ op(b) + beta c; c (when given) is updated in place and returned
    (out_dtype: as matmul)."""
    a, b = f64(a), f64(b)
    y = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if c is None:
        return y
    if beta != 0:
        y = y + beta * f64(c)
    c[...] = y
    return c


def convert(x, dtype, out=None):
    """x rounded to dtype (NumPy's / ml_dtypes' astype: round to nearest even), as float64."""
    return _into(out, np.asarray(x).astype(np.dtype(dtype)).astype(np.float64))


# ----------------------------------------------------------------------------- elementwise


def erf(x):
    x = f64(x)
    return np.vectorize(math.erf, otypes=[np.float64])(x) if x.size else x.copy()


def sigmoid(x):
    x = f64(x)
    e = np.exp(-np.abs(x))  # the two branches of the logistic function: no overflow
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def relu(x):
    return np.maximum(f64(x), 0.0)


_C0, _K = math.sqrt(2.0 / math.pi), 0.044715


def _gelu_sigmoid(x):
    """sigmoid(2z), z = C0 (x + K x^3): 0.5 (1 + tanh(z)) without its cancellation for x < 0."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-2.0 * _C0 * (x + _K * x ** 3)))


def gelu_tanh(x):
    """0.5 x (1 + tanh(z)), written as x sigmoid(2z)."""
    x = f64(x)
    return x * _gelu_sigmoid(x)


def gelu_tanh_backward(grad_out, x):
    x = f64(x)
    s = _gelu_sigmoid(x)
    return f64(grad_out) * (s + x * s * (1.0 - s) * 2.0 * _C0 * (1.0 + 3.0 * _K * x * x))


def gelu_erf(x):
    """The exact GELU, x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))."""
    x = f64(x)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_erf_backward(grad_out, x):
    """grad_out (Phi(x) + x phi(x)), phi the standard normal density."""
    x = f64(x)
    phi = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return f64(grad_out) * (0.5 * (1.0 + erf(x / math.sqrt(2.0))) + x * phi)


# ----------------------------------------------------------------------------- recurrent cells
# The pointwise step of nn.LSTM / nn.GRU around their matrix products; gate order (i, f, g, o)
# and (r, z, n) as PyTorch's.


def lstm_cell_forward(gates, c_prev):
    """-> (h, c, act): act = [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)], c = f c_prev + i g,
    h = o tanh(c)."""
    i, f, g, o = np.split(f64(gates), 4, axis=1)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    with np.errstate(invalid="ignore"):  # 0 * inf, inf - inf: NaN, as in PyTorch
        c = f * f64(c_prev) + i * g
    return o * np.tanh(c), c, np.concatenate([i, f, g, o], axis=1)


def lstm_cell_backward(dh, dc, act, c_prev, c):
    """-> (dgates, dc_prev), dgates w.r.t. the pre-activations."""
    i, f, g, o = np.split(f64(act), 4, axis=1)
    dh, tc = f64(dh), np.tanh(f64(c))
    dc_total = f64(dc) + dh * o * (1.0 - tc * tc)
    di = dc_total * g * i * (1.0 - i)
    df = dc_total * f64(c_prev) * f * (1.0 - f)
    dg = dc_total * i * (1.0 - g * g)
    do = dh * tc * o * (1.0 - o)
    return np.concatenate([di, df, dg, do], axis=1), dc_total * f


def gru_cell_forward(gi, gh, h_prev):
    """-> (h, saved): r = sigmoid(gi_r + gh_r), z = sigmoid(gi_z + gh_z), n = tanh(gi_n + r gh_n),
    h = (1 - z) n + z h_prev; saved = [r, z, n, gh_n]."""
    ir, iz, i_n = np.split(f64(gi), 3, axis=1)
    hr, hz, hn = np.split(f64(gh), 3, axis=1)
    with np.errstate(invalid="ignore"):  # 0 * inf, inf - inf: NaN, as in PyTorch
        r, z = sigmoid(ir + hr), sigmoid(iz + hz)
        n = np.tanh(i_n + r * hn)
        h = (1.0 - z) * n + z * f64(h_prev)
    return h, np.concatenate([r, z, n, hn], axis=1)


def gru_cell_backward(dh, saved, h_prev):
    """-> (dgi, dgh, dh_prev); dh_prev is the direct path dh z only (the caller adds dgh W_hh)."""
    r, z, n, hn = np.split(f64(saved), 4, axis=1)
    dh = f64(dh)
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dz = dh * (f64(h_prev) - n) * z * (1.0 - z)
    dr = dn * hn * r * (1.0 - r)
    return np.concatenate([dr, dz, dn], axis=1), np.concatenate([dr, dz, dn * r], axis=1), dh * z


# ----------------------------------------------------------------------------- recurrent layers
# One layer in one direction over packed time-major rows (step t owns batch_sizes[t] rows,
# sizes non-increasing): a plain loop over the cells above. As the kernels, the state
# (h, c / dh, dc), `out`, the saves and the documented scratch (gates, pre) are written in
# place; the loop runs in float64 on copies and writes them back at the end (pass float64
# arrays for float64 results).


def _step_rows(batch_sizes, reverse):
    ends = np.cumsum([int(b) for b in batch_sizes], dtype=np.int64)
    rows = [(int(e - b), int(e)) for b, e in zip(batch_sizes, ends)]
    return rows[::-1] if reverse else rows


def _write_back(pairs):
    for dst, value in pairs:
        if dst is not None:
            dst[...] = value


def _recurrent(h, w_t):
    with np.errstate(all="ignore"):  # inf * 0 in the product: NaN, as in the kernels
        return h @ w_t


def lstm_layer_forward(gates, w_hh, h, c, out, batch_sizes, reverse=False, c_all=None, c_prev=None, h_prev=None):
    """gates (N, 4H) -> the activated gates; h, c (B, H) -> the final state; out (N, H) each step's h;
    c_all / c_prev / h_prev (N, H): each step's new c and the state before it."""
    act, w, hs, cs = f64(gates).copy(), f64(w_hh), f64(h).copy(), f64(c).copy()
    n, H = act.shape[0], w.shape[1]
    y, ca, cp, hp = (np.zeros((n, H)) for _ in range(4))
    for s, e in _step_rows(batch_sizes, reverse):
        b = e - s
        hp[s:e], cp[s:e] = hs[:b], cs[:b]
        hn, cn, act[s:e] = lstm_cell_forward(act[s:e] + _recurrent(hs[:b], w.T), cs[:b])
        y[s:e], ca[s:e], hs[:b], cs[:b] = hn, cn, hn, cn
    _write_back([(gates, act), (h, hs), (c, cs), (out, y), (c_all, ca), (c_prev, cp), (h_prev, hp)])


def lstm_layer_backward(dout, dh, dc, act, c_all, c_prev, w_hh, batch_sizes, reverse=False):
    """-> dgates (N, 4H); dh, dc (B, H) updated in place to the initial state's gradients."""
    dout, act, c_all, c_prev, w = f64(dout), f64(act), f64(c_all), f64(c_prev), f64(w_hh)
    dhs, dcs = f64(dh).copy(), f64(dc).copy()
    dgates = np.zeros(act.shape)
    for s, e in _step_rows(batch_sizes, not reverse):
        b = e - s
        dg, dcs[:b] = lstm_cell_backward(dhs[:b] + dout[s:e], dcs[:b], act[s:e], c_prev[s:e], c_all[s:e])
        dgates[s:e], dhs[:b] = dg, _recurrent(dg, w)
    _write_back([(dh, dhs), (dc, dcs)])
    return dgates


def gru_layer_forward(gi, w_hh, b_hh, h, out, batch_sizes, reverse=False, saved=None, h_prev=None):
    """gi (N, 3H) = x W_ih^T + b_ih; n = tanh(gi_n + r (h W_hn^T + b_hn)); h (B, H) -> the final state;
    out (N, H); saved (N, 4H) = [r, z, n, h W_hn^T + b_hn], h_prev (N, H)."""
    gi, w, hs = f64(gi), f64(w_hh), f64(h).copy()
    n, H = gi.shape[0], w.shape[1]
    bias = np.zeros(3 * H) if b_hh is None else f64(b_hh)
    y, sv, hp = np.zeros((n, H)), np.zeros((n, 4 * H)), np.zeros((n, H))
    for s, e in _step_rows(batch_sizes, reverse):
        b = e - s
        hp[s:e] = hs[:b]
        hn, sv[s:e] = gru_cell_forward(gi[s:e], _recurrent(hs[:b], w.T) + bias, hs[:b])
        y[s:e], hs[:b] = hn, hn
    _write_back([(h, hs), (out, y), (saved, sv), (h_prev, hp)])


def gru_layer_backward(dout, dh, saved, h_prev, w_hh, batch_sizes, reverse=False):
    """-> (dgi, dgh) (N, 3H); dh (B, H) updated in place to the initial state's gradient."""
    dout, saved, h_prev, w = f64(dout), f64(saved), f64(h_prev), f64(w_hh)
    dhs = f64(dh).copy()
    n, H = h_prev.shape
    dgi, dgh = np.zeros((n, 3 * H)), np.zeros((n, 3 * H))
    for s, e in _step_rows(batch_sizes, not reverse):
        b = e - s
        dgi[s:e], dgh[s:e], direct = gru_cell_backward(dhs[:b] + dout[s:e], saved[s:e], h_prev[s:e])
        dhs[:b] = direct + _recurrent(dgh[s:e], w)
    _write_back([(dh, dhs)])
    return dgi, dgh


def rnn_layer_forward(pre, w_hh, h, out, batch_sizes, reverse=False, nonlinearity="tanh", h_prev=None):
    """pre (N, H) -> pre + h W_hh^T per step; h' = tanh or relu of it; h (B, H) -> the final state;
    out (N, H); h_prev (N, H)."""
    p, w, hs = f64(pre).copy(), f64(w_hh), f64(h).copy()
    y, hp = np.zeros(p.shape), np.zeros(p.shape)
    for s, e in _step_rows(batch_sizes, reverse):
        b = e - s
        hp[s:e] = hs[:b]
        p[s:e] += _recurrent(hs[:b], w.T)
        y[s:e] = relu(p[s:e]) if nonlinearity == "relu" else np.tanh(p[s:e])
        hs[:b] = y[s:e]
    _write_back([(pre, p), (h, hs), (out, y), (h_prev, hp)])


def rnn_layer_backward(dout, dh, out, w_hh, batch_sizes, reverse=False, nonlinearity="tanh"):
    """-> dpre (N, H); dh (B, H) updated in place to the initial state's gradient."""
    dout, y, w, dhs = f64(dout), f64(out), f64(w_hh), f64(dh).copy()
    dpre = np.zeros(y.shape)
    for s, e in _step_rows(batch_sizes, not reverse):
        b = e - s
        d = dhs[:b] + dout[s:e]
        with np.errstate(invalid="ignore"):  # inf * 0: NaN, as in PyTorch
            d = d * (y[s:e] > 0) if nonlinearity == "relu" else d * (1.0 - y[s:e] * y[s:e])
        dpre[s:e], dhs[:b] = d, _recurrent(d, w)
    _write_back([(dh, dhs)])
    return dpre


# ----------------------------------------------------------------------------- softmax


def _max_shift(x, dim):
    """(x's max along dim with -inf for an all -inf slice, that max with 0 there): the
    shift keeps exp finite, and an all -inf slice must not become NaN (-inf - -inf)."""
    m = np.max(x, axis=dim, keepdims=True, initial=-np.inf)
    return m, np.where(np.isneginf(m), 0.0, m)


def softmax(x, dim=-1, out=None):
    """An all -inf slice gives 0; a NaN anywhere in a slice gives NaN."""
    x = f64(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m, m_safe = _max_shift(x, dim)
        e = np.exp(x - m_safe)
        s = np.sum(e, axis=dim, keepdims=True)
        return _into(out, np.where(np.isneginf(m), 0.0, e / np.where(s == 0, 1.0, s)))


def log_softmax(x, dim=-1, out=None):
    """An all -inf slice gives -inf; a NaN anywhere in a slice gives NaN."""
    x = f64(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m, m_safe = _max_shift(x, dim)
        # (x - m) - log(s), not x - (m + log(s)): the latter rounds at the size of m.
        log_s = np.log(np.sum(np.exp(x - m_safe), axis=dim, keepdims=True))
        return _into(out, np.where(np.isneginf(m), -np.inf, (x - m_safe) - log_s))


def softmax_backward(grad_out, y, dim=-1, out=None):
    g, y = f64(grad_out), f64(y)
    return _into(out, y * (g - np.sum(g * y, axis=dim, keepdims=True)))


def log_softmax_backward(grad_out, y, dim=-1, out=None):
    g, y = f64(grad_out), f64(y)
    return _into(out, g - np.exp(y) * np.sum(g, axis=dim, keepdims=True))


# ----------------------------------------------------------------------------- norms


def _norm_dx(gw, xhat, rstd, axes, centered):
    """dx of y = xhat(x) for gradient gw w.r.t. xhat (mean-centred or RMS)."""
    a = np.mean(gw * xhat, axis=axes, keepdims=True)
    if centered:
        return rstd * (gw - np.mean(gw, axis=axes, keepdims=True) - xhat * a)
    return rstd * (gw - xhat * a)


def _trailing(x, normalized_shape):
    k = 1 if np.ndim(normalized_shape) == 0 else len(normalized_shape)
    return k, tuple(range(x.ndim - k, x.ndim)), x.shape[:x.ndim - k]


def layer_norm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd) over the trailing normalized_shape dims; biased variance."""
    x = f64(x)
    _, axes, lead = _trailing(x, normalized_shape)
    mean = x.mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * f64(weight)
    if bias is not None:
        y = y + f64(bias)
    return y, mean.reshape(lead), rstd.reshape(lead)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return layer_norm_forward(x, normalized_shape, weight, bias, eps)[0]


def layer_norm_backward(grad_out, x, normalized_shape, weight, mean, rstd, need_bias=True):
    """(dx, dweight or None, dbias or None)."""
    g, x = f64(grad_out), f64(x)
    k, axes, lead = _trailing(x, normalized_shape)
    mean, rstd = f64(mean).reshape(lead + (1,) * k), f64(rstd).reshape(lead + (1,) * k)
    xhat = (x - mean) * rstd
    gw = g if weight is None else g * f64(weight)
    lead_axes = tuple(range(len(lead)))
    dw = None if weight is None else np.sum(g * xhat, axis=lead_axes)
    return _norm_dx(gw, xhat, rstd, axes, True), dw, np.sum(g, axis=lead_axes) if need_bias else None


def rms_norm_forward(x, normalized_shape, weight=None, eps=None):
    """(y, rstd); eps None is the input dtype's machine epsilon, as PyTorch."""
    eps = float(np.finfo(np.asarray(x).dtype).eps) if eps is None else eps
    x = f64(x)
    _, axes, lead = _trailing(x, normalized_shape)
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps)
    y = x * rstd if weight is None else x * rstd * f64(weight)
    return y, rstd.reshape(lead)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    return rms_norm_forward(x, normalized_shape, weight, eps)[0]


def rms_norm_backward(grad_out, x, normalized_shape, weight, rstd):
    """(dx, dweight or None)."""
    g, x = f64(grad_out), f64(x)
    k, axes, lead = _trailing(x, normalized_shape)
    rstd = f64(rstd).reshape(lead + (1,) * k)
    xhat = x * rstd
    gw = g if weight is None else g * f64(weight)
    dw = None if weight is None else np.sum(g * xhat, axis=tuple(range(len(lead))))
    return _norm_dx(gw, xhat, rstd, axes, False), dw


def _channel(a, ndim):
    return f64(a).reshape((1, -1) + (1,) * (ndim - 2))


def group_norm_forward(x, num_groups, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd), statistics (N, num_groups) over each group's channels and positions."""
    x = f64(x)
    n = x.shape[0]
    xg = x.reshape(n, num_groups, math.prod(x.shape[1:]) // num_groups)
    mean = xg.mean(axis=2, keepdims=True)
    rstd = 1.0 / np.sqrt(((xg - mean) ** 2).mean(axis=2, keepdims=True) + eps)
    y = ((xg - mean) * rstd).reshape(x.shape)
    if weight is not None:
        y = y * _channel(weight, x.ndim)
    if bias is not None:
        y = y + _channel(bias, x.ndim)
    return y, mean.reshape(n, num_groups), rstd.reshape(n, num_groups)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    return group_norm_forward(x, num_groups, weight, bias, eps)[0]


def group_norm_backward(grad_out, x, num_groups, weight, mean, rstd, need_bias=True):
    g, x = f64(grad_out), f64(x)
    n = x.shape[0]
    xg = x.reshape(n, num_groups, math.prod(x.shape[1:]) // num_groups)
    mean, rstd = f64(mean).reshape(n, num_groups, 1), f64(rstd).reshape(n, num_groups, 1)
    xhat = (xg - mean) * rstd
    gw = g if weight is None else g * _channel(weight, x.ndim)
    dx = _norm_dx(gw.reshape(xg.shape), xhat, rstd, (2,), True).reshape(x.shape)
    red = (0,) + tuple(range(2, x.ndim))
    dw = None if weight is None else np.sum(g * xhat.reshape(x.shape), axis=red)
    return dx, dw, np.sum(g, axis=red) if need_bias else None


def batch_norm_running(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """(y, save_mean, save_rstd, new running_mean, new running_var), nothing in place."""
    x = f64(x)
    red = (0,) + tuple(range(2, x.ndim))
    rm, rv = f64(running_mean), f64(running_var)
    if training:
        mean = x.mean(axis=red)
        var = ((x - _channel(mean, x.ndim)) ** 2).mean(axis=red)
        count = x.size // x.shape[1]
        if rm is not None:
            rm = (1 - momentum) * rm + momentum * mean
            rv = (1 - momentum) * rv + momentum * var * count / (count - 1)
    else:
        mean, var = rm, rv
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - _channel(mean, x.ndim)) * _channel(rstd, x.ndim)
    if weight is not None:
        y = y * _channel(weight, x.ndim)
    if bias is not None:
        y = y + _channel(bias, x.ndim)
    return y, mean, rstd, rm, rv


def batch_norm_forward(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                       eps=1e-5):
    """(y, save_mean, save_rstd); in training the running statistics are updated in place
    (unbiased variance), as the kernel does."""
    y, mean, rstd, rm, rv = batch_norm_running(x, running_mean, running_var, weight, bias, training, momentum, eps)
    if training and running_mean is not None:
        running_mean[...], running_var[...] = rm, rv
    return y, mean, rstd


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    return batch_norm_forward(x, running_mean, running_var, weight, bias, training, momentum, eps)[0]


def batch_norm_backward(grad_out, x, weight, save_mean, save_rstd, training, need_bias=True):
    """(dx, dweight or None, dbias or None); eval mode treats the statistics as constants."""
    g, x = f64(grad_out), f64(x)
    red = (0,) + tuple(range(2, x.ndim))
    mean, rstd = _channel(save_mean, x.ndim), _channel(save_rstd, x.ndim)
    xhat = (x - mean) * rstd
    gw = g if weight is None else g * _channel(weight, x.ndim)
    dx = _norm_dx(gw, xhat, rstd, red, True) if training else gw * rstd
    dw = None if weight is None else np.sum(g * xhat, axis=red)
    return dx, dw, np.sum(g, axis=red) if need_bias else None



# ----------------------------------------------------------------------------- optimizer steps
# In place, as the kernels: computed in float64 from the arrays' values, then written
# back into them (in their own dtype). The rules of torch.optim.Adam / AdamW / SGD.


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2, eps, weight_decay,
              decoupled_weight_decay, amsgrad, maximize):
    p, g = f64(param), f64(grad)
    if maximize:
        g = -g
    if decoupled_weight_decay:
        p = p * (1.0 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    m = beta1 * f64(exp_avg) + (1.0 - beta1) * g
    v = beta2 * f64(exp_avg_sq) + (1.0 - beta2) * g * g
    exp_avg[...] = m
    exp_avg_sq[...] = v
    if amsgrad:
        v = np.maximum(f64(max_exp_avg_sq), v)
        max_exp_avg_sq[...] = v
    m_hat = m / (1.0 - beta1 ** step)
    v_hat_sqrt = np.sqrt(v) / math.sqrt(1.0 - beta2 ** step)
    param[...] = p - lr * m_hat / (v_hat_sqrt + eps)


def sgd_step(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay, nesterov, maximize, first):
    p, g = f64(param), f64(grad)
    if maximize:
        g = -g
    g = g + weight_decay * p
    if momentum != 0:
        b = g if first else momentum * f64(momentum_buffer) + (1.0 - dampening) * g
        momentum_buffer[...] = b
        g = g + momentum * b if nesterov else b
    param[...] = p - lr * g
