"""Device namespaces: one object per device with the same function names
(``dev.matmul``, ``dev.exp``, ``dev.softmax_forward``, ``dev.conv2d_backward``, ...), so
autograd and nn code call ``ctx.device.<name>`` and never branch on the device.

The CPU namespace (devices.cpu) maps names to NumPy functions and to the ``dlkern.ops``
kernels (looked up on use, so kernels merged later are picked up); a name with no kernel
raises NotImplementedError naming the op and the device. The CUDA namespace
(devices.cuda; ``device("cuda")``, only when a GPU is present) maps the names that have
CUDA kernels to ``dlkern._C_cuda``, whose arrays are ``DeviceArray``; the rest raise the
same way.
"""

import numpy as np

from .cpu import CPUDevice, cpu
from .cuda import CUDADevice, cuda_device, cuda_module, namespace_of_array

__all__ = ["device", "array_namespace", "cpu", "CPUDevice", "CUDADevice"]


def array_namespace(x):
    """The device namespace that computes on array x (cpu for NumPy arrays; for a
    dlkern._C_cuda array the same object dlkern.device("cuda:N") returns)."""
    if isinstance(x, np.ndarray):
        return cpu
    module = cuda_module()
    if module is not None and type(x) is module.DeviceArray:
        return cuda_device(x.device)
    dev = namespace_of_array.get((type(x), getattr(x, "device", None)))
    if dev is None:
        raise TypeError(f"no device namespace computes on {type(x).__name__} arrays")
    return dev


def device(spec="cpu"):
    """The device namespace for "cpu", "cuda" or "cuda:<index>" (or a device object).
    "cuda" raises RuntimeError saying why when CUDA is not built or no GPU is present."""
    if isinstance(spec, (CPUDevice, CUDADevice)):
        return spec
    if spec is None:
        return cpu
    if not isinstance(spec, str):
        spec_type = getattr(spec, "type", None)
        if spec_type is None:
            raise TypeError(f"device must be a string like 'cpu' or a device, got {type(spec).__name__}")
        spec = str(spec)
    kind = spec.split(":")[0].strip().lower()
    if kind == "cpu":
        return cpu
    if kind == "cuda":
        return cuda_device(spec)
    raise ValueError(f"unknown device {spec!r}; expected 'cpu' or 'cuda'")
