"""Artefact and phase-contrast splits in every family: am-metal@2.1, mouse@1.1, the cone-beam am-metal-lab@1.1, and
beam hardening through several materials (composite@2.2) and through every tissue of the mouse (mouse@1.2)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

#: Each new version, the one it extends, and the splits it adds: nothing else of the recipe changes, so the
#: older splits keep their bytes (each split draws from its own generator, keyed by its name).
EXTENSIONS = [
    ("am-metal@2.1", "am-metal@2.0", ("pc-1m", "rings", "blur", "zingers", "flat-noise", "beam-hardening")),
    ("mouse@1.1", "mouse@1.0", ("rings", "blur", "zingers", "flat-noise")),
    ("am-metal-lab@1.1", "am-metal-lab@1.0", ("rings", "blur", "zingers", "flat-noise")),
    ("composite@2.2", "composite@2.1", ("beam-hardening",)),
    ("mouse@1.2", "mouse@1.1", ("beam-hardening",)),
]


@pytest.mark.parametrize(("ref", "older", "added"), EXTENSIONS)
def test_each_new_version_is_the_older_recipe_plus_its_new_splits(ref, older, added):
    from aiax_bench.data.registry import resolve

    spec, before = resolve(ref), resolve(older)
    assert list(spec.splits)[-len(added):] == list(added)
    expected = {**before.recipe, "description": spec.recipe["description"],
                "splits": {**before.splits, **{name: spec.splits[name] for name in added}}}
    assert spec.recipe == expected
    assert spec.evaluation == before.evaluation
    assert {spec.split_spec(name).kind for name in added} <= {
        "phase-contrast", "rings", "blur", "zingers", "flat-noise", "beam-hardening"}


def test_every_builder_knows_the_four_detector_artefacts_from_the_one_table():
    from aiax_bench.data.build import SPLIT_KINDS
    from aiax_bench.data.cone import CONE_SPLIT_KINDS
    from aiax_bench.sim.artefacts import DETECTOR_ARTEFACTS

    assert set(DETECTOR_ARTEFACTS) <= set(SPLIT_KINDS) and set(DETECTOR_ARTEFACTS) <= set(CONE_SPLIT_KINDS)


def _one_sample(ref: str, splits: tuple[str, ...], size: int, *, voxel_size_um: float | None = None):
    """``ref`` with only ``splits`` and a profile ``one`` of one test sample of ``size``³ voxels."""
    from aiax_bench.data.registry import resolve

    spec = resolve(ref)
    recipe = copy.deepcopy(spec.recipe)
    recipe["splits"] = {name: spec.splits[name] for name in splits}
    recipe["profiles"] = {"one": {"size": size, "samples": {"train": [], "val": [], "test": [301], "ood-test": []}}}
    if voxel_size_um is not None:
        recipe["profiles"]["one"]["voxel_size_um"] = voxel_size_um
    return dataclasses.replace(spec, recipe=recipe)


def test_am_metal_phase_contrast_at_40_kev_takes_the_alloys_index_from_chantlers_tables(tmp_path):
    """40 keV is above the Henke tables: the split's delta/beta and Fresnel number are those its description
    states, and the beam-hardening split's spectrum keeps a thin part at the truth's 9.41 1/cm."""
    import zarr

    from aiax_bench.data.build import build_store
    from aiax_bench.sim.materials import refractive_index

    spec = _one_sample("am-metal@2.1", ("pc-1m", "beam-hardening"), 32)
    build_store(spec, "one", tmp_path / "one.zarr", quiet=True)
    sample = zarr.open_group(str(tmp_path / "one.zarr"), mode="r")["samples/test-000"]
    setup = sample.attrs["phase_contrast"]["pc-1m"]
    alloy = spec.splits["pc-1m"]["material"]
    index = refractive_index(alloy["formula"], density_g_cm3=alloy["density_g_cm3"], energy_kev=40.0)
    assert setup["delta_beta"] == index.delta_beta_ratio
    assert round(setup["delta_beta"]) == 270 and round(setup["fresnel_number_pixel"], 1) == 3.2
    assert "delta/beta 270" in spec.splits["pc-1m"]["description"]
    assert "Fresnel number 3.2" in spec.splits["pc-1m"]["description"]
    hardening = sample.attrs["beam_hardening"]["beam-hardening"]
    assert float(np.dot(hardening["weights"], hardening["attenuation_per_cm"])) == pytest.approx(9.41, rel=1e-6)
    for split in ("pc-1m", "beam-hardening"):
        assert np.isfinite(sample[f"splits/{split}/low"][:]).all()


def test_a_cone_beam_scan_with_defective_pixels_shows_them_as_offsets_constant_over_the_turn(tmp_path):
    """The artefacts act on the flat panel's rows and columns: a defective pixel offsets its line integral at
    every source position. Against the reference scan (its own noise, no defects), the offset averaged over
    the 720 positions stands out of the noise at about the defective fraction (10 %) of the pixels (those whose
    gain error passes three times the averaged noise), and the same offset in each half of the turn."""
    import zarr

    from aiax_bench.data.build import build_store

    spec = _one_sample("am-metal-lab@1.1", ("rings",), 32)
    build_store(spec, "one", tmp_path / "one.zarr", quiet=True)
    sample = zarr.open_group(str(tmp_path / "one.zarr"), mode="r")["samples/test-000"]
    reference = sample["sinogram"][:].astype(np.float64)  # (A, R, D)
    difference = sample["splits/rings/sinogram"][:].astype(np.float64) - reference
    assert difference.shape == reference.shape
    offsets = difference.mean(axis=0)  # per detector pixel, over the turn
    noise = difference.std(axis=0).mean() / np.sqrt(reference.shape[0])
    defective = np.abs(offsets) > 3 * noise
    assert 0.03 < float(defective.mean()) < 0.15, float(defective.mean())
    half = reference.shape[0] // 2
    first, second = difference[:half].mean(axis=0)[defective], difference[half:].mean(axis=0)[defective]
    assert np.corrcoef(first, second)[0, 1] > 0.9
    assert np.isfinite(sample["splits/rings/low"][:]).all()


def test_beam_hardening_through_several_materials_hardens_the_glass_more_than_the_polyamide(tmp_path):
    """composite@2.2: each phase projected alone and attenuated by its own curve, each curve's thin-part limit
    the phase's truth (1.10 and 23.4 1/cm). The glass fibres, which harden a 40 kV beam far more than the
    matrix, read well below the reference scan; the matrix, a weak absorber, about as it. A phase without a
    material is refused in one line and leaves no store."""
    import zarr

    from aiax_bench.data.build import build_store
    from aiax_bench.errors import InputError

    spec = _one_sample("composite@2.2", ("beam-hardening",), 48)
    build_store(spec, "one", tmp_path / "one.zarr", quiet=True)
    sample = zarr.open_group(str(tmp_path / "one.zarr"), mode="r")["samples/test-000"]
    setup = sample.attrs["beam_hardening"]["beam-hardening"]
    truth_of = {"matrix": 1.10, "fibre": 23.4}
    for phase, table in setup["materials"].items():
        assert float(np.dot(setup["weights"], table["attenuation_per_cm"])) == pytest.approx(truth_of[phase], rel=1e-6)
    assert setup["material"] == "C12H22N2O2" and setup["effective_attenuation_per_cm"] == 1.10  # what linearises
    labels, mask = sample["labels"][:], sample["mask"][:].astype(bool)
    phases = dict(zip(sample.attrs["phases"], range(len(sample.attrs["phases"])), strict=True))
    low, high = sample["splits/beam-hardening/low"][:], sample["high"][:]
    fibre = (labels == phases["fibre"]) & mask
    assert low[fibre].mean() < 0.9 * high[fibre].mean()

    split = copy.deepcopy(spec.splits["beam-hardening"])
    del split["materials"]["fibre"]
    broken = dataclasses.replace(spec, recipe={**spec.recipe, "splits": {"beam-hardening": split}})
    with pytest.raises(InputError, match="materials") as error:
        build_store(broken, "one", tmp_path / "two.zarr", quiet=True)
    assert "'fibre'" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "two.zarr").exists()


def test_the_lab_families_voxels_are_too_coarse_for_propagation_phase_contrast():
    """Why mouse@1.1 and am-metal-lab@1.1 have no phase-contrast split: the Fresnel number of one voxel at a
    metre's distance and the recipe's energy is far above the few units where edge fringes show (the
    phase-contrast splits of foam-pc, composite@2.1 and am-metal@2.1 have 0.8 to 4.4). The mouse (300 µm voxels
    in the small profile, 85 µm in the users' large one, 42 keV) would need hundreds of metres even at 85 µm;
    the lab part (10 µm at 1.5× magnification behind a tube's focal spot) lacks the spatial coherence,
    which no recipe key models."""
    from aiax_bench.data.registry import resolve
    from aiax_bench.sim.materials import wavelength_m
    from aiax_bench.sim.propagation import fresnel_number

    mouse = resolve("mouse@1.1")
    energy = mouse.recipe["phantom"]["energy_kev"]
    for profile, at_least in (("small", 2000.0), ("large", 200.0)):
        pixel_m = mouse.voxel_size_um(profile) * 1e-6
        assert fresnel_number(pixel_m, 1.0, wavelength_m(energy)) > at_least
    assert pixel_m**2 / (4.4 * wavelength_m(energy)) > 50.0  # metres to reach pc-pink's Fresnel number at 85 µm
    assert not any(spec["kind"] == "phase-contrast" for spec in mouse.splits.values())


def test_the_mouse_tissue_compositions_give_the_phantoms_nist_attenuation():
    """mouse@1.2's beam-hardening split takes each tissue's attenuation over energy from its ICRU-44/46 mass
    fractions (recipe) by the mixture rule on xraydb's elemental tables. At 30-60 keV these must be the NIST
    values the phantom's truth is made of (``TISSUES``, four digits): a wrong or mistyped fraction shows here.
    And the tube: behind 2.5 cm of the soft tissue its mean energy is near the phantom's effective 42 keV."""
    from aiax_bench.data.registry import resolve
    from aiax_bench.data.sample_recipe import recorded_tube_spectrum
    from aiax_bench.sim.materials import mass_fractions
    from aiax_bench.sim.phantoms.mouse import _TISSUE_OF, TISSUE_ENERGIES_KEV, TISSUES
    from aiax_bench.sim.spectrum import attenuation_coefficients

    split = resolve("mouse@1.2").splits["beam-hardening"]
    energies = np.array(TISSUE_ENERGIES_KEV)
    for phase, tissue in _TISSUE_OF.items():
        material = split["materials"][phase]
        fractions = mass_fractions(material["formula"])
        assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-9)
        density, nist = TISSUES[tissue]
        assert material["density_g_cm3"] == density
        mu = attenuation_coefficients(fractions, density, energies)
        np.testing.assert_allclose(mu, density * np.array(nist), rtol=5e-4, err_msg=phase)  # the table's 4 digits
    assert split["materials"]["liver_tumour"] == split["materials"]["liver"]
    assert split["materials"]["lung_tumour"] == split["materials"]["soft_tissue"] == split["material"]

    energies, weights, _ = recorded_tube_spectrum(split["spectrum"])
    mu = attenuation_coefficients(mass_fractions(split["material"]["formula"]), 1.05, energies)
    behind = weights * np.exp(-mu * 2.5)
    assert 40.0 < float(behind @ energies / behind.sum()) < 45.0


def test_mouse_beam_hardening_projects_the_phases_of_one_tissue_together(tmp_path):
    """Phases of one tissue (the liver and its tumours; soft tissue and the lung tumours) share one projection
    in the split, which must equal projecting each alone: built again with the liver tumours given the same
    fractions written in another order (hence a material of their own), the scan agrees to float32 rounding.
    Every tissue's curve keeps a thin part at its truth; bone hardens the beam most (it reads far below the
    reference scan), and the soft tissue is cupped.

    A Poisson draw whose mean moves by an ulp may take another path and shift the generator's stream, so the
    two are built nearly noise-free (10^12 photons); and with one sub-ray per pixel, where a projection is
    linear in the attenuation (a pixel's sub-rays average intensities, not line integrals, so apart and
    together differ at the tumours' edges by design). A tumour projected with the liver's scale instead of its
    own (15 % more attenuating) would differ along every ray through it."""
    import zarr

    from aiax_bench.data.build import build_store

    spec = _one_sample("mouse@1.2", ("beam-hardening",), 32, voxel_size_um=1200.0)
    quiet = {**spec.recipe, "acquisition": {**spec.recipe["acquisition"], "photons": 1e12,
                                            "supersample_u": 1, "supersample_z": 1}}
    split = copy.deepcopy(spec.splits["beam-hardening"])
    fractions = split["materials"]["liver"]["formula"].split(" // ")
    split["materials"]["liver_tumour"] = {**split["materials"]["liver"],
                                          "formula": " // ".join(fractions[-2::-1] + fractions[-1:])}
    samples = []
    for name, splits in (("together", spec.splits), ("apart", {"beam-hardening": split})):
        build_store(dataclasses.replace(spec, recipe={**quiet, "splits": splits}), "one", tmp_path / name, quiet=True)
        samples.append(zarr.open_group(str(tmp_path / name), mode="r")["samples/test-000"])
    sample, apart = samples
    phases = list(sample.attrs["phases"])
    labels, mask = sample["labels"][:], sample["mask"][:].astype(bool)
    assert (labels == phases.index("liver_tumour")).any()
    scan = sample["splits/beam-hardening/sinogram"][:]
    np.testing.assert_allclose(apart["splits/beam-hardening/sinogram"][:], scan, rtol=0, atol=1e-4)

    setup = sample.attrs["beam_hardening"]["beam-hardening"]
    truth_of = dict(zip(phases, sample.attrs["attenuation_per_cm"], strict=True))
    assert set(setup["materials"]) == {phase for phase, mu in truth_of.items() if mu > 0}
    for phase, table in setup["materials"].items():
        thin = float(np.dot(setup["weights"], table["attenuation_per_cm"]))
        assert thin == pytest.approx(truth_of[phase], rel=1e-6)
    high, low = sample["high"][:], sample["splits/beam-hardening/low"][:]
    bone, soft = (labels == phases.index("bone")) & mask, (labels == phases.index("soft_tissue")) & mask
    assert low[bone].mean() < 0.8 * high[bone].mean()
    assert 0.75 * high[soft].mean() < low[soft].mean() < 0.95 * high[soft].mean()
