"""Artefacts of real scans (rings, blur, zingers, a finite flat field, a lab tube's beam hardening) and the
baselines that fight them."""

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


# --- foam@2.2 (2.1's splits and beam hardening): the artefact splits through the harness ------------------------

DATASET = "foam@2.2"
ARTEFACTS = ("rings", "blur", "zingers", "flat-noise", "beam-hardening")


@pytest.fixture(scope="module")
def artefact_root(tmp_path_factory):
    """foam@2.2 tiny, built in a process of one thread per library (started ahead at the session's start)."""
    from _tiny import tiny_one_thread

    return tiny_one_thread(DATASET, tmp_path_factory.mktemp("foam-2.2"))[0]


def test_foam_2_2_tiny_builds_to_its_registered_sha256_with_the_artefact_splits(artefact_root):
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import resolve

    dataset = load(DATASET, profile="tiny", root=artefact_root)
    spec = resolve(DATASET)
    assert dataset.content_sha256 == spec.content_sha256["tiny"]
    assert {spec.split_spec(s).kind for s in ARTEFACTS} == set(ARTEFACTS)
    # 2.2 is 2.1 and one split more: the same recipe otherwise, so 2.1's splits keep their bytes.
    older = resolve("foam@2.1").recipe
    assert {**older, "splits": {**older["splits"], "beam-hardening": spec.splits["beam-hardening"]},
            "description": spec.recipe["description"]} == spec.recipe


def test_beam_hardening_cups_the_solid_and_linearisation_with_the_recorded_spectrum_removes_it(artefact_root):
    from aiax_bench.baselines.fbp import FBP
    from aiax_bench.data.loader import load
    from aiax_bench.data.sealed import seal

    data = load(DATASET, profile="tiny", root=artefact_root).split("beam-hardening")
    sample = data.test[0]
    setup = sample.meta["beam_hardening"]["beam-hardening"]
    assert setup["kvp"] == 50.0 and setup["material"] == "C15H17N"
    # The thin-part limit of the recorded attenuation is the truth's: the truth stays the effective attenuation.
    assert float(np.dot(setup["weights"], setup["attenuation_per_cm"])) == pytest.approx(4.2, rel=1e-6)
    assert next(iter(seal([sample]))).meta["beam_hardening"] == sample.meta["beam_hardening"]

    truth, labels, mask = (np.asarray(a) for a in (sample.truth, sample.labels, sample.mask))
    mask = mask.astype(bool)
    radius = np.broadcast_to(np.hypot(*np.indices(truth.shape[1:]) - (truth.shape[1] - 1) / 2), truth.shape)
    edge = radius[mask].max()
    inner, outer = (labels > 0) & mask & (radius < 0.4 * edge), (labels > 0) & mask & (radius > 0.8 * edge)

    def cupping(volume: np.ndarray) -> float:
        """How much darker the solid reads at the centre than near the surface (1/cm)."""
        return float(volume[outer].mean() - volume[inner].mean())

    # The uncorrected scan is cupped beyond what partial volumes at the surface give the reference scan.
    assert cupping(np.asarray(sample.low)) > cupping(np.asarray(sample.high)) + 0.05
    predictions = {}
    for linearise in (False, True):
        method = FBP({"tune": "none", "filter": "ramp", "linearise": linearise})
        method.fit(data.train, data.val, seed=0)
        predictions[linearise] = method.predict(next(iter(seal([sample]))))
    assert abs(cupping(predictions[True])) < 0.5 * cupping(predictions[False])
    error = {k: float(np.abs(v - truth)[mask].mean()) for k, v in predictions.items()}
    assert error[True] < error[False], error


def test_stripe_removal_beats_fbp_on_rings(artefact_root, monkeypatch, tmp_path):
    """Sorting-based stripe removal before FBP, its window tuned with the filter on the validation volume, beats
    FBP tuned alone on the held-out volumes of the `rings` split."""
    from aiax_bench.harness import EvaluationRequest, run_seeds

    monkeypatch.setenv("AIAX_BENCH_DATA", str(artefact_root))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def psnr(**config) -> tuple[float, dict]:
        result = run_seeds(EvaluationRequest(method="fbp", dataset=DATASET, profile="tiny", split="rings",
                                             config={"tune": "reference", **config}, tracking_uri=tracking,
                                             output_dir=tmp_path / "results", figures=False), [0])
        return result["metrics"]["psnr/truth"]["mean"], result["runs"][0]["fit_summary"]["selected"]

    plain, _ = psnr()
    destriped, selected = psnr(remove_rings=True)
    print(f"tiny rings PSNR vs truth: FBP {plain:.2f} dB, stripe removal + FBP {destriped:.2f} dB ({selected})")
    assert destriped > plain + 0.3 and selected["ring_size"] in (3, 5, 11, 21)
