"""dlkern.cuda: the CUDA runtime as PyTorch's ``torch.cuda`` shows it.

Works on every build: without ``dlkern._C_cuda`` (CUDA off at build time) or without a
GPU, ``is_available()`` is False and ``device_count()`` 0; calls that need a device
raise RuntimeError saying which of the two is missing.
"""

import sys
import types

from .devices.cuda import cuda_module as _cuda_module, unavailable_reason as _cuda_unavailable_reason


def is_available():
    """True when dlkern was built with CUDA and a usable device is present."""
    module = _cuda_module()
    return module is not None and bool(module.is_available())


def device_count():
    """Number of visible CUDA devices (0 without CUDA support or a driver)."""
    module = _cuda_module()
    return 0 if module is None else int(module.device_count())


def _require(op):
    reason = _cuda_unavailable_reason()
    if reason:
        raise RuntimeError(f"dlkern.cuda.{op}: {reason}")
    return _cuda_module()


def synchronize():
    """Wait for all work queued on the current device."""
    _require("synchronize").synchronize()


def empty_cache():
    """Return cached, unused device memory to the driver (a no-op without CUDA)."""
    module = _cuda_module()
    if module is not None:
        module.empty_cache()


def memory_allocated(device=None):
    """Bytes held by live device arrays on a device (0 without CUDA)."""
    module = _cuda_module()
    return 0 if module is None else int(module.memory_allocated(_index(device)))


def memory_reserved(device=None):
    """Bytes the caching allocator holds on a device: live arrays plus its cache."""
    module = _cuda_module()
    return 0 if module is None else int(module.memory_reserved(_index(device)))


def _index(device):
    if device is None or isinstance(device, int):
        return device
    index = getattr(device, "index", None)
    if index is not None:
        return index
    text = str(device)
    if text.startswith("cuda"):
        return int(text.split(":")[1]) if ":" in text else None
    raise ValueError(f"expected a CUDA device, got {device!r}")


class _CudaModule(types.ModuleType):
    """Adds ``dlkern.cuda.matmul_allow_tf32`` (PyTorch's
    ``torch.backends.cuda.matmul.allow_tf32``): when True, float32 ``matmul``/``gemm`` on
    CUDA arrays may round their operands to TF32 and use tensor cores (sm_80+). Default
    False. The flag lives in dlkern._C_cuda, so it also governs direct _C_cuda calls;
    without CUDA support it is stored here and has no effect."""

    _allow_tf32_fallback = False

    @property
    def matmul_allow_tf32(self):
        module = _cuda_module()
        if module is None:
            return _CudaModule._allow_tf32_fallback
        return bool(module.get_matmul_allow_tf32())

    @matmul_allow_tf32.setter
    def matmul_allow_tf32(self, value):
        value = bool(value)
        module = _cuda_module()
        if module is None:
            _CudaModule._allow_tf32_fallback = value
        else:
            module.set_matmul_allow_tf32(value)


sys.modules[__name__].__class__ = _CudaModule
