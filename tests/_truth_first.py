"""The yardstick's check on a built dataset: its exact phantom scores best on every default metric."""

from __future__ import annotations


def assert_exact_phantom_first(dataset, splits: list[str]) -> None:
    """Score the known volumes of ``dataset`` on ``splits`` and require the truth first on each default metric."""
    from aiax_bench.evaluation.yardstick import YARDSTICK_METRICS, rank_checks, score_known_volumes

    rows = {r["metric"]: r for r in rank_checks(score_known_volumes(dataset, splits, workers=2))}
    assert set(rows) == set(YARDSTICK_METRICS)
    for metric, row in rows.items():
        assert row["truth_first"], (metric, row)
