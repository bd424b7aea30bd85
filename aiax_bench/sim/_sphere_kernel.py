"""Compiled subtraction of spherical voids' chords from the cylinder's path lengths.

The analytic projection of a foam is the cylinder's chord minus, for every
void, the void's chord, at each sub-ray. One loop nest per angle walks the
voids in their order, so each sub-ray is reduced by the same float64 terms in
the same order however the angles are shared among threads (the kernel
releases the GIL; :func:`aiax_bench.sim.project.project_phantom` runs groups
of angles in threads). Every operation is an IEEE one
(additions, products and a correctly rounded square root, never contracted
into fused multiply-adds), so the bytes do not depend on the CPU either:
torch's vectorised float64 ``sqrt`` and ``pow`` on the CPU, which an earlier
tensor formulation used, are not correctly rounded (off by an ulp in some
values), in ways that may follow the instruction set. Compiled with numba on first use and
cached on disk.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from aiax_bench.sim._ieee_math import exp_ieee, log_ieee

__all__ = ["project_void_chords", "subtract_void_chords"]


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _void_columns(uc, r, centre, su, n_cols):  # pragma: no cover - compiled
    """The sub-ray columns ``[c0, c1)`` a void of radius ``r`` centred at ``uc`` may cover: from its left edge,
    ``ceil(2 r su) + 3`` of them, within the detector."""
    first = math.floor((uc - r + centre + 0.5) * su - 0.5)
    return max(first, 0), min(first + math.ceil(2.0 * r * su) + 3, n_cols)


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _subtract_void(path, z_sub, u, cz, r, uc, c0, c1, tc, half, crossing):  # pragma: no cover - compiled
    """Subtract one void's chord ``2 sqrt(r² - dz² - (u - u_c)²)`` from ``path`` ``(rows, U)`` at each sub-ray of
    columns ``[c0, c1)`` it crosses, row by row. Where ``crossing`` (a void the cut surface opens), only the part
    inside the cylinder of half chords ``half``, with ``tc`` the void's centre along the ray.

    ``z_sub`` is evenly spaced and ascending: only the rows near the void's height are visited (a row or two
    of margin either side for the rounding of that estimate), each still tested exactly, so the rows changed
    are the same as when every row is tested."""
    step = z_sub[1] - z_sub[0] if z_sub.size > 1 else 1.0
    first = max(math.floor((cz - r - z_sub[0]) / step) - 1, 0)
    stop = min(math.ceil((cz + r - z_sub[0]) / step) + 2, z_sub.size)
    for row in range(first, stop):
        dz = z_sub[row] - cz
        if abs(dz) >= r:
            continue
        section = r * r - dz * dz
        for c in range(c0, c1):
            offset = u[c] - uc
            square = section - offset * offset
            if square <= 0.0:
                continue
            chord = math.sqrt(square)
            if crossing:
                path[row, c] -= max(min(tc + chord, half[c]) - max(tc - chord, -half[c]), 0.0)
            else:
                path[row, c] -= 2.0 * chord


@numba.njit(nogil=True, cache=True, error_model="numpy")
def subtract_void_chords(path, u, z_sub, spheres, cos, sin, centre, su):  # pragma: no cover - compiled
    """Subtract each void's chord ``2 sqrt(r² - dz² - (u - u_c)²)`` from ``path``, void after void.

    Parameters
    ----------
    path : numpy.ndarray
        float64 ``(rows, A, U)`` path lengths through the solid (voxels), updated in place.
    u : numpy.ndarray
        float64 ``(U,)`` sub-ray positions across the detector, from the slice centre (voxels).
    z_sub : numpy.ndarray
        float64 ``(rows,)`` sub-ray heights (voxel indices).
    spheres : numpy.ndarray
        float64 ``(S, 4)``: ``z, y, x`` (voxel indices) and radius (voxels) of each void.
    cos, sin : numpy.ndarray
        float64 ``(A,)`` of the projection angles.
    centre : float
        Index of the slice's centre, ``(N - 1) / 2``.
    su : int
        Sub-rays per detector pixel across the rotation axis.
    """
    _, n_angles, n_cols = path.shape
    for a in range(n_angles):
        for s in range(spheres.shape[0]):
            cz, cy, cx, r = spheres[s, 0], spheres[s, 1], spheres[s, 2], spheres[s, 3]
            uc = (cx - centre) * cos[a] + (cy - centre) * sin[a]
            c0, c1 = _void_columns(uc, r, centre, su, n_cols)
            _subtract_void(path[:, a, :], z_sub, u, cz, r, uc, c0, c1, 0.0, u, False)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def project_void_chords(out, u, z_sub, spheres, cos, sin, centre, su, radius, clip_radius, mu):  # pragma: no cover
    """Line integrals as a detector pixel measures them, from the chords of a cylinder less its voids.

    For each angle in turn, every sub-ray's path through the solid is the cylinder's chord less each void's
    (clipped to the cylinder where ``clip_radius`` is finite, as :func:`subtract_void_chords`); each pixel
    then averages the transmitted intensity ``exp(-mu * path)`` of its ``sz x su`` sub-rays, sub-row by
    sub-row and column by column, and records ``-log`` of it in float32. ``exp`` and ``log`` are
    :mod:`aiax_bench.sim._ieee_math`'s, so the bytes depend neither on the CPU nor on how angles are
    shared among threads.

    Parameters
    ----------
    out : numpy.ndarray
        float32 ``(rows, A, D)``, written.
    u : numpy.ndarray
        float64 ``(D * su,)`` sub-ray positions across the detector, from the slice centre (voxels).
    z_sub : numpy.ndarray
        float64 ``(rows * sz,)`` sub-ray heights (voxel indices), ``sz`` per detector row.
    spheres : numpy.ndarray
        float64 ``(S, 4)``: ``z, y, x`` (voxel indices) and radius (voxels) of the voids near these rows.
    cos, sin : numpy.ndarray
        float64 ``(A,)`` of the projection angles.
    centre : float
        Index of the slice's centre, ``(N - 1) / 2``.
    su : int
        Sub-rays per detector pixel across the rotation axis.
    radius : float
        The sample cylinder's radius (voxels).
    clip_radius : float
        ``radius`` where voids may cross the surface (a cut sample), ``math.inf`` where none does.
    mu : float
        The solid's attenuation (1/voxel).
    """
    n_rows, n_angles, n_pix = out.shape
    n_cols = u.size
    sz = z_sub.size // n_rows
    half = np.empty(n_cols)  # half the cylinder's chord at each sub-ray
    for c in range(n_cols):
        half[c] = math.sqrt(max(radius * radius - u[c] * u[c], 0.0))
    path = np.empty((z_sub.size, n_cols))
    total = np.empty(n_pix)
    scale = 1.0 / (sz * su)
    crossing = np.empty(spheres.shape[0], dtype=np.bool_)  # voids the cut surface opens, at any angle
    for s in range(spheres.shape[0]):
        cz, cy, cx, r = spheres[s, 0], spheres[s, 1], spheres[s, 2], spheres[s, 3]
        crossing[s] = math.sqrt((cx - centre) * (cx - centre) + (cy - centre) * (cy - centre)) + r > clip_radius
    for a in range(n_angles):
        for row in range(z_sub.size):
            for c in range(n_cols):
                path[row, c] = 2.0 * half[c]
        for s in range(spheres.shape[0]):
            cz, cy, cx, r = spheres[s, 0], spheres[s, 1], spheres[s, 2], spheres[s, 3]
            uc = (cx - centre) * cos[a] + (cy - centre) * sin[a]
            tc = (cy - centre) * cos[a] - (cx - centre) * sin[a]
            c0, c1 = _void_columns(uc, r, centre, su, n_cols)
            _subtract_void(path, z_sub, u, cz, r, uc, c0, c1, tc, half, crossing[s])
        # The intensities first, in place, element by element, then each pixel's sum in the order of its
        # sub-rays (rows, then columns): both loops vectorise across pixels, and the bits are those of
        # one running sum per pixel.
        for row in range(z_sub.size):
            for c in range(n_cols):
                path[row, c] = exp_ieee(-mu * max(path[row, c], 0.0))
        for row in range(n_rows):
            total[:] = 0.0
            for k in range(sz):
                line = path[row * sz + k]
                for j in range(su):
                    for p in range(n_pix):
                        total[p] += line[p * su + j]
            for p in range(n_pix):
                # max(): a pixel no photon crosses (past e^-700) reads 700 per sub-ray, not log(0).
                out[row, a, p] = np.float32(-log_ieee(max(total[p] * scale, 1e-304)))
