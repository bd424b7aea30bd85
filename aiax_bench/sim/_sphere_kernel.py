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

__all__ = ["subtract_void_chords"]


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
    n_rows, n_angles, n_cols = path.shape
    for a in range(n_angles):
        for s in range(spheres.shape[0]):
            cz, cy, cx, r = spheres[s, 0], spheres[s, 1], spheres[s, 2], spheres[s, 3]
            uc = (cx - centre) * cos[a] + (cy - centre) * sin[a]
            # The columns a void may cover: from its left edge, ceil(2 r su) + 3 of them.
            first = math.floor((uc - r + centre + 0.5) * su - 0.5)
            c0 = max(first, 0)
            c1 = min(first + math.ceil(2.0 * r * su) + 3, n_cols)
            for row in range(n_rows):
                dz = z_sub[row] - cz
                if abs(dz) >= r:
                    continue
                section = r * r - dz * dz
                for c in range(c0, c1):
                    offset = u[c] - uc
                    square = section - offset * offset
                    if square > 0.0:
                        path[row, a, c] -= 2.0 * math.sqrt(square)
