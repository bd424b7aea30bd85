"""Phantoms with exact labels, parameterised and seeded.

A phantom is a label volume (one integer per phase) plus the attenuation of
each phase in physical units (1/cm) and the voxel size (µm). The rotation axis
of every phantom is the volume's first axis ``z``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aiax_bench.errors import InputError

__all__ = ["PHANTOMS", "Phantom", "foam_phantom", "make_phantom"]


@dataclass
class Phantom:
    """A voxelised sample with its generating description.

    Attributes
    ----------
    labels : numpy.ndarray
        ``uint8`` phase index per voxel, shape ``(Z, Y, X)``; phase 0 is the air around the sample.
    fractions : numpy.ndarray
        ``float32`` volume fraction of each phase per voxel, shape ``(P, Z, Y, X)``
        (partial-volume truth, from supersampling).
    phases : tuple of str
        Name of each phase, indexed by label.
    attenuation : tuple of float
        Linear attenuation coefficient of each phase (1/cm).
    voxel_size_um : float
        Edge length of a voxel (µm).
    mask : numpy.ndarray
        ``bool`` sample region (cylinder), shape ``(Z, Y, X)``.
    params : dict
        Generating parameters and derived figures (e.g. number of pores, porosity).
    spheres : numpy.ndarray, optional
        ``(n, 4)`` void centres ``(z, y, x)`` and radii in voxels, when the phantom
        is made of spheres in a cylinder (exact analytic projections exist then).
    """

    labels: np.ndarray
    fractions: np.ndarray
    phases: tuple[str, ...]
    attenuation: tuple[float, ...]
    voxel_size_um: float
    mask: np.ndarray
    params: dict = field(default_factory=dict)
    spheres: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.labels.shape)

    def attenuation_map(self) -> np.ndarray:
        """Partial-volume attenuation per voxel (1/cm), ``float32``."""
        mu = np.asarray(self.attenuation, dtype=np.float32)
        return np.tensordot(mu, self.fractions, axes=1).astype(np.float32)


def _check_positive(name: str, value: float, unit: str) -> None:
    if not np.isfinite(value) or value <= 0:
        raise InputError(name, f"is {value}", f"expected a positive number of {unit}")


def _pack_voids(
    rng: np.random.Generator,
    *,
    height: float,
    radius: float,
    porosity: float,
    max_void_radius: float,
    min_void_radius: float,
    min_wall: float,
    n_candidates: int,
) -> np.ndarray:
    """Void packing of Pelt, Hendriksen & Batenburg (J. Synchrotron Rad. 29:254, 2022).

    Candidate centres are drawn uniformly in the cylinder; each knows the
    largest void it could host without cutting the cylinder wall or another
    void (keeping ``min_wall`` of solid between voids). The largest such void,
    capped at ``max_void_radius``, is placed; the process repeats until the
    voids fill ``porosity`` of the cylinder or none larger than
    ``min_void_radius`` fits. The result has the long-tailed size distribution
    of real foams. Coordinates are in voxels with the cylinder axis along z.
    """
    # Voids may stick out of the top and bottom: the scan is a section of a longer sample.
    z = rng.uniform(-max_void_radius, height + max_void_radius, n_candidates)
    rho = radius * np.sqrt(rng.uniform(0, 1, n_candidates))
    phi = rng.uniform(0, 2 * np.pi, n_candidates)
    pts = np.stack([z, rho * np.sin(phi), rho * np.cos(phi)], axis=1)
    room = np.minimum(radius - rho - min_wall, max_void_radius)
    target = porosity * np.pi * radius**2 * height
    placed, volume = [], 0.0
    while room.size and volume < target:
        best = int(np.argmax(room))
        r = float(room[best])
        if r < min_void_radius:
            break
        centre = pts[best]
        placed.append((*centre, r))
        z_lo, z_hi = max(centre[0] - r, 0.0), min(centre[0] + r, height)
        if z_hi > z_lo:  # volume inside the scanned height (spherical segment)
            a, b = z_lo - centre[0], z_hi - centre[0]
            volume += np.pi * (r**2 * (b - a) - (b**3 - a**3) / 3)
        dist = np.linalg.norm(pts - centre, axis=1)
        room = np.minimum(room, dist - r - min_wall)
        keep = room >= min_void_radius
        pts, room = pts[keep], room[keep]
    return np.asarray(placed, dtype=np.float64).reshape(-1, 4)


def _sphere_fraction(shape: tuple[int, int, int], spheres: np.ndarray, supersample: int) -> np.ndarray:
    """Fraction of each voxel inside any sphere, by ``supersample³`` point sampling."""
    frac = np.zeros(shape, dtype=np.float32)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    for cz, cy, cx, r in spheres:
        lo = [max(int(np.floor(c - r)), 0) for c in (cz, cy, cx)]
        hi = [min(int(np.ceil(c + r)) + 1, s) for c, s in zip((cz, cy, cx), shape)]
        if any(h <= low for low, h in zip(lo, hi)):
            continue
        axes = [
            (np.arange(low, h)[:, None] + offsets[None, :]).ravel() - c
            for low, h, c in zip(lo, hi, (cz, cy, cx))
        ]
        inside = (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                  + axes[2][None, None, :] ** 2) <= r * r
        n = [h - low for low, h in zip(lo, hi)]
        block = inside.reshape(n[0], supersample, n[1], supersample, n[2], supersample)
        block = block.mean(axis=(1, 3, 5), dtype=np.float32)
        view = frac[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(view, block, out=view)  # voids never overlap: max equals sum
    return frac


def _cylinder_fraction(shape: tuple[int, int, int], radius: float, supersample: int) -> np.ndarray:
    n = shape[1]
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    coords = (np.arange(n)[:, None] + offsets[None, :]).ravel() - (n - 1) / 2
    disk = (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2
    disk = disk.reshape(n, supersample, n, supersample).mean(axis=(1, 3), dtype=np.float32)
    return np.broadcast_to(disk, shape)


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
        Attenuation of the polymer (1/cm); 4.2 is ABS near 12 keV.
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
        _check_positive(name, value, unit)
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
                   mask=mask, params=params, spheres=spheres_idx)


#: Phantom generators by family name.
PHANTOMS: dict[str, Callable[..., Phantom]] = {"foam": foam_phantom}


def make_phantom(family: str, **params) -> Phantom:
    """Build the phantom of a family with its parameters (see :data:`PHANTOMS`)."""
    from aiax_bench.errors import UnknownNameError

    if family not in PHANTOMS:
        raise UnknownNameError("phantom family", family, list(PHANTOMS), "pick one of the listed families")
    return PHANTOMS[family](**params)
