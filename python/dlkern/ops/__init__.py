"""Ops on NumPy arrays, no autograd: each is one call into the compiled kernels.

Arrays cross into C++ without copies; float32 is the fast path and float64 works
everywhere. Bad arguments raise TypeError/ValueError naming the op and argument.
"""

from .matmul import gemm, matmul

__all__ = ["gemm", "matmul"]
