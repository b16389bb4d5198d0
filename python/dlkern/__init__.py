"""dlkern: deep-learning kernels in C++ (with optional CUDA) under a thin Python layer.

The performance-critical ops live in the compiled module ``dlkern._C`` (and
``dlkern._C_cuda`` when built with CUDA); :mod:`dlkern.ops` calls them on NumPy arrays.
"""

from . import _C
from ._C import get_num_threads, set_num_threads, get_isa, set_isa, supported_isas
from . import ops

__version__ = _C.build_info()["version"]


def _cuda_info():
    try:
        from . import _C_cuda
    except ImportError:
        return {"built": False}
    info = {"built": True}
    info.update(_C_cuda.build_info())
    try:
        info["available"] = bool(_C_cuda.is_available())
        info["device_count"] = int(_C_cuda.device_count())
    except Exception as exc:  # a broken driver must not break build_info()
        info["available"] = False
        info["error"] = str(exc)
    return info


def build_info():
    """What was compiled and what runs here: version, compiler and flags, the SIMD
    paths compiled/supported/active, OpenMP, thread count, and CUDA (built, version,
    architectures, whether a device is available)."""
    info = dict(_C.build_info())
    info["cuda"] = _cuda_info()
    return info


__all__ = [
    "build_info",
    "get_num_threads",
    "set_num_threads",
    "get_isa",
    "set_isa",
    "supported_isas",
    "ops",
]
