"""SyncBatchNorm's Function: batch norm whose statistics span every rank's batch.

Forward. Each rank reduces its own batch to per-channel (count, mean, M2), M2 the sum of
squared deviations from the local mean: the batch-norm kernel's training statistics
(shifted two-pass, accumulated in double, returned in the input's compute dtype). One
``all_gather`` of those 2C+1 numbers per rank (as float64) gives every rank the same
table, combined with the pairwise formula (Chan et al.): mean = sum(n_r mean_r) / N,
M2 = sum(M2_r + n_r (mean_r - mean)^2). Unlike one all-reduce of sum(x) and sum(x^2)
this never subtracts two large nearly equal numbers, so the variance keeps the input
dtype's precision when |mean| >> std (float64: 1e-12 at |mean| = 1e3 std, where the sums
would lose 1e-10); the gathered table is tiny (world_size x (2C+1) float64). Every rank then computes the same global statistics
in the same order, so the running statistics stay bit-identical across ranks. The
normalization itself is the batch-norm kernel in eval mode, fed the global mean and
variance.

Backward. dx of batch norm needs two per-channel sums over the whole batch,
sum(dy) and sum(dy * xhat); they are one ``all_reduce`` of 2C numbers. The batch-norm
kernel in eval mode gives this rank's share of both (as its dbias and dweight) and
dy * w * rstd; the rest of dx is one correction term. dweight/dbias stay this rank's
sums, as PyTorch's: DistributedDataParallel averages them with the other gradients.

The collectives run on host arrays, so a CUDA tensor is refused. A world of one rank (no
process group, or a group of one) runs the same arithmetic without collectives.
"""

import numpy as np

from ..autograd.function import Function
from ..dtypes import is_floating, is_low_precision

_OP = "SyncBatchNorm"


def _world_size(group):
    from .. import distributed as dist
    return dist.get_world_size(group) if dist.is_initialized() else 1


def _widen(a):
    """a contiguous, a 16-bit array widened to float32: the batch-norm kernel computes
    16-bit inputs in float32, and so does this op (float32 statistics)."""
    if a is None:
        return None
    return a.astype(np.float32) if is_low_precision(a.dtype) else np.ascontiguousarray(a)


def _checked(x, weight, bias):
    """x, weight and bias widened; refuses what BatchNorm's kernel would refuse, before
    any collective (a rank must not raise alone while the others wait in one)."""
    if not is_floating(x.dtype):
        raise TypeError(f"{_OP}: input must be a floating tensor, got dtype {x.dtype}")
    xc = _widen(x)
    out = [xc]
    for name, p in (("weight", weight), ("bias", bias)):
        p = _widen(p)
        if p is not None and (p.dtype != xc.dtype or p.shape != (x.shape[1],)):
            raise TypeError(f"{_OP}: {name} has dtype {p.dtype} and shape {p.shape}; expected {xc.dtype} "
                            f"(the input's compute dtype) and ({x.shape[1]},)")
        out.append(p)
    return out


def local_moments(device, x):
    """(count, mean, M2) per channel of this rank's contiguous x (N, C, *), in float64.
    The batch-norm kernel's training statistics (a shifted two-pass, accumulated in
    double) with eps=0 give mean and rstd = 1/sqrt(M2/count) exactly enough; the kernel
    refuses fewer than 2 values per channel, which need no arithmetic."""
    c = x.shape[1]
    n = x.size // c if c else 0
    if n <= 1:
        mean = x.reshape(c).astype(np.float64) if n == 1 else np.zeros(c)
        return n, mean, np.zeros(c)
    _, mean, rstd = device.batch_norm_forward(x, None, None, None, None, True, 0.0, 0.0)
    return n, mean.astype(np.float64), n / np.square(rstd.astype(np.float64))


def combine_moments(table):
    """(N, mean, M2) of the union from rows (n_r, mean_r..., M2_r...) of a (R, 2C+1) table."""
    c = (table.shape[1] - 1) // 2
    counts, means, m2s = table[:, 0], table[:, 1:1 + c], table[:, 1 + c:]
    total = float(counts.sum())
    if total == 0:
        return 0.0, np.full(c, np.nan), np.full(c, np.nan)
    mean = (counts[:, None] * means).sum(axis=0) / total
    m2 = (m2s + counts[:, None] * (means - mean) ** 2).sum(axis=0)
    return total, mean, m2


class SyncBatchNorm(Function):
    """apply(x, running_mean, running_var, weight, bias, momentum, eps, process_group):
    training-mode batch norm over the union of all ranks' batches; running statistics
    (arrays or None) updated in place with the global unbiased variance."""

    autocast = "float32"  # as BatchNorm's row in amp/autocast.py: statistics need float32

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, momentum, eps, process_group):
        if ctx.device.type != "cpu":
            raise NotImplementedError(f"{_OP}: not implemented on device '{ctx.device.type}' (cuda): the MPI "
                                      f"collectives need host arrays; move the model and input with .cpu()")
        world = _world_size(process_group)
        xc, weight, bias = _checked(x, weight, bias)
        ct = xc.dtype
        n, mean, m2 = local_moments(ctx.device, xc)
        mine = np.concatenate(([float(n)], mean, m2))
        if world > 1:
            from .. import distributed as dist
            table = np.empty((world, mine.size))
            dist.all_gather_into_tensor(table, mine, group=process_group)
        else:
            table = mine[None]
        total, mean, m2 = combine_moments(table)
        # Every rank sees the same total, so all raise together (no rank left in a collective).
        if total <= 1:
            raise ValueError(f"{_OP}: expected more than 1 value per channel when training, got {int(total)} "
                             f"over {world} rank(s) (input {tuple(x.shape)} on this rank)")
        var = m2 / total
        if running_mean is not None:
            running_mean[...] = (1.0 - momentum) * running_mean.astype(np.float64) + momentum * mean
            running_var[...] = ((1.0 - momentum) * running_var.astype(np.float64)
                                + momentum * var * (total / (total - 1.0)))
        mean_c = mean.astype(ct)
        # Eval mode: the kernel normalizes with the statistics it is given (these, global).
        y, _, rstd = ctx.device.batch_norm_forward(xc, mean_c, var.astype(ct), weight, bias, False, 0.0, eps)
        ctx.saved = (xc, weight, mean_c, rstd)
        ctx.total, ctx.world, ctx.group, ctx.dtype = total, world, process_group, x.dtype
        return y.astype(x.dtype) if is_low_precision(x.dtype) else y

    @staticmethod
    def backward(ctx, g):
        xc, weight, mean, rstd = ctx.saved
        ct = xc.dtype
        channels = xc.shape[1]
        w = np.ones(channels, ct) if weight is None else weight
        gc = _widen(g)
        # Eval-mode backward: dx = g * w * rstd, dw = sum(g * xhat), db = sum(g) (local).
        dx, dw, db = ctx.device.batch_norm_backward(gc, xc, w, mean, rstd, False)
        if ctx.needs_input_grad[0]:
            sums = np.concatenate((db, dw)).astype(np.float64)
            if ctx.world > 1:
                from .. import distributed as dist
                dist.all_reduce(sums, group=ctx.group)
            mean_dy, mean_dy_xhat = sums[:channels] / ctx.total, sums[channels:] / ctx.total
            wr = w.astype(np.float64) * rstd
            # dx = w rstd (g - mean(g) - xhat mean(g xhat)), xhat = (x - mean) rstd: the eval
            # backward gave w rstd g; the rest, b (x - mean) + c per channel, is an affine map
            # of x, which the eval-mode forward computes in one pass (variance 1, eps 0).
            b = (-wr * rstd * mean_dy_xhat).astype(ct)
            c = (-wr * mean_dy).astype(ct)
            corr, _, _ = ctx.device.batch_norm_forward(xc, mean, np.ones(channels, ct), b, c, False, 0.0, 0.0)
            dx += corr
            dx = dx.astype(ctx.dtype) if is_low_precision(ctx.dtype) else dx
        else:
            dx = None
        dweight = dw if weight is not None and ctx.needs_input_grad[3] else None
        dbias = db if ctx.needs_input_grad[4] else None
        return dx, None, None, dweight, dbias, None, None, None
