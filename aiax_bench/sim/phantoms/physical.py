"""Phantom generators in physical units (µm).

The generators of :mod:`.foam`, :mod:`.composite` and :mod:`.am_metal` take
lengths in voxels or in fractions of the volume, so one recipe makes a
different material at each volume size. These take every length of the
material in µm and convert it with ``voxel_size_um``; only the sample boundary
(the cylinder) scales with the field of view, so a larger profile is a larger
sample of the same material.
"""

from __future__ import annotations

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms._common import _check_common, _check_fits, _check_interval, _finish
from aiax_bench.sim.phantoms.am_metal import am_metal_phantom
from aiax_bench.sim.phantoms.composite import composite_phantom
from aiax_bench.sim.phantoms.packing import _pack_voids_pelt
from aiax_bench.sim.phantoms.shapes import Phantom, Spheres
from aiax_bench.validation import check_positive

#: Whether voids may cross the sample surface ("cut") or stay inside it ("closed").
_SURFACES = ("cut", "closed")

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
    check_positive("candidates_per_mm3", candidates_per_mm3, "candidates per mm³")
    check_positive("mu_solid", mu_solid, "1/cm")
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
    check_positive("voxel_size_um", voxel_size_um, "µm")
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
    check_positive("voxel_size_um", voxel_size_um, "µm")
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
