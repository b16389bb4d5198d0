"""Fused optimizer steps: one pass over a parameter and its state, in place.

``adam_step`` and ``sgd_step`` are the compiled functions themselves, with the CUDA
module's signatures (tests/test_kernel_names.py compares them); ``dlkern.optim.Adam``,
``AdamW`` and ``SGD`` call them through the device's ``fused(name)`` when every array is
contiguous and of one float dtype, and compose NumPy operations otherwise.

- ``adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step, lr, beta1, beta2,
  eps, weight_decay, decoupled_weight_decay, amsgrad, maximize)``: one Adam/AdamW step
  (``step`` counts from 1; ``max_exp_avg_sq`` is read and written only with amsgrad).
- ``sgd_step(param, grad, momentum_buffer, *, lr, momentum, dampening, weight_decay,
  nesterov, maximize, first)``: one SGD step; ``first=True`` sets the momentum buffer to
  the gradient (PyTorch's first momentum step); the buffer is untouched without momentum.

Arrays: float32 or float64, one dtype and shape, C-contiguous, the written ones
writeable; a 16-bit array is refused (an optimizer keeps float32 master weights).
"""

from .. import _C

__all__ = ["adam_step", "sgd_step"]

adam_step = _C.adam_step
sgd_step = _C.sgd_step
