"""The fused SSIM kernel: one compiled pass per block, from the two volumes to the sums of local SSIM.

The NumPy formulation makes many passes over four float32 channels
(moments, three separable filters, the formula); at volume size that is
memory traffic, not arithmetic. Here every output slice is made from its
input slices in one loop nest whose buffers (four channels of one slice of
the block, one filtered row) stay in cache. Compiled with numba on first use
and cached on disk; it releases the GIL, so blocks run in parallel threads.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["fused_ssim_sums"]


_jit = numba.njit(nogil=True, cache=True, error_model="numpy")


@_jit
def _moments_filtered_in_z(x, y, k, ztaps, shift, zf):  # pragma: no cover - compiled
    """Shifted x, y, x² + y² and x·y of output slice ``k``, filtered along z, into ``zf (4, Y, X)``."""
    for j in range(x.shape[1]):
        for c in range(4):
            zf[c, j, :] = 0
        for t in range(ztaps.size):
            w = ztaps[t]
            for i in range(x.shape[2]):
                a = x[k + t, j, i] - shift
                b = y[k + t, j, i] - shift
                zf[0, j, i] += w * a
                zf[1, j, i] += w * b
                zf[2, j, i] += w * (a * a + b * b)
                zf[3, j, i] += w * (a * b)


@_jit
def _filtered_row(zf, j, taps, yf, xf):  # pragma: no cover - compiled
    """Row ``j`` of the valid region of ``zf`` filtered along y (into ``yf``) and then x (into ``xf``)."""
    nxo = xf.shape[1]
    for c in range(4):
        yf[c, :] = taps[0] * zf[c, j, :]
        for t in range(1, taps.size):
            w = taps[t]
            for i in range(yf.shape[1]):
                yf[c, i] += w * zf[c, j + t, i]
        xf[c, :] = taps[0] * yf[c, :nxo]
        for t in range(1, taps.size):
            w = taps[t]
            for i in range(nxo):
                xf[c, i] += w * yf[c, i + t]


@_jit
def _kernel(x, y, mask, use_mask, ztaps, taps, shift, c1, c2, sums, counts):  # pragma: no cover - compiled
    r = taps.size // 2
    nzo, nyo, nxo = x.shape[0] - ztaps.size + 1, x.shape[1] - 2 * r, x.shape[2] - 2 * r
    # Every innermost loop runs along x over contiguous rows, so that it vectorises.
    zf = np.empty((4, x.shape[1], x.shape[2]), dtype=np.float32)
    yf = np.empty((4, x.shape[2]), dtype=np.float32)
    xf = np.empty((4, nxo), dtype=np.float32)
    for k in range(nzo):
        _moments_filtered_in_z(x, y, k, ztaps, shift, zf)
        total = 0.0
        n = 0
        for j in range(nyo):
            _filtered_row(zf, j, taps, yf, xf)
            for i in range(nxo):
                if use_mask and not mask[k, j, i]:
                    continue
                ux, uy = np.float64(xf[0, i]), np.float64(xf[1, i])
                # Second moments about the shift (an exact identity): less float32 cancellation.
                var_sum = xf[2, i] - ux * ux - uy * uy
                cov = xf[3, i] - ux * uy
                mx, my = ux + shift, uy + shift
                total += ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (var_sum + c2))
                n += 1
        sums[k] = total
        counts[k] = n


def fused_ssim_sums(x: np.ndarray, y: np.ndarray, *, mask: np.ndarray | None, taps: np.ndarray, zhalo: int,
                    shift: float, c1: float, c2: float) -> tuple[np.ndarray, np.ndarray]:
    """Per output z-slice: float64 sum of local SSIM and the number of voxels summed.

    ``x`` and ``y`` are one block with a halo of ``len(taps) // 2`` voxels in y
    and x and ``zhalo`` in z (0 for 2D windows in each slice); ``mask`` covers
    the block without its halo.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.float32)
    r = taps.size // 2
    out_shape = (x.shape[0] - 2 * zhalo, x.shape[1] - 2 * r, x.shape[2] - 2 * r)
    use_mask = mask is not None
    mask = np.ascontiguousarray(mask, dtype=np.bool_) if use_mask else np.ones((1, 1, 1), dtype=np.bool_)
    sums = np.zeros(out_shape[0], dtype=np.float64)
    counts = np.zeros(out_shape[0], dtype=np.int64)
    taps = np.ascontiguousarray(taps, dtype=np.float32)
    ztaps = taps if zhalo else np.ones(1, dtype=np.float32)
    _kernel(x, y, mask, use_mask, ztaps, taps, np.float32(shift), float(c1), float(c2), sums, counts)
    return sums, counts
