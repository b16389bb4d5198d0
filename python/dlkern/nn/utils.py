"""Helpers: gradient clipping (torch.nn.utils semantics, implemented in dlkern.optim)
and parameter vectors."""

import numpy as np

from ..optim.clip import clip_grad_norm_, clip_grad_value_  # noqa: F401  (re-exported)


def parameters_to_vector(parameters):
    return np.concatenate([p.data.reshape(-1) for p in parameters])
