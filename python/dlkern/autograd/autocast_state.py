"""Autocast's process-wide state, read by Function.apply on every op.

It lives in autograd (not dlkern.amp) so that function.py can read it without importing
the policy code, which needs the Functions. ``active`` is the only thing the hot path
reads: while it is False (no autocast region is enabled for any device type) an op pays
one attribute check. dlkern.amp.autocast sets the rest, and installs ``cast_args``.
"""


class AutocastState:
    # Whether any device type has autocast on (the one flag Function.apply reads).
    active = False
    # device type ("cpu", "cuda") -> the low-precision dtype its autocast computes in, or
    # absent when autocast is off for that type.
    dtypes = {}
    cache_enabled = {}
    # How deep the autocast context managers are nested (enabled or not); the cast cache
    # is dropped when the outermost one exits, as PyTorch.
    depth = 0
    # (id(tensor), dtype, grad mode) -> (tensor, its cast): a leaf parameter is cast once
    # per region. The tensor is kept so that its id cannot be reused while cached.
    cache = {}
    # cast_args(cls, args) -> args with autocast's casts applied (set by dlkern.amp).
    cast_args = None


def autocast_allows_mixed_dtypes():
    """Whether a dtype mismatch between floating tensors is allowed right now: under an
    enabled autocast region ops cast their inputs, so argument checks that would raise a
    dtype-mismatch TypeError let it through (checked only on their error path)."""
    return AutocastState.active
