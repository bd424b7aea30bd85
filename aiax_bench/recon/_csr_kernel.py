"""Compiled sparse × dense products whose bytes do not depend on the CPU.

torch's CPU product of a sparse CSR matrix with a dense one calls MKL, whose
kernels follow the instruction set: on a CPU with AVX-512 they group a row's
terms differently (and fuse multiply-adds), so the same operator and sinogram
gave other float32 bytes than on a CPU without, or with MKL's compatible
code path forced (``MKL_CBWR=COMPATIBLE``), and a dataset rebuilt there missed
its published content sha256. These loops sum each output element over its
row's non-zeros in stored order, one IEEE product and one IEEE addition per
term (never contracted into fused multiply-adds), starting from zero; the
accumulating form adds that sum to the output last. That is exactly what
MKL's compatible path computes, so the stores published before keep their
bytes. The innermost loop runs over the dense matrix's columns (slices),
whose sums are independent: vectorising it changes no grouping.
Compiled with numba on first use and cached on disk; the GIL is released, so
the projector's threads run them side by side.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["csr_matmul"]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _csr_matmul(crow, col, val, dense, out, accumulate):  # pragma: no cover - compiled
    width = dense.shape[1]
    acc = np.empty(width, dtype=np.float32)
    for i in range(crow.size - 1):
        acc[:] = 0
        for k in range(crow[i], crow[i + 1]):
            v = val[k]
            row = dense[col[k]]
            for j in range(width):
                acc[j] += v * row[j]
        if accumulate:
            for j in range(width):
                out[i, j] += acc[j]
        else:
            for j in range(width):
                out[i, j] = acc[j]


def csr_matmul(crow: np.ndarray, col: np.ndarray, val: np.ndarray, dense: np.ndarray, out: np.ndarray, *,
               accumulate: bool = False) -> None:
    """``out = A @ dense`` (or ``out += A @ dense``) for the CSR matrix ``A = (crow, col, val)``.

    Parameters
    ----------
    crow, col : numpy.ndarray
        int32 or int64 row pointers ``(R + 1,)`` and column indices of ``A``.
    val : numpy.ndarray
        float32 values of ``A``.
    dense : numpy.ndarray
        C-contiguous float32 ``(C, B)``.
    out : numpy.ndarray
        C-contiguous float32 ``(R, B)``, written (or added to) in place.
    accumulate : bool
        Add each row's sum to ``out`` instead of storing it.
    """
    _csr_matmul(crow, col, val, dense, out, accumulate)
