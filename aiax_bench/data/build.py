"""Build a dataset version from its recipe: phantom → projections → reconstructions → store."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.data import sample_recipe
from aiax_bench.data.registry import PARTS, DatasetVersion
from aiax_bench.data.store import SampleWriter, atomic_store, check_room_for_samples
from aiax_bench.errors import InputError
from aiax_bench.mkl_mode import use_compatible_mkl
from aiax_bench.recon import ParallelBeamProjector, fbp
from aiax_bench.sim.acquire import (
    angle_subset,
    bin_detector,
    continuous_rotation,
    exposure_angles,
    poisson_noise,
    poisson_noise_blocks,
    reference_angles,
)
from aiax_bench.sim.phantoms import Phantom, make_phantom
from aiax_bench.sim.project import FineOperators, project_phantom
from aiax_bench.validation import check_positive_int

__all__ = ["build_store", "sample_ids"]


def sample_ids(spec: DatasetVersion, profile: str) -> list[tuple[str, str, int]]:
    """``(sample_id, part, seed)`` for every sample of a profile, in store order."""
    samples = spec.profiles[profile]["samples"]
    return [(f"{part}-{k:03d}", part, int(seed)) for part in PARTS for k, seed in enumerate(samples[part])]


@dataclass
class _SampleContext:
    """What every split of one sample is made from."""

    phantom: Phantom
    clean: np.ndarray            # noise-free line integrals at the reference angles (Z, A, D)
    noisy: np.ndarray            # the reference scan: clean + Poisson noise at the reference dose
    independent_noise: bool      # sparse splits are scans of their own (recipe acquisition.independent_noise)
    angles: np.ndarray           # reference angles (radians)
    photons: float               # reference photons per detector pixel per projection
    seed: int
    voxel_cm: float
    recon_filter: str
    projector: Callable[[int, np.ndarray], ParallelBeamProjector]
    project: Callable[[np.ndarray], np.ndarray]
    noise_draw: str = "sequential"  # how counting noise is drawn (recipe acquisition.noise, NOISE_DRAWS)
    extra: dict[str, Any] = field(default_factory=dict)

    def rng(self, split: str) -> np.random.Generator:
        return sample_recipe.split_rng(self.seed, split)

    def counting_noise(self, scan: str, line_integrals: np.ndarray, photons: float, *, steps: int = 1,
                       binning: int = 1) -> np.ndarray:
        """Scan ``scan`` (a split's name, or ``"reference"``) of these line integrals, through a detector
        averaging ``steps`` consecutive projections and ``binning x binning`` pixels (:func:`counting_noise`)."""
        return counting_noise(line_integrals, photons, seed=self.seed, scan=scan, draw=self.noise_draw,
                              steps=steps, binning=binning)

    def fbp(self, sinogram: np.ndarray, angles: np.ndarray, *, size: int | None = None,
            voxel_cm: float | None = None) -> np.ndarray:
        size = size or sinogram.shape[-1]
        rec = fbp(sinogram, projector=self.projector(size, angles), filter=self.recon_filter)
        rec /= voxel_cm or self.voxel_cm  # in place: the same float32 quotients, one volume fewer held
        return rec


#: How a recipe's counting noise is drawn (``acquisition.noise``); absent: ``sequential``. ``row-blocks``
#: applies to the reference, sparse, dose, binning, continuous and beam-hardening scans; a detector-artefact
#: split draws its noise with its artefacts (gains, zingers, flats) from its one stream either way.
#: ``row-blocks-averaged`` is ``row-blocks`` whose binned and continuous scans average the intensity of their
#: fine pixels and sub-angles inside the draw, in the same compiled IEEE arithmetic as the expected counts (no
#: float32 line integrals between, the same bits on every CPU); ``row-blocks`` averages them with numpy first.
NOISE_DRAWS = ("sequential", "row-blocks", "row-blocks-averaged")
#: The draws in blocks of rows (:func:`aiax_bench.sim.poisson_noise_blocks`).
_BLOCK_DRAWS = ("row-blocks", "row-blocks-averaged")


def counting_noise(line_integrals: np.ndarray, photons: float, *, seed: int, scan: str, draw: str,
                   steps: int = 1, binning: int = 1) -> np.ndarray:
    """A sample's scan ``scan`` of ``line_integrals`` with counting noise drawn as ``draw`` says
    (:data:`NOISE_DRAWS`): numpy's generator over the whole array in order, or per block of detector rows.

    The detector averages the intensity of ``steps`` consecutive projections (a continuous exposure) and of
    ``binning x binning`` pixels, ``photons`` per recorded pixel: inside the draw for ``row-blocks-averaged``,
    in float32 line integrals first for the others.
    """
    key = sample_recipe.noise_key(seed, scan)
    if draw == "row-blocks-averaged":
        return poisson_noise_blocks(line_integrals, photons, key=key, steps=steps, binning=binning)
    if steps > 1:
        line_integrals = continuous_rotation(line_integrals, steps)
    if binning > 1:
        line_integrals = bin_detector(line_integrals, binning)
    if draw in _BLOCK_DRAWS:
        return poisson_noise_blocks(line_integrals, photons, key=key)
    return poisson_noise(line_integrals, photons, rng=sample_recipe.split_rng(seed, scan))


def _sparse(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """N of the reference angles, same exposure each.

    With independent noise (recipes from 2.0 on) the N projections are a scan
    of their own, so a method cannot score by reproducing the reference's
    noise; version 1.0 took them from the reference scan itself.
    """
    idx = angle_subset(ctx.angles.size, params["n_angles"])
    if ctx.independent_noise:
        sino = ctx.counting_noise(name, np.ascontiguousarray(ctx.clean[:, idx]), ctx.photons)
    else:
        sino = np.ascontiguousarray(ctx.noisy[:, idx])
    return ctx.fbp(sino, ctx.angles[idx]), sino, ctx.angles[idx]


def _dose(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """All reference angles at a fraction of the photons: a new noise realisation."""
    sino = ctx.counting_noise(name, ctx.clean, ctx.photons * float(params["dose_factor"]))
    return ctx.fbp(sino, ctx.angles), sino, ctx.angles


def _binning(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """Detector binned f×f at the same exposure (f² photons per coarse pixel), reconstructed
    on the coarse grid and brought back to the reference grid by linear interpolation."""
    from scipy import ndimage

    f = int(params["factor"])
    sino = ctx.counting_noise(name, ctx.clean, ctx.photons * f * f, binning=f)
    coarse = ctx.fbp(sino, ctx.angles, voxel_cm=ctx.voxel_cm * f)
    low = ndimage.zoom(coarse, f, order=1, mode="nearest", grid_mode=True).astype(np.float32)
    return low, sino, ctx.angles


def _continuous(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """N projections while the sample keeps rotating: each is blurred over its exposure arc.

    With ``sub_angles: reference`` the N arcs tile the half turn, and each exposure averages the reference
    projections its arc covers (the reference's angles are its sub-angles): nothing is projected again.
    Otherwise each arc is sampled at ``steps`` sub-angles of its own, projected for the split.
    """
    if params.get("sub_angles") == "reference":
        n_ref, n_angles = ctx.angles.size, int(params["n_angles"])
        if "steps" in params:
            raise InputError(f"split {name}: steps", "is given with sub_angles: reference",
                             "one of the two: the reference angles an arc covers are its steps")
        if n_ref % n_angles:
            raise InputError(f"split {name}: n_angles", f"is {n_angles}",
                             f"a divisor of the {n_ref} reference angles (sub_angles: reference)")
        steps = n_ref // n_angles
        # The middle of each arc: the mean of its sub-angles.
        angles = ctx.angles[::steps] + (steps - 1) / 2 * (np.pi / n_ref)
        sino = ctx.counting_noise(name, ctx.clean, ctx.photons, steps=steps)
        return ctx.fbp(sino, angles), sino, angles
    idx = angle_subset(ctx.angles.size, params["n_angles"])
    angles = ctx.angles[idx]
    steps = int(params.get("steps", 8))
    sub = exposure_angles(angles, steps, arc=np.pi / angles.size)
    sino = ctx.counting_noise(name, ctx.project(sub), ctx.photons, steps=steps)
    return ctx.fbp(sino, angles), sino, angles


def _full_scan(ctx: _SampleContext, sino: np.ndarray) -> tuple:
    return ctx.fbp(sino, ctx.angles), sino, ctx.angles


def _detector_artefact(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """All reference angles through a detector with one artefact (``rings``, ``blur``, ``zingers``,
    ``flat-noise``: :data:`aiax_bench.sim.artefacts.DETECTOR_ARTEFACTS`)."""
    from aiax_bench.sim.artefacts import detector_artefact_scan

    return _full_scan(ctx, detector_artefact_scan(params, ctx.clean, photons=ctx.photons, rng=ctx.rng(name)))


def phase_contrast_setup(params: dict[str, Any], voxel_size_um: float) -> dict[str, float]:
    """What a ``phase-contrast`` split's beamline records, and a user knows of the sample: energy, wavelength,
    distance, the material's ``delta / beta`` (from its formula and density), the Fresnel number of one pixel,
    the pixel and the scintillator's blur; stored per split in each sample's ``meta['phase_contrast']``."""
    from aiax_bench.sim.materials import delta_beta_ratio, wavelength_m
    from aiax_bench.sim.propagation import fresnel_number

    material = params["material"]
    distance = float(params["distance_m"])
    if "source" in params:
        setup = _pink_beam_setup(params)
    else:
        energy = float(params["energy_kev"])
        setup = {"energy_kev": energy, "wavelength_m": wavelength_m(energy), "distance_m": distance,
                 "delta_beta": delta_beta_ratio(material["formula"], density_g_cm3=material["density_g_cm3"],
                                                energy_kev=energy)}
    if "materials" in params:  # several materials: each phase's own delta / beta
        setup["materials"] = {
            phase: {"formula": m["formula"],
                    "delta_beta": delta_beta_ratio(m["formula"], density_g_cm3=m["density_g_cm3"], energy_kev=energy)}
            for phase, m in params["materials"].items()}
    setup.update({"material": material["formula"],
                  "fresnel_number_pixel": fresnel_number(voxel_size_um * 1e-6, distance, setup["wavelength_m"]),
                  "pixel_size_um": float(voxel_size_um), "psf_sigma_px": float(params.get("psf_sigma_px", 0.0))})
    return setup


def _pink_beam_setup(params: dict[str, Any]) -> dict[str, Any]:
    """A bending magnet's filtered beam as a list of energies: each one's share of the signal of the split's
    scintillator (photons absorbed there times their energy), ``delta / beta``, and the material's attenuation
    relative to its signal-weighted mean (``attenuation_scale``: a thin part reads the truth's attenuation, as
    on the lab recipes, where the truth is the effective attenuation of the beam); with the signal-weighted
    energy, and the wavelength and ``delta / beta`` that give Paganin's filter the signal-weighted
    ``delta / mu`` of the material."""
    from aiax_bench.sim.materials import mass_fractions, refractive_index, wavelength_m
    from aiax_bench.sim.spectrum import absorbed_fraction, bending_magnet_spectrum

    source, scintillator, material = params["source"], params["scintillator"], params["material"]
    grid = source["energies_kev"]
    energies = np.arange(grid["first"], grid["last"] + grid["step"] / 2, grid["step"], dtype=np.float64)
    spectrum = bending_magnet_spectrum(ring_energy_gev=source["ring_energy_gev"], field_t=source["field_t"],
                                       energies_kev=energies, filters=source.get("filters_mm", {}))
    layer = mass_fractions(scintillator["formula"])
    signal = spectrum.weights("energy-integrating") * absorbed_fraction(
        layer, scintillator["density_g_cm3"], scintillator["thickness_um"], energies)
    weights = sample_recipe.rounded(signal / signal.sum(), digits=12)
    weights[-1] = 1.0 - math.fsum(weights[:-1])  # shares that sum to 1 in float64
    indices = [refractive_index(material["formula"], density_g_cm3=material["density_g_cm3"], energy_kev=e)
               for e in energies]
    mean_energy = float(np.dot(weights, energies))
    mean_wavelength = wavelength_m(mean_energy)
    mean_mu = float(np.dot(weights, [n.attenuation_per_cm for n in indices]))  # 1/cm
    delta_over_mu = float(np.dot(weights, [n.delta for n in indices])) / (mean_mu * 100.0)
    return {"energy_kev": float(f"{mean_energy:.12g}"), "wavelength_m": float(f"{mean_wavelength:.12g}"),
            "distance_m": float(params["distance_m"]),
            "delta_beta": float(f"{4 * math.pi * delta_over_mu / mean_wavelength:.12g}"),
            "source": {"kind": source["kind"], "ring_energy_gev": float(source["ring_energy_gev"]),
                       "field_t": float(source["field_t"]), "filters_mm": dict(source.get("filters_mm", {})),
                       "scintillator": dict(scintillator)},
            "energies_kev": energies.tolist(), "weights": weights.tolist(),
            "wavelengths_m": sample_recipe.rounded((wavelength_m(e) for e in energies), digits=12).tolist(),
            "delta_betas": sample_recipe.rounded((n.delta_beta_ratio for n in indices), digits=12).tolist(),
            "attenuation_scale": sample_recipe.rounded((n.attenuation_per_cm / mean_mu for n in indices),
                                                       digits=12).tolist()}


def _phase_line_integrals(ctx: _SampleContext, name: str, materials: dict[str, dict[str, Any]]) -> np.ndarray:
    """Line integrals of ``(delta / beta) mu`` through a phantom of several materials, projected as its
    attenuation is (the same sub-rays and partial volumes): the phantom with each phase's attenuation times
    its ratio, scaled down by the largest ratio so that the detector's sub-ray average sees values of the
    attenuation's size, and scaled back."""
    phantom = ctx.phantom
    ratios = []
    for phase, mu in zip(phantom.phases, phantom.attenuation, strict=True):
        if mu > 0 and phase not in materials:
            raise InputError(f"split {name}: materials", f"has no entry for phase {phase!r}",
                             f"the formula and density of every attenuating phase: {list(phantom.phases)}")
        ratios.append(materials[phase]["delta_beta"] if mu > 0 else 0.0)
    top = max(ratios)
    scaled = dataclasses.replace(phantom, attenuation=tuple(mu * r / top for mu, r in
                                                           zip(phantom.attenuation, ratios, strict=True)))
    return ctx.project(ctx.angles, phantom=scaled) * np.float32(top)


def _phase_contrast(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """All reference angles, recorded ``distance_m`` behind the sample: near-field phase contrast (fringes at
    every edge), reconstructed without phase retrieval."""
    from aiax_bench.sim.propagation import phase_contrast_scan

    setup = phase_contrast_setup(params, ctx.voxel_cm * 1e4)
    ctx.extra.setdefault("phase_contrast", {})[name] = setup
    beam = ({"wavelength_m": setup["wavelengths_m"], "delta_beta": setup["delta_betas"], "weights": setup["weights"],
             "attenuation_scale": setup["attenuation_scale"]} if "weights" in setup
            else {"wavelength_m": setup["wavelength_m"], "delta_beta": setup["delta_beta"]})
    if "materials" in setup:
        beam["phase_line_integrals"] = _phase_line_integrals(ctx, name, setup["materials"])
    return _full_scan(ctx, phase_contrast_scan(
        ctx.clean, photons=ctx.photons, distance_m=setup["distance_m"], pixel_size_m=setup["pixel_size_um"] * 1e-6,
        psf_sigma_px=setup["psf_sigma_px"], rng=ctx.rng(name), **beam))


def beam_hardening_setup(params: dict[str, Any], mu_solid_per_cm: float) -> dict[str, Any]:
    """What a ``beam-hardening`` split's lab scanner records: its tube spectrum as the detector weighs it,
    and the material's attenuation at each energy, scaled so that its thin-sample limit is the phantom's
    attenuation (the truth stays the effective attenuation, as on the cone-beam lab recipes); rounded to 9
    significant digits, so that a last-ulp difference of a maths library cannot reach the stored bytes."""
    from aiax_bench.sim.materials import mass_fractions
    from aiax_bench.sim.spectrum import attenuation_coefficients

    spec, material = params["spectrum"], params["material"]
    energies, weights, detector = sample_recipe.recorded_tube_spectrum(spec)
    mu = attenuation_coefficients(mass_fractions(material["formula"]), float(material["density_g_cm3"]), energies)
    mu = sample_recipe.rounded(mu * (mu_solid_per_cm / float(np.dot(weights, mu))), digits=sample_recipe.TABLE_DIGITS)
    return {"kvp": float(spec["kvp"]), "filters": dict(spec.get("filters", {"Al": 1.0})), "detector": detector,
            "material": material["formula"], "energies_kev": energies.tolist(), "weights": weights.tolist(),
            "attenuation_per_cm": mu.tolist(), "effective_attenuation_per_cm": float(mu_solid_per_cm)}


def _beam_hardening(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """All reference angles with a lab tube's polychromatic beam through the phantom's one material:
    reconstructed without correction, thick parts read darker than thin ones (cupping)."""
    from aiax_bench.sim.spectrum import TubeSpectrum, polychromatic_line_integrals

    if "materials" in params:
        return _beam_hardening_of_materials(ctx, name, params)
    solid = sorted({float(mu) for mu in ctx.phantom.attenuation if mu > 0})
    if len(solid) != 1:
        raise InputError(f"split {name}: kind", "is 'beam-hardening' without 'materials'",
                         f"a phantom of one attenuating material (its phases attenuate {solid} 1/cm), or each "
                         "phase's formula and density under 'materials'")
    setup = beam_hardening_setup(params, solid[0])
    ctx.extra.setdefault("beam_hardening", {})[name] = setup
    path_cm = ctx.clean / np.float32(solid[0])  # a ray's monochromatic line integral over the truth's attenuation
    spectrum = TubeSpectrum(energies_kev=np.array(setup["energies_kev"]), fluence=np.array(setup["weights"]))
    # The weights already hold the detector's response: counted as they are, not weighted by energy twice.
    poly = polychromatic_line_integrals(path_cm, spectrum, np.array(setup["attenuation_per_cm"]),
                                        detector="photon-counting")
    return _full_scan(ctx, ctx.counting_noise(name, poly, ctx.photons))


def _beam_hardening_of_materials(ctx: _SampleContext, name: str, params: dict[str, Any]):
    """All reference angles with a lab tube's polychromatic beam through a phantom of several materials: the
    phases of each material are projected without the others, and each energy is attenuated by every phase's
    own curve (its material's, its thin-part limit the phase's truth). The split records every phase's table
    and, as its ``material``, the one a user's single-material linearisation assumes (``fbp linearise=true``
    reads it)."""
    from aiax_bench.sim.spectrum import TubeSpectrum, polychromatic_line_integrals_of_materials

    phantom, materials = ctx.phantom, params["materials"]
    phases = [(phase, float(mu)) for phase, mu in zip(phantom.phases, phantom.attenuation, strict=True) if mu > 0]
    for phase, _ in phases:
        if phase not in materials:
            raise InputError(f"split {name}: materials", f"has no entry for phase {phase!r}",
                             f"the formula and density of every attenuating phase: {[p for p, _ in phases]}")
    setups = {phase: beam_hardening_setup({"spectrum": params["spectrum"], "material": materials[phase]}, mu)
              for phase, mu in phases}
    assumed = [phase for phase, _ in phases if materials[phase] == params["material"]]
    if not assumed:
        raise InputError(f"split {name}: material", f"is {params['material']}, none of the phases' materials",
                         "the formula and density of the phase a single-material linearisation assumes")
    setup = {**setups[assumed[0]], "materials": {
        phase: {key: one[key] for key in ("material", "attenuation_per_cm", "effective_attenuation_per_cm")}
        for phase, one in setups.items()}}
    ctx.extra.setdefault("beam_hardening", {})[name] = setup
    # Phases of one material share one projection: their curves are that material's curve times each phase's
    # truth over the first one's, so the first's curve applied to the sum of the phases' line integrals over
    # the first's truth (cm of it) attenuates as each phase alone would (exactly with one sub-ray per pixel;
    # with several, a pixel averages the intensity of its sub-rays through the material's phases together,
    # as through one tissue). A phase of a material of its own is projected as it always was (composite@2.2
    # keeps its bytes), and a material of several phases costs one projection, not one per phase.
    groups: dict[str, list[tuple[str, float]]] = {}
    for phase, mu in phases:
        groups.setdefault(json.dumps(materials[phase], sort_keys=True), []).append((phase, mu))
    paths = []
    for group in groups.values():
        kept = {phase for phase, _ in group}
        together = dataclasses.replace(phantom, attenuation=tuple(
            m if p in kept else 0.0 for p, m in zip(phantom.phases, phantom.attenuation, strict=True)))
        paths.append(ctx.project(ctx.angles, phantom=together) / np.float32(group[0][1]))  # the same sub-rays
    spectrum = TubeSpectrum(energies_kev=np.array(setup["energies_kev"]), fluence=np.array(setup["weights"]))
    # The weights already hold the detector's response: counted as they are, not weighted by energy twice.
    poly = polychromatic_line_integrals_of_materials(
        paths, spectrum, [np.array(setups[group[0][0]]["attenuation_per_cm"]) for group in groups.values()],
        detector="photon-counting")
    del paths
    return _full_scan(ctx, ctx.counting_noise(name, poly, ctx.photons))


#: Memory the build keeps reconstruction operators in, across splits and samples (bytes). Beyond it the
#: least recently used are dropped and built again when next needed: time, never bytes, since an
#: operator is a function of its geometry. The operator in use is always kept, whatever its size
#: (its transposed matrix only, 1.7 GB at 512² × 500 angles).
PROJECTOR_CACHE_BYTES = 1 << 30


#: Memory the build keeps the phantoms' fine-grid projection operators in, across samples (bytes): every
#: sample is projected at the same angles. foam's reference angles fit at the tiny and small profiles,
#: the large profile's do not. Time, never bytes, as above.
FINE_OPERATOR_CACHE_BYTES = 1 << 30


class _ProjectorCache:
    """``cache(n, angles)``: the CPU projector of that geometry, kept while the cache's bytes allow."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.kept: dict[tuple[int, bytes], ParallelBeamProjector] = {}

    def __call__(self, n: int, angles: np.ndarray) -> ParallelBeamProjector:
        key = (n, np.asarray(angles).tobytes())
        projector = self.kept.pop(key, None)
        if projector is None:
            # On the CPU even where a GPU is present: a published store's bytes must not depend on the device.
            # FBP only back-projects: the transposed matrix alone (half the memory, the same bytes).
            projector = ParallelBeamProjector(n, angles, device="cpu", matrices="backward")
        self.kept[key] = projector  # the most recently used last
        self.trim(keep=1)
        return projector

    def trim(self, *, keep: int = 0) -> None:
        """Drop the least recently used operators while over the budget, keeping at least the last ``keep``
        (0 when none is in use, as before a projection)."""
        while len(self.kept) > keep and sum(p.nbytes for p in self.kept.values()) > self.max_bytes:
            del self.kept[next(iter(self.kept))]


def _write_lesions(writer: SampleWriter, phantom: Phantom, spec: DatasetVersion) -> list[dict[str, Any]]:
    """Write a sample's lesion instance map (``lesions``); return each lesion's record for its attributes:
    ``id`` (its value in the map), ``area_mm2`` (largest axial cross-section of its continuous shape), ``host``."""
    from aiax_bench.sim.phantoms import LESION_INSTANCES

    generator = phantom.params.get("generator")
    if generator not in LESION_INSTANCES:
        raise InputError(f"registry entry of {spec.ref}", f"scores lesions, but its phantoms ({generator!r}) have none",
                         f"a phantom generator with lesion instances: {sorted(LESION_INSTANCES)}")
    instances = LESION_INSTANCES[generator](phantom)
    writer.add("lesions", instances.labels.astype(np.uint16))
    return [{"id": k + 1, "area_mm2": float(area), "host": str(host)}
            for k, (area, host) in enumerate(zip(instances.area_mm2, instances.hosts, strict=True))]


#: How each kind of split degrades the reference scan (recipe ``splits.<name>.kind``).
SPLIT_KINDS: dict[str, Callable[[_SampleContext, str, dict[str, Any]], tuple]] = {
    "sparse": _sparse,
    "dose": _dose,
    "binning": _binning,
    "continuous": _continuous,
    # The kinds of aiax_bench.sim.artefacts.DETECTOR_ARTEFACTS (named here so the registry imports no scipy).
    **dict.fromkeys(("rings", "blur", "zingers", "flat-noise"), _detector_artefact),
    "phase-contrast": _phase_contrast,
    "beam-hardening": _beam_hardening,
}


def _convert_htc2022(spec: DatasetVersion, profile: str, target: Path, *, quiet: bool) -> dict[str, Any]:
    from aiax_bench.data.htc2022 import build_measured_store

    return build_measured_store(spec, profile, target, quiet=quiet)


#: Measured datasets (recipe ``source: measured``) by family: how their downloaded scans become a store.
MEASURED_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {"htc2022": _convert_htc2022}


def _simulate_spot_stacks(spec: DatasetVersion, profile: str, target: Path, *, quiet: bool) -> dict[str, Any]:
    from aiax_bench.data.frames import build_frames_store

    return build_frames_store(spec, profile, target, ids=sample_ids(spec, profile), quiet=quiet)


#: Frame-stack datasets (recipe ``source: frames``) by family: how their stacks are simulated into a store.
FRAME_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {"dct-spots": _simulate_spot_stacks}


class _SampleBuilder:
    """Builds the samples of one parallel-beam recipe at one profile, one after another, into a zarr root.

    Operators are kept from sample to sample (they depend on the geometry alone); each
    sample's arrays are written as soon as they are made and dropped.
    """

    def __init__(self, spec: DatasetVersion, profile: str, *, before_split: Callable[[], None] | None = None) -> None:
        self.spec, self.recipe = spec, spec.recipe
        self.before_split = before_split  # called as each split starts (a worker adopts idle cores there)
        self.size = int(spec.profiles[profile]["size"])
        self.voxel_um = spec.voxel_size_um(profile)
        self.acq = self.recipe["acquisition"]
        self.ref_angles = reference_angles(self.acq["reference_angles"])
        self.projector_for = _ProjectorCache(PROJECTOR_CACHE_BYTES)
        self.fine_operators = FineOperators(FINE_OPERATOR_CACHE_BYTES)

    def build(self, root, sample_id: str, part: str, seed: int, bar) -> tuple[dict[str, str], dict[str, Any]]:
        """Write sample ``sample_id`` under ``root``; its arrays' sha256 and fingerprints, in the order written."""
        recipe, acq, spec = self.recipe, self.acq, self.spec
        hashes: dict[str, str] = {}
        fingerprint: dict[str, dict[str, float]] = {}
        bar.set_postfix_str(f"{sample_id}: phantom")
        generator, phantom_params = sample_recipe.phantom_params(recipe, part, self.size, seed,
                                                                 voxel_size_um=self.voxel_um)
        phantom = make_phantom(generator, **phantom_params)
        bar.update()
        bar.set_postfix_str(f"{sample_id}: projections")

        def project(angles: np.ndarray, phantom=phantom) -> np.ndarray:
            # Projecting builds operators of its own (the fine grid's): an oversized reconstruction
            # operator kept from the last split would only add to them (3.4 GB at 512³).
            self.projector_for.trim()
            return project_phantom(phantom, angles, supersample_u=acq.get("supersample_u", 4),
                                   supersample_z=acq.get("supersample_z", 2), device="cpu",
                                   operators=self.fine_operators, method=acq.get("projection", "auto"))

        ref_angles = self.ref_angles
        clean = project(ref_angles)
        bar.update()
        bar.set_postfix_str(f"{sample_id}: reference reconstruction")
        independent = bool(acq.get("independent_noise", False))
        draw = acq.get("noise", "sequential")
        if draw in _BLOCK_DRAWS:
            noisy = counting_noise(clean, acq["photons"], seed=seed, scan="reference", draw=draw)
        else:
            noisy = poisson_noise(clean, acq["photons"], rng=sample_recipe.reference_rng(seed, independent))
        ctx = _SampleContext(phantom=phantom, clean=clean, angles=ref_angles, photons=float(acq["photons"]),
                             noisy=noisy, independent_noise=independent, seed=seed, voxel_cm=self.voxel_um * 1e-4,
                             recon_filter=recipe["reconstruction"]["filter"], projector=self.projector_for,
                             project=project, noise_draw=draw)
        # Each array is written as soon as it exists and dropped: memory holds one split's, not the sample's.
        writer = SampleWriter(root, sample_id, hashes=hashes, fingerprint=fingerprint)
        writer.add("truth", phantom.attenuation_map())
        writer.add("labels", phantom.labels)
        writer.add("mask", phantom.mask)
        attrs = sample_recipe.phantom_attrs(phantom, part=part, seed=seed, photons=acq["photons"])
        if "lesions" in spec.evaluation:
            attrs["lesions"] = _write_lesions(writer, phantom, spec)
        writer.add("high", ctx.fbp(ctx.noisy, ref_angles))
        writer.add("sinogram", ctx.noisy)
        writer.add("angles", ref_angles)
        if recipe["reconstruction"].get("store_clean", False):
            # The ceiling of any method trained on independent noise: the same FBP without noise.
            writer.add("clean", ctx.fbp(clean, ref_angles))
        bar.update()

        def make_split(split: str, params: dict[str, Any]) -> tuple:
            if self.before_split is not None:
                self.before_split()
            return SPLIT_KINDS[params["kind"]](ctx, split, params)

        sample_recipe.write_splits(writer, spec.splits, make_split, bar=bar, sample_id=sample_id)
        writer.finish({**attrs, **ctx.extra})
        return hashes, fingerprint


#: The builder of a worker process of :func:`build_store` (set by :func:`_start_worker`).
_WORKER: _SampleBuilder | None = None


def _samples_building(workers: int, samples: int, written: int) -> int:
    """Samples being built once ``written`` of ``samples`` are: one per worker while any is queued, then the rest."""
    return max(0, min(workers, samples - written))


def _start_worker(spec: DatasetVersion, profile: str, threads: int, cores: int, building: ctypes.c_int) -> None:
    import torch

    use_compatible_mkl()  # before any computation, as in the parent
    torch.set_num_threads(threads)

    def adopt_idle_cores() -> None:
        # Once fewer samples are left than workers, the idle workers' cores go to the ones still building
        # (the store's last samples, else built on one core while the others wait). Threads never change
        # a byte (see build_store), so a sample may change its count between splits.
        torch.set_num_threads(max(threads, cores // max(1, building.value)))

    global _WORKER
    _WORKER = _SampleBuilder(spec, profile, before_split=adopt_idle_cores)


def _build_in_worker(target: str, sample_id: str, part: str, seed: int) -> tuple[dict[str, str], dict[str, Any]]:
    import zarr
    from tqdm.auto import tqdm

    with tqdm(disable=True) as silent:
        return _WORKER.build(zarr.open_group(target, mode="r+"), sample_id, part, seed, silent)


def build_store(spec: DatasetVersion, profile: str, target: Path, *, quiet: bool = False,
                workers: int = 1) -> dict[str, Any]:
    """Simulate every sample of ``spec`` at ``profile`` and write the store at ``target``.

    A measured dataset (recipe ``source: measured``) is converted from its
    downloaded scans instead (:data:`MEASURED_BUILDERS`): nothing is simulated.
    A frame-stack dataset (recipe ``source: frames``) is simulated by its
    family's builder (:data:`FRAME_BUILDERS`): detector frames, not projections.
    A cone-beam dataset (recipe ``source: cone-beam``) is scanned as a lab
    micro-CT does (:func:`aiax_bench.data.cone.build_cone_store`).

    The store appears at ``target`` only once complete (see :class:`atomic_store`). Once its first sample
    is written, a build its disk cannot hold stops (:func:`~aiax_bench.data.store.check_room_for_samples`):
    ``benchmarks/README.md`` gives a ``large`` sample's size.

    Parameters
    ----------
    spec : DatasetVersion
        The version to build.
    profile : str
        Its profile (``tiny``, ``small``, ``large``).
    target : pathlib.Path
        Where the store goes.
    quiet : bool
        No progress bar.
    workers : int
        Processes building samples side by side (parallel-beam recipes; the others build serially):
        each holds what one sample's build holds (``benchmarks/README.md`` gives it per size) and gets
        an equal share of this process's torch threads; once fewer samples are left than workers, the
        ones still building share the idle workers' threads too. The store's bytes are the same for any number:
        a sample's bytes depend on its recipe and seed alone, never on threads or on where it was
        built. The workers are spawned, so a script calling this with ``workers > 1`` needs the usual
        ``if __name__ == "__main__":`` guard.

    Returns
    -------
    dict
        The store's root attributes (fingerprint and content sha256 included).
    """
    import torch
    import zarr
    from tqdm.auto import tqdm

    spec.check_profile(profile)
    workers = check_positive_int("workers", workers, "processes building samples")
    if spec.measured:
        return MEASURED_BUILDERS[spec.recipe["family"]](spec, profile, target, quiet=quiet)
    if spec.frames:
        return FRAME_BUILDERS[spec.recipe["family"]](spec, profile, target, quiet=quiet)
    use_compatible_mkl()  # before any computation: MKL fixes its code path at its first one
    if spec.beam == "cone":
        from aiax_bench.data.cone import build_cone_store

        return build_cone_store(spec, profile, target, ids=sample_ids(spec, profile), quiet=quiet)
    size = int(spec.profiles[profile]["size"])
    ids = sample_ids(spec, profile)
    reference_angles(spec.recipe["acquisition"]["reference_angles"])  # checked before any work
    for name, params in spec.splits.items():
        if params.get("kind") not in SPLIT_KINDS:
            raise InputError(f"split {name} of {spec.ref}", f"has kind {params.get('kind')!r}",
                             f"expected one of {sorted(SPLIT_KINDS)}")
    workers = max(1, min(workers, len(ids)))
    if not quiet:
        print(f"Building {spec.ref} ({profile} profile: {len(ids)} samples of {size}³, "
              f"{len(spec.splits)} splits) into {target}"
              + (f", {workers} samples at a time" if workers > 1 else ""), file=sys.stderr)
    started = time.time()
    fingerprint: dict[str, dict[str, float]] = {}
    hashes: dict[str, str] = {}
    per_sample = 3 + len(spec.splits)
    with atomic_store(target) as tmp, tqdm(total=len(ids) * per_sample, desc=f"build {spec.ref}", unit="step",
                                           disable=quiet, file=sys.stderr) as bar:
        root = zarr.open_group(str(tmp), mode="w")
        root.create_group("samples")
        if workers == 1:
            builder = _SampleBuilder(spec, profile)
            results = []
            for sample in ids:
                results.append(builder.build(root, *sample, bar))
                if len(results) == 1:
                    check_room_for_samples(tmp, sample[0], len(ids) - 1, target=target)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            cores = torch.get_num_threads()
            threads = max(1, cores // workers)
            # Spawned, not forked: a fork of a process whose OpenMP threads have started may hang.
            context = multiprocessing.get_context("spawn")
            # Samples being built (see _samples_building): one writer, readers that only size their threads.
            building = context.Value("i", _samples_building(workers, len(ids), 0), lock=False)
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                     initargs=(spec, profile, threads, cores, building)) as pool:
                futures = {pool.submit(_build_in_worker, str(tmp), *sample): k for k, sample in enumerate(ids)}
                results: list = [None] * len(ids)
                try:
                    for done, future in enumerate(as_completed(futures), start=1):
                        building.value = _samples_building(workers, len(ids), done)
                        results[futures[future]] = future.result()
                        if done == 1:  # the samples being written meanwhile are counted as not started
                            check_room_for_samples(tmp, ids[futures[future]][0], len(ids) - 1, target=target)
                        bar.set_postfix_str(f"{ids[futures[future]][0]}: written")
                        bar.update(per_sample)
                except BaseException:
                    # The first failure ends the build: samples not started are dropped, and the ones running
                    # finish before the temporary store is removed.
                    pool.shutdown(cancel_futures=True)
                    raise
        # In sample order, whichever finished first: the same attributes as a serial build.
        for sample_hashes, sample_fingerprint in results:
            hashes.update(sample_hashes)
            fingerprint.update(sample_fingerprint)
        attrs = sample_recipe.store_attrs(spec, profile, ids, fingerprint=fingerprint, hashes=hashes,
                                          started=started)
        # Written last: a store without these attributes is incomplete by construction.
        root.attrs.update(attrs)
    return attrs
