"""Detector artefacts of real scans (rings, blur, zingers, a finite flat field) and the baselines that fight them."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.sim.acquire import poisson_noise
from aiax_bench.sim.artefacts import blurred_scan, flat_noise_scan, ring_scan, zinger_scan

PHOTONS = 1e4


@pytest.fixture
def clean():
    """Noise-free line integrals (rows, angles, columns) of a smooth object: a disc in every row."""
    d = np.linspace(-1, 1, 48)
    return np.broadcast_to(np.clip(1 - d**2, 0, None) * 0.8, (6, 90, 48)).astype(np.float64).copy()


def test_no_defective_pixel_is_plain_counting_noise_and_defective_ones_offset_whole_columns(clean):
    plain = poisson_noise(clean, PHOTONS, rng=np.random.default_rng(1))
    rng = np.random.default_rng(1)
    rng.random((6, 1, 48)), rng.standard_normal((6, 1, 48))  # the ring draws come first
    np.testing.assert_array_equal(ring_scan(clean, photons=PHOTONS, defective_fraction=0.0, gain_sigma=0.05,
                                            rng=np.random.default_rng(1)),
                                  poisson_noise(clean, PHOTONS, rng=rng))
    rings = ring_scan(clean, photons=PHOTONS, defective_fraction=1.0, gain_sigma=0.05, rng=np.random.default_rng(2))
    offset = (rings - clean).mean(axis=1)  # per (row, column), over the angles
    noise = (plain - clean).mean(axis=1)
    # A stripe is a constant over the angles: its spread across columns far exceeds what noise leaves.
    assert offset.std() > 5 * noise.std()


def test_blur_keeps_the_open_beam_and_smooths_an_edge():
    p = np.zeros((8, 4, 40))
    p[:, :, 20:] = 2.0  # a sharp edge across the columns
    blurred = blurred_scan(p, photons=1e9, sigma_px=2.0, rng=np.random.default_rng(0))
    sharp = poisson_noise(p, 1e9, rng=np.random.default_rng(0))
    assert np.abs(np.diff(blurred, axis=-1)).max() < 0.5 * np.abs(np.diff(sharp, axis=-1)).max()
    assert blurred[:, :, :5].mean() == pytest.approx(0.0, abs=1e-3)  # far from the edge: still the open beam


def test_zingers_are_rare_bright_pixels(clean):
    scan = zinger_scan(clean, photons=PHOTONS, zingers_per_projection=4.0, brightness=(2.0, 3.0),
                       rng=np.random.default_rng(3))
    hits = scan < -0.5  # brighter than the open beam by a factor e^0.5: only a zinger does that at 10^4 photons
    assert 90 * 4 * 0.6 < hits.sum() < 90 * 4 * 1.4
    plain = zinger_scan(clean, photons=PHOTONS, zingers_per_projection=0.0, brightness=(2.0, 3.0),
                        rng=np.random.default_rng(3))
    assert not (plain < -0.5).any()


def test_fewer_flats_leave_stronger_column_offsets(clean):
    def column_spread(n_flats: int) -> float:
        scan = flat_noise_scan(clean, photons=PHOTONS, n_flats=n_flats, rng=np.random.default_rng(4))
        return float((scan - clean).mean(axis=1).std())

    few, many = column_spread(2), column_spread(200)
    # The flat's relative error is 1 / sqrt(n photons): ten times fewer flats, about sqrt(10) times the offsets.
    assert few > 3 * many


@pytest.mark.parametrize(("call", "field"), [
    (lambda p: ring_scan(p, photons=PHOTONS, defective_fraction=1.5, gain_sigma=0.1, rng=np.random.default_rng()),
     "defective_fraction"),
    (lambda p: ring_scan(p, photons=PHOTONS, defective_fraction=0.1, gain_sigma=1.5, rng=np.random.default_rng()),
     "gain_sigma"),
    (lambda p: blurred_scan(p, photons=PHOTONS, sigma_px=0.0, rng=np.random.default_rng()), "sigma_px"),
    (lambda p: zinger_scan(p, photons=PHOTONS, zingers_per_projection=-1, brightness=(1, 2),
                           rng=np.random.default_rng()), "zingers_per_projection"),
    (lambda p: zinger_scan(p, photons=PHOTONS, zingers_per_projection=1, brightness=(2, 1),
                           rng=np.random.default_rng()), "brightness"),
    (lambda p: flat_noise_scan(p, photons=PHOTONS, n_flats=0, rng=np.random.default_rng()), "n_flats"),
    (lambda p: flat_noise_scan(p[0], photons=PHOTONS, n_flats=3, rng=np.random.default_rng()), "line_integrals"),
])
def test_bad_artefact_settings_are_refused_naming_the_field(clean, call, field):
    with pytest.raises(InputError) as error:
        call(clean)
    assert error.value.field == field and "\n" not in str(error.value)


# --- foam@2.1: the artefact splits through the harness ---------------------------------------------------------

@pytest.fixture(scope="module")
def artefact_root(tmp_path_factory):
    from aiax_bench.data.loader import load

    root = tmp_path_factory.mktemp("foam-2.1")
    load("foam@2.1", profile="tiny", root=root)
    return root


def test_foam_2_1_tiny_builds_to_its_registered_sha256_with_the_artefact_splits(artefact_root):
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import resolve

    dataset = load("foam@2.1", profile="tiny", root=artefact_root)
    spec = resolve("foam@2.1")
    assert dataset.content_sha256 == spec.content_sha256["tiny"]
    assert {"rings", "blur", "zingers", "flat-noise"} <= set(spec.splits)
    assert {spec.split_spec(s).kind for s in ("rings", "blur", "zingers", "flat-noise")} == {
        "rings", "blur", "zingers", "flat-noise"}


def test_stripe_removal_beats_fbp_on_rings(artefact_root, monkeypatch, tmp_path):
    """Sorting-based stripe removal before FBP, its window tuned with the filter on the validation volume, beats
    FBP tuned alone on the held-out volumes of the `rings` split."""
    from aiax_bench.harness import EvaluationRequest, run_seeds

    monkeypatch.setenv("AIAX_BENCH_DATA", str(artefact_root))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def psnr(**config) -> tuple[float, dict]:
        result = run_seeds(EvaluationRequest(method="fbp", dataset="foam@2.1", profile="tiny", split="rings",
                                             config={"tune": "reference", **config}, tracking_uri=tracking,
                                             output_dir=tmp_path / "results", figures=False), [0])
        return result["metrics"]["psnr/truth"]["mean"], result["runs"][0]["fit_summary"]["selected"]

    plain, _ = psnr()
    destriped, selected = psnr(remove_rings=True)
    print(f"tiny rings PSNR vs truth: FBP {plain:.2f} dB, stripe removal + FBP {destriped:.2f} dB ({selected})")
    assert destriped > plain + 0.3 and selected["ring_size"] in (3, 5, 11, 21)
