"""Double backward of the recurrent layers (RNNLayer, LSTMLayer, GRULayer) and PackRows
(see double_backward.py for the convention).

The fused layers run a whole sequence in one Function; their backward_graph recomputes
the recurrence step by step as Tensor ops (the cell formulas of functions/rnn.py's
docstrings, PyTorch's gate orders) and differentiates that with create_graph. Only the
create_graph path pays for one graph node per step. The initial states are rebuilt from
the saved per-step states when they need no gradient; a bias that needs none is not
saved by the forward, so that case stays first order."""

from ..autograd.higher import _fallback, const
from . import double_backward as _db
from . import activation as _act
from . import linalg as _la
from . import rnn as _rnn
from . import shape as _sh
from .double_backward_conv import LinearMap
from .double_backward_nn import _via_composite

_attach = _db._attach


def _initial(dev, saved_prev, batch_sizes, reverse, rows):
    """The initial state (rows, width) read back from the per-step previous states: row j
    is what the first processed step holding row j read."""
    out = dev.empty((rows, saved_prev.shape[1]), dtype=saved_prev.dtype)
    filled = 0
    for s, e in _rnn.step_rows(batch_sizes, reverse):
        if e - s > filled:
            out[filled:e - s] = saved_prev[s + filled:e]
            filled = e - s
    return out


def _rows(t, lo, hi):
    return _sh.GetItem.apply(t, (slice(lo, hi),))


def _recur(x_proj, states, batch_sizes, reverse, cell):
    """Run `cell(gates_rows, states_rows) -> (output rows, new states rows)` over the steps;
    rows beyond a step's batch keep their state. Returns the flat [output, *final states]."""
    outs = {}
    for s, e in _rnn.step_rows(batch_sizes, reverse):
        b = e - s
        head = [_rows(st, 0, b) for st in states]
        out, new = cell(_rows(x_proj, s, e), head)
        outs[s] = out
        states = [n if st.data.shape[0] == b else _sh.Cat.apply(0, n, _rows(st, b, st.data.shape[0]))
                  for n, st in zip(new, states)]
    parts = [outs[s] for s in sorted(outs)] + states
    return _sh.Cat.apply(0, *(_sh.Reshape.apply(p, (-1,)) for p in parts))


def _gates(t, hid, count):
    """The `count` gate blocks (columns k*hid .. (k+1)*hid) of t."""
    return [_sh.GetItem.apply(t, (slice(None), slice(k * hid, (k + 1) * hid))) for k in range(count)]


def _mm_t(a, w):
    return _la.MatMul.apply(a, _db._mT(w))


def _arg(ctx, i, array, g):
    p = ctx.parents[i]
    return p if p is not None else (None if array is None else const(g, array))


@_attach(_rnn.RNNLayer)
def _rnn_layer(ctx, g):
    x, w_ih, w_hh, hprev, _, (B, H), batch_sizes, reverse, relu = ctx.saved
    p = ctx.parents
    if ctx.has_bias and (p[4] is None or p[5] is None):
        return _fallback(ctx, g)  # a constant bias: its value was not kept
    h0 = _arg(ctx, 1, _initial(ctx.device, hprev, batch_sizes, reverse, B), g)
    W_ih, W_hh = _arg(ctx, 2, w_ih, g), _arg(ctx, 3, w_hh, g)

    def composite(X, H0, Wi, Wh, Bi, Bh, *_):
        proj = _mm_t(X, Wi)
        if Bi is not None:
            proj = proj + Bi + Bh

        def cell(pre, states):
            z = pre + _mm_t(states[0], Wh)
            h = _act.Relu.apply(z) if relu else z.tanh()
            return h, [h]
        return _recur(proj, [H0], batch_sizes, reverse, cell)

    return _via_composite(ctx, g, composite, (_arg(ctx, 0, x, g), h0, W_ih, W_hh, p[4], p[5], None, None, None))


@_attach(_rnn.GRULayer)
def _gru_layer(ctx, g):
    x, w_ih, w_hh, _, hprev, batch_sizes, reverse = ctx.saved
    p = ctx.parents
    if ctx.has_bias and (p[4] is None or p[5] is None):
        return _fallback(ctx, g)
    B = g.data.shape[0] // hprev.shape[1] - hprev.shape[0]
    h0 = _arg(ctx, 1, _initial(ctx.device, hprev, batch_sizes, reverse, B), g)
    hid = hprev.shape[1]

    def composite(X, H0, Wi, Wh, Bi, Bh, *_):
        gi = _mm_t(X, Wi)
        if Bi is not None:
            gi = gi + Bi

        def cell(gi_rows, states):
            h = states[0]
            gh = _mm_t(h, Wh)
            if Bh is not None:
                gh = gh + Bh
            ir, iz, in_ = _gates(gi_rows, hid, 3)
            hr, hz, hn = _gates(gh, hid, 3)
            r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
            n = (in_ + r * hn).tanh()
            h_new = (1 - z) * n + z * h
            return h_new, [h_new]
        return _recur(gi, [H0], batch_sizes, reverse, cell)

    return _via_composite(ctx, g, composite, (_arg(ctx, 0, x, g), h0, _arg(ctx, 2, w_ih, g), _arg(ctx, 3, w_hh, g),
                                              p[4], p[5], None, None))


@_attach(_rnn.LSTMLayer)
def _lstm_layer(ctx, g):
    x, w_ih, w_hh, w_hr, _, c_all, cprev, hprev, _, batch_sizes, reverse = ctx.saved
    p = ctx.parents
    if ctx.has_bias and (p[5] is None or p[6] is None):
        return _fallback(ctx, g)
    n, hid = c_all.shape
    proj = hprev.shape[1]
    B = (g.data.shape[0] - n * proj) // (proj + hid)
    dev = ctx.device
    h0 = _arg(ctx, 1, _initial(dev, hprev, batch_sizes, reverse, B), g)
    c0 = _arg(ctx, 2, _initial(dev, cprev, batch_sizes, reverse, B), g)

    def composite(X, H0, C0, Wi, Wh, Bi, Bh, Wr, *_):
        gates = _mm_t(X, Wi)
        if Bi is not None:
            gates = gates + Bi + Bh

        def cell(rows, states):
            h, c = states
            z = rows + _mm_t(h, Wh)
            i, f, gg, o = _gates(z, hid, 4)
            c_new = f.sigmoid() * c + i.sigmoid() * gg.tanh()
            h_new = o.sigmoid() * c_new.tanh()
            if Wr is not None:
                h_new = _mm_t(h_new, Wr)
            return h_new, [h_new, c_new]
        return _recur(gates, [H0, C0], batch_sizes, reverse, cell)

    args = (_arg(ctx, 0, x, g), h0, c0, _arg(ctx, 3, w_ih, g), _arg(ctx, 4, w_hh, g), p[5], p[6],
            _arg(ctx, 7, w_hr, g), None, None)
    return _via_composite(ctx, g, composite, args)


@_attach(_rnn.PackRows)
def _pack_rows(ctx, g):
    # out[i] = a[index[i]] (or padding); index is injective, so the transpose of the
    # backward's gather by `inverse` is the forward's gather by `index` (padding rows 0).
    backward, index = _rnn.PackRows.backward, ctx.index

    def run(dev, g):
        return backward(ctx, g)[0]

    def transposed(dev, u):
        if index.size and int(index.max()) >= u.shape[0]:
            u = dev.concatenate([u, dev.zeros((1,) + tuple(u.shape[1:]), dtype=u.dtype)])
        return dev.take(u, dev.to_device(index), 0)

    return LinearMap.apply(g, run, transposed), None, None, None
