"""DCT spots: the simulated stacks' exact labels, the blob scores, the double threshold and the whole pipeline."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage

from aiax_bench.dct import (
    SpotStackSpec,
    ThresholdParams,
    blob_scores,
    double_threshold,
    fit_threshold_params,
    match_blobs,
    preprocess,
    segment_blobs,
    simulate_spot_stack,
)
from aiax_bench.errors import InputError

SMALL = SpotStackSpec(n_frames=16, frame_shape=(48, 48), n_blobs=6, beam_size=(8, 8), psi_sigma=(1.0, 2.0))


# --- the simulator ---------------------------------------------------------------------------------------------

def test_simulator_gives_the_same_bytes_per_seed_and_others_across_seeds():
    a, b, c = (simulate_spot_stack(SMALL, seed=s) for s in (5, 5, 6))
    for name in ("frames", "labels", "dark", "direct_beam", "signal", "source", "hot_pixels"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert a.blobs == b.blobs
    assert a.frames.dtype == np.float32 and a.labels.dtype == np.int32 and a.dark.dtype == np.float32
    assert a.frames.shape == a.labels.shape == (16, 48, 48) and a.direct_beam.dtype == bool
    assert not np.array_equal(a.frames, c.frames) and not np.array_equal(a.labels, c.labels)


def test_labels_are_the_blob_table():
    stack = simulate_spot_stack(SpotStackSpec(n_frames=32, frame_shape=(64, 64), n_blobs=15), seed=3)
    labels, k = stack.labels, len(stack.blobs)
    assert k > 10 and [b.id for b in stack.blobs] == list(range(1, k + 1))
    assert labels.max() == k and np.array_equal(np.unique(labels), np.arange(k + 1))
    counts = np.bincount(labels.ravel(), minlength=k + 1)
    boxes = ndimage.find_objects(labels)
    centroids = ndimage.center_of_mass(np.ones(labels.shape), labels, range(1, k + 1))
    for blob in stack.blobs:
        assert blob.voxels == counts[blob.id]
        assert blob.bbox == tuple((s.start, s.stop) for s in boxes[blob.id - 1])
        assert blob.psi_extent == blob.bbox[0][1] - blob.bbox[0][0]
        np.testing.assert_allclose(blob.centroid, centroids[blob.id - 1], atol=1e-9)
        # The label's definition: the blob alone reaches label_fraction of its peak there, so the total does.
        assert np.all(stack.signal[labels == blob.id] >= stack.spec.label_fraction * blob.peak * (1 - 1e-6))
    assert not labels[:, stack.direct_beam].any()
    assert np.all(stack.signal[labels == 0] < stack.signal.max())


def test_blobs_last_longer_in_psi_near_the_rotation_axis():
    stack = simulate_spot_stack(seed=0)  # the default 64 x 128 x 128 stack, 40 blobs
    axis = (stack.spec.frame_shape[1] - 1) / 2
    distance = np.array([abs(b.centre[2] - axis) for b in stack.blobs])
    extent = np.array([b.psi_extent for b in stack.blobs], dtype=float)
    ranks = np.corrcoef(np.argsort(np.argsort(distance)), np.argsort(np.argsort(extent)))[0, 1]
    assert ranks < -0.5  # Spearman's correlation
    near, far = distance < np.quantile(distance, 1 / 3), distance > np.quantile(distance, 2 / 3)
    assert extent[near].mean() > 2 * extent[far].mean()


def test_hot_pixels_are_constant_over_psi_and_other_pixels_are_not():
    stack = simulate_spot_stack(SMALL, seed=1)
    ys, xs = stack.hot_pixels.T
    assert len(ys) == SMALL.n_hot_pixels
    assert np.all(stack.frames[:, ys, xs] == SMALL.hot_counts)
    assert np.all(stack.dark[ys, xs] == SMALL.hot_counts)
    others = np.ones(SMALL.frame_shape, dtype=bool)
    others[ys, xs] = False
    assert np.all(stack.frames[:, others].std(axis=0) > 0)


def test_the_four_image_grid_scales_each_quadrant_by_its_gain():
    spec = dataclasses.replace(SMALL, readout_sigma=0.0, n_hot_pixels=0)
    plain = simulate_spot_stack(spec, seed=2)
    grid = simulate_spot_stack(dataclasses.replace(spec, grid=True, grid_gain_spread=0.2), seed=2)
    assert np.array_equal(plain.quadrant_gain, np.ones((2, 2)))
    assert not np.allclose(grid.quadrant_gain, 1.0, atol=0.01)
    assert np.array_equal(plain.labels, grid.labels)  # the mosaic draws nothing that the geometry uses
    ny, nx = spec.frame_shape
    signal_plain = plain.frames - plain.dark
    signal_grid = grid.frames - grid.dark
    for qy in range(2):
        for qx in range(2):
            box = (slice(None), slice(qy * ny // 2, (qy + 1) * ny // 2), slice(qx * nx // 2, (qx + 1) * nx // 2))
            lit = signal_plain[box] > 0
            ratio = signal_grid[box][lit] / signal_plain[box][lit]
            np.testing.assert_allclose(ratio, grid.quadrant_gain[qy, qx], rtol=1e-3)


def test_a_bad_spec_is_refused_in_one_line():
    with pytest.raises(InputError, match="n_frames"):
        SpotStackSpec(n_frames=0)
    with pytest.raises(InputError, match="peak_counts"):
        SpotStackSpec(peak_counts=(500.0, 50.0))
    with pytest.raises(InputError, match="beam_size"):
        SpotStackSpec(frame_shape=(32, 32), beam_size=(40, 8))
    with pytest.raises(InputError, match="n_blobs") as error:
        simulate_spot_stack(dataclasses.replace(SMALL, n_blobs=200, overlap=False), seed=0)
    assert "\n" not in str(error.value)


# --- blob scores -----------------------------------------------------------------------------------------------

def _cubes(shape, corners, sides, ids=None):
    labels = np.zeros(shape, dtype=np.int32)
    for k, ((p, y, x), (a, b, c)) in enumerate(zip(corners, sides, strict=True)):
        labels[p:p + a, y:y + b, x:x + c] = k + 1 if ids is None else ids[k]
    return labels


def test_a_perfect_prediction_scores_one():
    truth = simulate_spot_stack(SMALL, seed=4).labels
    relabelled = np.where(truth > 0, truth + 100, 0)  # ids need not agree, only voxels
    scores = blob_scores(relabelled, truth)
    for key in ("precision", "recall", "f1", "mean_iou", "pixel_jaccard"):
        assert scores[key] == 1.0, key
    assert scores["count_error"] == 0.0
    assert all(scores[f"recall/size_{b}"] == 1.0 for b in ("small", "medium", "large"))


def test_missing_one_blob_of_k_gives_recall_k_minus_one_over_k():
    truth = simulate_spot_stack(SMALL, seed=4).labels
    k = int(truth.max())
    scores = blob_scores(np.where(truth == 3, 0, truth), truth)
    assert scores["recall"] == (k - 1) / k
    assert scores["precision"] == 1.0
    assert scores["count_error"] == -1 / k


def test_a_shifted_blob_below_iou_one_half_is_unmatched():
    truth = _cubes((10, 10, 12), [(2, 2, 2)], [(4, 4, 4)])
    far = _cubes((10, 10, 12), [(2, 2, 4)], [(4, 4, 4)])  # 32 shared voxels of 96: IoU 1/3
    near = _cubes((10, 10, 12), [(2, 2, 3)], [(4, 4, 4)])  # 48 of 80: IoU 0.6
    match = match_blobs(far, truth)
    assert match.n_matched == 0 and match.true_iou.tolist() == [0.0]
    assert blob_scores(far, truth)["f1"] == 0.0
    assert match_blobs(far, truth, iou_threshold=0.3).pair_iou.tolist() == [pytest.approx(1 / 3)]
    scores = blob_scores(near, truth)
    assert scores["f1"] == 1.0 and scores["mean_iou"] == pytest.approx(0.6)


def test_greedy_matching_is_one_to_one():
    truth = _cubes((4, 4, 12), [(0, 0, 0), (0, 0, 6)], [(2, 2, 6), (2, 2, 2)])
    pred = _cubes((4, 4, 12), [(0, 0, 0)], [(2, 2, 8)])  # covers both: IoU 6/8 and 2/16
    match = match_blobs(pred, truth, iou_threshold=0.1)
    assert match.pairs.tolist() == [[1, 1]] and match.true_iou.tolist() == [0.75, 0.0]


def test_pixel_jaccard_by_hand():
    truth = np.array([[[1, 1, 0, 0], [2, 2, 0, 0]]])
    pred = np.array([[[0, 3, 3, 0], [0, 4, 0, 0]]])
    assert blob_scores(pred, truth)["pixel_jaccard"] == 2 / 5  # shared (0, 1) and (1, 1); union 5 voxels


def test_scores_by_size_and_by_extent_in_psi():
    truth = _cubes((8, 10, 20), [(0, 0, 0), (0, 0, 5), (0, 0, 10)], [(2, 2, 2), (3, 3, 3), (4, 4, 4)])
    pred = np.where(truth == 3, 0, truth)  # the largest (and longest) blob missed
    scores = blob_scores(pred, truth)
    assert (scores["recall/size_small"], scores["recall/size_medium"], scores["recall/size_large"]) == (1, 1, 0)
    assert (scores["recall/psi_short"], scores["recall/psi_medium"], scores["recall/psi_long"]) == (1, 1, 0)
    assert scores["mean_iou/size_large"] == 0.0
    given = blob_scores(pred, truth, size_bins=(100, 200), psi_bins=(1, 5))
    assert given["n_true/size_small"] == 3 and math.isnan(given["recall/size_large"])
    assert given["recall/psi_medium"] == 2 / 3


def test_bad_labels_are_refused_naming_the_field():
    truth = np.zeros((4, 5, 6), dtype=np.int32)
    with pytest.raises(InputError, match="pred_labels") as error:
        blob_scores(np.zeros((4, 5, 7), dtype=np.int32), truth)
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="true_labels"):
        match_blobs(truth, truth.astype(np.float32))
    with pytest.raises(InputError, match="iou_threshold"):
        match_blobs(truth, truth, iou_threshold=0.0)


# --- the double threshold --------------------------------------------------------------------------------------

def _gaussian(shape, centre, sigma, peak):
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    q = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, sigma, strict=True))
    return peak * np.exp(-0.5 * q), q


def test_two_separated_gaussians_give_two_blobs_with_their_voxels():
    """Each blob is exactly its Gaussian's voxels at or above tau times its peak (no voxel lies within 1e-6 of
    that level in q, so the tolerance is zero voxels); the brighter one is blob 1."""
    shape, tau = (20, 40, 60), 0.3
    bright, q_bright = _gaussian(shape, (10, 20, 15), (2.0, 2.5, 2.0), 10.0)
    faint, q_faint = _gaussian(shape, (9, 20, 45), (1.5, 2.0, 2.5), 5.0)
    level = -2 * math.log(tau)
    assert np.abs(q_bright - level).min() > 1e-6 and np.abs(q_faint - level).min() > 1e-6
    labels = double_threshold(bright + faint, seed_min=1.0, c_min=0.5, tau=tau)
    assert labels.dtype == np.int32 and labels.max() == 2
    assert np.array_equal(labels == 1, q_bright <= level)
    assert np.array_equal(labels == 2, q_faint <= level)


def test_the_bounding_box_filter_drops_blobs_too_small_or_too_large():
    shape = (20, 40, 60)
    image = _gaussian(shape, (10, 20, 15), (2.0, 2.5, 2.0), 10.0)[0] + _gaussian(shape, (9, 20, 45), (1.5, 2.0, 2.5),
                                                                                 5.0)[0]
    image[3, 5, 50] = 8.0  # a one-voxel spike, far from both
    kept = double_threshold(image, seed_min=1.0, c_min=0.5, tau=0.3, min_bbox=(1, 1, 1))
    assert kept.max() == 3 and np.count_nonzero(kept == 2) == 1  # the spike (peak 8) is second
    dropped = double_threshold(image, seed_min=1.0, c_min=0.5, tau=0.3, min_bbox=(2, 2, 2))
    assert dropped.max() == 2 and dropped[3, 5, 50] == 0
    assert np.array_equal(dropped > 0, (kept > 0) & (kept != 2))
    # The bright blob spans 7 frames: a limit of 5 drops it, the faint one (5 frames) stays.
    short = double_threshold(image, seed_min=1.0, c_min=0.5, tau=0.3, min_bbox=(2, 2, 2), max_bbox=(5, 40, 60))
    assert short.max() == 1 and np.array_equal(short == 1, dropped == 2)


def test_bad_threshold_input_is_refused_naming_the_field():
    image = np.zeros((4, 5, 6), dtype=np.float32)
    with pytest.raises(InputError, match="image"):
        double_threshold(image[0], seed_min=1.0)
    with pytest.raises(InputError, match="min_bbox"):
        double_threshold(image, seed_min=1.0, min_bbox=(1, -2, 1))
    with pytest.raises(InputError, match="c_min"):
        ThresholdParams(seed_min=1.0, c_min=2.0, c_max=1.0)
    with pytest.raises(InputError, match="tau"):
        ThresholdParams(seed_min=1.0, tau=1.5)
    stack = simulate_spot_stack(SMALL, seed=0)
    with pytest.raises(InputError, match="dark"):
        preprocess(stack.frames, dark=stack.dark[:-1], direct_beam=stack.direct_beam, window=8, refresh=4)
    with pytest.raises(InputError, match="median_size"):
        preprocess(stack.frames, dark=stack.dark, direct_beam=stack.direct_beam, window=8, refresh=4, median_size=0)


def test_preprocessing_removes_the_background_and_the_source_oscillation():
    """Without blobs or noise, every frame is the illumination times the source: normalised by its ring and less
    the moving median, nothing is left."""
    spec = dataclasses.replace(SMALL, n_blobs=0, poisson=False, readout_sigma=0.0, n_hot_pixels=0,
                               zingers_per_frame=0.0, source_amplitude=0.3, grid=True)
    stack = simulate_spot_stack(spec, seed=0)
    assert np.ptp(stack.source) > 0.3
    clean = preprocess(stack.frames, dark=stack.dark, direct_beam=stack.direct_beam, window=16, refresh=4,
                       threads=1)
    assert clean.dtype == np.float32 and clean.shape == stack.frames.shape
    assert np.abs(clean).max() < 1e-4


# --- the whole pipeline ----------------------------------------------------------------------------------------

def test_the_pipeline_fitted_on_one_stack_segments_another():
    """Fitted on one stack, segmenting another: F1 well above the bar, and above the components of the
    voxels over the same seed level (no growth, no bounding-box filter)."""
    spec = SpotStackSpec(n_frames=48, frame_shape=(96, 96), n_blobs=20, beam_size=(12, 12), psi_sigma=(1.0, 3.0))
    options = {"window": 48, "refresh": 48, "median_size": 3, "margin": 4, "threads": 1}
    images, truths = [], []
    for seed in (11, 12):
        stack = simulate_spot_stack(spec, seed=seed)
        images.append(preprocess(stack.frames, dark=stack.dark, direct_beam=stack.direct_beam, **options))
        truths.append(stack.labels)
    grid = {"seed_min": [0.12, 0.16], "c_min": [0.03, 0.05], "c_max": [math.inf], "tau": [0.1, 0.2],
            "min_bbox": [(2, 2, 2)], "max_bbox": [(24, 24, 24)]}
    params = fit_threshold_params(images[:1], truths[:1], grid=grid)
    scores = blob_scores(segment_blobs(images[1], params), truths[1])
    assert scores["f1"] >= 0.8
    naive, _ = ndimage.label(images[1] > params.seed_min, structure=np.ones((3, 3, 3)))
    assert scores["f1"] > blob_scores(naive, truths[1])["f1"] + 0.1
