"""Compiled subtraction of spherical voids' chords from the cylinder's path lengths.

The analytic projection of a foam is the cylinder's chord minus, for every
void, the void's chord, at each sub-ray. Written with tensors, every void
materialised ``rows × angles × width`` arrays of columns, masks and chords
and scattered them back; here one loop nest per angle walks the voids in
their order, so each sub-ray is reduced by the same float64 terms in the same
order as before, whatever the thread count: the bytes do not change.
Compiled with numba on first use and cached on disk.
"""

from __future__ import annotations

import math

import numba

__all__ = ["subtract_void_chords"]


@numba.njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def subtract_void_chords(path, u, row_start, row_stop, rz_sq, rz_offset, uc, first, width):  # pragma: no cover
    """Subtract each void's chord ``2 sqrt(max(r_z² - (u - u_c)², 0))`` from ``path``, void after void.

    Parameters
    ----------
    path : numpy.ndarray
        float64 ``(rows, A, U)`` path lengths through the solid, updated in place.
    u : numpy.ndarray
        float64 ``(U,)`` sub-ray positions across the detector.
    row_start, row_stop : numpy.ndarray
        int64 ``(S,)``: the rows of ``path`` each void crosses.
    rz_sq : numpy.ndarray
        float64: the squared radius of each void's section at each of its rows, voids one after another.
    rz_offset : numpy.ndarray
        int64 ``(S,)``: where each void's rows start in ``rz_sq``.
    uc : numpy.ndarray
        float64 ``(S, A)``: the void centre's detector position at each angle.
    first, width : numpy.ndarray
        int64 ``(S, A)`` and ``(S,)``: the first sub-ray column and the number of columns each void may cover.
    """
    n_angles, n_cols = path.shape[1], path.shape[2]
    # Angles are independent, and within one the voids are taken in order: no sum depends on the threads.
    for a in numba.prange(n_angles):
        for s in range(row_start.size):
            centre = uc[s, a]
            c0 = max(first[s, a], 0)
            c1 = min(first[s, a] + width[s], n_cols)
            for row in range(row_start[s], row_stop[s]):
                rr = rz_sq[rz_offset[s] + row - row_start[s]]
                for c in range(c0, c1):
                    offset = u[c] - centre
                    square = rr - offset * offset
                    if square > 0.0:
                        path[row, a, c] -= 2.0 * math.sqrt(square)
