"""Checks and building blocks shared by the phantom families."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms.shapes import Phantom, _render
from aiax_bench.validation import check_positive, check_positive_int

# --- Generators ----------------------------------------------------------------------------------


class _BlockMax:
    """First index of the largest value of an array that changes in a few places at a time.

    The maximum of every block of :data:`_BlockMax.BLOCK` entries is kept; a
    change recomputes the blocks it touches, and the argmax looks at the block
    maxima and then inside one block (the first index among equal values, as
    ``numpy.argmax``).
    """

    BLOCK = 64

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        n_blocks = -(-values.size // self.BLOCK)
        self._padded = np.full(n_blocks * self.BLOCK, -np.inf)
        self._padded[:values.size] = values
        self._blocks = self._padded.reshape(n_blocks, self.BLOCK)
        self._maxima = self._blocks.max(axis=1)

    def update(self, changed: np.ndarray) -> None:
        """Take the current values at the ``changed`` indices."""
        self._padded[changed] = self.values[changed]
        touched = changed // self.BLOCK  # repeats only repeat the same assignment
        self._maxima[touched] = self._blocks[touched].max(axis=1)

    def argmax(self) -> int:
        block = int(np.argmax(self._maxima))
        return block * self.BLOCK + int(np.argmax(self._blocks[block]))



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

    A placed void only lowers the room of candidates within reach (found in a
    k-d tree), and the largest room is kept per block of candidates, so each
    placement costs about its neighbourhood, not the whole pool. The voids,
    their order and their sizes are those of placing against every candidate.
    """
    # Voids may stick out of the top and bottom: the scan is a section of a longer sample.
    z = rng.uniform(-max_void_radius, height + max_void_radius, n_candidates)
    rho = radius * np.sqrt(rng.uniform(0, 1, n_candidates))
    phi = rng.uniform(0, 2 * np.pi, n_candidates)
    pts = np.stack([z, rho * np.sin(phi), rho * np.cos(phi)], axis=1)
    room = np.minimum(radius - rho - min_wall, max_void_radius)
    target = porosity * np.pi * radius**2 * height
    placed, volume = [], 0.0
    if not n_candidates:
        return np.zeros((0, 4))
    largest = _BlockMax(room)
    tree = cKDTree(pts)
    while volume < target:
        best = largest.argmax()
        r = float(room[best])
        if r < min_void_radius:  # rooms only shrink: nothing larger will fit any more
            break
        centre = pts[best]
        placed.append((*centre, r))
        z_lo, z_hi = max(centre[0] - r, 0.0), min(centre[0] + r, height)
        if z_hi > z_lo:  # volume inside the scanned height (spherical segment)
            a, b = z_lo - centre[0], z_hi - centre[0]
            volume += np.pi * (r**2 * (b - a) - (b**3 - a**3) / 3)
        # Only candidates closer than r + min_wall + max_void_radius can lose room (no room exceeds
        # max_void_radius); the tree's reach is widened a little so that rounding cannot drop one.
        near = np.asarray(tree.query_ball_point(centre, (r + min_wall + max_void_radius) * (1 + 1e-9) + 1e-9),
                          dtype=np.intp)
        lowered = np.linalg.norm(pts[near] - centre, axis=1) - r - min_wall
        smaller = lowered < room[near]
        near = near[smaller]
        room[near] = lowered[smaller]
        largest.update(near)
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
    check_positive("voxel_size_um", voxel_size_um, "µm")
    check_positive_int("supersample", supersample, "sub-voxel samples per axis")
    return int(size)


def _check_attempts(max_attempts: int) -> None:
    check_positive_int("max_attempts", max_attempts, "placement attempts")


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


def _uniform_disk(rng: np.random.Generator, radius: float) -> tuple[float, float]:
    rho, phi = radius * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    return rho * np.sin(phi), rho * np.cos(phi)
