"""nn.SyncBatchNorm: batch norm over the union of every rank's batch (PyTorch's names).

Under data parallelism each rank sees batch/world_size samples. BatchNorm normalizes
each channel with its batch's mean and variance, so per-rank statistics are noisier than
the single-process ones and the running statistics drift apart between ranks.
SyncBatchNorm reduces the statistics (and their gradients) across ranks: N ranks with
batch B train exactly as one process with batch N*B. In eval mode, or in a world of
one rank, it is BatchNorm.
"""

from .. import distributed as _dist
from ..functions.sync_batch_norm import SyncBatchNorm as _SyncBatchNormFn
from .layers import _BatchNorm


def _array(t):
    return None if t is None else t.data


class SyncBatchNorm(_BatchNorm):
    """SyncBatchNorm(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True, process_group=None, device=None, dtype=None): input (N, C, *)
    of any rank >= 2."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype=dtype)
        self.process_group = process_group
        if device is not None:
            self.to(device)

    def _check_input(self, x):
        if x.ndim < 2:
            raise ValueError(f"SyncBatchNorm: expected at least 2D input (got {x.ndim}D input)")
        if x.shape[1] == 0:
            raise ValueError("SyncBatchNorm: number of input channels should be non-zero")
        if x.shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: input has shape {tuple(x.shape)}, expected {self.num_features} "
                             f"channels in dimension 1")

    def _normalize(self, x, running_mean, running_var, use_batch, momentum):
        # PyTorch's rule: synchronize only batch statistics computed in training mode (eval
        # with track_running_stats=False normalizes each rank by its own batch).
        need_sync = (use_batch and self.training and _dist.is_initialized()
                     and _dist.get_world_size(self.process_group) > 1)
        if not need_sync:
            return super()._normalize(x, running_mean, running_var, use_batch, momentum)
        return _SyncBatchNormFn.apply(x, _array(running_mean), _array(running_var), self.weight, self.bias,
                                      momentum, self.eps, self.process_group)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Replace every BatchNorm in `module` (itself included, recursively) by a
        SyncBatchNorm that shares its parameters and buffers (the same objects, so an
        optimizer built before still updates them). Returns the converted module."""
        out = module
        if isinstance(module, _BatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      process_group)
            if module.affine:
                out.weight, out.bias = module.weight, module.bias
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out
