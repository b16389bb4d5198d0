"""erf for the CPU namespace: NumPy has none, so it is evaluated here from Chebyshev fits.

Temporary: the exact GELU is meant to become a C++ kernel (gelu_erf); until then the CPU
namespace's ``erf`` is this module's ``erf`` (one line in devices/cpu.py to replace).
"""

import math

import numpy as np

# erf: NumPy has none. Two Chebyshev fits, made here once per dtype from math.erf at
# Chebyshev nodes: erf(x) = x P(x^2) for |x| <= 2, and erfc(x) = exp(-x^2)/x Q(1/x) for
# 2 < |x| <= 6.5 (beyond, erf is +-1 in float64). Degrees give ~1e-15 relative error in
# float64 and ~1e-8 absolute in float32 (checked against math.erf in the tests).
_ERF_DEGREES = {np.dtype(np.float64): (18, 14), np.dtype(np.float32): (9, 4)}
_ERF_FAR = 6.5
_ERF_T = 2.2 ** 2
_erf_coeffs = {}


def _fit_erf(dtype):
    cheb = np.polynomial.chebyshev
    nodes = np.cos(np.linspace(0.0, np.pi, 800))
    deg_near, deg_far = _ERF_DEGREES.get(dtype, _ERF_DEGREES[np.dtype(np.float64)])
    t = (nodes + 1.0) * (_ERF_T / 2)                          # x^2 in [0, 2.2^2]: past the
    # switch at |x| = 2, so the fit's larger error at its ends stays unused
    x = np.sqrt(t)
    ratio = np.array([math.erf(v) / v if v > 0 else 2.0 / math.sqrt(math.pi) for v in x])
    near = cheb.chebfit(nodes, ratio, deg_near)
    lo, hi = 1.0 / _ERF_FAR, 0.5
    u = (nodes + 1.0) * 0.5 * (hi - lo) + lo                  # 1/x in [1/6.5, 1/2]
    scaled = np.array([math.erfc(1 / v) * math.exp(1 / v ** 2) / v for v in u])
    far = cheb.chebfit(nodes, scaled, deg_far)
    return near.astype(dtype), far.astype(dtype)


def _clenshaw(t, c):
    b1 = b2 = 0
    t2 = t + t
    for ck in c[:0:-1]:
        b1, b2 = t2 * b1 - b2 + ck, b1
    return t * b1 - b2 + c[0]


def erf(x):
    """erf(x) elementwise in x's float dtype (float64 for others), from the fits above."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in _ERF_DEGREES else np.dtype(np.float64)
    x = x.astype(dtype, copy=False)
    coeffs = _erf_coeffs.get(dtype)
    if coeffs is None:
        coeffs = _erf_coeffs[dtype] = _fit_erf(dtype)
    near, far = coeffs
    one, half = dtype.type(1), dtype.type(0.5)
    y = x * _clenshaw(np.minimum(x * x, 4) * dtype.type(2 / _ERF_T) - one, near)
    big = np.abs(x) > 2
    if big.any():
        xb = x[big]
        a = np.minimum(np.abs(xb), dtype.type(_ERF_FAR))
        lo, hi = dtype.type(1 / _ERF_FAR), dtype.type(0.5)
        s = (one / a - lo) * (dtype.type(2) / (hi - lo)) - one
        erfc = np.exp(-a * a) / a * _clenshaw(s, far)
        erfc = np.where(np.abs(xb) >= _ERF_FAR, 0, erfc)
        y[big] = np.copysign(one - erfc, xb)
    return y
