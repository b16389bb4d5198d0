"""Recurrent layers: one Function runs one layer in one direction over the whole
sequence (not one graph node per step).

Forward: the input projection of every step is one GEMM; the time loop is one device
call per layer and direction (``lstm_layer_forward``, ``gru_layer_forward``,
``rnn_layer_forward``: per step one recurrent GEMM and one fused pointwise kernel, the
state, the outputs and what the backward reads written in place). Backward through time:
``*_layer_backward`` gives the pre-activation gradients of every step and the initial
state's; the weight gradients are then a few large GEMMs over all steps. An LSTM with a
projection (proj_size) keeps its loop here, over the cell kernels.

Sequences are time-major rows: x is (N, input), N = sum(batch_sizes), step t owning
batch_sizes[t] consecutive rows (PackedSequence's layout; an unpacked (T, B, input) is
batch_sizes = (B,) * T). Batch sizes never grow, so the rows active at a step are the
first rows of the state; the others keep their state, which makes the final state each
sequence's last valid one and leaves padded steps out of the state and the gradients.

The single output is flat: [output (N, P), h_n (B, P), c_n (B, H) for LSTM], which the
module splits with views (a Function has one output)."""

from ..autograd import Function


def step_rows(batch_sizes, reverse):
    """(start, stop) rows of each step, in processing order."""
    rows, start = [], 0
    for b in batch_sizes:
        rows.append((start, start + b))
        start += b
    return rows[::-1] if reverse else rows


def _nonempty(batch_sizes):
    """The steps with rows: sizes never grow, so only trailing zeros (an empty batch) go."""
    return tuple(b for b in batch_sizes if b)


def _flat_output(dev, n, h0, c0):
    """The flat output array, its (n, P) output view and the state views initialised to
    h0 (and c0): the states are updated in place, ending as h_n (c_n)."""
    B, P = h0.shape
    size = (n + B) * P + (0 if c0 is None else c0.size)
    y = dev.empty((size,), dtype=h0.dtype)
    out = y[:n * P].reshape(n, P)
    h = y[n * P:(n + B) * P].reshape(B, P)
    h[...] = h0
    c = None
    if c0 is not None:
        c = y[(n + B) * P:].reshape(c0.shape)
        c[...] = c0
    return y, out, h, c


def _split_grad(g, n, B, P, H):
    """The output's gradient and copies of h_n's and c_n's (updated in place)."""
    dout = g[:n * P].reshape(n, P)
    dh = g[n * P:(n + B) * P].reshape(B, P).copy()
    dc = None if H is None else g[(n + B) * P:].reshape(B, H).copy()
    return dout, dh, dc


def _transposed(dev, w):
    """w.T as a contiguous copy, made once per sequence: the per-step GEMMs with few rows
    run ~1.4x faster on a plain (k, n) operand than on a transposed one."""
    return None if w is None else dev.contiguous(w.T)


def _input_projection(dev, x, w_ih, bias):
    """x W_ih^T + bias for every step at once; the GEMM accumulates into the broadcast bias
    (a write instead of a second pass over the result)."""
    if bias is None:
        return dev.gemm(x, w_ih, trans_b=True)
    gates = dev.empty((x.shape[0], w_ih.shape[0]), dtype=x.dtype)
    gates[...] = bias
    return dev.gemm(x, w_ih, c=gates, beta=1.0, trans_b=True)


def _weight_grads(dev, need, x, w_ih, dgates, hprev, bias_slots=2, dgates_hh=None):
    """(dx, dW_ih, dW_hh, db_ih, db_hh) from the gate gradients of all steps: large GEMMs
    over every row at once. `need` is needs_input_grad's (x, W_ih, W_hh, b_ih, b_hh)."""
    dgh = dgates if dgates_hh is None else dgates_hh
    dx = dev.gemm(dgates, w_ih) if need[0] else None
    dw_ih = dev.gemm(dgates, x, trans_a=True) if need[1] else None
    dw_hh = dev.gemm(dgh, hprev, trans_a=True) if need[2] else None
    db_ih = dgates.sum(axis=0) if need[3] else None
    db_hh = dgh.sum(axis=0) if need[4] else None
    return dx, dw_ih, dw_hh, db_ih, db_hh


class RNNLayer(Function):
    """Vanilla RNN, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu.
    Arguments: x (N, in), h0 (B, H), W_ih, W_hh, b_ih, b_hh (or None), batch_sizes (a
    tuple of ints), reverse, nonlinearity. Returns [output (N, H), h_n (B, H)] flat."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, nonlinearity):
        dev = ctx.device
        batch_sizes = _nonempty(batch_sizes)
        train = any(ctx.needs_input_grad)
        n = x.shape[0]
        pre = _input_projection(dev, x, w_ih, None if b_ih is None else b_ih + b_hh)
        y, out, h, _ = _flat_output(dev, n, h0, None)
        hprev = dev.empty(out.shape, dtype=out.dtype) if train else None
        dev.rnn_layer_forward(pre, w_hh, h, out, batch_sizes, reverse, nonlinearity, hprev)
        if train:
            # (the activations are kept apart from the output, which the caller may change)
            ctx.saved = (x, w_ih, w_hh, hprev, out.copy(), h0.shape, batch_sizes, reverse, nonlinearity == "relu")
            ctx.has_bias = b_ih is not None  # (for the double backward: a constant bias is not saved)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w_ih, w_hh, hprev, hout, (B, H), batch_sizes, reverse, relu = ctx.saved
        dev = ctx.device
        n = x.shape[0]
        dout, dh, _ = _split_grad(g, n, B, H, None)
        dpre = dev.rnn_layer_backward(dout, dh, hout, w_hh, batch_sizes, reverse, "relu" if relu else "tanh")
        need = ctx.needs_input_grad
        grads = _weight_grads(dev, (need[0], need[2], need[3], need[4], need[5]), x, w_ih, dpre, hprev)
        dx, dw_ih, dw_hh, db_ih, db_hh = grads
        return dx, dh if need[1] else None, dw_ih, dw_hh, db_ih, db_hh, None, None, None


class LSTMLayer(Function):
    """LSTM, gates (i, f, g, o) as PyTorch, with an optional projection h = h_raw W_hr^T.
    Arguments: x (N, in), h0 (B, P), c0 (B, H), W_ih, W_hh, b_ih, b_hh, W_hr (or None),
    batch_sizes, reverse. Returns [output (N, P), h_n (B, P), c_n (B, H)] flat."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse):
        dev = ctx.device
        batch_sizes = _nonempty(batch_sizes)
        train = any(ctx.needs_input_grad)
        n, H = x.shape[0], c0.shape[1]
        gates = _input_projection(dev, x, w_ih, None if b_ih is None else b_ih + b_hh)
        y, out, h, c = _flat_output(dev, n, h0, c0)
        dt = out.dtype
        act_all = c_all = cprev = hprev = hraw = None
        if train:
            c_all, cprev = dev.empty((n, H), dtype=dt), dev.empty((n, H), dtype=dt)
            hprev = dev.empty(out.shape, dtype=dt)
            if w_hr is not None:
                act_all, hraw = dev.empty((n, 4 * H), dtype=dt), dev.empty((n, H), dtype=dt)
        if w_hr is None:
            # the gates become the activated gates, the backward's `act`
            dev.lstm_layer_forward(gates, w_hh, h, c, out, batch_sizes, reverse, c_all, cprev, hprev)
            act_all = gates
        else:
            _lstm_projected_forward(dev, gates, w_hh, w_hr, h, c, out, batch_sizes, reverse,
                                    (act_all, c_all, cprev, hprev, hraw) if train else None)
        if train:
            ctx.saved = (x, w_ih, w_hh, w_hr, act_all, c_all, cprev, hprev, hraw, batch_sizes, reverse)
            ctx.has_bias = b_ih is not None  # (for the double backward)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w_ih, w_hh, w_hr, act_all, c_all, cprev, hprev, hraw, batch_sizes, reverse = ctx.saved
        dev = ctx.device
        n, H = c_all.shape
        P = hprev.shape[1]
        B = (g.shape[0] - n * P) // (P + H)
        dout, dh, dc = _split_grad(g, n, B, P, H)
        dhp_all = None
        if w_hr is None:
            dgates = dev.lstm_layer_backward(dout, dh, dc, act_all, c_all, cprev, w_hh, batch_sizes, reverse)
        else:
            dgates, dhp_all = _lstm_projected_backward(dev, dout, dh, dc, ctx.saved)
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(
            dev, (need[0], need[3], need[4], need[5], need[6]), x, w_ih, dgates, hprev)
        dw_hr = dev.gemm(dhp_all, hraw, trans_a=True) if w_hr is not None and need[7] else None
        return (dx, dh if need[1] else None, dc if need[2] else None, dw_ih, dw_hh, db_ih, db_hh, dw_hr,
                None, None)


class GRULayer(Function):
    """GRU, gates (r, z, n) as PyTorch: n = tanh(x W_in^T + b_in + r (h W_hn^T + b_hn)).
    Arguments: x (N, in), h0 (B, H), W_ih, W_hh, b_ih, b_hh (or None), batch_sizes,
    reverse. Returns [output (N, H), h_n (B, H)] flat."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse):
        dev = ctx.device
        batch_sizes = _nonempty(batch_sizes)
        train = any(ctx.needs_input_grad)
        n, H = x.shape[0], h0.shape[1]
        gi = _input_projection(dev, x, w_ih, b_ih)
        y, out, h, _ = _flat_output(dev, n, h0, None)
        saved_all = dev.empty((n, 4 * H), dtype=out.dtype) if train else None
        hprev = dev.empty(out.shape, dtype=out.dtype) if train else None
        dev.gru_layer_forward(gi, w_hh, b_hh, h, out, batch_sizes, reverse, saved_all, hprev)
        if train:
            ctx.saved = (x, w_ih, w_hh, saved_all, hprev, batch_sizes, reverse)
            ctx.has_bias = b_ih is not None  # (for the double backward)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w_ih, w_hh, saved_all, hprev, batch_sizes, reverse = ctx.saved
        dev = ctx.device
        n, H = hprev.shape
        B = (g.shape[0] - n * H) // H
        dout, dh, _ = _split_grad(g, n, B, H, None)
        dgi_all, dgh_all = dev.gru_layer_backward(dout, dh, saved_all, hprev, w_hh, batch_sizes, reverse)
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(
            dev, (need[0], need[2], need[3], need[4], need[5]), x, w_ih, dgi_all, hprev, dgates_hh=dgh_all)
        return dx, dh if need[1] else None, dw_ih, dw_hh, db_ih, db_hh, None, None


def _lstm_projected_forward(dev, gates, w_hh, w_hr, h, c, out, batch_sizes, reverse, saves):
    """The LSTM loop with a projection h = h_raw W_hr^T (proj_size), over the cell kernels;
    saves (act_all, c_all, cprev, hprev, hraw) or None."""
    w_hh_t, w_hr_t = _transposed(dev, w_hh), _transposed(dev, w_hr)
    for s, e in step_rows(batch_sizes, reverse):
        b = e - s
        hp, cp = h[:b], c[:b]
        if saves is not None:
            saves[3][s:e] = hp
            saves[2][s:e] = cp
        gt = dev.gemm(hp, w_hh_t, c=gates[s:e], beta=1.0)
        hr, cn, act = dev.lstm_cell_forward(gt, cp)
        if saves is not None:
            saves[0][s:e] = act
            saves[1][s:e] = cn
            saves[4][s:e] = hr
        hr = dev.gemm(hr, w_hr_t)
        out[s:e] = hr
        hp[...] = hr
        cp[...] = cn


def _lstm_projected_backward(dev, dout, dh, dc, saved):
    """The projected LSTM's loop backward: (dgates, the gradients reaching each step's h)."""
    x, w_ih, w_hh, w_hr, act_all, c_all, cprev, hprev, hraw, batch_sizes, reverse = saved
    dgates = dev.empty(act_all.shape, dtype=act_all.dtype)
    dhp_all = dev.empty(hprev.shape, dtype=dh.dtype)
    for s, e in step_rows(batch_sizes, not reverse):
        b = e - s
        dhb = dh[:b]
        dhb += dout[s:e]
        dhp_all[s:e] = dhb
        dgt, dcp = dev.lstm_cell_backward(dev.gemm(dhb, w_hr), dc[:b], act_all[s:e], cprev[s:e], c_all[s:e])
        dgates[s:e] = dgt
        dev.gemm(dgt, w_hh, c=dhb)
        dc[:b] = dcp
    return dgates, dhp_all


class PackRows(Function):
    """out[i] = a[index[i]] along axis 0, or a row of `fill` where index[i] == len(a)
    (padding). The backward gathers g by `inverse` (a's row i from g's row inverse[i],
    zero where inverse[i] == len(g)): index is injective, so no scatter-add is needed.
    index and inverse are host int64 arrays."""

    @staticmethod
    def forward(ctx, a, index, inverse, fill):
        dev = ctx.device
        ctx.inverse, ctx.index = inverse, index  # (index: for the double backward)
        src = a
        if fill is not None:
            src = dev.concatenate([a, dev.full((1,) + tuple(a.shape[1:]), fill, dtype=a.dtype)])
        return dev.take(src, dev.to_device(index), 0)

    @staticmethod
    def backward(ctx, g):
        dev = ctx.device
        inverse = ctx.inverse
        if inverse.size and int(inverse.max()) >= g.shape[0]:
            g = dev.concatenate([g, dev.zeros((1,) + tuple(g.shape[1:]), dtype=g.dtype)])
        return dev.take(g, dev.to_device(inverse), 0), None, None, None
