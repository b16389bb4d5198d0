"""Float format conversion: ``convert(x, dtype, out=None)`` between float32, bfloat16 and
float16, bit for bit NumPy's / ml_dtypes' ``astype`` (round to nearest even).

The C++ binding itself (``csrc/bind/convert.cpp``): vectorised, threaded for large
arrays, any layout in and C order out.
"""

from .._C import convert

__all__ = ["convert"]
