"""foam-pc@1.0: propagation-based phase contrast as a split kind, and Paganin's retrieval as the baseline for it."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.errors import InputError

DATASET = "foam-pc@1.0"


@pytest.fixture(scope="module")
def pc_root(tmp_path_factory):
    """foam-pc@1.0 tiny, built once for this module in a process of one thread each (BLAS, OpenMP, numba)."""
    from _tiny import build_tiny_one_thread

    root = tmp_path_factory.mktemp("pc-data")
    return root, build_tiny_one_thread(DATASET, root)


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


@pytest.mark.parametrize("split", ["pc-10cm", "pc-50cm"])
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
