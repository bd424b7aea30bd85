"""Checks of the yardstick itself: known volumes pushed through the whole scoring path.

A benchmark is only worth its ranking. Before any method is ranked, the
exact phantom, the noise-free reconstruction ``clean``, the reference scan
and each split's plain FBP input are scored by the same
:class:`~aiax_bench.evaluation.Evaluator` as a method's output. The phantom
must come first on every default ranking metric, with no porosity error and
a pore Jaccard index of 1; the reference's own errors are the protocol's
floor; the FBP inputs show how far each acquisition moves the statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aiax_bench.evaluation.evaluator import Evaluator

__all__ = ["YARDSTICK_METRICS", "rank_checks", "score_known_volumes"]

#: Metrics the phantom must win: the image metrics against the truth, the pore Jaccard index and
#: the porosity statistics' absolute relative errors against the truth.
YARDSTICK_METRICS = ("psnr/truth", "ssim/truth", "ssim_slices/truth", "mse/truth", "jaccard/pore",
                     "porosity/rel_error_truth", "pore_density_per_mm3/rel_error_truth",
                     "mean_pore_diameter_mm/rel_error_truth", "specific_surface_per_mm/rel_error_truth")


def score_known_volumes(dataset, splits: Sequence[str], *, part: str = "test",
                        workers: int | None = None) -> dict[str, dict[str, Any]]:
    """Evaluate the phantom, ``clean``, the reference and each split's FBP input on ``part``.

    Parameters
    ----------
    dataset : aiax_bench.data.loader.Dataset
        An opened dataset.
    splits : sequence of str
        Splits whose low-quality input (``low``, the FBP of that acquisition) is scored.
    part : str
        ``"test"`` or ``"ood-test"``.
    workers : int, optional
        Threads for the evaluator.

    Returns
    -------
    dict
        Candidate name (``truth``, ``clean``, ``reference``, ``fbp:<split>``) to
        ``{"records": [...], "aggregate": {...}}`` as :meth:`Evaluator.evaluate` returns them.
    """
    splits = list(splits)
    # One evaluator serves every candidate: what it caches per sample (mask, threshold, the
    # reference's and the truth's pore statistics) does not depend on the split.
    evaluator = Evaluator(dataset, splits[0], part=part, workers=workers)
    arrays = {"truth": "truth", "reference": "high"}
    if "clean" in evaluator.targets:
        arrays["clean"] = "clean"
    out: dict[str, dict[str, Any]] = {}

    def score(name: str, volumes: dict[str, np.ndarray]) -> None:
        result = evaluator.evaluate(volumes)
        out[name] = {"records": result["records"], "aggregate": result["aggregate"]}

    for name, array in arrays.items():
        score(name, {sid: s.read(array).astype(np.float32) for sid, s in evaluator.samples.items()})
    for split in splits:
        samples = dataset.split(split).part(part)
        score(f"fbp:{split}", {s.id: s.read("low") for s in samples})
    return out


def rank_checks(scores: dict[str, dict[str, Any]], metrics: Sequence[str] = YARDSTICK_METRICS
                ) -> list[dict[str, Any]]:
    """Where the phantom ranks on each metric among the scored candidates.

    Directions come from the metric catalog (:mod:`aiax_bench.evaluation.catalog`):
    signed errors rank on their absolute value (a signed error of −3 % is not
    better than 0 %).

    Returns
    -------
    list of dict
        Per metric: ``metric``, ``truth`` (its value), ``best_other`` (the best other
        candidate and its value) and ``truth_first`` (ties with the best count as first).
    """
    from aiax_bench.evaluation.catalog import rank_values

    rows = []
    for metric in metrics:
        values = {name: s["aggregate"][metric]["mean"] for name, s in scores.items() if metric in s["aggregate"]}
        if "truth" not in values:
            continue

        def key(name: str, metric=metric, values=values) -> float:
            return float(rank_values(metric, values[name]))

        others = sorted((n for n in values if n != "truth"), key=key)
        best = others[0] if others else None
        rows.append({"metric": metric, "truth": values["truth"],
                     "best_other": None if best is None else {"name": best, "value": values[best]},
                     "truth_first": best is None or key("truth") <= key(best)})
    return rows
