"""dlkern.optim: optimizers, learning-rate schedulers, gradient clipping and
regularisation penalties, shaped like torch.optim."""

from .optimizer import Optimizer
from .sgd import SGD
from .adagrad import Adagrad
from .rmsprop import RMSprop
from .adam import Adam, AdamW
from .radam import RAdam
from .clip import clip_grad_norm_, clip_grad_value_
from .regularization import l1_penalty, l2_penalty
from . import lr_scheduler
from .lr_scheduler import scale_lr

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RAdam", "clip_grad_norm_",
           "clip_grad_value_", "l1_penalty", "l2_penalty", "lr_scheduler", "scale_lr"]

# ---- issue 15: L-BFGS
from .lbfgs import LBFGS  # noqa: E402

__all__ += ["LBFGS"]
# ---- end issue 15: L-BFGS

# ---- issue 15: Newton
from .newton import Newton  # noqa: E402

__all__ += ["Newton"]
# ---- end issue 15: Newton
