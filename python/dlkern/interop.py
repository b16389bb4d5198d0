"""Arrays of other libraries: dlkern.from_dlpack (PyTorch tensors, NumPy arrays and
anything else with ``__dlpack__``, sharing memory) and ``host_array``, the NumPy array
behind a value that load_state_dict or dlkern.save receives (a dlkern Tensor, a NumPy
array, a PyTorch tensor or Parameter). The export side is Tensor.__dlpack__."""

import numpy as np

from .devices import cpu as _cpu, device as _get_device
from .dtypes import as_dtype
from .tensor import Tensor

_DLPACK_CPU = 1  # DLPack's kDLCPU


def from_dlpack(ext_tensor, *, device=None, copy=None):
    """A tensor sharing memory with `ext_tensor` (an object with ``__dlpack__`` on the
    CPU: a PyTorch tensor, a NumPy array, a dlkern Tensor), as torch.from_dlpack.
    copy=True always copies; `device` other than the CPU copies there (copy=False then
    raises ValueError). A PyTorch tensor that requires grad is refused (BufferError, as
    PyTorch): detach it first."""
    if not hasattr(ext_tensor, "__dlpack__"):
        raise TypeError(f"from_dlpack: expected an object with __dlpack__ (a PyTorch tensor, a NumPy array), "
                        f"got {type(ext_tensor).__name__}")
    kind, _ = ext_tensor.__dlpack_device__()
    if int(kind) != _DLPACK_CPU:
        raise BufferError(f"from_dlpack: only CPU memory can be imported, the object lives on DLPack device "
                          f"type {int(kind)}; copy it to the CPU first")
    target = _cpu if device is None else _get_device(device)
    if target is not _cpu and copy is False:
        raise ValueError(f"from_dlpack: moving to {target} needs a copy, but copy=False was given")
    try:
        array = np.from_dlpack(ext_tensor)
    except (RuntimeError, TypeError) as exc:  # NumPy's words for a dtype it lacks (bfloat16)
        raise TypeError(f"from_dlpack: NumPy can't hold this {type(ext_tensor).__name__}'s dtype "
                        f"{getattr(ext_tensor, 'dtype', '')} ({exc}); convert it first, e.g. .float()") from None
    if copy:
        array = array.copy()
    out = Tensor._make(array, _cpu, False, None)
    return out if target is _cpu else out.to(target)


def _is_bfloat16(value):
    return str(getattr(value, "dtype", "")) in ("torch.bfloat16", "bfloat16")


def host_array(value, what="value"):
    """The NumPy array behind `value`: a dlkern Tensor's array (a device tensor copied to
    the host), a NumPy array itself, or a foreign tensor through DLPack (PyTorch's
    bfloat16 upcast to float32, which holds every bfloat16 exactly; a tensor that
    requires grad read through its detach()). Anything else goes through np.asarray."""
    if isinstance(value, Tensor):
        return value.data if value.device is _cpu else value.data.numpy()
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__") and hasattr(value, "__dlpack_device__"):
        if getattr(value, "requires_grad", False) and hasattr(value, "detach"):
            value = value.detach()  # reading the values only: no autograd to protect
        if _is_bfloat16(value) and hasattr(value, "float"):
            value = value.float()   # NumPy has no bfloat16
        try:
            return np.from_dlpack(value)
        except (BufferError, TypeError, RuntimeError) as exc:
            raise TypeError(f"{what}: can't read a {type(value).__name__} as a host array ({exc})") from None
    return np.asarray(value)


def as_tensor(data, dtype=None, device=None):
    """`data` as a tensor, sharing memory when it can, as torch.as_tensor: a Tensor of
    that dtype and device is returned itself, a NumPy array or an object with
    ``__dlpack__`` (a PyTorch tensor) is shared; a dtype or device change, or other data
    (lists, numbers), makes a copy (dlkern.tensor's dtype rules)."""
    dtype = as_dtype(dtype)
    if isinstance(data, Tensor):
        out = data
    elif isinstance(data, np.ndarray):
        out = Tensor._make(data, _cpu, False, None)
    elif hasattr(data, "__dlpack__") and not isinstance(data, np.generic):
        out = from_dlpack(data)
    else:
        return Tensor(data, dtype=dtype, device="cpu" if device is None else device)
    if dtype is not None and out.dtype != dtype:
        out = out.to(dtype)
    if device is not None:
        out = out.to(device)
    return out
