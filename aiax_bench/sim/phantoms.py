"""Phantoms with exact labels, parameterised and seeded.

A phantom is a label volume (one integer per phase) plus the attenuation of
each phase in physical units (1/cm) and the voxel size (µm). The rotation axis
of every phantom is the volume's first axis ``z``; the sample is a cylinder
along ``z`` (phase 1, the matrix) holding inclusions of the other phases.

Inclusions are kept as continuous shapes (:class:`Spheres`, :class:`Cylinders`,
:class:`Ellipsoids`, :class:`Flakes`), so a phantom can be rendered at any
resolution (:func:`render_fractions`): the voxel fractions are one rendering,
and projections are computed from a finer one (:mod:`aiax_bench.sim.project`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
from scipy.spatial import cKDTree

from aiax_bench.errors import InputError

__all__ = [
    "PHANTOMS",
    "Cylinders",
    "Ellipsoids",
    "Flakes",
    "Phantom",
    "Spheres",
    "am_metal_phantom",
    "am_metal_um_phantom",
    "composite_phantom",
    "composite_um_phantom",
    "cylinder_phantom",
    "foam_phantom",
    "foam_um_phantom",
    "make_phantom",
    "render_fractions",
]


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
    inclusions : tuple
        Continuous description of the inclusions (groups of :class:`Spheres`,
        :class:`Cylinders`, :class:`Ellipsoids` or :class:`Flakes`, in painting
        order) inside the cylinder of radius ``params["cylinder_radius"] * size``;
        empty when the phantom only exists as voxels.
    """

    labels: np.ndarray
    fractions: np.ndarray
    phases: tuple[str, ...]
    attenuation: tuple[float, ...]
    voxel_size_um: float
    mask: np.ndarray
    params: dict = field(default_factory=dict)
    spheres: np.ndarray | None = None
    inclusions: tuple = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.labels.shape)

    def attenuation_map(self) -> np.ndarray:
        """Partial-volume attenuation per voxel (1/cm), ``float32``."""
        # A sum in phase order, not a BLAS product: BLAS kernels group the terms per CPU, and the
        # truth's bytes must not depend on the machine.
        out = np.zeros(self.fractions.shape[1:], dtype=np.float32)
        for mu, fraction in zip(self.attenuation, self.fractions, strict=True):
            if mu:
                out += np.float32(mu) * fraction
        return out


# --- Continuous shapes ---------------------------------------------------------------------------
#
# Each group holds n shapes of one phase. ``level(i, points)`` is negative inside
# shape i and 1-Lipschitz (it changes by at most the distance moved, in voxels):
# a voxel whose centre has level below -half-diagonal is then entirely inside,
# above +half-diagonal entirely outside, and only the voxels in between need to
# be supersampled. Coordinates are voxel indices ``(z, y, x)``; voxel ``k`` spans
# ``[k - 0.5, k + 0.5]``.


def _rows(a, n_cols: int) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).reshape(-1, n_cols)


@dataclass(frozen=True)
class Spheres:
    """Balls of phase ``label``: centres ``(n, 3)`` ``(z, y, x)`` and radii ``(n,)`` in voxels."""

    centres: np.ndarray
    radii: np.ndarray
    label: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "centres", _rows(self.centres, 3))
        object.__setattr__(self, "radii", np.asarray(self.radii, dtype=np.float64).ravel())

    def __len__(self) -> int:
        return self.radii.size

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.radii[:, None]
        return self.centres - r, self.centres + r

    def level(self, i: int, points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(points - self.centres[i], axis=-1) - self.radii[i]


@dataclass(frozen=True)
class Cylinders:
    """Straight circular cylinders with flat ends (fibres) of phase ``label``.

    ``centres`` ``(n, 3)`` and unit ``directions`` ``(n, 3)`` in ``(z, y, x)``,
    ``half_lengths`` and ``radii`` ``(n,)``, all in voxels.
    """

    centres: np.ndarray
    directions: np.ndarray
    half_lengths: np.ndarray
    radii: np.ndarray
    label: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "centres", _rows(self.centres, 3))
        d = _rows(self.directions, 3)
        object.__setattr__(self, "directions", d / np.linalg.norm(d, axis=1, keepdims=True))
        object.__setattr__(self, "half_lengths", np.asarray(self.half_lengths, dtype=np.float64).ravel())
        object.__setattr__(self, "radii", np.asarray(self.radii, dtype=np.float64).ravel())

    def __len__(self) -> int:
        return self.radii.size

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = np.abs(self.directions) * self.half_lengths[:, None] + self.radii[:, None]
        return self.centres - reach, self.centres + reach

    def level(self, i: int, points: np.ndarray) -> np.ndarray:
        d = points - self.centres[i]
        t = d @ self.directions[i]
        radial = np.sqrt(np.maximum(np.einsum("...k,...k->...", d, d) - t * t, 0.0))
        return np.maximum(radial - self.radii[i], np.abs(t) - self.half_lengths[i])


def _ellipsoid_bounds(centres, rotations, semi_axes) -> tuple[np.ndarray, np.ndarray]:
    reach = np.sqrt(np.einsum("nkj,nj->nk", rotations**2, semi_axes**2))
    return centres - reach, centres + reach


@dataclass(frozen=True)
class Ellipsoids:
    """Ellipsoids of phase ``label``.

    ``centres`` ``(n, 3)``; ``rotations`` ``(n, 3, 3)`` whose columns are the
    principal axes in ``(z, y, x)``; ``semi_axes`` ``(n, 3)`` along those columns (voxels).
    """

    centres: np.ndarray
    rotations: np.ndarray
    semi_axes: np.ndarray
    label: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "centres", _rows(self.centres, 3))
        object.__setattr__(self, "rotations", np.asarray(self.rotations, dtype=np.float64).reshape(-1, 3, 3))
        object.__setattr__(self, "semi_axes", _rows(self.semi_axes, 3))

    def __len__(self) -> int:
        return self.semi_axes.shape[0]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _ellipsoid_bounds(self.centres, self.rotations, self.semi_axes)

    def level(self, i: int, points: np.ndarray) -> np.ndarray:
        s = ((points - self.centres[i]) @ self.rotations[i]) / self.semi_axes[i]
        # |grad |s|| <= 1 / smallest semi-axis, so this scaling makes the level 1-Lipschitz.
        return self.semi_axes[i].min() * (np.linalg.norm(s, axis=-1) - 1.0)


@dataclass(frozen=True)
class Flakes:
    """Flat irregular defects (lack of fusion) of phase ``label``.

    Each flake is the part of an ellipsoid envelope (``centres``, ``rotations``,
    ``semi_axes`` as in :class:`Ellipsoids`) where ``q² + roughness · n < 1``,
    with ``q`` the envelope's normalised radius and ``n`` a smooth random field
    of unit variance, a sum of cosines with ``wavevectors`` ``(n, K, 3)`` and
    ``phases`` ``(n, K)`` in the envelope's normalised coordinates. The field
    is continuous, so the flake is the same shape at every resolution.
    """

    centres: np.ndarray
    rotations: np.ndarray
    semi_axes: np.ndarray
    wavevectors: np.ndarray
    phases: np.ndarray
    roughness: float
    label: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "centres", _rows(self.centres, 3))
        object.__setattr__(self, "rotations", np.asarray(self.rotations, dtype=np.float64).reshape(-1, 3, 3))
        object.__setattr__(self, "semi_axes", _rows(self.semi_axes, 3))
        n = self.semi_axes.shape[0]
        object.__setattr__(self, "wavevectors", np.asarray(self.wavevectors, dtype=np.float64).reshape(n, -1, 3))
        object.__setattr__(self, "phases", np.asarray(self.phases, dtype=np.float64).reshape(n, -1))

    def __len__(self) -> int:
        return self.semi_axes.shape[0]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _ellipsoid_bounds(self.centres, self.rotations, self.semi_axes)

    def _raw(self, i: int, s: np.ndarray) -> np.ndarray:
        k, phi = self.wavevectors[i], self.phases[i]
        noise = np.sqrt(2.0 / k.shape[0]) * np.cos(s @ k.T + phi).sum(axis=-1)
        q2 = np.einsum("...k,...k->...", s, s)
        return np.maximum(q2 - 1.0 + self.roughness * noise, q2 - 1.0)

    def level(self, i: int, points: np.ndarray) -> np.ndarray:
        semi, rot = self.semi_axes[i], self.rotations[i]
        s = ((points - self.centres[i]) @ rot) / semi
        # Dividing by a Lipschitz bound of the raw level makes it 1-Lipschitz. The
        # bound holds where renderers evaluate it: the bounding box grown by two
        # voxels, whose largest normalised radius is at a corner.
        lo, hi = (b[i] for b in self.bounds())
        corners = np.stack(np.meshgrid(*zip(lo - 2.0, hi + 2.0, strict=True), indexing="ij"), axis=-1)
        q_max = np.linalg.norm(((corners.reshape(-1, 3) - self.centres[i]) @ rot) / semi, axis=1).max()
        c = semi.min()
        k_norm = np.linalg.norm(self.wavevectors[i], axis=1).sum()
        lipschitz = (2.0 * q_max + self.roughness * np.sqrt(2.0 / self.wavevectors[i].shape[0]) * k_norm) / c
        return self._raw(i, s) / lipschitz

    def fill_fraction(self, i: int, n: int = 16) -> float:
        """Fraction of flake ``i``'s envelope that it fills (grid estimate)."""
        g = (np.arange(n) + 0.5) / n * 2.0 - 1.0
        s = np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3)
        s = s[np.einsum("nk,nk->n", s, s) < 1.0]
        return float((self._raw(i, s) < 0).mean())


# --- Rendering -----------------------------------------------------------------------------------


def _sub_offsets(supersample: int, scale: int) -> np.ndarray:
    """Sub-sample positions within a voxel of the ``scale``-times finer grid (coarse voxels)."""
    return ((np.arange(supersample) + 0.5) / supersample - 0.5) / scale


def _disk_fraction(n: int, radius: float, scale: int, supersample: int) -> np.ndarray:
    """Fraction of each pixel of the ``scale``-times finer ``(Y, X)`` grid inside the disk."""
    m = n * scale
    coords = (((np.arange(m) + 0.5) / scale - 0.5)[:, None]
              + _sub_offsets(supersample, scale)[None, :]).ravel() - (n - 1) / 2
    disk = (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2
    return disk.reshape(m, supersample, m, supersample).mean(axis=(1, 3), dtype=np.float32)


def _render(
    n: int,
    radius: float,
    groups: Sequence,
    n_phases: int,
    *,
    scale: int = 1,
    supersample: int = 2,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Phase fractions of a cylinder (phase 1) with inclusions, phase 0 outside.

    The volume is ``n`` voxels across, the cylinder of ``radius`` voxels is
    centred on ``(n - 1) / 2`` and runs along ``z``. The output grid is ``scale``
    times finer than the voxel grid and covers voxel rows ``rows`` (``z0, z1``);
    each of its voxels is sampled ``supersample³`` times where a boundary crosses it.
    Inclusions are assumed not to overlap; where they do, the earlier one keeps
    the shared volume.
    """
    s, m = int(scale), int(supersample)
    z0, z1 = (0, n) if rows is None else rows
    nz, ny = (z1 - z0) * s, n * s
    cyl = _disk_fraction(n, radius, s, m)
    frac = np.zeros((n_phases, nz, ny, ny), dtype=np.float32)
    occupied = np.zeros((nz, ny, ny), dtype=np.float32)
    centre = (n - 1) / 2
    off = _sub_offsets(m, s)
    sub = np.stack(np.meshgrid(off, off, off, indexing="ij"), axis=-1).reshape(-1, 3)
    half_diagonal = np.sqrt(3.0) / (2 * s)
    fine_lo = np.array([z0 * s, 0, 0])
    fine_hi = np.array([z1 * s, ny, ny])
    for group in groups:
        if len(group) == 0:
            continue
        lo, hi = group.bounds()
        # Voxels whose centre lies more than half a voxel outside the box have no sub-sample inside it.
        i_lo = np.maximum(np.floor((lo + 0.5) * s - 0.5).astype(np.int64), fine_lo)
        i_hi = np.minimum(np.ceil((hi + 0.5) * s - 0.5).astype(np.int64) + 1, fine_hi)
        for i in np.flatnonzero(np.all(i_hi > i_lo, axis=1)):
            axes = [(np.arange(a, b) + 0.5) / s - 0.5 for a, b in zip(i_lo[i], i_hi[i], strict=True)]
            pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
            wall = np.hypot(axes[1][:, None] - centre, axes[2][None, :] - centre) - radius
            level = np.maximum(group.level(i, pts), wall[None])
            inside = (level < -half_diagonal).astype(np.float32)
            band = (level >= -half_diagonal) & (level <= half_diagonal)
            if band.any():
                sp = pts[band][:, None, :] + sub[None]
                sp_wall = np.hypot(sp[..., 1] - centre, sp[..., 2] - centre) - radius
                inside[band] = (np.maximum(group.level(i, sp), sp_wall) < 0).mean(axis=1)
            box = tuple(slice(a - f, b - f) for a, b, f in zip(i_lo[i], i_hi[i], (z0 * s, 0, 0), strict=True))
            room = cyl[box[1:]][None] - occupied[box]
            inside = np.clip(np.minimum(inside, room), 0.0, None)
            frac[group.label][box] += inside
            occupied[box] += inside
    frac[0] = 1.0 - cyl
    frac[1] = cyl - occupied
    return frac


def render_fractions(
    phantom: Phantom,
    *,
    scale: int = 1,
    supersample: int = 2,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Phase fractions of a phantom on a grid ``scale`` times finer than its voxels.

    Parameters
    ----------
    phantom : Phantom
        The phantom; its inclusions (or spheres) are rendered exactly. A phantom
        known only as voxels has its fractions repeated ``scale`` times per axis.
    scale : int
        Refinement of the output grid (fine voxels per voxel edge).
    supersample : int
        Sub-samples per fine-voxel edge where a boundary crosses the voxel.
    rows : tuple of int, optional
        Voxel rows ``(z0, z1)`` to render (bounds memory); all by default.

    Returns
    -------
    numpy.ndarray
        ``float32`` fractions, shape ``(P, (z1 - z0) * scale, Y * scale, X * scale)``.
    """
    scale, supersample = int(scale), int(supersample)
    if scale < 1 or supersample < 1:
        raise InputError("scale/supersample", f"are {scale}/{supersample}", "expected positive integers")
    n_z, n, _ = phantom.shape
    z0, z1 = (0, n_z) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= z0 < z1 <= n_z:
        raise InputError("rows", f"are {rows}", f"expected 0 <= z0 < z1 <= {n_z}")
    groups = phantom.inclusions
    if not groups and phantom.spheres is not None:
        groups = (Spheres(phantom.spheres[:, :3], phantom.spheres[:, 3], label=len(phantom.phases) - 1),)
    if not groups and phantom.spheres is None:
        fr = phantom.fractions[:, z0:z1]
        return np.repeat(np.repeat(np.repeat(fr, scale, axis=1), scale, axis=2), scale, axis=3)
    radius = float(phantom.params["cylinder_radius"]) * n
    return _render(n, radius, groups, len(phantom.phases), scale=scale, supersample=supersample,
                   rows=(z0, z1))


# --- Generators ----------------------------------------------------------------------------------


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
        hi = [min(int(np.ceil(c + r)) + 1, s) for c, s in zip((cz, cy, cx), shape, strict=True)]
        if any(h <= low for low, h in zip(lo, hi, strict=True)):
            continue
        axes = [
            (np.arange(low, h)[:, None] + offsets[None, :]).ravel() - c
            for low, h, c in zip(lo, hi, (cz, cy, cx), strict=True)
        ]
        inside = (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                  + axes[2][None, None, :] ** 2) <= r * r
        n = [h - low for low, h in zip(lo, hi, strict=True)]
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
                   mask=mask, params=params, spheres=spheres_idx,
                   inclusions=(Spheres(spheres_idx[:, :3], spheres_idx[:, 3], label=2),))



def _check_fraction(name: str, value: float, upper: float) -> None:
    if not np.isfinite(value) or not 0 <= value < upper:
        raise InputError(name, f"is {value}", f"expected a volume fraction in [0, {upper})")


def _check_interval(name: str, pair, unit: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise InputError(name, f"is {pair!r}", f"expected a (min, max) pair of {unit}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo <= hi):
        raise InputError(name, f"is ({lo}, {hi})", f"expected 0 < min <= max ({unit})")
    return lo, hi


def _check_common(size: int, cylinder_radius: float, voxel_size_um: float, supersample: int) -> int:
    if int(size) != size or int(size) < 8:
        raise InputError("size", f"is {size}", "expected an integer of at least 8 voxels")
    if not 0 < cylinder_radius <= 0.5:
        raise InputError("cylinder_radius", f"is {cylinder_radius}",
                         "expected a fraction of the volume in (0, 0.5]: the cylinder must fit")
    _check_positive("voxel_size_um", voxel_size_um, "µm")
    if int(supersample) != supersample or int(supersample) < 1:
        raise InputError("supersample", f"is {supersample}", "expected a positive integer")
    return int(size)


def _check_attempts(max_attempts: int) -> None:
    if int(max_attempts) != max_attempts or int(max_attempts) < 1:
        raise InputError("max_attempts", f"is {max_attempts}", "expected a positive integer")


def _check_fits(name: str, value, extent: float, what: str, radius: float) -> None:
    if extent >= radius:
        raise InputError(name, f"is {value}, so {what} spans {extent:.1f} voxels",
                         f"expected less than the cylinder radius ({radius:.1f} voxels): it does not fit")


def _finish(n: int, radius: float, groups: tuple, phases: tuple[str, ...], attenuation: tuple[float, ...],
            voxel_size_um: float, supersample: int, params: dict) -> Phantom:
    fractions = _render(n, radius, groups, len(phases), supersample=supersample)
    labels = np.argmax(fractions, axis=0).astype(np.uint8)
    cyl = 1.0 - fractions[0]
    sample = float(cyl.sum())
    for k, name in enumerate(phases[2:], start=2):
        params[f"{name}_fraction"] = float(fractions[k].sum() / sample)
    diameter_cm = 2 * radius * voxel_size_um * 1e-4
    params["matrix_transmission_centre"] = float(np.exp(-attenuation[1] * diameter_cm))
    return Phantom(labels=labels, fractions=fractions, phases=phases,
                   attenuation=tuple(float(a) for a in attenuation), voxel_size_um=float(voxel_size_um),
                   mask=cyl >= 0.5, params=params, inclusions=groups)


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
    _check_positive("mu_solid", mu_solid, "1/cm")
    params = {"generator": "cylinder", "size": n, "seed": seed, "cylinder_radius": cylinder_radius}
    ph = _finish(n, cylinder_radius * n, (), ("air", "solid"), (0.0, float(mu_solid)), voxel_size_um,
                 supersample, params)
    ph.spheres = np.zeros((0, 4))  # no voids: the analytic projector applies
    return ph


def _uniform_disk(rng: np.random.Generator, radius: float) -> tuple[float, float]:
    rho, phi = radius * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    return rho * np.sin(phi), rho * np.cos(phi)


def _fibre_directions(rng: np.random.Generator, angles: np.ndarray, spread: float, tilt: float) -> np.ndarray:
    """Unit vectors ``(z, y, x)`` near the z–x plane about in-plane ``angles`` (degrees from z)."""
    n = angles.size
    alpha = np.deg2rad(angles + rng.normal(0, spread, n))
    beta = np.deg2rad(rng.normal(0, tilt, n))
    return np.stack([np.cos(alpha) * np.cos(beta), np.sin(beta), np.sin(alpha) * np.cos(beta)], axis=1)


def _segment_distance(c1, a1, h1, c2, a2, h2) -> np.ndarray:
    """Least distance between segments ``c1 ± h1 a1`` and ``c2 ± h2 a2`` (unit ``a``; broadcasting).

    Closest points of two segments (Ericson, Real-Time Collision Detection, 5.1.9).
    """
    def dot(u, v):
        return np.einsum("...k,...k->...", u, v)

    r = c1 - c2
    b, c, f = dot(a1, a2), dot(a1, r), dot(a2, r)
    denom = 1.0 - b * b
    parallel = denom < 1e-12
    s = np.where(parallel, 0.0, (b * f - c) / np.where(parallel, 1.0, denom))
    s = np.clip(s, -h1, h1)
    t = b * s + f
    t_clip = np.clip(t, -h2, h2)
    s = np.where(t_clip != t, np.clip(b * t_clip - c, -h1, h1), s)
    return np.linalg.norm(r + s[..., None] * a1 - t_clip[..., None] * a2, axis=-1)


def _point_segment_distance(p, c, a, h) -> np.ndarray:
    d = p - c
    t = np.clip(d @ a.T if a.ndim == 1 else np.einsum("nk,nk->n", d, a), -h, h)
    return np.linalg.norm(d - t[:, None] * a, axis=1)


def _frame(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotation whose first column is ``direction``, with a random roll about it."""
    helper = np.eye(3)[np.argmin(np.abs(direction))]
    u = np.cross(direction, helper)
    u /= np.linalg.norm(u)
    v = np.cross(direction, u)
    roll = rng.uniform(0, 2 * np.pi)
    u, v = np.cos(roll) * u + np.sin(roll) * v, -np.sin(roll) * u + np.cos(roll) * v
    return np.stack([direction, u, v], axis=1)


def _place_fibres(rng, *, n, radius, fibre_radius, half_length, target, gap, draw_directions,
                  max_attempts, batch=256) -> tuple[np.ndarray, np.ndarray, int]:
    """Random sequential addition of non-overlapping fibres until their volume in the sample reaches
    ``target`` (voxels³) or ``max_attempts`` candidates meeting the sample were tried.

    ``draw_directions(centres)`` gives unit directions for fibres centred there.
    Candidates are drawn and tested in batches, then accepted in order.
    Returns centres, directions and the number of attempts.
    """
    centre = (n - 1) / 2
    # A finite fibre may reach into the sample from outside it: centres are drawn
    # uniformly in the sample grown by the half-length, which keeps the density uniform.
    reach = 0.0 if half_length >= n else half_length
    t_axis = np.linspace(-half_length, half_length, max(16, int(half_length)))
    cs, ds = np.empty((0, 3)), np.empty((0, 3))
    volume, attempts, draws = 0.0, 0, 0
    min_dist = 2 * fibre_radius + gap
    while volume < target and attempts < max_attempts and draws < 20 * max_attempts:
        draws += batch
        rho = (radius + reach) * np.sqrt(rng.uniform(size=batch))
        phi = rng.uniform(0, 2 * np.pi, batch)
        c = np.stack([rng.uniform(-0.5 - reach, n - 0.5 + reach, batch),
                      centre + rho * np.sin(phi), centre + rho * np.cos(phi)], axis=1)
        a = draw_directions(c)
        axis_pts = c[:, None, :] + t_axis[None, :, None] * a[:, None, :]
        inside = ((np.hypot(axis_pts[..., 1] - centre, axis_pts[..., 2] - centre) < radius)
                  & (axis_pts[..., 0] >= -0.5) & (axis_pts[..., 0] <= n - 0.5)).mean(axis=1)
        meets = inside > 0
        c, a, inside = c[meets], a[meets], inside[meets]
        clear = np.ones(len(c), dtype=bool)
        if len(cs):
            dist = _segment_distance(c[:, None], a[:, None], half_length, cs[None], ds[None], half_length)
            clear = dist.min(axis=1) >= min_dist
        first_new = len(cs)
        for j in range(len(c)):
            if volume >= target or attempts >= max_attempts:
                break
            attempts += 1
            if not clear[j]:
                continue
            if len(cs) > first_new and (_segment_distance(c[j], a[j], half_length, cs[first_new:],
                                                          ds[first_new:], half_length).min() < min_dist):
                continue
            cs, ds = np.vstack([cs, c[j]]), np.vstack([ds, a[j]])
            volume += inside[j] * np.pi * fibre_radius**2 * 2 * half_length
    return cs, ds, attempts


def composite_phantom(
    size: int = 128,
    *,
    seed: int = 0,
    fibre_fraction: float = 0.16,
    fibre_radius: float = 2.5,
    fibre_length: float = 80.0,
    orientations: Sequence[float] = (0.0, 45.0, 90.0, 135.0),
    layered: bool = True,
    orientation_spread: float = 10.0,
    out_of_plane_spread: float = 5.0,
    porosity: float = 0.01,
    pore_radius: tuple[float, float] = (1.5, 4.0),
    pore_aspect: float = 2.0,
    min_gap: float = 0.5,
    cylinder_radius: float = 0.45,
    voxel_size_um: float = 2.0,
    mu_matrix: float = 1.10,
    mu_fibre: float = 23.4,
    supersample: int = 2,
    max_attempts: int = 20000,
) -> Phantom:
    """Short-glass-fibre reinforced polyamide (PA66-GF30-like) with pores.

    Phases: 0 air, 1 matrix (polyamide 6,6), 2 fibre (E-glass), 3 pore (air).
    Fibres are straight cylinders with flat ends placed by random sequential
    addition without overlap (``min_gap`` apart); their axes lie near the
    plate plane ``z–x`` (the plate normal is ``y``), at the given in-plane
    ``orientations`` with Gaussian spread. By default each orientation owns a
    layer of the plate (equal bands along ``y``, in order), as in the
    shell–core layers of a moulded plate or the plies of a laminate; nearly
    parallel neighbours also let the packing reach realistic fibre contents.
    Pores are ellipsoids in the matrix, elongated along a fibre-like direction,
    touching neither fibres nor each other. The sample is a cylinder along ``z``.

    Parameters
    ----------
    size : int
        Edge of the cubic volume (voxels).
    seed : int
        Seed of all random draws.
    fibre_fraction : float
        Target fibre volume fraction of the sample; 0.16 is 30 wt% E-glass in
        PA66. Placement stops there or after ``max_attempts`` candidates (dense
        packings of long fibres jam); ``params["fibre_fraction"]`` is the measured one.
    fibre_radius : float
        Fibre radius (voxels); 2.5 voxels of 2 µm is a 10 µm E-glass fibre.
    fibre_length : float
        Fibre length (voxels); ``numpy.inf`` for fibres crossing the whole sample.
    orientations : sequence of float
        In-plane fibre directions (degrees from the ``z`` axis towards ``x``).
    layered : bool
        Give each orientation a layer along ``y``; otherwise every fibre draws
        one of the orientations at random (mixed packings jam near 12% fibre).
    orientation_spread, out_of_plane_spread : float
        Standard deviation of the in-plane angle and of the tilt out of the plate plane (degrees).
    porosity : float
        Target pore volume fraction of the sample.
    pore_radius : tuple of float
        Range of the short semi-axes of pores (voxels), drawn uniformly.
    pore_aspect : float
        Largest ratio of long to short semi-axis (drawn uniformly from 1).
    min_gap : float
        Least matrix between fibres and between pores and anything else (voxels).
    cylinder_radius : float
        Radius of the sample cylinder as a fraction of ``size``.
    voxel_size_um : float
        Voxel edge (µm).
    mu_matrix, mu_fibre : float
        Attenuation (1/cm) of the matrix and the fibres. Defaults are at 15 keV,
        from the Elam et al. mass attenuation tables (xraydb): PA66
        C12H22N2O2 at 1.14 g/cm³ gives 1.10; E-glass (wt%: 54.5 SiO2, 22 CaO,
        14.5 Al2O3, 7 B2O3, traces of MgO, Na2O, Fe2O3, K2O, TiO2) at
        2.58 g/cm³ gives 23.4. Air (0.002 at 15 keV) is taken as 0: the flat
        field cancels it.
    supersample : int
        Sub-samples per voxel edge for the partial-volume fractions.
    max_attempts : int
        Candidates tried per placement (fibres, then pores) before giving up.

    Returns
    -------
    Phantom
        ``params`` holds the arguments (``fibre_length`` is ``None`` for
        infinite fibres, to stay JSON) and the measured ``fibre_fraction``,
        ``porosity`` (fractions of the sample volume, from the partial-volume
        fractions), ``porosity_labels`` (from the labels), ``n_fibres``, ``n_pores``.
    """
    n = _check_common(size, cylinder_radius, voxel_size_um, supersample)
    _check_fraction("fibre_fraction", fibre_fraction, 0.5)
    _check_fraction("porosity", porosity, 0.3)
    for name, value, unit in (("fibre_radius", fibre_radius, "voxels"), ("fibre_length", fibre_length, "voxels"),
                              ("mu_matrix", mu_matrix, "1/cm"), ("mu_fibre", mu_fibre, "1/cm")):
        if not value > 0:
            raise InputError(name, f"is {value}", f"expected a positive number of {unit}")
    pr_lo, pr_hi = _check_interval("pore_radius", pore_radius, "voxels")
    if not (np.isfinite(pore_aspect) and pore_aspect >= 1):
        raise InputError("pore_aspect", f"is {pore_aspect}", "expected a ratio of at least 1")
    if not (np.isfinite(min_gap) and min_gap >= 0):
        raise InputError("min_gap", f"is {min_gap}", "expected a non-negative distance (voxels)")
    for name, value in (("orientation_spread", orientation_spread), ("out_of_plane_spread", out_of_plane_spread)):
        if not (np.isfinite(value) and value >= 0):
            raise InputError(name, f"is {value}", "expected a non-negative angle (degrees)")
    _check_attempts(max_attempts)
    orient = np.asarray(orientations, dtype=np.float64).ravel()
    if orient.size == 0 or not np.all(np.isfinite(orient)):
        raise InputError("orientations", f"are {orientations!r}", "expected at least one finite angle (degrees)")
    radius = cylinder_radius * n
    _check_fits("fibre_radius", fibre_radius, 2 * fibre_radius + min_gap, "a fibre pair with its gap", radius)
    if porosity > 0:
        _check_fits("pore_radius", pore_radius, pr_hi * pore_aspect + min_gap, "the longest pore with its gap",
                    radius)

    rng = np.random.default_rng(seed)
    centre = (n - 1) / 2
    sample_volume = np.pi * radius**2 * n
    half_length = 2.0 * n if not np.isfinite(fibre_length) else min(fibre_length / 2, 2.0 * n)

    def draw_directions(c: np.ndarray) -> np.ndarray:
        if layered:
            band = np.clip((c[:, 1] - centre + radius) / (2 * radius) * orient.size, 0, orient.size - 1)
            angles = orient[band.astype(np.int64)]
        else:
            angles = orient[rng.integers(0, orient.size, len(c))]
        return _fibre_directions(rng, angles, orientation_spread, out_of_plane_spread)

    fc, fd = np.empty((0, 3)), np.empty((0, 3))
    fibre_attempts = 0
    if fibre_fraction > 0:
        fc, fd, fibre_attempts = _place_fibres(
            rng, n=n, radius=radius, fibre_radius=fibre_radius, half_length=half_length,
            target=fibre_fraction * sample_volume, gap=min_gap, draw_directions=draw_directions,
            max_attempts=max_attempts)
    fibres = Cylinders(fc, fd if len(fd) else np.zeros((0, 3)), np.full(len(fc), half_length),
                       np.full(len(fc), float(fibre_radius)), label=2)

    pc, rots, semis = [], [], []
    volume, pore_attempts = 0.0, 0
    target = porosity * sample_volume
    while volume < target and pore_attempts < max_attempts:
        pore_attempts += 1
        short = rng.uniform(pr_lo, pr_hi)
        long = short * rng.uniform(1.0, pore_aspect)
        dy, dx = _uniform_disk(rng, radius - long - min_gap)
        c = np.array([rng.uniform(-0.5, n - 0.5), centre + dy, centre + dx])
        direction = draw_directions(c[None])[0]
        if len(fc) and (_point_segment_distance(c, fc, fd, half_length).min()
                        < fibre_radius + long + min_gap):
            continue
        if pc and (np.linalg.norm(np.asarray(pc) - c, axis=1) - np.asarray(semis)[:, 0]).min() < long + min_gap:
            continue
        pc.append(c)
        rots.append(_frame(direction, rng))
        semis.append((long, short, short))
        volume += 4 / 3 * np.pi * long * short * short
    pores = Ellipsoids(np.asarray(pc).reshape(-1, 3), np.asarray(rots).reshape(-1, 3, 3),
                       np.asarray(semis).reshape(-1, 3), label=3)

    params = {
        "generator": "composite", "size": n, "seed": seed, "fibre_fraction_target": fibre_fraction,
        "fibre_radius": fibre_radius,
        "fibre_length": float(fibre_length) if np.isfinite(fibre_length) else None, "orientations": orient.tolist(),
        "layered": bool(layered), "orientation_spread": orientation_spread, "out_of_plane_spread": out_of_plane_spread,
        "porosity_target": porosity, "pore_radius": [pr_lo, pr_hi], "pore_aspect": pore_aspect,
        "min_gap": min_gap, "cylinder_radius": cylinder_radius, "energy_kev": 15.0,
        "n_fibres": len(fibres), "n_pores": len(pores),
        "fibre_attempts": fibre_attempts, "pore_attempts": pore_attempts,
    }
    ph = _finish(n, radius, (fibres, pores), ("air", "matrix", "fibre", "pore"),
                 (0.0, mu_matrix, mu_fibre, 0.0), voxel_size_um, supersample, params)
    ph.params["porosity"] = ph.params["pore_fraction"]
    # Thresholding shrinks small convex pores: the labelled porosity is lower than the true one.
    ph.params["porosity_labels"] = float((ph.labels == 3).sum() / ph.mask.sum())
    return ph


def _flake_field(rng: np.random.Generator, n_modes: int) -> tuple[np.ndarray, np.ndarray]:
    """Wavevectors and phases of a flake's random field, in its normalised coordinates."""
    u = rng.normal(size=(n_modes, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    k = 2 * np.pi * rng.uniform(1.0, 2.5, n_modes)[:, None] * u
    # Column 0 is the thickness axis: a slower variation there keeps the flake sheet-like.
    k[:, 0] *= 0.3
    return k, rng.uniform(0, 2 * np.pi, n_modes)


def am_metal_phantom(
    size: int = 128,
    *,
    seed: int = 0,
    gas_porosity: float = 0.003,
    gas_pore_radius: tuple[float, float] = (1.0, 3.0),
    lof_porosity: float = 0.01,
    lof_radius: tuple[float, float] = (5.0, 12.0),
    lof_thickness: tuple[float, float] = (2.0, 4.0),
    layer_thickness: float = 3.0,
    roughness: float = 0.7,
    min_gap: float = 1.0,
    cylinder_radius: float = 0.45,
    voxel_size_um: float = 10.0,
    mu_metal: float = 9.41,
    supersample: int = 2,
    max_attempts: int = 20000,
) -> Phantom:
    """Additively manufactured Ti-6Al-4V with gas pores and lack-of-fusion defects.

    Phases: 0 air, 1 metal, 2 gas pore, 3 lack-of-fusion defect. The build
    direction is ``z`` (the cylinder axis). Gas pores are spheres. Lack-of-fusion
    defects are flat, irregular sheets lying on layer boundaries: the part of
    a flat ellipsoid (wide in ``y–x``, thin in ``z``) that a smooth random field
    leaves, which gives jagged outlines and uneven thickness. No two defects touch.

    Parameters
    ----------
    size : int
        Edge of the cubic volume (voxels).
    seed : int
        Seed of all random draws.
    gas_porosity, lof_porosity : float
        Target volume fractions of the sample for each defect class; the measured
        ones are in ``params``.
    gas_pore_radius : tuple of float
        Range of gas pore radii (voxels), drawn uniformly.
    lof_radius : tuple of float
        Range of the in-plane semi-axes of lack-of-fusion envelopes (voxels).
    lof_thickness : tuple of float
        Range of the envelope thickness along ``z`` (voxels).
    layer_thickness : float
        Powder layer thickness (voxels); defects are centred on layer boundaries.
        3 voxels of 10 µm is a 30 µm layer, usual for laser powder-bed fusion.
    roughness : float
        Amplitude of the random field carving the defects (0: smooth ellipsoids).
    min_gap : float
        Least metal between any two defects and between a defect and the surface (voxels).
    cylinder_radius : float
        Radius of the sample cylinder as a fraction of ``size``.
    voxel_size_um : float
        Voxel edge (µm).
    mu_metal : float
        Attenuation of the alloy (1/cm). The default is Ti-6Al-4V (90 Ti, 6 Al,
        4 V wt%, 4.43 g/cm³) at 40 keV from the Elam et al. tables (xraydb):
        9.41. With the defaults the sample is 1.15 mm across and transmits 34%
        along a diameter; pores hold air, taken as 0.
    supersample : int
        Sub-samples per voxel edge for the partial-volume fractions.
    max_attempts : int
        Candidates tried per defect class before giving up.

    Returns
    -------
    Phantom
        ``params`` holds the arguments and the measured ``gas_porosity``,
        ``lof_porosity``, ``porosity`` (their sum; from the partial-volume
        fractions), ``porosity_labels`` (from the labels), ``n_gas_pores`` and ``n_lof``.
    """
    n = _check_common(size, cylinder_radius, voxel_size_um, supersample)
    _check_fraction("gas_porosity", gas_porosity, 0.2)
    _check_fraction("lof_porosity", lof_porosity, 0.2)
    gr_lo, gr_hi = _check_interval("gas_pore_radius", gas_pore_radius, "voxels")
    lr_lo, lr_hi = _check_interval("lof_radius", lof_radius, "voxels")
    lt_lo, lt_hi = _check_interval("lof_thickness", lof_thickness, "voxels")
    _check_positive("layer_thickness", layer_thickness, "voxels")
    _check_positive("mu_metal", mu_metal, "1/cm")
    _check_attempts(max_attempts)
    if not (np.isfinite(roughness) and roughness >= 0):
        raise InputError("roughness", f"is {roughness}", "expected a non-negative amplitude")
    if not (np.isfinite(min_gap) and min_gap >= 0):
        raise InputError("min_gap", f"is {min_gap}", "expected a non-negative distance (voxels)")
    radius = cylinder_radius * n
    if lof_porosity > 0:
        _check_fits("lof_radius", lof_radius, lr_hi + min_gap, "the widest defect with its gap", radius)
    if gas_porosity > 0:
        _check_fits("gas_pore_radius", gas_pore_radius, gr_hi + min_gap, "the largest pore with its gap", radius)

    rng = np.random.default_rng(seed)
    sample_volume = np.pi * radius**2 * n
    centre = (n - 1) / 2

    # Lack-of-fusion first: they are large, and small pores fill around them.
    fc, frot, fsemi, fk, fphi = [], [], [], [], []
    volume, lof_attempts = 0.0, 0
    while volume < lof_porosity * sample_volume and lof_attempts < max_attempts:
        lof_attempts += 1
        a, b = rng.uniform(lr_lo, lr_hi, 2)
        t = rng.uniform(lt_lo, lt_hi) / 2
        reach = max(a, b)
        psi = rng.uniform(0, np.pi)
        dy, dx = _uniform_disk(rng, radius - reach - min_gap)
        z = np.round((rng.uniform(-0.5, n - 0.5) + 0.5) / layer_thickness) * layer_thickness - 0.5
        c = np.array([z, centre + dy, centre + dx])
        if fc:
            other = np.asarray(fc)
            apart_z = np.abs(other[:, 0] - z) >= np.asarray(fsemi)[:, 0] + t + min_gap
            apart_r = (np.hypot(other[:, 1] - c[1], other[:, 2] - c[2])
                       >= np.asarray(fsemi)[:, 1:].max(axis=1) + reach + min_gap)
            if not np.all(apart_z | apart_r):
                continue
        k, phi = _flake_field(rng, 16)
        rot = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(psi), -np.sin(psi)], [0.0, np.sin(psi), np.cos(psi)]])
        fc.append(c)
        frot.append(rot)
        fsemi.append((t, a, b))
        fk.append(k)
        fphi.append(phi)
        one = Flakes(c, rot, (t, a, b), k, phi, roughness, label=3)
        volume += 4 / 3 * np.pi * t * a * b * one.fill_fraction(0)
    flakes = Flakes(np.asarray(fc).reshape(-1, 3), np.asarray(frot).reshape(-1, 3, 3),
                    np.asarray(fsemi).reshape(-1, 3), np.asarray(fk).reshape(len(fc), -1, 3),
                    np.asarray(fphi).reshape(len(fc), -1), float(roughness), label=3)

    pc, pr = [], []
    volume, gas_attempts = 0.0, 0
    while volume < gas_porosity * sample_volume and gas_attempts < max_attempts:
        gas_attempts += 1
        r = rng.uniform(gr_lo, gr_hi)
        dy, dx = _uniform_disk(rng, radius - r - min_gap)
        c = np.array([rng.uniform(-0.5, n - 0.5), centre + dy, centre + dx])
        if pc and (np.linalg.norm(np.asarray(pc) - c, axis=1) - np.asarray(pr)).min() < r + min_gap:
            continue
        if fc:
            apart_z = np.abs(flakes.centres[:, 0] - c[0]) >= flakes.semi_axes[:, 0] + r + min_gap
            apart_r = (np.hypot(flakes.centres[:, 1] - c[1], flakes.centres[:, 2] - c[2])
                       >= flakes.semi_axes[:, 1:].max(axis=1) + r + min_gap)
            if not np.all(apart_z | apart_r):
                continue
        pc.append(c)
        pr.append(r)
        volume += 4 / 3 * np.pi * r**3
    gas = Spheres(np.asarray(pc).reshape(-1, 3), np.asarray(pr), label=2)

    params = {
        "generator": "am-metal", "size": n, "seed": seed, "material": "Ti-6Al-4V", "energy_kev": 40.0,
        "gas_porosity_target": gas_porosity, "gas_pore_radius": [gr_lo, gr_hi],
        "lof_porosity_target": lof_porosity, "lof_radius": [lr_lo, lr_hi], "lof_thickness": [lt_lo, lt_hi],
        "layer_thickness": layer_thickness, "roughness": roughness, "min_gap": min_gap,
        "cylinder_radius": cylinder_radius, "n_gas_pores": len(gas), "n_lof": len(flakes),
        "gas_attempts": gas_attempts, "lof_attempts": lof_attempts,
    }
    ph = _finish(n, radius, (flakes, gas), ("air", "metal", "gas_pore", "lack_of_fusion"),
                 (0.0, mu_metal, 0.0, 0.0), voxel_size_um, supersample, params)
    p = ph.params
    p["gas_porosity"], p["lof_porosity"] = p.pop("gas_pore_fraction"), p.pop("lack_of_fusion_fraction")
    p["porosity"] = p["gas_porosity"] + p["lof_porosity"]
    p["porosity_labels"] = float((ph.labels >= 2).sum() / ph.mask.sum())
    return ph


# --- Generators in physical units (µm) -----------------------------------------------------------
#
# The generators above take lengths in voxels or in fractions of the volume, so
# one recipe makes a different material at each volume size. Those below take
# every length of the material in µm and convert it with ``voxel_size_um``; only
# the sample boundary (the cylinder) scales with the field of view, so a larger
# profile is a larger sample of the same material.

#: Relative width of the radius band placed per round by :func:`_pack_voids_pelt`. Measured
#: at 128³: 0.01 gives the void sizes of 0.001 (within the 1.5 % noise), 0.03 2 % smaller ones.
_PELT_BAND = 0.01
#: Least edge of the packing domain, in largest void radii (see :func:`_pack_voids_pelt`).
_MIN_BLOCK = 16.0
#: Period given to the k-d trees along axes that are not periodic: no distance reaches it.
_NO_PERIOD = 1.0e9
_SURFACES = ("cut", "closed")


def _periodic_delta(d: np.ndarray, box: tuple[float, float, float]) -> np.ndarray:
    period = np.asarray(box)
    return d - period * np.round(d / period)


def _pairs_within(tree: cKDTree, points: np.ndarray, reach: float,
                  box: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs closer than ``reach``: index into ``points``, index into ``tree``, periodic distance."""
    # query_ball_point is far faster than sparse_distance_matrix when one side holds few points.
    found = tree.query_ball_point(points, reach, return_sorted=False) if len(points) else []
    counts = np.fromiter(map(len, found), dtype=np.intp, count=len(found))
    j = np.fromiter(chain.from_iterable(found), dtype=np.intp, count=int(counts.sum()))
    i = np.repeat(np.arange(len(found)), counts)
    return i, j, np.linalg.norm(_periodic_delta(points[i] - tree.data[j], box), axis=1)


class _VoidIndex:
    """Placed voids in a periodic k-d tree that is rebuilt only now and then.

    The voids added since the last rebuild sit in a small tree of their own, so
    adding voids costs little however many there are.
    """

    def __init__(self, box: tuple[float, float, float]) -> None:
        self.box = box
        self.centres, self.radii = np.empty((0, 3)), np.empty(0)
        self._static, self._recent, self._n_static = None, None, 0

    def add(self, centres: np.ndarray, radii: np.ndarray) -> None:
        # New arrays, never changed in place: the trees keep references to them.
        self.centres = np.concatenate([self.centres, centres])
        self.radii = np.concatenate([self.radii, radii])
        if self.radii.size - self._n_static > max(4096, self._n_static // 4):
            self._static, self._recent, self._n_static = cKDTree(self.centres, boxsize=self.box), None, self.radii.size
        else:
            self._recent = cKDTree(self.centres[self._n_static :], boxsize=self.box)

    def lower_room(self, points: np.ndarray, room: np.ndarray, reach: float, wall: float) -> np.ndarray:
        """Lower ``room`` to each point's distance to the nearest void surface, minus ``wall``.

        Only voids centred within ``reach`` are seen: the result is exact where
        it ends below ``reach - max(radii) - wall``.
        """
        for voids, first in ((self._static, 0), (self._recent, self._n_static)):
            if voids is not None:
                i, j, d = _pairs_within(voids, points, reach, self.box)
                np.minimum.at(room, i, d - self.radii[first + j] - wall)
        return room


class _CandidatePool:
    """Candidate centres in a periodic k-d tree of a snapshot, rebuilt only now and then.

    Redrawn candidates are marked as moved: the snapshot's pairs for them are
    dropped and their new positions looked up in a small tree instead.
    """

    def __init__(self, positions: np.ndarray, box: tuple[float, float, float]) -> None:
        self.box = box
        self.positions = positions
        self._rebuild()

    def _rebuild(self) -> None:
        # The tree keeps a reference to its data: give it a copy, as positions change in place.
        self._tree = cKDTree(self.positions.copy(), boxsize=self.box)
        self._moved = np.zeros(self.positions.shape[0], dtype=bool)

    def move(self, index: np.ndarray, positions: np.ndarray) -> None:
        self.positions[index] = positions
        self._moved[index] = True
        if self._moved.sum() > max(1024, self._moved.size // 8):
            self._rebuild()

    def lower_room(self, room: np.ndarray, centres: np.ndarray, radii: np.ndarray, reach: float,
                   wall: float) -> None:
        """Lower the candidates' ``room`` for new voids (``centres``, ``radii``) within ``reach``."""
        i, j, d = _pairs_within(self._tree, centres, reach, self.box)
        fresh = ~self._moved[j]
        np.minimum.at(room, j[fresh], d[fresh] - radii[i[fresh]] - wall)
        moved = np.flatnonzero(self._moved)
        if moved.size:
            i, j, d = _pairs_within(cKDTree(self.positions[moved], boxsize=self.box), centres, reach, self.box)
            np.minimum.at(room, moved[j], d - radii[i] - wall)


def _pack_voids_pelt(
    rng: np.random.Generator,
    *,
    height: int,
    sample_radius: float,
    max_radius: float,
    min_radius: float,
    min_wall: float,
    density: float,
    porosity: float | None,
    n_voids: int | None,
    surface: str,
    replenish: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Void packing of Pelt, Hendriksen & Batenburg (J. Synchrotron Rad. 29:254, 2022).

    All lengths are in voxels and ``density`` is in candidates per voxel³. A pool
    of ``density × volume`` candidate centres is drawn uniformly in the packing
    domain; each candidate knows the largest void it can host: its distance to
    the nearest void surface (and, for a ``"closed"`` surface, to the sample
    wall) less ``min_wall``, capped at ``max_radius``. The candidate hosting the
    largest void is placed (ties at the cap go to a random one), the candidates
    it leaves without room are redrawn uniformly where a void could still grow,
    so the pool keeps its size, and the process repeats until the voids fill
    ``porosity`` of the domain, ``n_voids`` voids are centred in the sample, or
    no candidate can host ``min_radius``.

    The domain is periodic along ``z`` and ``max_radius + min_wall`` longer than
    the scan at each end, so no void meets its own periodic image inside the
    scan. With ``surface="closed"`` it is the sample cylinder itself (voids stay
    inside it); with ``"cut"`` it is a box periodic in all three axes around the
    cylinder, a foam block out of which the sample is cut. Every rule is local
    and the candidate density is per unit volume, so the statistics do not
    depend on the size of the domain, provided it holds enough voids: the
    porosity stop sets the smallest radius, which scatters from one small block
    to the next. Each periodic edge is therefore at least :data:`_MIN_BLOCK`
    largest radii long (a small sample is cut from a larger block).

    For speed, voids are placed in rounds rather than one at a time: a round
    takes the candidates whose room lies within :data:`_PELT_BAND` (relative) of
    the current level and places each one that no higher-ranked candidate of
    the round could shrink. This is the one-at-a-time order, except that
    candidates redrawn during a round join the ranking at the next one.

    ``replenish=False`` drops the swallowed candidates instead of redrawing
    them (the pool shrinks), for comparison only.

    Returns
    -------
    centres : numpy.ndarray
        ``(n, 3)`` void centres ``(z, y, x)`` in voxel-index coordinates of the
        scanned volume (axis of the cylinder at ``(height - 1) / 2``), for the
        voids that meet the sample.
    radii : numpy.ndarray
        ``(n,)`` void radii (voxels).
    info : dict
        ``pool`` (candidates, constant), ``redrawn`` (replenishments), ``rounds``,
        ``stop`` (``"porosity"``, ``"n_voids"`` or ``"min_radius"``),
        ``porosity_packing`` (void volume over the domain volume, exact),
        ``n_voids_packing`` (voids in the domain) and ``inside`` (a mask of the
        returned voids whose centre lies in the sample).
    """
    w = float(min_wall)
    margin = max_radius + w
    block = _MIN_BLOCK * max_radius
    lz = max(height + 2 * margin, block)
    if surface == "closed":
        span = 2 * sample_radius
        box = (lz, _NO_PERIOD, _NO_PERIOD)
        volume = np.pi * sample_radius**2 * lz
    else:
        span = max(2 * (sample_radius + margin), block)
        box = (lz, span, span)
        volume = span**2 * lz
    axis = span / 2
    n_pool = max(1, round(density * volume))
    voids = _VoidIndex(box)

    def base_room(p: np.ndarray) -> np.ndarray:
        if surface == "closed":
            return np.minimum(sample_radius - np.hypot(p[:, 1] - axis, p[:, 2] - axis) - w, max_radius)
        return np.full(p.shape[0], float(max_radius))

    def periodic(values: np.ndarray, period: float) -> np.ndarray:
        # The k-d trees refuse a coordinate equal to its period, which rounding can produce.
        return np.minimum(values, np.nextafter(period, 0.0))

    def draw(k: int) -> np.ndarray:
        z = periodic(rng.uniform(0.0, lz, k), lz)
        if surface == "closed":
            rho = sample_radius * np.sqrt(rng.uniform(0.0, 1.0, k))
            phi = rng.uniform(0.0, 2 * np.pi, k)
            return np.stack([z, axis + rho * np.sin(phi), axis + rho * np.cos(phi)], axis=1)
        return np.stack([z, periodic(rng.uniform(0.0, span, k), span), periodic(rng.uniform(0.0, span, k), span)],
                        axis=1)

    def draw_free(k: int, top: float) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` points uniform where a void could still grow (room >= 0), with their room.

        The rooms are exact up to ``top``, which bounds every room in the pool;
        the rare point beyond it gets its room recomputed with the full reach.
        Fewer than ``k`` come back only when walls leave almost no such space.
        """
        got_p, got_r, have, tries = [], [], 0, 0
        while have < k and tries < 1000 * k + 100_000:
            p = draw(int(1.3 * (k - have)) + 8)
            tries += p.shape[0]
            big = voids.radii.max() if voids.radii.size else 0.0
            room = voids.lower_room(p, base_room(p), top + big + w, w)
            far = np.flatnonzero(room >= top)
            if far.size and voids.radii.size:
                room[far] = voids.lower_room(p[far], base_room(p[far]), max_radius + big + w, w)
            keep = room >= 0
            got_p.append(p[keep])
            got_r.append(room[keep])
            have += int(keep.sum())
        return np.concatenate(got_p)[:k], np.concatenate(got_r)[:k]

    def in_sample(c: np.ndarray) -> np.ndarray:
        z = c[:, 0] - margin
        inside = (z >= 0) & (z < height)
        if surface == "cut":
            inside &= np.hypot(c[:, 1] - axis, c[:, 2] - axis) < sample_radius
        return inside

    positions, room = draw_free(n_pool, max_radius)
    pool = _CandidatePool(positions, box)
    key = rng.uniform(0.0, 1.0, n_pool)
    target_volume = np.inf if porosity is None else porosity * volume
    target_count = np.inf if n_voids is None else n_voids
    placed_volume, placed_count = 0.0, 0
    rounds = redrawn = 0
    level = max_radius
    stop = "min_radius"
    while True:
        top = float(room.max())
        if top < min_radius:
            break
        # A level ends when no candidate is left in its band; the next starts at the largest room left.
        if top < (1 - _PELT_BAND) * level:
            level = top
        rounds += 1
        batch = np.flatnonzero(room >= max(min_radius, (1 - _PELT_BAND) * level))
        batch = batch[np.lexsort((-key[batch], -room[batch]))]
        # A dense pool has many candidates at the cap: a prefix of the ranking keeps the round small.
        batch = batch[: max(256, int(2 * volume / (2 * top + w) ** 3))]
        blocked = np.zeros(batch.size, dtype=bool)
        at = pool.positions[batch]
        pairs = cKDTree(at, boxsize=box).query_pairs(2 * top + w, output_type="ndarray")
        if len(pairs):
            a, b = pairs[:, 0], pairs[:, 1]
            d = np.linalg.norm(_periodic_delta(at[a] - at[b], box), axis=1)
            # Placing one would shrink the other: only the higher-ranked may go this round.
            clash = d < room[batch[a]] + room[batch[b]] + w
            blocked[np.maximum(a, b)[clash]] = True
        hosts = batch[~blocked]
        new_c, new_r = pool.positions[hosts].copy(), room[hosts].copy()
        cum_volume = placed_volume + np.cumsum(4 / 3 * np.pi * new_r**3)
        cum_count = placed_count + np.cumsum(in_sample(new_c))
        done = (cum_volume >= target_volume) | (cum_count >= target_count)
        if done.any():
            k = int(np.argmax(done)) + 1
            stop = "porosity" if cum_volume[k - 1] >= target_volume else "n_voids"
            hosts, new_c, new_r = hosts[:k], new_c[:k], new_r[:k]
        placed_volume = float(cum_volume[new_r.size - 1])
        placed_count = int(cum_count[new_r.size - 1])
        voids.add(new_c, new_r)
        if done.any():
            break
        pool.lower_room(room, new_c, new_r, top + new_r.max() + w, w)
        room[hosts] = -1.0
        gone = np.flatnonzero(room < 0)
        if not replenish:
            room[gone] = -np.inf
            continue
        fresh, fresh_room = draw_free(gone.size, top)
        # With no free space left the unfilled slots stay empty: the pool shrinks only then.
        room[gone] = -np.inf
        gone = gone[: fresh_room.size]
        room[gone] = fresh_room
        pool.move(gone, fresh)
        key[gone] = rng.uniform(0.0, 1.0, gone.size)
        redrawn += gone.size

    centres, radii = voids.centres, voids.radii
    z = centres[:, 0] - margin - 0.5
    meets = (z + radii > -0.5) & (z - radii < height - 0.5)
    if surface == "cut":
        meets &= np.hypot(centres[:, 1] - axis, centres[:, 2] - axis) - radii < sample_radius
    inside = in_sample(centres)[meets]
    out = centres[meets] - np.array([margin + 0.5, axis - (height - 1) / 2, axis - (height - 1) / 2])
    info = {"pool": n_pool, "redrawn": redrawn, "rounds": rounds, "stop": stop,
            "porosity_packing": placed_volume / volume, "n_voids_packing": int(radii.size), "inside": inside}
    return out, radii[meets], info


def _um_to_voxels(name: str, value: float, voxel_size_um: float, *, zero_ok: bool = False) -> float:
    ok = np.isfinite(value) and (value >= 0 if zero_ok else value > 0)
    if not ok:
        kind = "non-negative" if zero_ok else "positive"
        raise InputError(name, f"is {value}", f"expected a {kind} length (µm)")
    return float(value) / voxel_size_um


def _um_pair_to_voxels(name: str, pair, voxel_size_um: float) -> tuple[float, float]:
    lo, hi = _check_interval(name, pair, "µm")
    return lo / voxel_size_um, hi / voxel_size_um


def foam_um_phantom(
    size: int = 128,
    *,
    seed: int = 0,
    voxel_size_um: float = 20.0,
    porosity: float | None = 0.45,
    n_voids: int | None = None,
    max_void_radius_um: float = 160.0,
    min_void_radius_um: float = 20.0,
    min_wall_um: float = 0.0,
    candidates_per_mm3: float = 125.0,
    surface: str = "cut",
    cylinder_radius: float = 0.45,
    mu_solid: float = 4.2,
    supersample: int = 2,
) -> Phantom:
    """Polymer foam with every length in µm: the same material at any volume size.

    Spherical voids are packed as by Pelt, Hendriksen & Batenburg (J. Synchrotron
    Rad. 29:254, 2022; see :func:`_pack_voids_pelt`): a pool of candidate centres
    of fixed density per mm³, the largest void any candidate can host placed
    first, and the candidates it swallows redrawn in the free space so the pool
    never shrinks. Voids touch (no wall) unless ``min_wall_um`` is set. Radii run
    from ``max_void_radius_um`` down to where the packing stops, with many more
    small voids than large ones.

    The material does not depend on ``size``: the candidate density, the radii
    and the stop are per unit volume or in µm, and the packing domain is
    periodic along ``z`` and never smaller than 16 largest radii along an axis.
    Only the sample boundary scales with the field of view: the cylinder's
    radius is ``cylinder_radius × size`` voxels, a larger piece of the same foam
    seen through a larger field of view, so that every profile scans its whole
    sample (a fixed sample would be a speck at 512³ or overflow 64³).

    With ``surface="cut"`` the cylinder is cut out of a foam block, as a
    machined specimen is: voids crossing its surface are open, and inside the
    cylinder they are pore. The sample's porosity and void sizes are then those
    of the block at every size. With ``"closed"`` the voids stay inside the
    cylinder (a moulded rod), which the analytic projector needs
    (:attr:`Phantom.spheres` is set); but voids cannot fill the layer along the
    surface, whose share of the sample grows as the sample shrinks: the sample
    is less porous at 64³ than at 512³, and a porosity stop drives a small
    sample to smaller voids or ends at ``min_void_radius_um`` short of its
    target (with the defaults: 0.40 at 64³, 0.435 at 128³, 0.45 from 256³ on).

    Parameters
    ----------
    size : int
        Edge of the cubic volume (voxels).
    seed : int
        Seed of the packing.
    voxel_size_um : float
        Voxel edge (µm); converts every length below to voxels.
    porosity : float or None
        Stop when the voids fill this fraction of the packing domain (the foam
        block, or the closed cylinder), as in a foam of known density.
    n_voids : int or None
        Stop when this many voids are centred in the scanned sample. A count is
        not intensive: the same count in a larger volume is a sparser foam.
        Either stop may be set, or both (the first reached ends the packing);
        with neither, packing runs until no void of ``min_void_radius_um`` fits.
    max_void_radius_um : float
        Largest void radius (µm); the cap of Pelt et al.
    min_void_radius_um : float
        Smallest void radius (µm): packing ends when nothing this large fits.
    min_wall_um : float
        Least solid between two voids (and, for a closed surface, between a void
        and the surface) (µm); 0 lets voids touch, as in Pelt et al.
    candidates_per_mm3 : float
        Density of the candidate pool (per mm³ of the packing domain). A sparse
        pool finds fewer of the large holes left between voids, so porosity
        grows more slowly as radii shrink: it sets how far down the size
        distribution reaches at a given porosity.
    surface : {"cut", "closed"}
        Whether voids may cross the sample surface (see above).
    cylinder_radius : float
        Radius of the sample cylinder as a fraction of ``size``: the sample
        boundary, not a length of the material.
    mu_solid : float
        Attenuation of the polymer (1/cm); 4.2 is ABS near 8 keV (see :func:`foam_phantom`).
    supersample : int
        Sub-samples per voxel edge for the partial-volume fractions.

    Returns
    -------
    Phantom
        Phases air, solid, pore. ``inclusions`` holds the voids that meet the
        sample; ``spheres`` holds them too (voxels) for a closed surface, and is
        ``None`` for a cut one, whose projections come from the rendered voids
        (see :func:`aiax_bench.sim.project.project_phantom`).
        ``params`` holds the arguments and the measured ``porosity`` (partial-volume
        fractions in the cylinder), ``porosity_packing`` (exact, over the packing
        domain), ``n_voids`` (voids centred in the sample), the radii of those
        voids in µm (``void_radius_mean_um`` and quantiles ``void_radius_q10_um``,
        ``_q50_um``, ``_q90_um``), and the packing's ``pool``, ``redrawn``,
        ``rounds`` and ``stop``.
    """
    n = _check_common(size, cylinder_radius, voxel_size_um, supersample)
    if surface not in _SURFACES:
        raise InputError("surface", f"is {surface!r}", f"expected one of {', '.join(_SURFACES)}")
    if porosity is not None and not (np.isfinite(porosity) and 0 < porosity < 0.7):
        raise InputError("porosity", f"is {porosity}", "expected a volume fraction in (0, 0.7) or None")
    if n_voids is not None and (int(n_voids) != n_voids or int(n_voids) < 1):
        raise InputError("n_voids", f"is {n_voids}", "expected a positive integer or None")
    r_max = _um_to_voxels("max_void_radius_um", max_void_radius_um, voxel_size_um)
    r_min = _um_to_voxels("min_void_radius_um", min_void_radius_um, voxel_size_um)
    wall = _um_to_voxels("min_wall_um", min_wall_um, voxel_size_um, zero_ok=True)
    _check_positive("candidates_per_mm3", candidates_per_mm3, "candidates per mm³")
    _check_positive("mu_solid", mu_solid, "1/cm")
    radius = cylinder_radius * n
    if r_min > r_max:
        raise InputError("min_void_radius_um", f"is {min_void_radius_um}",
                         f"expected at most max_void_radius_um ({max_void_radius_um})")
    _check_fits("max_void_radius_um", max_void_radius_um, r_max + wall, "the largest void with its wall", radius)
    density = candidates_per_mm3 * (voxel_size_um * 1e-3) ** 3

    rng = np.random.default_rng(seed)
    centres, radii, info = _pack_voids_pelt(
        rng, height=n, sample_radius=radius, max_radius=r_max, min_radius=r_min, min_wall=wall,
        density=density, porosity=porosity, n_voids=None if n_voids is None else int(n_voids), surface=surface)
    inside_um = radii[info.pop("inside")] * voxel_size_um
    q10, q50, q90 = (np.quantile(inside_um, [0.1, 0.5, 0.9]) if inside_um.size else (np.nan,) * 3)
    params = {
        "generator": "foam-um", "size": n, "seed": seed, "voxel_size_um": float(voxel_size_um),
        "porosity_target": porosity, "n_voids_target": n_voids, "max_void_radius_um": max_void_radius_um,
        "min_void_radius_um": min_void_radius_um, "min_wall_um": min_wall_um,
        "candidates_per_mm3": candidates_per_mm3, "surface": surface, "cylinder_radius": cylinder_radius,
        **info, "n_voids": int(inside_um.size),
        "void_radius_mean_um": float(inside_um.mean()) if inside_um.size else float("nan"),
        "void_radius_q10_um": float(q10), "void_radius_q50_um": float(q50), "void_radius_q90_um": float(q90),
    }
    voids = Spheres(centres, radii, label=2)
    ph = _finish(n, radius, (voids,), ("air", "solid", "pore"), (0.0, float(mu_solid), 0.0), voxel_size_um,
                 supersample, params)
    ph.params["porosity"] = ph.params.pop("pore_fraction")
    if surface == "closed":
        ph.spheres = np.column_stack([centres, radii])
    return ph


def composite_um_phantom(
    size: int = 128,
    *,
    seed: int = 0,
    voxel_size_um: float = 4.0,
    fibre_radius_um: float = 10.0,
    fibre_length_um: float | None = 192.0,
    pore_radius_um: tuple[float, float] = (6.0, 16.0),
    min_gap_um: float = 2.0,
    **options,
) -> Phantom:
    """:func:`composite_phantom` with its lengths in µm, converted with ``voxel_size_um``.

    Parameters
    ----------
    size, seed : int
        As in :func:`composite_phantom`.
    voxel_size_um : float
        Voxel edge (µm).
    fibre_radius_um : float
        Fibre radius (µm).
    fibre_length_um : float or None
        Fibre length (µm); ``None`` for fibres crossing the whole sample.
    pore_radius_um : tuple of float
        Range of the short semi-axes of pores (µm).
    min_gap_um : float
        Least matrix between fibres and between pores and anything else (µm).
    **options
        Other keywords of :func:`composite_phantom` (dimensionless or in 1/cm);
        ``cylinder_radius`` stays a fraction of ``size``: it is the sample
        boundary, which scales with the field of view.

    Returns
    -------
    Phantom
        As :func:`composite_phantom`, with ``params["generator"]`` ``"composite-um"``
        and the µm arguments added. At the same voxel size the phantom equals
        :func:`composite_phantom` given the same lengths in voxels.
    """
    _check_positive("voxel_size_um", voxel_size_um, "µm")
    _reject_voxel_lengths(options, ("fibre_radius", "fibre_length", "pore_radius", "min_gap"))
    length = np.inf if fibre_length_um is None else _um_to_voxels("fibre_length_um", fibre_length_um, voxel_size_um)
    ph = composite_phantom(
        size, seed=seed, voxel_size_um=voxel_size_um,
        fibre_radius=_um_to_voxels("fibre_radius_um", fibre_radius_um, voxel_size_um),
        fibre_length=length, pore_radius=_um_pair_to_voxels("pore_radius_um", pore_radius_um, voxel_size_um),
        min_gap=_um_to_voxels("min_gap_um", min_gap_um, voxel_size_um, zero_ok=True), **options)
    ph.params.update(generator="composite-um", voxel_size_um=float(voxel_size_um), fibre_radius_um=fibre_radius_um,
                     fibre_length_um=fibre_length_um, pore_radius_um=list(pore_radius_um), min_gap_um=min_gap_um)
    return ph


def am_metal_um_phantom(
    size: int = 128,
    *,
    seed: int = 0,
    voxel_size_um: float = 10.0,
    gas_pore_radius_um: tuple[float, float] = (10.0, 30.0),
    lof_radius_um: tuple[float, float] = (50.0, 120.0),
    lof_thickness_um: tuple[float, float] = (20.0, 40.0),
    layer_thickness_um: float = 30.0,
    min_gap_um: float = 10.0,
    **options,
) -> Phantom:
    """:func:`am_metal_phantom` with its lengths in µm, converted with ``voxel_size_um``.

    Parameters
    ----------
    size, seed : int
        As in :func:`am_metal_phantom`.
    voxel_size_um : float
        Voxel edge (µm).
    gas_pore_radius_um : tuple of float
        Range of gas pore radii (µm).
    lof_radius_um : tuple of float
        Range of the in-plane semi-axes of lack-of-fusion envelopes (µm).
    lof_thickness_um : tuple of float
        Range of the envelope thickness along ``z`` (µm).
    layer_thickness_um : float
        Powder layer thickness (µm); defects lie on layer boundaries.
    min_gap_um : float
        Least metal between any two defects and between a defect and the surface (µm).
    **options
        Other keywords of :func:`am_metal_phantom` (dimensionless or in 1/cm);
        ``cylinder_radius`` stays a fraction of ``size``: it is the sample
        boundary, which scales with the field of view.

    Returns
    -------
    Phantom
        As :func:`am_metal_phantom`, with ``params["generator"]`` ``"am-metal-um"``
        and the µm arguments added. At the same voxel size the phantom equals
        :func:`am_metal_phantom` given the same lengths in voxels.
    """
    _check_positive("voxel_size_um", voxel_size_um, "µm")
    _reject_voxel_lengths(options, ("gas_pore_radius", "lof_radius", "lof_thickness", "layer_thickness", "min_gap"))
    ph = am_metal_phantom(
        size, seed=seed, voxel_size_um=voxel_size_um,
        gas_pore_radius=_um_pair_to_voxels("gas_pore_radius_um", gas_pore_radius_um, voxel_size_um),
        lof_radius=_um_pair_to_voxels("lof_radius_um", lof_radius_um, voxel_size_um),
        lof_thickness=_um_pair_to_voxels("lof_thickness_um", lof_thickness_um, voxel_size_um),
        layer_thickness=_um_to_voxels("layer_thickness_um", layer_thickness_um, voxel_size_um),
        min_gap=_um_to_voxels("min_gap_um", min_gap_um, voxel_size_um, zero_ok=True), **options)
    ph.params.update(generator="am-metal-um", voxel_size_um=float(voxel_size_um),
                     gas_pore_radius_um=list(gas_pore_radius_um), lof_radius_um=list(lof_radius_um),
                     lof_thickness_um=list(lof_thickness_um), layer_thickness_um=layer_thickness_um,
                     min_gap_um=min_gap_um)
    return ph


def _reject_voxel_lengths(options: dict, names: tuple[str, ...]) -> None:
    # A length in voxels next to µm ones would silently change with the voxel size.
    for name in names:
        if name in options:
            raise InputError(name, "is a length in voxels", f"expected {name}_um (µm) instead")


#: Phantom generators by name: the families of version 1.0, and the generators in µm
#: that later recipes name in their ``phantom.generator``.
PHANTOMS: dict[str, Callable[..., Phantom]] = {
    "foam": foam_phantom,
    "composite": composite_phantom,
    "am-metal": am_metal_phantom,
    "cylinder": cylinder_phantom,
    "foam-um": foam_um_phantom,
    "composite-um": composite_um_phantom,
    "am-metal-um": am_metal_um_phantom,
}


def make_phantom(family: str, **params) -> Phantom:
    """Build the phantom of a family with its parameters (see :data:`PHANTOMS`)."""
    from aiax_bench.errors import UnknownNameError

    if family not in PHANTOMS:
        raise UnknownNameError("phantom family", family, list(PHANTOMS), "pick one of the listed families")
    return PHANTOMS[family](**params)
