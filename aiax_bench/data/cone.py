"""Cone-beam datasets (recipe ``source: cone-beam``): a lab micro-CT's circular scan of a phantom, simulated.

A lab scanner's source is a point: the beam diverges in a cone (several
degrees), the detector is flat, the tube's spectrum is broad. Each sample is
built as follows.

1. The tube spectrum (:func:`aiax_bench.sim.spectrum.tube_spectrum`, recipe
   ``acquisition.spectrum``) and the material's attenuation at each of its
   energies (:func:`~aiax_bench.sim.spectrum.attenuation_coefficients`,
   recipe ``material``) give the material's *effective* attenuation, what a
   thin part shows the detector
   (:func:`~aiax_bench.sim.spectrum.effective_attenuation`). The phantom is
   made with it (its ``material.attenuation_parameter``), so ``truth`` is the
   attenuation map (1/cm) a beam-hardening-free scan reconstructs.
2. The phantom is projected in the cone-beam geometry
   (:class:`~aiax_bench.recon.ConeBeamProjector`: source at
   ``source_origin`` volume widths from the axis, detector ``origin_detector``
   widths behind it, detector pixels of one voxel at the axis), over a full
   turn of ``reference_angles`` source positions. The phantom holds one
   material, so the projection of its attenuation map is that attenuation
   times each ray's path length through the material.
3. The reference scan counts ``photons`` per detector pixel (Poisson) on the
   monochromatic line integrals; ``high`` is its FDK
   (:func:`~aiax_bench.recon.fdk`, recipe ``reconstruction.filter``) and
   ``clean`` the FDK of the noise-free projections. Slices far from the
   orbit's plane keep FDK's cone-beam artefacts: they are part of the target.
4. Each split is a scan of its own (its own noise stream), reconstructed by FDK:

   ``sparse``
       ``n_angles`` of the reference's source positions, evenly spread;
   ``dose``
       every position at ``dose_factor`` of the photons;
   ``short-scan``
       the positions within 180 degrees plus the fan angle (Parker-weighted FDK), the lab users' half-time scan;
   ``arc``
       the positions within ``arc_degrees`` (a limited-angle scan);
   ``polychromatic``
       every position with the tube's spectrum: each ray's intensity is the
       spectrum-weighted sum over energies (:func:`~aiax_bench.sim.spectrum.polychromatic_line_integrals`),
       so thick paths harden the beam (cupping, streaks between dense parts)
       and the reconstruction is not linearised;
   ``rings``, ``blur``, ``zingers``, ``flat-noise``
       every position through a detector with that artefact
       (:data:`aiax_bench.sim.artefacts.DETECTOR_ARTEFACTS`, the parallel-beam recipes' kinds), on the
       detector's rows and columns.

Arrays of a sample: ``truth``, ``labels``, ``mask``, ``high``, ``clean``
(optional), ``sinogram`` ``(A, R, D)`` and ``angles`` of the reference scan,
and per split ``low``, ``sinogram``, ``angles``. Its attributes add the
geometry (``geometry``, lengths in voxels, as the classical methods read it),
the spectrum and the effective attenuation.

Rays are traced through the voxel phantom (Joseph's model), not
supersampled: a pore smaller than a voxel is a partial-volume value of the
phantom's grid, not of the ray.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.data.registry import DatasetVersion
from aiax_bench.errors import InputError

__all__ = ["CONE_SPLIT_KINDS", "ConeScan", "build_cone_store", "cone_scan"]



@dataclass(frozen=True)
class ConeScan:
    """One cone-beam dataset's scan: geometry, detector, source positions, spectrum and material (per profile).

    Attributes
    ----------
    geometry : ConeBeamGeometry
        Distances in voxels; detector pixels of ``magnification`` voxels (one voxel at the axis).
    n_rows, n_detector : int
        Detector rows and columns: the whole volume's shadow, with a pixel to spare.
    angles : numpy.ndarray
        The reference scan's source angles (radians), a full turn.
    energies_kev, weights : numpy.ndarray
        The tube spectrum's bins and the detector's weight of each (sum 1).
    mu_per_cm : numpy.ndarray
        The material's attenuation at each energy (1/cm).
    effective_mu_per_cm : float
        The thin-part attenuation the phantom is made with (1/cm, 4 decimals).
    """

    geometry: Any
    n_rows: int
    n_detector: int
    angles: np.ndarray
    energies_kev: np.ndarray
    weights: np.ndarray
    mu_per_cm: np.ndarray
    effective_mu_per_cm: float

    @property
    def fan_half_angle(self) -> float:
        """Half the fan's opening in the orbit's plane (radians), to the detector's outer column edges."""
        g = self.geometry
        return math.atan(self.n_detector / 2 * g.det_spacing / g.source_detector)

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the scan (store attributes)."""
        g = self.geometry
        return {"beam": "cone", "source_origin": g.source_origin, "origin_detector": g.origin_detector,
                "det_spacing": g.det_spacing, "row_spacing": g.row_spacing, "n_rows": self.n_rows,
                "n_detector": self.n_detector, "fan_half_angle_deg": round(math.degrees(self.fan_half_angle), 4),
                "cone_half_angle_deg": round(math.degrees(math.atan(self.n_rows / 2 * g.row_spacing
                                                                    / g.source_detector)), 4)}


def cone_scan(recipe: dict[str, Any], size: int) -> ConeScan:
    """The scan of a ``source: cone-beam`` recipe for volumes of ``size``³ voxels."""
    from aiax_bench.data.sample_recipe import TABLE_DIGITS, recorded_tube_spectrum, rounded
    from aiax_bench.recon import ConeBeamGeometry
    from aiax_bench.sim.spectrum import attenuation_coefficients

    acq = recipe["acquisition"]
    spec = acq["spectrum"]
    material = recipe["material"]
    total = sum(material["composition"].values())
    if abs(total - 1.0) > 1e-6:
        raise InputError("recipe field material.composition", f"sums to {total}", "mass fractions summing to 1")
    source_origin = float(acq["source_origin"]) * size
    origin_detector = float(acq["origin_detector"]) * size
    magnification = (source_origin + origin_detector) / source_origin
    # The volume's corners are within size/sqrt(2) of the axis: the shadow's half-width on the detector
    # (in voxels at the axis) is that radius seen from the source, over the nearest depth for the rows.
    radius = size / math.sqrt(2.0)
    if source_origin <= radius:
        raise InputError("recipe field acquisition.source_origin", f"is {acq['source_origin']} volume widths",
                         "a source outside the volume (more than 0.71 widths from the axis)")
    half_width = radius * source_origin / math.sqrt(source_origin**2 - radius**2)
    half_height = size / 2 * source_origin / (source_origin - radius)
    geometry = ConeBeamGeometry(source_origin=source_origin, origin_detector=origin_detector,
                                det_spacing=magnification, row_spacing=magnification)
    energies, weights, _ = recorded_tube_spectrum(spec)
    mu = rounded(attenuation_coefficients(material["composition"], float(material["density_g_cm3"]), energies),
                 digits=TABLE_DIGITS)
    # The thin-part limit of the measured attenuation (aiax_bench.sim.spectrum.effective_attenuation), of the
    # rounded tables.
    effective = round(float(np.dot(weights, mu)), 4)
    angles = np.linspace(0.0, 2 * np.pi, int(acq["reference_angles"]), endpoint=False)
    return ConeScan(geometry=geometry, n_rows=2 * math.ceil(half_height) + 2,
                    n_detector=2 * math.ceil(half_width) + 2, angles=angles, energies_kev=energies,
                    weights=weights, mu_per_cm=mu, effective_mu_per_cm=effective)


@dataclass
class _ConeSample:
    """What every split of one cone-beam sample is made from."""

    scan: ConeScan
    size: int
    seed: int
    voxel_cm: float
    photons: float
    recon_filter: str
    clean: np.ndarray  # monochromatic line integrals of the reference positions (A, R, D)

    def counted(self, line_integrals: np.ndarray, split: str, photons: float | None = None) -> np.ndarray:
        from aiax_bench.data.sample_recipe import split_rng
        from aiax_bench.sim.acquire import poisson_noise

        return poisson_noise(line_integrals, photons or self.photons, rng=split_rng(self.seed, split))

    def fdk(self, projections: np.ndarray, angles: np.ndarray) -> np.ndarray:
        from aiax_bench.recon import fdk

        rec = fdk(projections, angles, self.scan.geometry, n_pixels=self.size, n_slices=self.size,
                  filter=self.recon_filter)
        rec /= self.voxel_cm
        return rec

    def positions(self, keep: np.ndarray, split: str, photons: float | None = None) -> tuple:
        """FDK of a scan of the reference positions ``keep`` (indices) with its own noise."""
        sino = self.counted(np.ascontiguousarray(self.clean[keep]), split, photons)
        angles = self.scan.angles[keep]
        return self.fdk(sino, angles), sino, angles


def _sparse(s: _ConeSample, name: str, params: dict[str, Any]) -> tuple:
    from aiax_bench.sim.acquire import angle_subset

    return s.positions(angle_subset(s.scan.angles.size, params["n_angles"]), name)


def _dose(s: _ConeSample, name: str, params: dict[str, Any]) -> tuple:
    return s.positions(np.arange(s.scan.angles.size), name, s.photons * float(params["dose_factor"]))


def _short_scan(s: _ConeSample, name: str, params: dict[str, Any]) -> tuple:
    # 180 degrees plus the fan, and one step more so that the last position still closes the range.
    step = 2 * np.pi / s.scan.angles.size
    keep = np.flatnonzero(s.scan.angles <= np.pi + 2 * s.scan.fan_half_angle + step)
    return s.positions(keep, name)


def _arc(s: _ConeSample, name: str, params: dict[str, Any]) -> tuple:
    keep = np.flatnonzero(s.scan.angles < math.radians(float(params["arc_degrees"])))
    if keep.size < 2:
        raise InputError(f"split {name}: arc_degrees", f"is {params['arc_degrees']}",
                         "an arc holding at least two of the reference's source positions")
    return s.positions(keep, name)


def _polychromatic(s: _ConeSample, name: str, params: dict[str, Any]) -> tuple:
    from aiax_bench.sim.spectrum import TubeSpectrum, polychromatic_line_integrals

    # One material: a ray's monochromatic line integral is the effective attenuation times its path.
    path_cm = s.clean / np.float32(s.scan.effective_mu_per_cm)
    spectrum = TubeSpectrum(energies_kev=s.scan.energies_kev, fluence=s.scan.weights)
    # The weights already hold the detector's response: counted as they are, not weighted by energy twice.
    poly = polychromatic_line_integrals(path_cm, spectrum, s.scan.mu_per_cm, detector="photon-counting")
    sino = s.counted(poly, name)
    return s.fdk(sino, s.scan.angles), sino, s.scan.angles


def _detector_artefact(s: _ConeSample, name: str, params: dict[str, Any]) -> tuple:
    from aiax_bench.data.sample_recipe import split_rng
    from aiax_bench.sim.artefacts import detector_artefact_scan

    # The artefacts act on detector rows and columns, which a cone-beam scan holds as (A, R, D).
    rows_first = s.clean.transpose(1, 0, 2)
    sino = detector_artefact_scan(params, rows_first, photons=s.photons, rng=split_rng(s.seed, name))
    sino = np.ascontiguousarray(sino.transpose(1, 0, 2))
    return s.fdk(sino, s.scan.angles), sino, s.scan.angles


#: How each kind of split degrades the reference scan (recipe ``splits.<name>.kind``).
CONE_SPLIT_KINDS = {"sparse": _sparse, "dose": _dose, "short-scan": _short_scan, "arc": _arc,
                    "polychromatic": _polychromatic,
                    **dict.fromkeys(("rings", "blur", "zingers", "flat-noise"), _detector_artefact)}


def build_cone_store(spec: DatasetVersion, profile: str, target: Path, *, ids: list[tuple[str, str, int]],
                     quiet: bool = False) -> dict[str, Any]:
    """Simulate every sample of a cone-beam dataset at ``profile`` into the store at ``target`` (see the module notes).

    Returns
    -------
    dict
        The store's root attributes (fingerprint and content sha256 included).
    """
    import zarr
    from tqdm.auto import tqdm

    from aiax_bench.data.sample_recipe import phantom_attrs, phantom_params, reference_rng, store_attrs, write_splits
    from aiax_bench.data.store import SampleWriter, atomic_store
    from aiax_bench.recon import ConeBeamProjector
    from aiax_bench.sim.acquire import poisson_noise
    from aiax_bench.sim.phantoms import make_phantom

    recipe = spec.recipe
    size = int(spec.profiles[profile]["size"])
    acq = recipe["acquisition"]
    scan = cone_scan(recipe, size)
    projector = ConeBeamProjector(scan.geometry, scan.angles, n_pixels=size, n_slices=size, n_rows=scan.n_rows,
                                  n_detector=scan.n_detector, device="cpu")
    voxel_um = spec.voxel_size_um(profile)
    voxel_cm = voxel_um * 1e-4
    store_clean = bool(recipe["reconstruction"].get("store_clean", False))
    if not quiet:
        print(f"Building {spec.ref} ({profile} profile: {len(ids)} samples of {size}³, cone beam "
              f"{scan.describe()['cone_half_angle_deg'] * 2:.1f}° full cone, {len(spec.splits)} splits) "
              f"into {target}", file=sys.stderr)
    started = time.time()
    fingerprint: dict[str, dict[str, float]] = {}
    hashes: dict[str, str] = {}
    with atomic_store(target) as tmp, tqdm(total=len(ids) * (2 + len(spec.splits)), desc=f"build {spec.ref}",
                                           unit="step", disable=quiet, file=sys.stderr) as bar:
        root = zarr.open_group(str(tmp), mode="w")
        for sample_id, part, seed in ids:
            bar.set_postfix_str(f"{sample_id}: phantom and projections")
            generator, params = phantom_params(recipe, part, size, seed, voxel_size_um=voxel_um)
            params[recipe["material"]["attenuation_parameter"]] = scan.effective_mu_per_cm
            phantom = make_phantom(generator, **params)
            truth = phantom.attenuation_map()
            clean = projector.forward(truth * np.float32(voxel_cm))
            sample = _ConeSample(scan=scan, size=size, seed=seed, voxel_cm=voxel_cm, photons=float(acq["photons"]),
                                 recon_filter=recipe["reconstruction"].get("filter", "ramp"), clean=clean)
            writer = SampleWriter(root, sample_id, hashes=hashes, fingerprint=fingerprint)
            writer.add("truth", truth)
            writer.add("labels", phantom.labels)
            writer.add("mask", phantom.mask)
            bar.update()
            bar.set_postfix_str(f"{sample_id}: reference")
            noisy = poisson_noise(clean, float(acq["photons"]), rng=reference_rng(seed, True))
            writer.add("high", sample.fdk(noisy, scan.angles))
            writer.add("sinogram", noisy)
            writer.add("angles", scan.angles)
            del noisy
            if store_clean:
                writer.add("clean", sample.fdk(clean, scan.angles))
            bar.update()
            write_splits(writer, spec.splits,
                         lambda split, params, sample=sample: CONE_SPLIT_KINDS[params["kind"]](sample, split, params),
                         bar=bar, sample_id=sample_id)
            writer.finish({**phantom_attrs(phantom, part=part, seed=seed, photons=acq["photons"]),
                           "geometry": scan.describe(), "material": recipe["material"]["name"],
                           "effective_attenuation_per_cm": scan.effective_mu_per_cm,
                           "spectrum": {"kvp": acq["spectrum"]["kvp"], "energies_kev": scan.energies_kev.tolist(),
                                        "weights": scan.weights.tolist(),
                                        "attenuation_per_cm": scan.mu_per_cm.tolist()}})
            del sample, clean, truth, writer
        # Written last: a store without these attributes is incomplete by construction.
        attrs = store_attrs(spec, profile, ids, fingerprint=fingerprint, hashes=hashes, started=started)
        root.attrs.update(attrs)
    return attrs
