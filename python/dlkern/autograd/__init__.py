"""Autograd: grad mode, the Function base class and the backward engine.

A differentiable op is one ``Function`` subclass with ``forward(ctx, *arrays)`` and
``backward(ctx, grad)`` side by side. ``Function.apply`` unwraps Tensors to arrays, runs
the forward and, when any input requires grad and grad mode is on, records the ctx as
the output's ``grad_fn`` (the ctx *is* the graph node). ``backward`` walks the graph
without recursion. Tensor hooks and anomaly mode: hooks.py; ``grad`` and ``gradcheck``:
functional.py. ``create_graph=True`` (higher-order gradients) runs a separate engine path,
higher.py, on each Function's ``backward_graph`` (functions/double_backward*.py);
``functional.{vjp, jvp, jacobian, hessian, hvp, vhp}``: jacobians.py.
"""

from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .function import Function, TensorBase
from .engine import backward
from .hooks import RemovableHandle, detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from .functional import GradcheckError, grad, gradcheck

__all__ = ["Function", "TensorBase", "backward", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "grad", "gradcheck", "GradcheckError", "detect_anomaly", "set_detect_anomaly", "is_anomaly_enabled",
           "RemovableHandle"]
