"""Evaluator: strict input checks, and metrics against independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from aiax_bench.errors import InputError
from aiax_bench.evaluation import Evaluator, metrics


def test_ssim_equals_scikit_image_3d():
    rng = np.random.default_rng(0)
    ref = rng.random((32, 32, 32))
    ref = np.cumsum(ref, axis=0) / 8  # structure, not only noise
    noisy = ref + rng.normal(0, 0.3, ref.shape)
    expected = structural_similarity(noisy, ref, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=4.0)
    assert metrics.ssim(noisy, ref, data_range=4.0) == pytest.approx(expected, abs=1e-4)


def test_ssim_slices_equals_mean_of_scikit_image_2d():
    rng = np.random.default_rng(1)
    ref = rng.random((6, 40, 40))
    pred = ref + rng.normal(0, 0.2, ref.shape)
    expected = np.mean([structural_similarity(pred[z], ref[z], gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=1.0)
                        for z in range(6)])
    assert metrics.ssim_slices(pred, ref, data_range=1.0) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("slices", [False, True])
def test_compiled_ssim_kernel_equals_numpy_and_scikit_image(slices):
    """Large volumes take the compiled kernel; the same sums, with and without a mask, to float32 rounding."""
    rng = np.random.default_rng(2)
    ref = np.cumsum(rng.random((24, 30, 37)), axis=1).astype(np.float32) / 8
    pred = (ref + rng.normal(0, 0.3, ref.shape)).astype(np.float32)
    inner = (slice(None), slice(5, -5), slice(5, -5)) if slices else (slice(5, -5),) * 3
    mask = rng.random(ref.shape)[inner] > 0.3
    for m in (None, mask):
        fused = metrics.ssim_sums(pred, ref, data_range=4.0, mask=m, slices=slices, fused=True)
        numpy = metrics.ssim_sums(pred, ref, data_range=4.0, mask=m, slices=slices)
        np.testing.assert_array_equal(fused[1], numpy[1])
        np.testing.assert_allclose(fused[0] / fused[1], numpy[0] / numpy[1], rtol=0, atol=1e-6)
    plane = structural_similarity(pred[3], ref[3], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=4.0)
    whole = structural_similarity(pred, ref, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=4.0)
    sums, counts = metrics.ssim_sums(pred, ref, data_range=4.0, slices=slices, fused=True)
    if slices:
        assert sums[3] / counts[3] == pytest.approx(plane, abs=1e-6)
    else:
        assert float(sums / counts) == pytest.approx(whole, abs=1e-6)


def test_psnr_uses_fixed_range_and_mask():
    ref = np.zeros((8, 8, 8))
    pred = ref.copy()
    pred[0] = 1.0  # error only outside the mask
    mask = np.zeros(ref.shape, dtype=bool)
    mask[2:] = True
    assert metrics.psnr(pred, ref, data_range=2.0, mask=mask) == np.inf
    pred[4, 4, 4] = 0.5
    mse = 0.25 / mask.sum()
    assert metrics.psnr(pred, ref, data_range=2.0, mask=mask) == pytest.approx(10 * np.log10(4 / mse))


@pytest.fixture(scope="module")
def evaluator(tiny_dataset):
    return Evaluator(tiny_dataset, "100proj")


def test_perfect_prediction_scores_perfectly(evaluator, tiny_dataset):
    sample = tiny_dataset.split("100proj").test[0]
    record = evaluator.evaluate_volume(sample.id, sample.read("high"))
    assert record["mse/reference"] == 0 and record["psnr/reference"] == np.inf
    assert record["ssim/reference"] == pytest.approx(1.0)
    assert record["psnr/truth"] < 60


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda v: v[:-1], "has shape (63, 64, 64)"),
        (lambda v: v.astype(np.int16), "has dtype int16"),
        (lambda v: np.where(np.arange(v.size).reshape(v.shape) == 5, np.nan, v), "NaN or infinite"),
        (lambda v: v.tolist(), "is a list"),
    ],
)
def test_bad_predictions_are_rejected_by_name(evaluator, tiny_dataset, mutate, message):
    low = tiny_dataset.split("100proj").test[0].read("low")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        evaluator.evaluate({"test-000": mutate(low)})
    assert "test-000" in str(info.value)


def test_missing_and_unknown_sample_ids(evaluator, tiny_dataset):
    low = tiny_dataset.split("100proj").test[0].read("low")
    with pytest.raises(InputError, match="lack sample"):
        evaluator.evaluate({})
    with pytest.raises(InputError, match="'val-000' is not a test sample"):
        evaluator.check("val-000", low)


# --------------------------------------------------------------------------- porosity, versions, records

def test_record_is_flat_json_and_versioned(evaluator, tiny_dataset):
    import json

    from aiax_bench.evaluation import EVALUATOR_VERSION
    from aiax_bench.evaluation.porosity import LEGACY_PROTOCOL

    sample = tiny_dataset.split("100proj").test[0]
    result = evaluator.evaluate({sample.id: sample.read("low")})
    record = result["records"][0]
    assert record["evaluator_version"] == EVALUATOR_VERSION == "3.0"
    # foam@1.0 has no fixed threshold in the registry: Otsu on the reference, as its entries were scored.
    assert record["segmentation_protocol"] == LEGACY_PROTOCOL
    for stat in ("porosity", "pore_count", "pore_density_per_mm3", "mean_pore_diameter_mm",
                 "specific_surface_per_mm", "mean_local_thickness_mm"):
        for suffix in ("method", "reference", "truth", "rel_error_reference", "rel_error_truth",
                       "floor_rel_error_truth"):
            assert isinstance(record[f"{stat}/{suffix}"], float), (stat, suffix)
    for key in ("wasserstein_log_diameter/reference", "jaccard/pore", "dice/pore", "jaccard/solid",
                "dice_small/pore", "dice_medium/pore", "dice_large/pore", "segmentation_threshold"):
        assert isinstance(record[key], float), key
    assert all(not isinstance(v, (dict, list)) for v in record.values())  # per-pore data lives elsewhere
    dist = result["distributions"][sample.id]
    assert len(dist["method"]["pore_diameters_mm"]) == dist["method"]["n_complete_pores"]
    assert "evaluator_version" not in result["aggregate"] and result["aggregate"]["porosity/method"]["n"] == 1
    json.loads(json.dumps(result))
    # The noisy input still has about the reference's porosity after the protocol.
    assert abs(record["porosity/rel_error_reference"]) < 0.1
    assert 0 < record["dice/pore"] < 1


def test_reference_as_prediction_has_no_porosity_error(evaluator, tiny_dataset):
    sample = tiny_dataset.split("100proj").test[0]
    record = evaluator.evaluate_volume(sample.id, sample.read("high"))
    assert record["porosity/method"] == record["porosity/reference"]
    assert record["porosity/rel_error_reference"] == 0
    assert record["pore_count/rel_error_reference"] == 0
    assert record["wasserstein_log_diameter/reference"] == 0


def test_truth_statistics_recover_the_phantom(evaluator, tiny_dataset):
    """Stated tolerance on the tiny foam (eroded mask, 64³): porosity and pore count within 10 %."""
    sample = tiny_dataset.split("100proj").test[0]
    record = evaluator.evaluate_volume(sample.id, sample.read("high"))
    phantom = sample.meta["phantom"]
    assert record["porosity/truth"] == pytest.approx(phantom["porosity"], rel=0.10)
    assert record["pore_count/truth"] == pytest.approx(phantom["n_void_centres_inside"], rel=0.10)


def test_segment_task_scores_labels(tiny_dataset):
    seg = Evaluator(tiny_dataset, "100proj", task="segment")
    sample = tiny_dataset.split("100proj").test[0]
    labels = sample.read("labels")
    record = seg.evaluate_volume(sample.id, labels)
    assert "psnr/reference" not in record
    assert record["jaccard/pore"] == record["dice/solid"] == 1.0
    assert record["dice_small/pore"] == record["dice_large/pore"] == 1.0
    assert record["porosity/method"] == record["porosity/truth"]
    with pytest.raises(InputError, match="has labels in"):
        seg.evaluate_volume(sample.id, labels + 3)
    with pytest.raises(InputError, match="has dtype float32"):
        seg.check(sample.id, labels.astype(np.float32))


def test_reference_split_feeds_the_reference_scan_to_segmentation_only(tiny_dataset):
    sample = tiny_dataset.split("reference").test[0]
    np.testing.assert_array_equal(sample.read("low"), sample.read("high"))
    assert sample.sinogram.shape == sample.read("sinogram").shape and sample.angles.size == 500
    record = Evaluator(tiny_dataset, "reference", task="segment").evaluate_volume(sample.id, sample.read("labels"))
    assert record["jaccard/mean"] == 1.0
    with pytest.raises(InputError, match="'reference' is for task 'segment'"):
        Evaluator(tiny_dataset, "reference")


def test_infinite_values_are_rejected(evaluator, tiny_dataset):
    low = tiny_dataset.split("100proj").test[0].read("low").copy()
    low[3, 4, 5] = np.inf
    with pytest.raises(InputError, match=r"1 NaN or infinite voxel\(s\), first at \(z, y, x\) = \(3, 4, 5\)"):
        evaluator.evaluate({"test-000": low})


def test_figures_are_written_headless(evaluator, tiny_dataset, tmp_path):
    sample = tiny_dataset.split("100proj").test[0]
    low = sample.read("low")
    result = evaluator.evaluate({sample.id: low})
    paths = evaluator.write_figures(sample.id, low, tmp_path / "figs",
                                    distributions=result["distributions"][sample.id])
    assert set(paths) == {"slices", "pore_sizes", "pores_3d"}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chunked_evaluation_of_a_sample_matches(evaluator, tiny_dataset, tmp_path):
    import zarr

    sample = tiny_dataset.split("100proj").test[0]
    low = sample.read("low")
    stored = zarr.create_array(str(tmp_path / "pred.zarr"), shape=low.shape, chunks=(32,) * 3, dtype=low.dtype)
    stored[...] = low
    chunked = evaluator.evaluate_volume_chunked(sample.id, tmp_path / "pred.zarr")
    whole = evaluator.evaluate_volume(sample.id, low)
    for key, value in chunked.items():
        if isinstance(value, float):
            assert value == pytest.approx(whole[key], rel=1e-9, nan_ok=True), key


# --------------------------------------------------------------------------- a store with a missing array

class _Spec:
    def __init__(self):
        self.evaluation = {"data_range": 4.2, "mask": "sample", "mask_erosion": 2}


class _Sample:
    def __init__(self, arrays, meta):
        self.id, self.part, self.arrays, self.meta = "test-000", "test", arrays, meta

    def _get(self, name):
        from aiax_bench.errors import StoreError

        if name not in self.arrays:
            raise StoreError(f"samples/{self.id}/{name}", "array is missing or unreadable (KeyError)",
                             "rebuild the store with `aiax-bench datasets build --force`")
        return self.arrays[name]

    high = property(lambda self: self._get("high"))
    truth = property(lambda self: self._get("truth"))
    labels = property(lambda self: self._get("labels"))
    mask = property(lambda self: self._get("mask"))
    low = property(lambda self: self._get("low"))

    @property
    def shape(self):
        return self.arrays["high"].shape

    def read(self, name):
        return np.asarray(self._get(name))


class _Dataset:
    def __init__(self, sample):
        self.sample, self.spec = sample, _Spec()

    def split(self, name):
        dataset = self

        class _Split:
            def part(self, part):
                return [dataset.sample]
        return _Split()


def test_missing_mask_fails_before_any_scoring(monkeypatch):
    from aiax_bench.errors import StoreError
    from aiax_bench.evaluation.synthetic import SyntheticFoam

    foam = SyntheticFoam(32, seed=0, cell=16)
    arrays = {"high": foam.reference(), "truth": foam.truth(), "labels": foam.labels()}
    meta = {"voxel_size_um": 20.0, "phases": ["air", "solid", "pore"]}
    ev = Evaluator(_Dataset(_Sample(arrays, meta)), "100proj")
    scored = []
    monkeypatch.setattr(ev, "evaluate_volume", lambda *a, **k: scored.append(a))
    with pytest.raises(StoreError, match="mask: array is missing"):
        ev.evaluate({"test-000": foam.method()})
    assert scored == []  # nothing was scored, so no partial record can exist


def test_evaluation_spec_is_typed_and_checked():
    from aiax_bench.evaluation import EvaluationSpec

    spec = EvaluationSpec.from_registry({"data_range": 4.2, "mask": "sample", "mask_erosion": 2, "pore_threshold": 1})
    assert spec == EvaluationSpec(data_range=4.2, mask_erosion=2, pore_threshold=1.0)
    with pytest.raises(InputError, match="data_range is 0"):
        EvaluationSpec(data_range=0)
    with pytest.raises(InputError, match="evaluation mask is 'cube'"):
        EvaluationSpec(data_range=1.0, mask="cube")
