"""The phantom container, the continuous inclusion shapes, and their rendering to voxel fractions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aiax_bench.errors import InputError


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
