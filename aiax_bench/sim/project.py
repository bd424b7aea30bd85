"""Exact projections of phantoms, free of the inverse crime.

Projections are never computed with the discrete operator that reconstructs:
phantoms made of spheres in a cylinder are projected analytically (chord
lengths), sampled several times per detector pixel and per detector row, and
the detector averages transmitted *intensity* over each pixel, as a real one
does (this is what makes partial-volume edges non-linear in the line integral).
"""

from __future__ import annotations

import numpy as np
import torch

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms import Phantom

__all__ = ["project_phantom"]


def _chords(radius_sq: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.sqrt(torch.clamp(radius_sq - offset * offset, min=0.0))


def project_phantom(
    phantom: Phantom,
    angles,
    *,
    supersample_u: int = 4,
    supersample_z: int = 2,
    row_batch: int = 16,
    progress=None,
) -> np.ndarray:
    """Line integrals of the phantom's attenuation, as a detector measures them.

    Parameters
    ----------
    phantom : Phantom
        A phantom with ``spheres`` (voids in a cylinder).
    angles : array_like
        Projection angles (radians).
    supersample_u, supersample_z : int
        Sub-rays per detector pixel across and along the rotation axis.
    row_batch : int
        Detector rows computed together (bounds memory).
    progress : callable, optional
        Called with the number of rows finished after each batch.

    Returns
    -------
    numpy.ndarray
        ``float32`` line integrals ``-log(I / I0)`` (dimensionless), shape ``(Z, A, D)``
        with ``D`` the volume width; detector row ``z`` sees slice ``z``.
    """
    if phantom.spheres is None:
        raise InputError("phantom", "has no analytic description (spheres)",
                         "project voxel phantoms with aiax_bench.sim.project_voxels")
    angles = np.asarray(angles, dtype=np.float64).ravel()
    if angles.size == 0:
        raise InputError("angles", "are empty", "expected at least one projection angle (radians)")
    n_z, n, _ = phantom.shape
    mu_solid = phantom.attenuation[1] * phantom.voxel_size_um * 1e-4  # 1/voxel
    radius = float(phantom.params["cylinder_radius"]) * n
    centre = (n - 1) / 2
    su, sz = int(supersample_u), int(supersample_z)
    u = torch.as_tensor(((np.arange(n * su) + 0.5) / su - 0.5) - centre)  # sub-ray positions
    cos, sin = torch.as_tensor(np.cos(angles)), torch.as_tensor(np.sin(angles))
    spheres = torch.as_tensor(phantom.spheres)
    out = np.empty((n_z, angles.size, n), dtype=np.float32)
    for z0 in range(0, n_z, row_batch):
        z1 = min(z0 + row_batch, n_z)
        z_sub = torch.as_tensor(np.arange(z0 * sz, z1 * sz) + 0.5) / sz - 0.5
        path = _chords(torch.tensor(radius**2, dtype=torch.float64), u).expand(
            z_sub.numel(), angles.size, -1).clone()
        near = (spheres[:, 0] - spheres[:, 3] < z_sub[-1]) & (spheres[:, 0] + spheres[:, 3] > z_sub[0])
        for cz, cy, cx, r in spheres[near].tolist():
            rows = torch.nonzero(torch.abs(z_sub - cz) < r).ravel()
            if rows.numel() == 0:
                continue
            rz_sq = (r * r - (z_sub[rows] - cz) ** 2)[:, None, None]
            uc = (cx - centre) * cos + (cy - centre) * sin  # (A,)
            first = torch.floor((uc - r + centre + 0.5) * su - 0.5).long()
            width = int(np.ceil(2 * r * su)) + 3
            cols = (first[:, None] + torch.arange(width)[None, :]).clamp(0, n * su - 1)
            offset = u[cols] - uc[:, None]
            chord = _chords(rz_sq, offset[None])  # (rows, A, width)
            # clamp() maps out-of-range columns onto the edge: zero their chord instead.
            valid = (first[:, None] + torch.arange(width)[None, :] >= 0) & (
                first[:, None] + torch.arange(width)[None, :] < n * su)
            chord = chord * valid[None]
            sub = path[rows]
            sub.scatter_add_(2, cols[None].expand_as(chord), -chord)
            path[rows] = sub
        transmitted = torch.exp(-mu_solid * path.clamp(min=0.0))
        shape = (z1 - z0, sz, angles.size, n, su)
        mean = transmitted.reshape(z1 - z0, sz, angles.size, n * su).reshape(shape).mean(dim=(1, 4))
        out[z0:z1] = (-torch.log(mean)).numpy()
        if progress is not None:
            progress(z1 - z0)
    return out
