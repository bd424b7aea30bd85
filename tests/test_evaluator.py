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
