"""The device namespaces, as dlkern.device has always exported them; they live in
dlkern.devices (one module per device)."""

from .devices import CPUDevice, CUDADevice, array_namespace, cpu, device  # noqa: F401
from .devices.cuda import cuda_module as _cuda_module, unavailable_reason as _cuda_unavailable_reason  # noqa: F401
