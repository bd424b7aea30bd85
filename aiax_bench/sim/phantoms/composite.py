"""Fibre-composite phantoms: straight fibres and pores in a matrix cylinder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms._common import (
    _check_attempts,
    _check_common,
    _check_fits,
    _check_fraction,
    _check_interval,
    _finish,
    _uniform_disk,
)
from aiax_bench.sim.phantoms.shapes import Cylinders, Ellipsoids, Phantom
from aiax_bench.validation import check_positive


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
        check_positive(name, value, unit)
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
