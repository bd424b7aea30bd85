"""Ranking: per dataset, profile and split, on one metric, with bootstrap intervals over test volumes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.data.registry import SplitSpec
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
    "entry_table",
    "metric_label",
    "paired_difference_interval",
    "rank_entries",
    "status_of",
]

#: The metric entries are ranked on unless ``--metric`` or the dataset's registry entry
#: (``evaluation.rank_metric``: ``psnr/truth`` from version 2.0 on) says otherwise.
DEFAULT_METRIC = "psnr/reference"
#: The default per task: segmentations rank on the mean class Jaccard index against the exact labels, DCT spot
#: segmentations on the F1 of their blob detection.
DEFAULT_METRICS = {"enhance": DEFAULT_METRIC, "segment": "jaccard/mean", "dct": "f1/blobs"}
#: The protocol whose entries are shown, unranked, as reference rows in every other protocol's group.
REFERENCE_PROTOCOL = "none"


def default_metric(dataset: str, task: str) -> str:
    """The metric a group of ``dataset`` (``name@version``) and ``task`` ranks on by default: the registry's
    ``evaluation.rank_metric`` (task ``enhance``) or ``segment_rank_metric`` (task ``segment``), else
    :data:`DEFAULT_METRICS`."""
    key = {"enhance": "rank_metric", "segment": "segment_rank_metric"}.get(task)
    fallback = DEFAULT_METRICS.get(task, DEFAULT_METRIC)
    if key is None:
        return fallback
    from aiax_bench.data.registry import resolve
    from aiax_bench.errors import AiaxError

    try:
        return resolve(dataset).evaluation.get(key, fallback)
    except AiaxError:  # an entry of a dataset this version does not know: the historical default
        return fallback


def metric_label(metric: str) -> str:
    """The catalog's label of ``metric``, e.g. ``PSNR (dB) vs truth``."""
    from aiax_bench.evaluation.catalog import label

    return label(metric)


def _times(factor: float) -> str:
    return f"{factor:.0f}×" if abs(factor - round(factor)) < 0.05 else f"{factor:.1f}×"


def _sparse(split: SplitSpec, reference: int) -> str | None:
    n = split.n_angles
    if n is not None and 0 < n < reference:
        return f"{n} of {reference} projections: {_times(reference / n)} less scan time, dose and data"
    return None


def _dose(split: SplitSpec, reference: int) -> str | None:
    dose = split.dose_factor
    if dose is not None and 0 < dose < 1:
        return f"all {reference} projections at {_times(1 / dose)} less dose each"
    return None


def _binning(split: SplitSpec, reference: int) -> str | None:
    factor = split.factor
    if factor is not None and factor > 1:
        return (f"detector binned {factor}×{factor}: {_times(factor ** 2)} fewer detector pixels to read and store, "
                f"reconstructed {factor}× coarser")
    return None


def _continuous(split: SplitSpec, reference: int) -> str | None:
    sparse = _sparse(split, reference)
    return None if sparse is None else f"{sparse}, acquired during continuous rotation (no stop-and-go)"


def _views(split: SplitSpec, reference: int) -> str | None:
    if split.every:
        return f"{reference // split.every} of {reference} views (every {split.every}th): {split.every}× less scan time"
    if split.arc_degrees:
        return f"a {split.arc_degrees:g}° arc of the full turn (limited angle)"
    return None


def _frames(split: SplitSpec, reference: int) -> str:
    settings = ", ".join(f"{k} {v}" for k, v in (split.detector or {}).items())
    return f"nothing: the raw frames, detector settings {settings}" if settings else "nothing: the raw frames"


def _short_scan(split: SplitSpec, reference: int) -> str:
    return (f"the source positions of 180° plus the fan, of the {reference} over a full turn: about half the scan "
            "time and dose (Parker-weighted FDK)")


def _arc(split: SplitSpec, reference: int) -> str:
    less = _times(360 / split.arc_degrees)
    return f"a {split.arc_degrees:g}° arc of the full turn: {less} less scan time (limited angle)"


def _artefact(what: str):
    def describe(split: SplitSpec, reference: int) -> str:
        return f"nothing: all {reference} projections, {what}"
    return describe


#: What a split of each recipe ``kind`` saves against the reference scan, in words.
SAVINGS = {"sparse": _sparse, "dose": _dose, "binning": _binning, "continuous": _continuous, "views": _views,
           "frames": _frames, "short-scan": _short_scan, "arc": _arc,
           "polychromatic": _artefact("the tube's polychromatic beam, uncorrected"),
           "rings": _artefact("with uncorrected detector gains (rings)"),
           "blur": _artefact("through a blurring scintillator"), "zingers": _artefact("with zingers"),
           "flat-noise": _artefact("normalised by a finite number of flat fields"),
           "phase-contrast": _artefact("recorded behind the sample: edge fringes of phase contrast"),
           "beam-hardening": _artefact("the tube's polychromatic beam, uncorrected")}


def acquisition_saving(dataset: str, split: str) -> str:
    """What a split saves against the reference acquisition, in words.

    ``100proj`` of 500 reference projections reads "100 of 500 projections:
    5× less scan time, dose and data"; every split kind of the recipes
    (:data:`SAVINGS`) is described from its recipe keys, and the annotated-k
    protocol of segmentation entries (``reference+annotated-5``) and a mixture
    of training splits (``100proj+mixed-50proj,250proj``) are added.
    """
    from aiax_bench.data.registry import resolve

    spec = resolve(dataset)
    name = split.partition("+")[0]
    # A frame-stack recipe has no reference scan.
    reference = spec.recipe.get("acquisition", {}).get("reference_angles", 0)
    saving = None
    if name in spec.splits:
        acquisition = spec.split_spec(name)
        saving = SAVINGS[acquisition.kind](acquisition, reference)
    saving = saving or "the reference scan itself"
    _, _, protocol = split.partition("+annotated-")
    if protocol:  # the annotation effort is part of what a segmentation entry saves
        saving += f"; training labels on {protocol} slices per volume"
    _, _, mixture = split.partition("+mixed-")
    if mixture:  # one network for every degradation: its training data is part of the claim
        saving += f"; trained on {', '.join(mixture.split(','))} in equal shares"
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


def _seed_means(tables: Sequence[np.ndarray], keys: Sequence[Any], vol_idx: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means (entries, n_boot): volumes resampled with ``vol_idx``; seeds resampled per entry.

    Entries with the same key (their seed list) share their seed resamples (paired by seed); others draw
    their own.
    """
    n_boot = vol_idx.shape[0]
    draws: dict[Any, np.ndarray] = {}
    out = np.empty((len(tables), n_boot))
    for i, (table, key) in enumerate(zip(tables, keys, strict=True)):
        n_seeds = table.shape[0]
        if (key, n_seeds) not in draws:
            draws[key, n_seeds] = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        per_seed = table[:, vol_idx].mean(axis=2)  # (seeds, n_boot): each seed's mean over resampled volumes
        out[i] = np.take_along_axis(per_seed.T, draws[key, n_seeds], axis=1).mean(axis=1)
    return out


def bootstrap_intervals(tables: Sequence[np.ndarray], *, seeds: Sequence[Sequence[int]] | None = None,
                        n_boot: int = 2000, level: float = 0.95, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Hierarchical percentile bootstrap of the mean over seeds and test volumes, one interval per entry.

    Parameters
    ----------
    tables : sequence of ndarray, each (seeds, volumes)
        Per-seed, per-volume values, columns in the same volume order.
    seeds : sequence of sequence of int, optional
        Each entry's seed list; entries with the same list are resampled on the
        same seeds. By default every entry draws its own.
    n_boot, level, seed
        Resamples, coverage, and the resampling seed (fixed: the board is reproducible).

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper bounds per entry.

    Notes
    -----
    Both levels are resampled: the test volumes (the same indices for every
    entry, a paired design) and, within each entry, its seeds. With one seed
    and one volume the interval is that value.
    """
    tables = [np.atleast_2d(np.asarray(t, dtype=np.float64)) for t in tables]
    keys = [tuple(s) for s in seeds] if seeds is not None else [("entry", i) for i in range(len(tables))]
    rng = np.random.default_rng(seed)
    vol_idx = rng.integers(0, tables[0].shape[1], size=(n_boot, tables[0].shape[1]))
    means = _seed_means(tables, keys, vol_idx, rng)
    alpha = (1 - level) / 2
    return np.quantile(means, alpha, axis=1), np.quantile(means, 1 - alpha, axis=1)


def paired_difference_interval(a: np.ndarray, b: np.ndarray, *, seeds_a: Sequence[int], seeds_b: Sequence[int],
                               n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of mean(a) − mean(b) over the same test volumes (and the same seeds where shared).

    ``a`` and ``b`` are (seeds, volumes) tables on the same volumes. Each
    resample draws one set of volume indices for both; the seeds of entries with
    the same seed list are drawn together too, so what the two share (hard
    volumes, a lucky seed) cancels in the difference. The two are statistically
    tied at ``level`` when the interval contains 0.
    """
    rng = np.random.default_rng(seed)
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[1] != b.shape[1]:
        raise InputError("paired comparison", f"has {a.shape[1]} and {b.shape[1]} volumes",
                         "compare entries scored on the same test volumes")
    vol_idx = rng.integers(0, a.shape[1], size=(n_boot, a.shape[1]))
    means = _seed_means([a, b], [tuple(seeds_a), tuple(seeds_b)], vol_idx, rng)
    diff = means[0] - means[1]
    alpha = (1 - level) / 2
    return float(np.quantile(diff, alpha)), float(np.quantile(diff, 1 - alpha))


@dataclass
class Row:
    """One entry of a group: ranked, or (protocol ``none`` in another protocol's group) a reference row."""

    entry: dict[str, Any]
    path: Path | None
    rank: int | None
    tied: bool
    value: float
    ci_low: float
    ci_high: float
    status: str
    n_seeds: int
    n_volumes: int
    reference: bool = False


#: How a group's title names its task (enhancement groups say nothing).
_TASK_TITLES = {"segment": " · segmentation", "dct": " · DCT spot segmentation"}


@dataclass
class Group:
    """The entries of one dataset version, profile, split, task and supervision protocol."""

    dataset: str
    profile: str
    split: str
    task: str
    supervision: str
    metric: str
    direction: str
    saving: str
    n_volumes: int
    level: float
    n_boot: int
    rows: list[Row] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)

    @property
    def higher_better(self) -> bool:
        return self.direction == "higher"

    @property
    def title(self) -> str:
        from aiax_bench.results import supervision_label

        task = _TASK_TITLES.get(self.task, "")
        return (f"{self.dataset} · {self.split} · {self.profile} profile{task} · "
                f"{supervision_label(self.supervision)}")


def entry_table(entry: dict[str, Any], metric: str, ids: list[str]) -> np.ndarray:
    """The metric per seed and test volume, (seeds, volumes)."""
    rows = [[{r["sample_id"]: r for r in run["records"]}[sid][metric] for sid in ids] for run in entry["runs"]]
    return np.asarray(rows, dtype=np.float64)


def _matches(entry: dict[str, Any], dataset: str | None, split: str | None, profile: str | None) -> bool:
    if dataset and dataset not in (entry["dataset"], entry["dataset"].partition("@")[0]):
        return False
    if split and split not in (entry["split"], protocol_split(entry)):
        return False
    return not profile or entry["profile"] == profile


_PROTOCOL_ORDER = ("reference", "truth", "self", "none")


def _group_order(key: tuple[str, str, str, str, str]) -> tuple:
    """Datasets by name, then tasks, then profiles and splits in the recipe's order, then protocols."""
    from aiax_bench.data.registry import resolve

    dataset, profile, split, task, supervision = key
    spec = resolve(dataset)
    profiles, splits = list(spec.profiles), list(spec.splits)
    base = split.partition("+")[0]
    return (dataset, task != "enhance", profiles.index(profile) if profile in profiles else len(profiles),
            splits.index(base) if base in splits else len(splits), split,
            _PROTOCOL_ORDER.index(supervision) if supervision in _PROTOCOL_ORDER else len(_PROTOCOL_ORDER))


def rank_entries(entries: Sequence[tuple[Path | None, dict[str, Any]]], *, metric: str | None = None,
                 dataset: str | None = None, split: str | None = None, profile: str | None = None,
                 n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> list[Group]:
    """Rank validated entries per dataset, profile, split, task and supervision protocol.

    Entries are sorted on the mean of ``metric`` in the catalog's direction
    (signed errors on the mean absolute error). Each gets a hierarchical
    bootstrap interval over seeds and test volumes; an entry is tied with the
    leader (rank 1=) when a paired bootstrap of their difference over the same
    volumes (and shared seeds) cannot separate them at ``level``. Entries of
    protocol ``none`` (no training data: ramp FBP, Otsu) are also shown,
    unranked, as reference rows in every other protocol's group of their split.

    Parameters
    ----------
    entries : sequence of (Path or None, dict)
        ``load_entries(board)``.
    metric : str, optional
        Key of the records, e.g. ``psnr/truth``; by default the dataset's and task's.
    dataset, split, profile : str, optional
        Keep only these (``dataset`` as ``name`` or ``name@version``).
    n_boot, level, seed
        Bootstrap resamples, interval coverage and resampling seed.

    Returns
    -------
    list of Group
    """
    from aiax_bench.evaluation.catalog import metric_spec, rank_values

    if metric is not None:
        if "/" not in metric:
            raise InputError("--metric", f"{metric!r} has no target", "expected e.g. psnr/truth or ssim/truth")
        rank_values(metric, 0.0)  # refuses unknown and descriptive metrics by name
    if not 0 < level < 1:
        raise InputError("level", f"is {level}", "expected a coverage between 0 and 1, e.g. 0.95")
    if n_boot < 1:
        raise InputError("--bootstrap", f"is {n_boot}", "expected a positive number of resamples")
    from aiax_bench.evaluation.evaluator import EVALUATOR_VERSION

    buckets: dict[tuple[str, str, str, str, str], list[tuple[Path | None, dict[str, Any]]]] = {}
    for path, entry in entries:
        if _matches(entry, dataset, split, profile):
            key = (entry["dataset"], entry["profile"], protocol_split(entry), entry["task"], entry["supervision"])
            buckets.setdefault(key, []).append((path, entry))
    # Reference rows: protocol "none" joins every other protocol's group of its split, unranked.
    references: dict[tuple[str, str, str, str], list[tuple[Path | None, dict[str, Any]]]] = {}
    for key in list(buckets):
        if key[4] == REFERENCE_PROTOCOL:
            others = [k for k in buckets if k[:4] == key[:4] and k[4] != REFERENCE_PROTOCOL]
            if others:
                references[key[:4]] = buckets.pop(key)
    groups = []
    for key in sorted(buckets, key=_group_order):
        members = buckets[key]
        group_metric = metric or default_metric(key[0], key[3])
        spec = metric_spec(group_metric)
        reference = references.get(key[:4], [])
        ranked = [(p, e) for p, e in members if group_metric in e["metrics"]]
        shown = [(p, e) for p, e in reference if group_metric in e["metrics"]]
        group = Group(dataset=key[0], profile=key[1], split=key[2], task=key[3], supervision=key[4],
                      metric=group_metric, direction=spec.direction, saving=acquisition_saving(key[0], key[2]),
                      n_volumes=0, level=level, n_boot=n_boot,
                      missing=[e for _, e in members + reference if group_metric not in e["metrics"]])
        groups.append(group)
        if not ranked:
            continue
        ids = sorted(r["sample_id"] for r in ranked[0][1]["runs"][0]["records"])
        group.n_volumes = len(ids)
        _fill(group, ranked, shown, ids, seed=seed, evaluator_version=EVALUATOR_VERSION)
    return groups


def _fill(group: Group, ranked, shown, ids: list[str], *, seed: int, evaluator_version: str) -> None:
    """Rank ``ranked`` into ``group.rows`` (with intervals and paired ties), then append ``shown`` unranked."""
    from aiax_bench.evaluation.catalog import rank_values

    everyone = ranked + shown
    raw = [entry_table(e, group.metric, ids) for _, e in everyone]
    # Intervals and ties are taken on the ranking scale (|error| for signed errors, -x where higher is better).
    scaled = [rank_values(group.metric, t) for t in raw]
    seed_lists = [tuple(e["seeds"]) for _, e in everyone]
    low, high = bootstrap_intervals(scaled, seeds=seed_lists, n_boot=group.n_boot, level=group.level, seed=seed)
    if group.direction == "higher":  # back from the ranking scale to the metric's own
        low, high = -high, -low
    score = np.array([t.mean() for t in scaled])
    values = [float(t.mean()) for t in (scaled if group.direction == "zero" else raw)]
    order = sorted(range(len(ranked)), key=lambda i: (score[i], ranked[i][1]["name"].lower()))
    lead = order[0]
    for position, i in enumerate(order, start=1):
        path, entry = ranked[i]
        tied = False
        if i != lead:
            lo, hi = paired_difference_interval(scaled[i], scaled[lead], seeds_a=seed_lists[i],
                                                seeds_b=seed_lists[lead], n_boot=group.n_boot, level=group.level,
                                                seed=seed)
            tied = lo <= 0.0 <= hi
        group.rows.append(Row(entry=entry, path=path, rank=1 if (tied or i == lead) else position, tied=tied,
                              value=values[i], ci_low=float(low[i]), ci_high=float(high[i]),
                              status=status_of(entry, evaluator_version=evaluator_version),
                              n_seeds=raw[i].shape[0], n_volumes=raw[i].shape[1]))
    if any(row.tied for row in group.rows):
        group.rows[0].tied = True
    for j, (path, entry) in enumerate(shown, start=len(ranked)):
        group.rows.append(Row(entry=entry, path=path, rank=None, tied=False, value=values[j],
                              ci_low=float(low[j]), ci_high=float(high[j]),
                              status=status_of(entry, evaluator_version=evaluator_version),
                              n_seeds=raw[j].shape[0], n_volumes=raw[j].shape[1], reference=True))
