"""foam-pc@1.1: propagation-based phase contrast (monochromatic and pink) as a split kind, and Paganin's retrieval as
the baseline for it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiax_bench.errors import InputError

DATASET = "foam-pc@1.1"


@pytest.fixture(scope="module")
def pc_root(tmp_path_factory):
    """foam-pc@1.1 tiny, built once for this module in a process of one thread each (BLAS, OpenMP, numba)."""
    from _tiny import tiny_one_thread

    return tiny_one_thread(DATASET, tmp_path_factory.mktemp("pc-data"))


@pytest.fixture(scope="module")
def pc(pc_root):
    from aiax_bench.data.loader import load

    return load(DATASET, profile="tiny", root=pc_root[0], build=False)


def test_tiny_builds_with_one_thread_to_the_content_sha256_registered_from_a_default_build(pc_root):
    from aiax_bench.data.registry import resolve

    assert pc_root[1] == resolve(DATASET).content_sha256["tiny"]


def test_each_split_records_its_beamline_and_fresnel_number_and_a_sealed_sample_shows_them(pc):
    from aiax_bench.data.sealed import seal
    from aiax_bench.sim.materials import delta_beta_ratio

    for split, distance, fresnel in (("pc-10cm", 0.10, 4.03), ("pc-50cm", 0.50, 0.81)):
        sample = pc.split(split).test[0]
        setup = sample.meta["phase_contrast"][split]
        assert setup["distance_m"] == distance and setup["energy_kev"] == 20.0
        assert setup["fresnel_number_pixel"] == pytest.approx(fresnel, abs=0.01)  # as the split's description says
        assert setup["delta_beta"] == delta_beta_ratio("C5H8O2", density_g_cm3=1.18, energy_kev=20.0)
        sealed = next(iter(seal([sample])))
        assert sealed.meta["phase_contrast"][split] == setup


def test_without_distance_the_scan_is_the_absorption_image():
    from aiax_bench.sim.propagation import phase_contrast_scan

    z, a, d = np.meshgrid(np.arange(8), np.arange(3), np.arange(32), indexing="ij")
    smooth = 0.2 * np.exp(-((d - 16.0) ** 2 + (z - 4.0) ** 2) / 60.0) + 0 * a
    scan = phase_contrast_scan(smooth, photons=1e12, wavelength_m=6.2e-11, delta_beta=1000.0, distance_m=0.0,
                               pixel_size_m=5e-6, psf_sigma_px=0.0, rng=np.random.default_rng(0))
    # Stated tolerance: the wave is sampled twice finer by linear interpolation, then averaged per pixel.
    np.testing.assert_allclose(scan, smooth, atol=2e-3)
    with pytest.raises(InputError, match="delta_beta"):
        phase_contrast_scan(smooth, photons=1e4, wavelength_m=6.2e-11, delta_beta=0.0, distance_m=0.1,
                            pixel_size_m=5e-6, psf_sigma_px=0.0, rng=np.random.default_rng(0))


@pytest.mark.parametrize("split", ["pc-10cm", "pc-50cm", "pc-pink"])
def test_paganin_before_fbp_beats_plain_fbp_against_the_truth(pc, split):
    from aiax_bench.baselines.fbp import FBP
    from aiax_bench.data.sealed import seal
    from aiax_bench.evaluation import Evaluator

    data = pc.split(split)
    evaluator = Evaluator(pc, split, porosity=False)
    scores = {}
    for paganin in (False, True):
        method = FBP({"paganin": paganin, "tune_slices": 4})
        method.fit(data.train, data.val, seed=0)
        scores[paganin] = evaluator.evaluate({s.id: method.predict(s) for s in seal(data.test)})["aggregate"]
    for key in ("psnr/truth", "ssim/truth"):
        assert scores[True][key]["mean"] > scores[False][key]["mean"], key


def test_paganin_is_refused_with_self_tuning_and_on_a_scan_without_phase_contrast(pc, tiny_v2):
    from aiax_bench.baselines.fbp import FBP

    data = pc.split("pc-10cm")
    with pytest.raises(InputError, match="tune"):
        FBP({"paganin": True, "tune": "self"}).fit(data.train, data.val, seed=0)
    plain = tiny_v2.split("100proj")
    with pytest.raises(InputError, match="phase_contrast"):
        FBP({"paganin": True}).fit(plain.train, plain.val, seed=0)


# --- pink beam --------------------------------------------------------------------------------------------------


def test_bending_magnet_spectrum_follows_the_synchrotron_universal_function_and_its_filters():
    import xraydb

    from aiax_bench.sim.spectrum import bending_magnet_spectrum

    # E_c = 0.665 E² B = 10 keV: bins at y = 1 and 2, where G1 is tabulated (0.6514, 0.3016; Wiedemann,
    # Particle Accelerator Physics, the synchrotron radiation function).
    field = 10.0 / (0.665 * 2.0**2)
    bare = bending_magnet_spectrum(ring_energy_gev=2.0, field_t=field, energies_kev=[10.0, 20.0])
    ratio = bare.fluence[1] / bare.fluence[0]
    assert ratio == pytest.approx((0.3016 / 20.0) / (0.6514 / 10.0), rel=2e-4)
    filtered = bending_magnet_spectrum(ring_energy_gev=2.0, field_t=field, energies_kev=[10.0, 20.0],
                                       filters={"Al": 0.7})
    mu = np.asarray(xraydb.material_mu("Al", np.array([10e3, 20e3]), density=2.7))  # 1/cm
    np.testing.assert_allclose(filtered.fluence / bare.fluence, np.exp(-mu * 0.07), rtol=1e-6)
    with pytest.raises(InputError, match="energies_kev"):
        bending_magnet_spectrum(ring_energy_gev=2.5, field_t=1.5, energies_kev=[8.0, 9.0, 11.0])


def test_a_pink_beam_is_the_signal_weighted_sum_of_its_energies():
    from aiax_bench.sim.propagation import phase_contrast_scan

    z, a, d = np.meshgrid(np.arange(8), np.arange(3), np.arange(32), indexing="ij")
    smooth = 2.0 * np.exp(-((d - 16.0) ** 2 + (z - 4.0) ** 2) / 60.0) + 0 * a
    common = {"photons": 1e4, "distance_m": 0.1, "pixel_size_m": 5e-6, "psf_sigma_px": 0.5}
    mono = phase_contrast_scan(smooth, wavelength_m=6.2e-11, delta_beta=1000.0, rng=np.random.default_rng(3),
                               **common)
    halves = phase_contrast_scan(smooth, wavelength_m=[6.2e-11] * 2, delta_beta=[1000.0] * 2, weights=[0.5, 0.5],
                                 attenuation_scale=[1.0, 1.0], rng=np.random.default_rng(3), **common)
    np.testing.assert_array_equal(halves, mono)  # 0.5 x + 0.5 x is x exactly
    # In contact the beam hardens: -ln sum_E w_E exp(-s_E p), below the mean attenuation sum_E w_E s_E p.
    weights, scale = np.array([0.3, 0.7]), np.array([2.0, 0.5])
    pink = phase_contrast_scan(smooth, wavelength_m=[8e-11, 5e-11], delta_beta=[900.0, 1500.0], weights=weights,
                               attenuation_scale=scale, rng=np.random.default_rng(0), photons=1e12, distance_m=0.0,
                               pixel_size_m=5e-6, psf_sigma_px=0.0)
    contact = {"photons": 1e12, "distance_m": 0.0, "pixel_size_m": 5e-6, "psf_sigma_px": 0.0}
    each = [phase_contrast_scan(s * smooth, wavelength_m=lam, delta_beta=1000.0, rng=np.random.default_rng(k),
                                **contact) for k, (s, lam) in enumerate(zip(scale, [8e-11, 5e-11], strict=True))]
    expected = -np.log(sum(w * np.exp(-e.astype(np.float64)) for w, e in zip(weights, each, strict=True)))
    # Stated tolerance: 1e12 photons count to a relative 1e-6, and float32 output.
    np.testing.assert_allclose(pink, expected, atol=1e-4)
    assert (pink < 0.95 * float(weights @ scale) * smooth)[smooth > 1.0].all()
    with pytest.raises(InputError, match="weights"):
        phase_contrast_scan(smooth, wavelength_m=[8e-11, 5e-11], delta_beta=[900.0, 1500.0], weights=[0.5, 0.6],
                            attenuation_scale=[1.0, 1.0], rng=np.random.default_rng(0), **common)


def test_the_pink_split_records_its_spectrum_as_shares_of_the_scintillators_signal(pc):
    setup = pc.split("pc-pink").test[0].meta["phase_contrast"]["pc-pink"]
    assert setup["energies_kev"] == list(np.arange(9.0, 30.0, 2.0))
    assert math.fsum(setup["weights"]) == pytest.approx(1.0, abs=1e-12)
    assert setup["distance_m"] == 0.082
    # The filtered beam's signal peaks between 13 and 19 keV (0.7 mm Al below, the source's fall above).
    assert 13.0 <= setup["energies_kev"][int(np.argmax(setup["weights"]))] <= 19.0
    assert setup["energy_kev"] == pytest.approx(17.9, abs=0.05)  # as the split's description says
    assert setup["fresnel_number_pixel"] == pytest.approx(4.4, abs=0.01)
    # A thin part reads the truth: the attenuation's signal-weighted mean is the truth's. Below the beam's
    # energy it attenuates more, about as E^-3 (photoabsorption); 9 keV is under Lu's L edges, not in PMMA.
    assert float(np.dot(setup["weights"], setup["attenuation_scale"])) == pytest.approx(1.0, abs=1e-9)
    scale = dict(zip(setup["energies_kev"], setup["attenuation_scale"], strict=True))
    assert scale[13.0] / scale[19.0] == pytest.approx((19.0 / 13.0) ** 3, rel=0.15)


# --- several materials ------------------------------------------------------------------------------------------


def _one_sample_recipe(ref: str, splits: dict, size: int = 32):
    """``ref`` with only ``splits`` and a profile ``one`` of one training sample of ``size``³ voxels."""
    import copy
    import dataclasses

    from aiax_bench.data.registry import resolve

    spec = resolve(ref)
    recipe = copy.deepcopy(spec.recipe)
    recipe["splits"] = splits
    recipe["profiles"] = {"one": {"size": size, "samples": {"train": [101], "val": [], "test": [], "ood-test": []}}}
    return dataclasses.replace(spec, recipe=recipe)


def test_each_material_of_a_composite_shifts_the_phase_by_its_own_delta_over_beta(tmp_path):
    import copy

    import zarr

    from aiax_bench.data.build import build_store
    from aiax_bench.data.registry import resolve
    from aiax_bench.sim.materials import delta_beta_ratio

    split = copy.deepcopy(resolve("composite@2.1").splits["pc-10cm"])
    build_store(_one_sample_recipe("composite@2.1", {"pc-10cm": split}), "one", tmp_path / "one.zarr", quiet=True)
    sample = zarr.open_group(str(tmp_path / "one.zarr"), mode="r")["samples/train-000"]
    setup = sample.attrs["phase_contrast"]["pc-10cm"]
    for phase in ("matrix", "fibre"):
        material = split["materials"][phase]
        assert setup["materials"][phase]["delta_beta"] == delta_beta_ratio(
            material["formula"], density_g_cm3=material["density_g_cm3"], energy_kev=15.0)
    assert setup["materials"]["matrix"]["delta_beta"] > 10 * setup["materials"]["fibre"]["delta_beta"]
    assert np.isfinite(sample["splits/pc-10cm/low"][:]).all()

    del split["materials"]["fibre"]
    with pytest.raises(InputError, match="materials") as error:
        build_store(_one_sample_recipe("composite@2.1", {"pc-10cm": split}), "one", tmp_path / "two.zarr", quiet=True)
    assert "'fibre'" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "two.zarr").exists()  # a failed build leaves no store behind


def test_the_phase_of_several_materials_is_that_of_one_when_they_share_delta_over_beta():
    from aiax_bench.sim.propagation import phase_contrast_scan

    z, a, d = np.meshgrid(np.arange(8), np.arange(3), np.arange(32), indexing="ij")
    smooth = 0.3 * np.exp(-((d - 16.0) ** 2 + (z - 4.0) ** 2) / 40.0) + 0 * a
    common = {"photons": 1e12, "wavelength_m": 6.2e-11, "distance_m": 0.2, "pixel_size_m": 5e-6,
              "psf_sigma_px": 0.5}
    one = phase_contrast_scan(smooth, delta_beta=1500.0, rng=np.random.default_rng(0), **common)
    several = phase_contrast_scan(smooth, delta_beta=None, phase_line_integrals=1500.0 * smooth,
                                  rng=np.random.default_rng(0), **common)
    # Stated tolerance: the two products (1500 mu) lambda / 4 pi and 1500 (mu lambda / 4 pi) round differently.
    np.testing.assert_allclose(several, one, atol=1e-5)
    with pytest.raises(InputError, match="phase_line_integrals"):
        phase_contrast_scan(smooth, delta_beta=None, phase_line_integrals=smooth[:, :2], rng=np.random.default_rng(0),
                            **common)
    pink = {**common, "wavelength_m": [6.2e-11, 5e-11]}
    with pytest.raises(InputError, match="phase_line_integrals") as error:  # each material's delta/beta has its own E
        phase_contrast_scan(smooth, delta_beta=None, phase_line_integrals=smooth, weights=[0.5, 0.5],
                            attenuation_scale=[1.0, 1.0], rng=np.random.default_rng(0), **pink)
    assert "\n" not in str(error.value)


def test_beam_hardening_is_refused_in_one_line_on_a_phantom_of_several_materials(tmp_path):
    from aiax_bench.data.build import build_store
    from aiax_bench.data.registry import resolve

    split = resolve("foam@2.2").splits["beam-hardening"]
    with pytest.raises(InputError, match="one attenuating material") as error:
        build_store(_one_sample_recipe("composite@2.1", {"beam-hardening": split}), "one", tmp_path / "bh.zarr",
                    quiet=True)
    assert "\n" not in str(error.value) and not (tmp_path / "bh.zarr").exists()
