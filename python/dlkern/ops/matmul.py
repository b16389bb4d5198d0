"""Matrix products: ``matmul`` (numpy.matmul semantics) and ``gemm`` (BLAS-style).

Both are the C++ bindings themselves, so a call costs one pybind11 dispatch: shape
rules, broadcasting and argument checks are done in ``csrc/bind/gemm.cpp``.
"""

from .._C import gemm, matmul

__all__ = ["gemm", "matmul"]
