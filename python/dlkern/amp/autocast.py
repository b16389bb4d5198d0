"""dlkern.autocast: mixed precision by op policy, as torch.autocast.

Inside an enabled region every Function.apply casts its tensor inputs by the policy of
its class (the ``autocast`` class attribute, set from the table below):

- "lower": the GEMM-bound ops (matmul, linear, conv, attention, bmm/baddbmm, einsum) run
  in the region's 16-bit dtype: float32/16-bit inputs are cast to it (float64 is left
  alone, as PyTorch);
- "float32": ops whose accuracy needs the range or the accumulation (softmax,
  log_softmax, the norms, every loss, exp/log/pow, sums, means, variances, scans, norms)
  get their 16-bit inputs in float32;
- "promote" (every other op, the default): run in their inputs' dtype; floating inputs of
  different dtypes are cast to the widest (bfloat16 with float16 -> float32), as PyTorch's
  type promotion. Outside autocast dlkern keeps refusing mixed dtypes.

The casts are the differentiable Cast Function, so gradients reach float32 master
parameters in float32. A leaf that requires grad is cast once per region (the cast
cache), dropped when the outermost region exits.

dlkern follows PyTorch's CUDA policy on both device types: PyTorch's CPU list leaves
softmax, the norms, exp/log and sums in bfloat16, but dlkern's 16-bit kernels compute
in float32 anyway, so keeping their outputs in float32 costs one cast and keeps the
softmax/norm statistics and the loss exact to float32.
"""

import functools

from .. import functions as _F
from ..autograd import TensorBase
from ..autograd.autocast_state import AutocastState
from ..autograd.grad_mode import GradMode
from ..dtypes import as_dtype, bfloat16, float16, float32, float64, is_floating

LOWER, FLOAT32, PROMOTE = "lower", "float32", "promote"

# The policy table: PyTorch's autocast lists, for the Functions dlkern has.
_POLICY = {
    LOWER: ("MatMul", "Linear", "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d",
            "ScaledDotProductAttention", "MultiHeadAttention", "BaddBmm", "Einsum"),
    FLOAT32: ("Softmax", "LogSoftmax", "LayerNorm", "GroupNorm", "RMSNorm", "BatchNorm",
              "CrossEntropy", "NLLLoss", "BinaryCrossEntropy", "SoftCrossEntropy",
              "Exp", "Log", "Pow", "Softplus", "Sum", "Mean", "Var", "LogSumExp",
              "CumSum", "CumProd", "Prod", "VectorNorm"),
    # The casts themselves, and the nodes that only route tensors.
    None: ("Cast", "ToDevice"),
}
for _policy, _names in _POLICY.items():
    for _name in _names:
        setattr(getattr(_F, _name), "autocast", _policy)

# The dtypes autocast computes in, and each device type's default (PyTorch's).
_SUPPORTED = (bfloat16, float16)
_DEFAULT_DTYPE = {"cpu": bfloat16, "cuda": float16}


def _cast(t, dtype):
    return _F.Cast.apply(t, dtype)


def _cast_cached(t, dtype):
    """t cast to dtype, once per region for a float32 leaf that requires grad (a
    parameter used by several ops, or every step of an unrolled loop)."""
    key = (id(t), dtype, GradMode.enabled)
    hit = AutocastState.cache.get(key)
    if hit is None:
        hit = AutocastState.cache[key] = (t, _cast(t, dtype))
    return hit[1]


def _cast_args(cls, args):
    """args with the casts of cls's policy applied (Function.apply calls this only while
    some autocast region is enabled)."""
    policy = cls.autocast
    if policy is None:
        return args
    if policy == PROMOTE:  # (most ops: kept cheapest, the device is looked at only if mixed)
        return _promote(args)
    device = None
    for a in args:
        if isinstance(a, TensorBase):
            device = a.device
            break
    if device is None:
        return args
    target = AutocastState.dtypes.get(device.type)
    if target is None:  # autocast is on for another device type only
        return args
    out = None
    if policy == LOWER:
        cache = AutocastState.cache_enabled.get(device.type)
        for i, a in enumerate(args):
            if isinstance(a, TensorBase):
                dt = a.data.dtype
                if dt != target and dt != float64 and is_floating(dt):
                    if out is None:
                        out = list(args)
                    leaf_param = cache and dt == float32 and a.requires_grad and a.grad_fn is None
                    out[i] = _cast_cached(a, target) if leaf_param else _cast(a, target)
    else:  # FLOAT32
        for i, a in enumerate(args):
            if isinstance(a, TensorBase) and (a.data.dtype == bfloat16 or a.data.dtype == float16):
                if out is None:
                    out = list(args)
                out[i] = _cast(a, float32)
    return args if out is None else tuple(out)


def _promote(args):
    """args with floating tensors of different dtypes cast to the widest (unchanged when
    they agree, or when autocast is off for their device type)."""
    first = widest = device = None
    mixed = False
    for a in args:
        if isinstance(a, TensorBase):
            dt = a.data.dtype
            if first is None:
                if is_floating(dt):
                    first = widest = dt
                    device = a.device
            elif dt != first and is_floating(dt):
                mixed = True
                widest = _wider(widest, dt)
    if not mixed or AutocastState.dtypes.get(device.type) is None:
        return args
    return tuple(_cast(a, widest) if isinstance(a, TensorBase) and is_floating(a.data.dtype)
                 and a.data.dtype != widest else a for a in args)


def _wider(a, b):
    """PyTorch's promotion of two floating dtypes (bfloat16 and float16 meet at float32)."""
    if a == b:
        return a
    if a == float64 or b == float64:
        return float64
    return float32


def _update_active():
    AutocastState.active = any(dt is not None for dt in AutocastState.dtypes.values())


AutocastState.cast_args = _cast_args


class autocast:
    """Context manager and decorator: ops inside compute by autocast's policy (see the
    module docstring). ``device_type`` "cpu" or "cuda" (each has its own state; an op is
    cast when its tensors are on that type); ``dtype`` bfloat16 or float16 (default: the
    device type's, bfloat16 on cpu and float16 on cuda, as PyTorch); ``enabled=False``
    turns autocast off inside an enclosing region; ``cache_enabled`` keeps one cast of
    each float32 leaf that requires grad per region. Nestable; thread-global (the
    training loops here are single-threaded, as GradMode)."""

    def __init__(self, device_type="cpu", dtype=None, enabled=True, cache_enabled=True):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        if device_type not in _DEFAULT_DTYPE:
            raise RuntimeError(f"autocast: unsupported device_type {device_type!r}; dlkern supports 'cpu' and 'cuda'")
        if not isinstance(enabled, bool):
            raise TypeError(f"autocast: enabled must be a bool, got {type(enabled).__name__}")
        fast = _DEFAULT_DTYPE[device_type] if dtype is None else as_dtype(dtype)
        if enabled and fast not in _SUPPORTED:
            # (PyTorch warns and turns autocast off; a silent float32 run hides the mistake)
            raise ValueError(f"autocast: dtype must be dlkern.bfloat16 or dlkern.float16 on "
                             f"{device_type}, got {fast}")
        self.device = device_type
        self.fast_dtype = fast
        self._enabled = enabled
        self._cache_enabled = bool(cache_enabled)
        self._saved = []  # a stack, so one instance may be re-entered (a recursive decorated fn)

    def __enter__(self):
        dev = self.device
        self._saved.append((AutocastState.dtypes.get(dev), AutocastState.cache_enabled.get(dev)))
        AutocastState.dtypes[dev] = self.fast_dtype if self._enabled else None
        AutocastState.cache_enabled[dev] = self._cache_enabled
        AutocastState.depth += 1
        _update_active()
        return self

    def __exit__(self, *exc):
        dev = self.device
        AutocastState.dtypes[dev], AutocastState.cache_enabled[dev] = self._saved.pop()
        AutocastState.depth -= 1
        if AutocastState.depth == 0:
            AutocastState.cache.clear()
        _update_active()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)
        return wrapper

    def __repr__(self):
        return f"autocast(device_type={self.device!r}, dtype={self.fast_dtype}, enabled={self._enabled})"


def is_autocast_enabled(device_type="cpu"):
    """Whether ops on device_type are autocast right now."""
    return AutocastState.dtypes.get(device_type) is not None


def get_autocast_dtype(device_type="cpu"):
    """The dtype autocast uses on device_type (the default when no region is active)."""
    return AutocastState.dtypes.get(device_type) or _DEFAULT_DTYPE[device_type]


def clear_autocast_cache():
    """Drops the cached casts of leaf tensors (exiting the outermost region does this)."""
    AutocastState.cache.clear()
