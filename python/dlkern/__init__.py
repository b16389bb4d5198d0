"""dlkern: deep-learning kernels in C++ (with optional CUDA) under a thin Python layer.

The performance-critical ops live in the compiled module ``dlkern._C`` (and
``dlkern._C_cuda`` when built with CUDA); :mod:`dlkern.ops` calls them on NumPy arrays.
"""

import importlib as _importlib

from . import _openmp_env
# Imported through _openmp_env: the OpenMP runtime reads its wait policy when _C loads it.
_C = _openmp_env.load_extension(lambda: _importlib.import_module("._C", __name__))
from ._C import get_num_threads, set_num_threads, get_isa, set_isa, supported_isas
from . import ops
from . import device as _device_module
from .device import device, cpu
from .autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, Function
from .dtypes import float32, float64, float16, bfloat16, half, int32, int64, long, bool_
from .generator import manual_seed
from .tensor import Tensor
from .creation import (tensor, from_numpy, zeros, ones, empty, full, arange, zeros_like, ones_like, empty_like,
                       full_like, cat, concatenate, stack, split, chunk, where)
from .random import randn, rand, randint, randn_like, rand_like
from .tensor_functions import (matmul, gelu, exp, log, sqrt, abs, clamp, tanh, sigmoid, relu, selu, softplus, silu,
                               sum, mean, max, min, amax, amin, var, std, logsumexp, argmax, argmin, reshape,
                               transpose, permute, flatten, squeeze, unsqueeze, softmax, log_softmax, sin, cos,
                               maximum, minimum, masked_fill, tril, triu)
# --- math breadth (issue 13)
from .tensor_functions import (add, sub, cumsum, cumprod, prod, norm, einsum, bmm, baddbmm, outer, any, all, lerp)
from . import linalg
# --- end math breadth
from .tensor_functions import erf
from . import nn
from . import optim, data
from . import utils
from . import cuda
# ---- mixed precision (issue 16)
from . import amp
from . import distributed
from .amp import autocast
# ---- end mixed precision
from .devices.cuda import cuda_module as _cuda_module
# ---- interop: DLPack and files (safetensors, torch.save state_dicts)
from .interop import from_dlpack, as_tensor
from .serialization import save, load
# ---- end interop

__version__ = _C.build_info()["version"]


def _cuda_info():
    _C_cuda = _cuda_module()
    if _C_cuda is None:
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
    info["omp_wait_policy"] = _openmp_env.info()["omp_wait_policy"]
    info["cuda"] = _cuda_info()
    return info


def threading_info():
    """How the CPU kernels thread: the thread count, the OpenMP wait policy in effect and
    where it came from (dlkern's short-spin default, or OMP_WAIT_POLICY / GOMP_SPINCOUNT set
    by the user), the OpenMP runtimes loaded, how many kernel calls so far chose more
    than one thread (small ops run on one thread, without a fork), and whether the thread
    choice adapts to CPUs held by other processes (DLKERN_ADAPTIVE_THREADS=0 turns that
    off) with what it last measured."""
    info = {"num_threads": get_num_threads()}
    info.update(_openmp_env.info())
    info["parallel_decisions"] = _C.parallel_decisions()
    info.update(_C.contention_info())
    return info


__all__ = [
    "build_info",
    "threading_info",
    "get_num_threads",
    "set_num_threads",
    "get_isa",
    "set_isa",
    "supported_isas",
    "ops",
    "device", "cpu", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "Function",
    "Tensor", "tensor", "from_numpy", "zeros", "ones", "empty", "full", "randn", "rand", "randint", "arange",
    "zeros_like", "ones_like", "empty_like", "full_like", "randn_like", "rand_like", "manual_seed",
    "cat", "concatenate", "stack", "split", "chunk", "where", "matmul", "gelu", "exp", "log", "sqrt", "abs",
    "clamp", "tanh", "sigmoid", "relu", "selu", "softplus", "silu", "sum", "mean", "max", "min", "amax",
    "amin", "var", "std", "logsumexp", "argmax", "argmin", "reshape", "transpose", "permute", "flatten",
    "squeeze", "unsqueeze", "softmax", "log_softmax", "sin", "cos", "maximum", "minimum", "masked_fill", "tril", "triu", "erf", "float32", "float64", "float16", "bfloat16", "half", "int32", "int64",
    "long", "bool_", "nn", "utils",
    # --- math breadth (issue 13)
    "add", "sub", "cumsum", "cumprod", "prod", "norm", "einsum", "bmm", "baddbmm", "outer", "any", "all", "lerp",
    "linalg",
    # --- end math breadth
    "from_dlpack", "as_tensor", "save", "load",  # interop
]

# ---- indexing and reordering (tensor_indexing.py)
from .tensor_functions import (gather, scatter, scatter_add, index_select, sort, argsort, topk, flip, roll, tile,
                               repeat_interleave, diag)
__all__ += ["gather", "scatter", "scatter_add", "index_select", "sort", "argsort", "topk", "flip", "roll", "tile",
            "repeat_interleave", "diag"]
# ---- end indexing and reordering

# ---- robust training (issue 15): adversarial attacks
from . import adversarial
__all__ += ["adversarial"]
# ---- end robust training
