"""Evaluation: image metrics, porosity statistics, segmentation metrics, figures, and the Evaluator.

Submodules: :mod:`.metrics` (MSE, PSNR, SSIM), :mod:`.porosity` (the
versioned segmentation protocol and pore statistics), :mod:`.segmentation`
(Jaccard, Dice, Dice by pore size), :mod:`.figures`, :mod:`.chunked`
(volumes larger than memory, from zarr), :mod:`.synthetic` (foam-like test pairs of any size).
"""

from aiax_bench.evaluation.evaluator import (
    DISTRIBUTIONS_KEY,
    EVALUATOR_VERSION,
    ArraySample,
    EvaluationSpec,
    Evaluator,
    evaluate_arrays,
)
from aiax_bench.evaluation.porosity import SEGMENTATION_PROTOCOL

__all__ = ["DISTRIBUTIONS_KEY", "EVALUATOR_VERSION", "SEGMENTATION_PROTOCOL", "ArraySample", "EvaluationSpec",
           "Evaluator", "evaluate_arrays"]
