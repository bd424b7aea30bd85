"""foam@3.1: detector averages inside the noise draw, and a continuous split sampled at the reference angles."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.sim import poisson_noise_blocks, reference_angles
from aiax_bench.sim.acquire import bin_detector, continuous_rotation

DATASET = "foam@3.1"


def _line_integrals(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 2.0, shape).astype(np.float32)


def test_expected_counts_average_intensity_and_are_the_plain_transmission_pixel_by_pixel():
    import numba

    from aiax_bench.sim._ieee_math import exp_ieee, expected_counts

    @numba.njit
    def transmitted(p, photons):  # the kernels inline into compiled loops; call them from one
        out = np.empty(p.size)
        for i, value in enumerate(p.ravel()):
            out[i] = photons * exp_ieee(-np.float64(value))
        return out

    p = _line_integrals((6, 20, 12))
    plain = np.empty(p.shape)
    expected_counts(p, 1000.0, 1, 1, plain)
    assert plain.tobytes() == transmitted(p, 1000.0).tobytes()
    # Against numpy's float64 average of the intensity (different exp, so to a few ulp).
    blurred = np.empty((6, 4, 12))
    expected_counts(p, 1000.0, 5, 1, blurred)
    reference = 1000.0 * np.exp(-p.astype(np.float64)).reshape(6, 4, 5, 12).mean(axis=2)
    np.testing.assert_allclose(blurred, reference, rtol=1e-14, atol=0)
    binned = np.empty((3, 20, 6))
    expected_counts(p, 1000.0, 1, 2, binned)
    reference = 1000.0 * np.exp(-p.astype(np.float64)).reshape(3, 2, 20, 6, 2).mean(axis=(1, 4))
    np.testing.assert_allclose(binned, reference, rtol=1e-14, atol=0)


@pytest.mark.parametrize(("steps", "binning"), [(5, 1), (1, 2), (2, 4)])
def test_averaged_noise_is_the_averaged_scan_with_counting_noise_and_ignores_threads(steps, binning):
    p = _line_integrals((16, 20, 16))
    one = poisson_noise_blocks(p, 1e4, key=(3, 9), steps=steps, binning=binning, threads=1)
    assert one.shape == (16 // binning, 20 // steps, 16 // binning) and one.dtype == np.float32
    assert poisson_noise_blocks(p, 1e4, key=(3, 9), steps=steps, binning=binning, threads=3).tobytes() == one.tobytes()
    # With photons enough that counting noise is below 1e-5, it is the line integrals averaged in intensity first.
    averaged = bin_detector(continuous_rotation(p, steps), binning)
    quiet = poisson_noise_blocks(p, 1e14, key=(3, 9), steps=steps, binning=binning)
    np.testing.assert_allclose(quiet, averaged, rtol=0, atol=1e-5)


def test_binned_noise_counts_the_photons_of_every_fine_pixel():
    # A binned pixel records f² times the photons: its log-domain variance is exp(p) / (f² I0).
    p = np.full((64, 50, 64), 1.0, dtype=np.float32)
    noise = poisson_noise_blocks(p, 1000.0 * 4, key=(1, 2), binning=2).astype(np.float64) - 1.0
    assert noise.var() == pytest.approx(np.e / 4000.0, rel=0.03)


def test_averaged_noise_refuses_a_window_that_does_not_tile_the_scan():
    p = _line_integrals((16, 20, 16))
    with pytest.raises(InputError, match="steps"):
        poisson_noise_blocks(p, 1e4, key=(1,), steps=3)
    with pytest.raises(InputError, match="binning"):
        poisson_noise_blocks(p, 1e4, key=(1,), binning=3)
    with pytest.raises(InputError, match="steps"):
        poisson_noise_blocks(p, 1e4, key=(1,), steps=0)


def _context(n_ref: int = 20, *, averaged: bool = True):
    from aiax_bench.data.build import PROJECTOR_CACHE_BYTES, _ProjectorCache, _SampleContext

    def no_projection(*_args, **_kwargs):
        raise AssertionError("a continuous split on the reference angles projects nothing")

    clean = _line_integrals((8, n_ref, 16), seed=4) * np.float32(0.1)
    return _SampleContext(phantom=None, clean=clean, noisy=clean, independent_noise=True,
                          angles=reference_angles(n_ref), photons=1e4, seed=5, voxel_cm=2e-3, recon_filter="ramp",
                          projector=_ProjectorCache(PROJECTOR_CACHE_BYTES), project=no_projection,
                          noise_draw="row-blocks-averaged" if averaged else "row-blocks")


@pytest.mark.parametrize("averaged", [True, False])
def test_continuous_split_on_the_reference_angles_averages_the_projections_its_arcs_cover(averaged):
    from aiax_bench.data.build import SPLIT_KINDS

    ctx = _context(averaged=averaged)
    low, sino, angles = SPLIT_KINDS["continuous"](ctx, "continuous", {"n_angles": 4, "sub_angles": "reference"})
    # Four arcs of five reference angles tile the half turn; each exposure is at its arc's middle.
    np.testing.assert_allclose(angles, reference_angles(20).reshape(4, 5).mean(axis=1), rtol=0, atol=1e-15)
    assert sino.shape == (8, 4, 16) and low.shape == (8, 16, 16)
    blurred = continuous_rotation(ctx.clean, 5)
    assert np.abs(sino - blurred).max() < 0.05  # counting noise at 10⁴ photons: a std of about 0.01
    with pytest.raises(InputError, match=r"split continuous: n_angles.*divisor of the 20"):
        SPLIT_KINDS["continuous"](ctx, "continuous", {"n_angles": 3, "sub_angles": "reference"})
    with pytest.raises(InputError, match="split continuous: steps"):
        SPLIT_KINDS["continuous"](ctx, "continuous", {"n_angles": 4, "steps": 8, "sub_angles": "reference"})


@pytest.fixture(scope="module")
def foam31_root(tmp_path_factory):
    """foam@3.1 tiny, built in a process of one thread per library (started ahead at the session's start)."""
    from _tiny import tiny_one_thread

    return tiny_one_thread(DATASET, tmp_path_factory.mktemp("foam-3.1"))[0]


@pytest.mark.slow
def test_foam_3_1_is_3_0_with_averaged_noise_and_builds_to_its_registered_sha256(foam31_root):
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import resolve

    spec = resolve(DATASET)
    dataset = load(DATASET, profile="tiny", root=foam31_root)
    assert dataset.content_sha256 == spec.content_sha256["tiny"]
    # 3.0's foam, scans and splits: only the noise draw and the continuous split's sub-angles differ.
    older = resolve("foam@3.0").recipe
    continuous = {k: v for k, v in older["splits"]["continuous"].items() if k != "steps"}
    assert spec.recipe == {**older, "description": spec.recipe["description"],
                           "acquisition": {**older["acquisition"], "noise": "row-blocks-averaged"},
                           "splits": {**older["splits"], "continuous": {**continuous, "sub_angles": "reference"}}}
    angles = dataset.split("continuous").test[0].angles
    reference = reference_angles(spec.recipe["acquisition"]["reference_angles"])
    np.testing.assert_allclose(angles, reference.reshape(100, 5).mean(axis=1), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_exact_phantom_ranks_first_on_foam_3_1(foam31_root):
    from _truth_first import assert_exact_phantom_first

    from aiax_bench.data.loader import load

    assert_exact_phantom_first(load(DATASET, profile="tiny", root=foam31_root), ["continuous", "res-x2"])
