"""Ranking: per dataset, profile and split, on one metric, with bootstrap intervals over test volumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.leaderboard.schema import protocol_split

__all__ = [
    "DEFAULT_METRIC",
    "DEFAULT_METRICS",
    "Group",
    "Row",
    "acquisition_saving",
    "bootstrap_intervals",
    "default_metric",
    "higher_is_better",
    "metric_label",
    "rank_entries",
    "status_of",
]

#: The metric entries are ranked on unless ``--metric`` or the dataset's registry entry
#: (``evaluation.rank_metric``: ``psnr/truth`` from version 2.0 on) says otherwise.
#: Version 1.0 datasets keep ranking against their reference scan, as their entries were made.
DEFAULT_METRIC = "psnr/reference"
#: The default per task: segmentations rank on the mean class Jaccard index against the exact labels.
DEFAULT_METRICS = {"enhance": DEFAULT_METRIC, "segment": "jaccard/mean"}

_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM 3D", "ssim_slices": "SSIM slice-mean", "mse": "MSE (1/cm)²",
           "jaccard": "Jaccard", "dice": "Dice"}
# Metric families where smaller is better; anything else (PSNR, SSIM, Dice, ...) is larger-is-better.
_LOWER_IS_BETTER = ("mse", "rmse", "mae", "error", "distance", "wasserstein")


def higher_is_better(metric: str) -> bool:
    """Whether larger values of ``metric`` (``family/target``) rank higher.

    Errors and distances (``mse/...``, ``porosity/rel_error_truth``, ``wasserstein_log_diameter/...``)
    rank lower-is-better; everything else (PSNR, SSIM, Dice, Jaccard) higher-is-better.
    """
    return not any(word in part for part in metric.lower().split("/") for word in _LOWER_IS_BETTER)


def default_metric(dataset: str, task: str) -> str:
    """The metric a group of ``dataset`` (``name@version``) and ``task`` ranks on by default."""
    if task != "enhance":
        return DEFAULT_METRICS.get(task, DEFAULT_METRIC)
    from aiax_bench.data.registry import resolve
    from aiax_bench.errors import AiaxError

    try:
        return resolve(dataset).evaluation.get("rank_metric", DEFAULT_METRIC)
    except AiaxError:  # an entry of a dataset this version does not know: the historical default
        return DEFAULT_METRIC


def metric_label(metric: str) -> str:
    """``PSNR (dB) vs reference`` for ``psnr/reference``, ``Jaccard (mean over phases)`` for ``jaccard/mean``."""
    family, _, target = metric.partition("/")
    name = _LABELS.get(family, family)
    if family in ("jaccard", "dice"):  # segmentation metrics are per phase, against the exact labels
        return f"{name} ({'mean over phases' if target == 'mean' else target})"
    return f"{name} vs {target}" if target else name


def _times(factor: float) -> str:
    return f"{factor:.0f}×" if abs(factor - round(factor)) < 0.05 else f"{factor:.1f}×"


def acquisition_saving(dataset: str, split: str) -> str:
    """What a split saves against the reference acquisition, in words.

    ``100proj`` of 500 reference projections reads "100 of 500 projections:
    5× less scan time, dose and data". Dose (``dose_factor``) and detector
    binning (``binning``) splits are described when their recipes say so, and
    the annotated-k protocol of segmentation entries (``reference+annotated-5``).
    """
    from aiax_bench.data.registry import resolve

    spec = resolve(dataset)
    meta = spec.splits.get(split.partition("+")[0], {})
    reference = spec.recipe["acquisition"]["reference_angles"]
    parts = []
    n = meta.get("n_angles")
    if isinstance(n, int) and 0 < n < reference:
        parts.append(f"{n} of {reference} projections: {_times(reference / n)} less scan time, dose and data")
    dose = meta.get("dose_factor")
    if isinstance(dose, int | float) and 0 < dose < 1:
        parts.append(f"{_times(1 / dose)} less dose per projection")
    binning = meta.get("binning")
    if isinstance(binning, int) and binning > 1:
        parts.append(f"detector binned {binning}×: {_times(binning ** 2)} fewer detector pixels to read and store")
    saving = "; ".join(parts) or "same acquisition as the reference scan"
    _, _, protocol = split.partition("+annotated-")
    if protocol:  # the annotation effort is part of what a segmentation entry saves
        saving += f"; training labels on {protocol} slices per volume"
    return saving


def status_of(entry: dict[str, Any], *, evaluator_version: str | None = None) -> str:
    """``verified``, ``unverified``, ``not reproduced`` or ``re-score`` (scored by another evaluator)."""
    if evaluator_version is None:
        from aiax_bench.evaluation.evaluator import EVALUATOR_VERSION as evaluator_version
    if entry["evaluator_version"] != evaluator_version:
        return "re-score"
    check = entry["verification"]
    if check["status"] == "verified" and check.get("evaluator_version") == evaluator_version:
        return "verified"
    return "not reproduced" if check["status"] == "mismatch" else "unverified"


def bootstrap_intervals(values: np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap intervals of the mean over test volumes, one per entry.

    Parameters
    ----------
    values : ndarray, shape (entries, volumes)
        Per-volume metric values (seed means), columns in the same volume order.
    n_boot : int
        Number of resamples.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling, fixed so that the rendered board is reproducible.

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper bounds per entry.

    Notes
    -----
    Every entry is resampled with the same volume indices (a paired
    bootstrap): entries scored on the same volumes are compared on the same
    resamples. With one test volume the interval is that volume's value.
    """
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.shape[1], size=(n_boot, values.shape[1]))
    means = values[:, idx].mean(axis=2)  # (entries, n_boot)
    alpha = (1 - level) / 2
    return np.quantile(means, alpha, axis=1), np.quantile(means, 1 - alpha, axis=1)


@dataclass
class Row:
    """One ranked entry."""

    entry: dict[str, Any]
    path: Path | None
    rank: int
    tied: bool
    value: float
    ci_low: float
    ci_high: float
    status: str


@dataclass
class Group:
    """The ranked entries of one dataset version, profile and split."""

    dataset: str
    profile: str
    split: str
    task: str
    metric: str
    higher_better: bool
    saving: str
    n_volumes: int
    level: float
    n_boot: int
    rows: list[Row] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        task = " · segmentation" if self.task == "segment" else ""
        return f"{self.dataset} · {self.split} · {self.profile} profile{task}"


def _per_volume(entry: dict[str, Any], metric: str, ids: list[str]) -> np.ndarray:
    """The metric per test volume, averaged over the entry's seeds."""
    table = [[{r["sample_id"]: r for r in run["records"]}[sid][metric] for sid in ids] for run in entry["runs"]]
    return np.asarray(table, dtype=np.float64).mean(axis=0)


def _matches(entry: dict[str, Any], dataset: str | None, split: str | None, profile: str | None) -> bool:
    if dataset and dataset not in (entry["dataset"], entry["dataset"].partition("@")[0]):
        return False
    if split and split not in (entry["split"], protocol_split(entry)):
        return False
    return not profile or entry["profile"] == profile


def _group_order(key: tuple[str, str, str, str]) -> tuple:
    """Datasets by name, then tasks, then profiles and splits in the recipe's order."""
    from aiax_bench.data.registry import resolve

    dataset, profile, split, task = key
    spec = resolve(dataset)
    profiles, splits = list(spec.profiles), list(spec.splits)
    base = split.partition("+")[0]
    return (dataset, task != "enhance", profiles.index(profile) if profile in profiles else len(profiles),
            splits.index(base) if base in splits else len(splits), split)


def rank_entries(entries: Sequence[tuple[Path | None, dict[str, Any]]], *, metric: str | None = None,
                 dataset: str | None = None, split: str | None = None, profile: str | None = None,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> list[Group]:
    """Rank validated entries per dataset, profile and split.

    Entries are sorted on the mean of ``metric``; each gets a bootstrap
    interval over test volumes, and every entry whose interval overlaps the
    leader's is shown as tied with it (rank 1).

    Parameters
    ----------
    entries : sequence of (Path or None, dict)
        ``load_entries(board)``.
    metric : str, optional
        ``family/target`` key of the records, e.g. ``psnr/reference``; by default
        the task's (:data:`DEFAULT_METRICS`).
    dataset, split, profile : str, optional
        Keep only these (``dataset`` as ``name`` or ``name@version``).
    n_boot, level, seed
        Bootstrap resamples, interval coverage and resampling seed.

    Returns
    -------
    list of Group
    """
    if metric is not None and "/" not in metric:
        raise InputError("--metric", f"{metric!r} has no target", "expected e.g. psnr/reference or ssim/truth")
    if not 0 < level < 1:
        raise InputError("level", f"is {level}", "expected a coverage between 0 and 1, e.g. 0.95")
    if n_boot < 1:
        raise InputError("--bootstrap", f"is {n_boot}", "expected a positive number of resamples")
    from aiax_bench.evaluation.evaluator import EVALUATOR_VERSION

    buckets: dict[tuple[str, str, str, str], list[tuple[Path | None, dict[str, Any]]]] = {}
    for path, entry in entries:
        if _matches(entry, dataset, split, profile):
            key = (entry["dataset"], entry["profile"], protocol_split(entry), entry["task"])
            buckets.setdefault(key, []).append((path, entry))
    groups = []
    for key in sorted(buckets, key=_group_order):
        members = buckets[key]
        group_metric = metric or default_metric(key[0], key[3])
        better = higher_is_better(group_metric)
        ranked = [(p, e) for p, e in members if group_metric in e["metrics"]]
        group = Group(dataset=key[0], profile=key[1], split=key[2], task=key[3], metric=group_metric,
                      higher_better=better,
                      saving=acquisition_saving(key[0], key[2]), n_volumes=0, level=level, n_boot=n_boot,
                      missing=[e for _, e in members if group_metric not in e["metrics"]])
        groups.append(group)
        if not ranked:
            continue
        ids = sorted(r["sample_id"] for r in ranked[0][1]["runs"][0]["records"])
        group.n_volumes = len(ids)
        values = np.stack([_per_volume(e, group_metric, ids) for _, e in ranked])
        low, high = bootstrap_intervals(values, n_boot=n_boot, level=level, seed=seed)
        means = values.mean(axis=1)
        sign = -1.0 if better else 1.0
        # Best first; equal means keep a stable order by name so the rendered board is reproducible.
        order = sorted(range(len(ranked)), key=lambda i: (sign * means[i], ranked[i][1]["name"].lower()))
        lead = order[0]
        for position, i in enumerate(order, start=1):
            overlaps = low[i] <= high[lead] and low[lead] <= high[i]
            path, entry = ranked[i]
            group.rows.append(Row(entry=entry, path=path, rank=1 if overlaps else position,
                                  tied=False, value=float(means[i]), ci_low=float(low[i]),
                                  ci_high=float(high[i]),
                                  status=status_of(entry, evaluator_version=EVALUATOR_VERSION)))
        tied = sum(row.rank == 1 for row in group.rows) > 1
        for row in group.rows:
            row.tied = tied and row.rank == 1
    return groups
