"""Random tensors from dlkern's generator (dlkern.generator; seeded by manual_seed), or
from a `generator=` NumPy Generator."""

from .dtypes import as_dtype, float32, float64, float_or_default, int64
from .generator import RNG, default_generator, manual_seed  # noqa: F401  (dlkern.random's RNG API)
from .tensor import Tensor
from .tensor_methods import shape_arg

_from_host = Tensor._from_host


def _sampled_dtype(dt):
    # NumPy samples float32 or float64 directly; other dtypes are cast from float64.
    return dt if dt in (float32, float64) else float64


def randn(*size, dtype=None, device="cpu", requires_grad=False, generator=None):
    rng = generator or RNG.generator
    dt = float_or_default(dtype)
    arr = rng.standard_normal(shape_arg(size), dtype=_sampled_dtype(dt)).astype(dt, copy=False)
    return _from_host(arr, device, requires_grad)


def rand(*size, dtype=None, device="cpu", requires_grad=False, generator=None):
    rng = generator or RNG.generator
    dt = float_or_default(dtype)
    arr = rng.random(shape_arg(size), dtype=_sampled_dtype(dt)).astype(dt, copy=False)
    return _from_host(arr, device, requires_grad)


def randint(low, high=None, size=(), dtype=None, device="cpu", generator=None):
    rng = generator or RNG.generator
    if high is None:
        low, high = 0, low
    return _from_host(rng.integers(low, high, size=size).astype(as_dtype(dtype) or int64), device, False)


def randn_like(t, dtype=None, requires_grad=False):
    return randn(*t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)


def rand_like(t, dtype=None, requires_grad=False):
    return rand(*t.shape, dtype=dtype or t.dtype, device=t.device, requires_grad=requires_grad)
