"""Foam phantoms: spherical pores in a cylinder (and the bare cylinder)."""

from __future__ import annotations

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms._common import (
    _check_common,
    _cylinder_fraction,
    _finish,
    _pack_voids,
    _sphere_fraction,
)
from aiax_bench.sim.phantoms.shapes import Phantom, Spheres
from aiax_bench.validation import check_positive


def foam_phantom(
    size: int = 128,
    *,
    seed: int = 0,
    max_porosity: float = 0.59,
    max_void_radius: float = 0.06,
    min_void_radius: float = 1.5,
    min_wall: float = 2.0,
    cylinder_radius: float = 0.45,
    voxel_size_um: float = 20.0,
    mu_solid: float = 4.2,
    supersample: int = 2,
) -> Phantom:
    """Polymer foam: spherical voids of many sizes packed in a cylinder.

    Parameters
    ----------
    size : int
        Edge of the cubic volume (voxels).
    seed : int
        Seed of the void packing.
    max_porosity : float
        Packing stops early once voids fill this fraction of the cylinder;
        by default the packing runs until no void of ``min_void_radius`` fits,
        and the porosity (about 0.35 with the defaults) follows from
        ``min_wall`` and ``max_void_radius``.
    max_void_radius : float
        Largest void radius as a fraction of ``size``.
    min_void_radius : float
        Smallest void radius (voxels); packing stops when nothing larger fits.
    min_wall : float
        Least solid between two voids and between a void and the cylinder wall (voxels).
    cylinder_radius : float
        Radius of the sample cylinder as a fraction of ``size``.
    voxel_size_um : float
        Voxel edge (µm).
    mu_solid : float
        Attenuation of the polymer (1/cm); 4.2 is ABS (1.05 g/cm³) near 8 keV
        (Cu Kα; about 1.5 at 12 keV, from xraydb's Elam tables).
    supersample : int
        Sub-samples per voxel edge for the partial-volume fractions.
    """
    if int(size) < 8:
        raise InputError("size", f"is {size}", "expected at least 8 voxels")
    if not 0 < max_porosity < 0.6:
        raise InputError("max_porosity", f"is {max_porosity}", "expected a fraction in (0, 0.6)")
    if not 0 < cylinder_radius <= 0.5:
        raise InputError("cylinder_radius", f"is {cylinder_radius}",
                         "expected a fraction of the volume in (0, 0.5]: the cylinder must fit")
    for name, value, unit in (("voxel_size_um", voxel_size_um, "µm"), ("mu_solid", mu_solid, "1/cm"),
                              ("min_void_radius", min_void_radius, "voxels")):
        check_positive(name, value, unit)
    radius = cylinder_radius * size
    if max_void_radius * size < min_void_radius or max_void_radius * size > radius:
        raise InputError("max_void_radius", f"is {max_void_radius * size:.1f} voxels",
                         f"expected between min_void_radius ({min_void_radius}) and the cylinder radius")
    rng = np.random.default_rng(seed)
    n_candidates = int(0.5 * size**3 * cylinder_radius**2)
    spheres = _pack_voids(rng, height=size, radius=radius,
                          max_void_radius=max_void_radius * size, min_void_radius=min_void_radius,
                          min_wall=min_wall, n_candidates=n_candidates, porosity=max_porosity)
    centre = (size - 1) / 2
    spheres_idx = spheres + np.array([-0.5, centre, centre, 0.0])  # z from edge to voxel-index coordinates
    shape = (size, size, size)
    void = _sphere_fraction(shape, spheres_idx, supersample)
    cylinder = _cylinder_fraction(shape, radius, supersample)
    void = np.minimum(void, cylinder)
    solid = cylinder - void
    air = 1.0 - cylinder
    fractions = np.stack([air, solid, void]).astype(np.float32)
    labels = np.argmax(fractions, axis=0).astype(np.uint8)
    mask = np.broadcast_to(cylinder >= 0.5, shape).copy()
    z_in = (spheres[:, 0] >= 0) & (spheres[:, 0] < size)
    params = {
        "generator": "foam", "size": size, "seed": seed, "max_porosity": max_porosity,
        "max_void_radius": max_void_radius, "min_void_radius": min_void_radius, "min_wall": min_wall,
        "cylinder_radius": cylinder_radius, "n_voids": int(spheres.shape[0]),
        "n_void_centres_inside": int(z_in.sum()),
        "porosity": float(void.sum() / cylinder.sum()),
    }
    return Phantom(labels=labels, fractions=fractions, phases=("air", "solid", "pore"),
                   attenuation=(0.0, float(mu_solid), 0.0), voxel_size_um=float(voxel_size_um),
                   mask=mask, params=params, spheres=spheres_idx,
                   inclusions=(Spheres(spheres_idx[:, :3], spheres_idx[:, 3], label=2),))




def cylinder_phantom(
    size: int = 128,
    *,
    seed: int = 0,
    cylinder_radius: float = 0.45,
    voxel_size_um: float = 20.0,
    mu_solid: float = 4.2,
    supersample: int = 2,
) -> Phantom:
    """Uniform solid cylinder: the flat region for noise and calibration checks.

    Parameters
    ----------
    size : int
        Edge of the cubic volume (voxels).
    seed : int
        Unused (the phantom has no randomness); accepted like every generator's.
    cylinder_radius : float
        Radius of the cylinder as a fraction of ``size``.
    voxel_size_um : float
        Voxel edge (µm).
    mu_solid : float
        Attenuation of the solid (1/cm).
    supersample : int
        Sub-samples per voxel edge for the partial-volume fractions.
    """
    n = _check_common(size, cylinder_radius, voxel_size_um, supersample)
    check_positive("mu_solid", mu_solid, "1/cm")
    params = {"generator": "cylinder", "size": n, "seed": seed, "cylinder_radius": cylinder_radius}
    ph = _finish(n, cylinder_radius * n, (), ("air", "solid"), (0.0, float(mu_solid)), voxel_size_um,
                 supersample, params)
    ph.spheres = np.zeros((0, 4))  # no voids: the analytic projector applies
    return ph
