"""Additive-manufacturing metal phantoms: gas pores and lack-of-fusion flakes."""

from __future__ import annotations

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
from aiax_bench.sim.phantoms.shapes import Flakes, Phantom, Spheres
from aiax_bench.validation import check_positive


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
    check_positive("layer_thickness", layer_thickness, "voxels")
    check_positive("mu_metal", mu_metal, "1/cm")
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
