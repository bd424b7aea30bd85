"""Compiled cone-beam forward projection (Joseph's model), ray by ray, on the CPU.

:class:`~aiax_bench.recon.cone.ConeBeamProjector` describes each ray by the
in-plane positions of its steps and its slope along the rotation axis; its
tensor path turns them into four (index, weight) pairs per step and per ray,
arrays of ``4 N R D`` entries per angle that cost more to build than to use.
This loop reads the same few
arrays and computes each sample's interpolation weights where it uses them,
in the same float64 expressions, rounded to float32 as the tensor path
stores them; each ray sums its samples in the same order (step, then the four
corners), one IEEE product and one IEEE addition per sample, never
contracted into fused multiply-adds. So its bytes are the tensor path's and
do not depend on the thread count: rays are independent, each summed by one
thread. Samples outside the volume are skipped (the tensor path adds zeros).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["cone_forward_angle", "fdk_backproject"]


@numba.njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def cone_forward_angle(flat, n, nz, pos, depth, slope, step_len, by_column, out):  # pragma: no cover - compiled
    """Line integrals ``out (R, D)`` of one angle's rays through ``flat`` (the C-order volume, float32).

    ``pos``, ``depth``: ``(N, D)`` position along the interpolated in-plane axis (pixel index) and
    in-plane distance from the source at each step; ``slope``, ``step_len``: ``(R, D)`` height per
    in-plane length and length per step; ``by_column``: ``(D,)`` whether the ray steps over columns.
    """
    rows, cols = slope.shape
    steps = pos.shape[0]
    centre_z = (nz - 1) / 2.0
    for r in numba.prange(rows):
        for d in range(cols):
            stride = n if by_column[d] else 1
            step_stride = 1 if by_column[d] else n
            s_rd = slope[r, d]
            length = step_len[r, d]
            total = np.float32(0.0)
            for s in range(steps):
                p = pos[s, d]
                p_low = np.floor(p)
                fp = p - p_low
                zp = s_rd * depth[s, d] + centre_z
                z_low = np.floor(zp)
                fz = zp - z_low
                pi0 = np.int64(p_low)
                zi0 = np.int64(z_low)
                for dz in range(2):
                    zi = zi0 + dz
                    wz = fz if dz else 1.0 - fz
                    for dp in range(2):
                        pi = pi0 + dp
                        if zi < 0 or zi >= nz or pi < 0 or pi >= n:
                            continue
                        wp = fp if dp else 1.0 - fp
                        w = np.float32(wz * wp * length)
                        total = np.float32(total + np.float32(flat[zi * (n * n) + pi * stride + s * step_stride] * w))
            out[r, d] = total


@numba.njit(nogil=True, parallel=True, cache=True, error_model="numpy")
def fdk_backproject(padded, cos, sin, weights, coords, heights, source_origin, source_detector, axis_offset,
                    det_spacing, row_spacing, col_centre, row_centre, out):  # pragma: no cover - compiled
    """FDK's distance-weighted back projection of filtered, zero-padded images ``padded (A, R + 3, D + 3)``.

    Voxel ``(z, y, x)`` at ``(heights[z], coords[y], coords[x])`` sums, over the angles in order, the
    bilinear sample of its image where its ray from the source meets the detector, times
    ``weights[k] * (source_origin / along)^2``; float64 throughout, one thread per ``(z, y)`` row.
    """
    n_angles, height, width = padded.shape
    cols, rows = width - 3, height - 3
    n_slices, n = out.shape[0], out.shape[1]
    for zy in numba.prange(n_slices * n):
        z = zy // n
        y = zy % n
        acc = np.zeros(n)
        yc, zc = coords[y], heights[z]
        for k in range(n_angles):
            c, s, w_k = cos[k], sin[k], weights[k]
            image = padded[k]
            for x in range(n):
                along = yc * c + (source_origin - coords[x] * s)
                across = yc * s + (coords[x] * c + axis_offset)
                magnify = source_detector / along
                col = min(max(across * magnify / det_spacing + col_centre, 0.0), cols + 1.0)
                row = min(max(zc * magnify / row_spacing + row_centre, 0.0), rows + 1.0)
                c0 = np.floor(col)
                r0 = np.floor(row)
                fc = col - c0
                fr = row - r0
                ci = np.int64(c0)
                ri = np.int64(r0)
                top = image[ri, ci] * (1.0 - fc) + image[ri, ci + 1] * fc
                bottom = image[ri + 1, ci] * (1.0 - fc) + image[ri + 1, ci + 1] * fc
                ratio = source_origin / along
                acc[x] += (top * (1.0 - fr) + bottom * fr) * (ratio * ratio * w_k)
        for x in range(n):
            out[z, y, x] = acc[x]
