"""Diffraction contrast tomography: preprocessing of diffraction frame stacks (``psi x y x x``), simulated
stacks with exact spot labels, the classical double-threshold segmentation of the spots and its scores."""

from aiax_bench.dct.blobs import BlobMatch, blob_scores, match_blobs
from aiax_bench.dct.moving_median import moving_median, moving_median_reference, refresh_windows, subtract_moving_median
from aiax_bench.dct.simulate import (
    SpotBlob,
    SpotSlab,
    SpotStack,
    SpotStackSpec,
    SpotStackStream,
    simulate_spot_stack,
)
from aiax_bench.dct.threshold import (
    ThresholdParams,
    default_threshold_grid,
    double_threshold,
    fit_threshold_params,
    margin_ring,
    preprocess,
    segment_blobs,
)

__all__ = ["BlobMatch", "SpotBlob", "SpotSlab", "SpotStack", "SpotStackSpec", "SpotStackStream", "ThresholdParams",
           "blob_scores", "default_threshold_grid", "double_threshold", "fit_threshold_params", "margin_ring",
           "match_blobs", "moving_median", "moving_median_reference", "preprocess", "refresh_windows", "segment_blobs",
           "simulate_spot_stack", "subtract_moving_median"]
