"""Helpers: gradient clipping (torch.nn.utils semantics, implemented in dlkern.optim)
and parameter vectors."""

from ..device import array_namespace
from ..optim.clip import clip_grad_norm_, clip_grad_value_  # noqa: F401  (re-exported)


def parameters_to_vector(parameters):
    """Every parameter flattened into one array (on the parameters' device)."""
    arrays = [p.data.reshape(-1) for p in parameters]
    return array_namespace(arrays[0]).concatenate(arrays)

# --- issue 14: dlkern.nn.utils.rnn (importable as a submodule, like os.path) ---
import sys as _sys  # noqa: E402

from . import rnn_utils as rnn  # noqa: E402

_sys.modules[__name__ + ".rnn"] = rnn
# --- end issue 14 ---
