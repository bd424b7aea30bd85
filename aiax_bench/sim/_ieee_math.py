"""``exp`` and ``log`` in IEEE arithmetic alone, compiled: the same bits on every CPU.

numpy's and MKL's ``exp`` and ``log`` pick their code by instruction set and may
differ in the last bit between machines; a store's bytes must not. These use
additions, products, one division and exact scalings only (never contracted
into fused multiply-adds: numba does not, without ``fastmath``), so their bits
follow from IEEE rounding alone. Within 1 ulp of numpy's ``exp`` and 3 ulp of
its ``log`` in float64 (``tests/test_exact_projection.py`` checks them over the
ranges used): far below the float32 the stores keep.

The simulations of recipes that say so use them (``acquisition.projection:
analytic``, ``acquisition.noise: row-blocks``); earlier recipes keep the
library functions their bytes were published with.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["exp_ieee", "expected_counts", "log_ieee", "negative_log_ieee"]

# Cody and Waite's split of ln 2: k * _LN2_HI is exact for |k| < 2**11.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_SQRT_HALF = 0.70710678118654752440
#: Below this exponent e^x is taken as 0 (a transmission of e^-700 is no photon of any beam).
_EXP_FLOOR = -700.0
#: ``2**52 + 1023``: adding a small integer-valued float to it puts that integer plus the exponent bias in the
#: low bits of the sum, exactly (the sum stays below ``2**53``).
_BIAS_MAGIC = 4503599627370496.0 + 1023.0
_MAGIC_BITS = 0x4330000000000000  # the bits of 2**52
_MANTISSA = 0x000FFFFFFFFFFFFF
_HALF_BITS = 0x3FE0000000000000  # the exponent bits of [0.5, 1)


@intrinsic
def _bits(typingctx, x):  # pragma: no cover - compiled
    """The IEEE bits of a float64 as an int64 (a reinterpretation, no arithmetic)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _float(typingctx, bits):  # pragma: no cover - compiled
    """The float64 of these IEEE bits (the inverse of ``_bits``)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def exp_ieee(x: float) -> float:  # pragma: no cover - compiled
    """``e**x`` for ``x <= 709``; 0 below -700."""
    k = math.floor(max(x, _EXP_FLOOR) * _INV_LN2 + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln(2)/2: the Taylor series' 14th term is below 3e-18
    # Horner's rule on 1/k!, k = 13..0, written out: a loop over a tuple of them compiles to a branch per term.
    p = 1.6059043836821613e-10
    p = 2.08767569878681e-09 + r * p
    p = 2.505210838544172e-08 + r * p
    p = 2.755731922398589e-07 + r * p
    p = 2.7557319223985893e-06 + r * p
    p = 2.48015873015873e-05 + r * p
    p = 0.0001984126984126984 + r * p
    p = 0.001388888888888889 + r * p
    p = 0.008333333333333333 + r * p
    p = 0.041666666666666664 + r * p
    p = 0.16666666666666666 + r * p
    p = 0.5 + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    # 2**k built from its bits (k + 1023 in the exponent field): exact, as ldexp; no table, no branch, so
    # loops over it vectorise. k >= -1010 above the floor: 2**k is normal.
    scale = _float((_bits(k + _BIAS_MAGIC) - _MAGIC_BITS) << 52)
    return 0.0 if x < _EXP_FLOOR else p * scale


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def log_ieee(x: float) -> float:  # pragma: no cover - compiled
    """Natural log of a positive, normal ``x``: ``e ln 2 + 2 atanh((m - 1) / (m + 1))``, ``x = m 2**e``."""
    bits = _bits(x)
    # frexp from the bits (exact for a normal x): m in [0.5, 1), x = m 2**e; selects, not branches.
    m = _float((bits & _MANTISSA) | _HALF_BITS)
    e = np.float64((bits >> 52) - 1022)
    small = m < _SQRT_HALF
    m = m + m if small else m
    e = e - 1.0 if small else e
    s = (m - 1.0) / (m + 1.0)  # |s| < 0.172: the series' 12th term is below 1e-19
    z = s * s
    # 1 + z/3 + z²/5 + ... + z¹¹/23 by Horner's rule, written out (as exp's).
    p = 0.043478260869565216
    p = 0.047619047619047616 + z * p
    p = 0.05263157894736842 + z * p
    p = 0.058823529411764705 + z * p
    p = 0.06666666666666667 + z * p
    p = 0.07692307692307693 + z * p
    p = 0.09090909090909091 + z * p
    p = 0.1111111111111111 + z * p
    p = 0.14285714285714285 + z * p
    p = 0.2 + z * p
    p = 0.3333333333333333 + z * p
    p = 1.0 + z * p
    return e * _LN2_HI + (2.0 * s * p + e * _LN2_LO)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def expected_counts(line_integrals: np.ndarray, photons: float, steps: int, binning: int,
                    out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out = photons * mean(exp(-p))`` over each recorded pixel's ``binning x steps x binning`` window.

    ``line_integrals`` are ``(rows * binning, angles * steps, columns * binning)``, ``out`` float64
    ``(rows, angles, columns)``: a binned detector pixel averages the intensity of its ``binning²`` fine
    pixels, a continuous exposure that of its ``steps`` sub-angles. The terms are added in index order
    of the window (fine rows, sub-angles, fine columns), so the bits depend on the data alone; with ``steps =
    binning = 1`` it is ``photons * exp(-p)`` pixel by pixel.
    """
    rows, angles, cols = out.shape
    n = np.float64(steps * binning * binning)
    for r in range(rows):
        for a in range(angles):
            total = out[r, a]
            total[:] = 0.0
            for i in range(binning):
                for j in range(steps):
                    line = line_integrals[r * binning + i, a * steps + j]
                    for k in range(binning):
                        for c in range(cols):  # innermost over the recorded pixels: it vectorises
                            total[c] += exp_ieee(-np.float64(line[c * binning + k]))
            for c in range(cols):
                total[c] = photons * (total[c] / n)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def negative_log_ieee(counts: np.ndarray, photons: float, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out = float32(-log(max(N, 1) / photons))`` of photon counts ``N``: the flat-field corrected log."""
    flat, target = counts.ravel(), out.reshape(counts.size)
    for i in range(flat.size):
        target[i] = np.float32(-log_ieee(max(np.float64(flat[i]), 1.0) / photons))
