"""A study's results, side by side: every statistic against the acquisition, and the users' answer.

Each (method, split) cell is the mean over seeds × test volumes, with the
hierarchical bootstrap interval the leaderboard uses
(:func:`aiax_bench.leaderboard.rank.bootstrap_intervals`: volumes and seeds
resampled). The reference's and the truth's values are per volume, the same
for every seed and method.

**The answer.** For each method and porosity statistic: the smallest
acquisition (largest saving) at which the 95 % interval of the method's
relative error against the truth lies within ± the tolerance, at that split
and at every split that acquires more. Requiring the whole interval, and every
larger acquisition, keeps one lucky split from answering.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiax_bench.evaluation.catalog import format_value, label, metric_spec
from aiax_bench.study.plan import Acquisition

__all__ = ["IMAGE_KEYS", "POROSITY_STATISTICS", "SEGMENTATION_KEYS", "Answer", "Cell", "StudyTable",
           "study_table"]

#: Porosity statistics a study follows, in the order the report shows them.
POROSITY_STATISTICS = ("porosity", "pore_density_per_mm3", "mean_pore_diameter_mm", "specific_surface_per_mm",
                       "mean_local_thickness_mm", "pore_count")
IMAGE_KEYS = ("psnr/truth", "ssim/truth", "psnr/reference", "ssim/reference")
SEGMENTATION_KEYS = ("jaccard/pore", "dice_small/pore", "dice_medium/pore", "dice_large/pore",
                     "wasserstein_log_diameter/truth")


@dataclass
class Cell:
    """One statistic of one method at one split: mean and interval over seeds × volumes."""

    mean: float
    low: float
    high: float
    n_seeds: int
    n_volumes: int


@dataclass
class Answer:
    """The smallest acquisition within tolerance, for one method and statistic."""

    method: str
    statistic: str
    target: str
    tolerance: float
    split: str | None
    sentence: str


@dataclass
class StudyTable:
    """Everything the report draws: cells by (method, split, key) and the answers."""

    methods: list[str]
    splits: list[str]
    acquisitions: dict[str, Acquisition]
    reference_angles: int
    target: str
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)

    def keys(self) -> list[str]:
        seen: list[str] = []
        for (_, _, key) in self.cells:
            if key not in seen:
                seen.append(key)
        return seen

    def rows(self) -> list[dict[str, Any]]:
        """One row per method, split and statistic (what the CSV holds)."""
        out = []
        for (method, split, key), cell in self.cells.items():
            acq = self.acquisitions[split]
            out.append({"method": method, "split": split, "projections": acq.projections,
                        "saving": round(acq.saving, 6), "metric": key, "label": label(key),
                        "mean": cell.mean, "ci_low": cell.low, "ci_high": cell.high,
                        "n_seeds": cell.n_seeds, "n_volumes": cell.n_volumes})
        return out


def _tables(results: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per metric key, the (seeds, volumes) table of one cell's results (volumes matched by sample id)."""
    runs = sorted((run for result in results for run in result["runs"]), key=lambda r: r["seed"])
    ids = sorted(r["sample_id"] for r in runs[0]["records"])
    by_id = [{r["sample_id"]: r for r in run["records"]} for run in runs]
    tables = {}
    for key in runs[0]["records"][0]:
        cells = [[records[sid].get(key) for sid in ids] for records in by_id]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for row in cells for v in row):
            tables[key] = np.asarray(cells, dtype=np.float64)
    return tables


def _cell(table: np.ndarray) -> Cell:
    from aiax_bench.leaderboard.rank import bootstrap_intervals

    low, high = bootstrap_intervals([table])
    return Cell(float(table.mean()), float(low[0]), float(high[0]), table.shape[0], table.shape[1])


def study_keys(target: str) -> list[str]:
    """The record keys a study reports, for a dataset scored against ``target`` (truth or reference)."""
    keys = [k for k in IMAGE_KEYS if target == "truth" or k.endswith("/reference")]
    for stat in POROSITY_STATISTICS:
        keys += [f"{stat}/method", f"{stat}/reference", f"{stat}/{target}" if target == "truth" else None,
                 f"{stat}/rel_error_{target}"]
    if target == "truth":
        keys += list(SEGMENTATION_KEYS)
    return [k for k in dict.fromkeys(keys) if k]


def study_table(results: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]], *,
                acquisitions: Mapping[str, Acquisition], reference_angles: int, methods: Sequence[str],
                tolerance: float) -> StudyTable:
    """Aggregate result documents by (method, split) into a :class:`StudyTable` with its answers."""
    first = next(iter(results.values()))[0]
    target = "truth" if any("porosity/truth" in r for r in first["runs"][0]["records"]) else "reference"
    splits = sorted(acquisitions, key=lambda s: acquisitions[s].saving)
    table = StudyTable(methods=list(methods), splits=splits, acquisitions=dict(acquisitions),
                       reference_angles=reference_angles, target=target)
    keys = study_keys(target)
    for method in methods:
        for split in splits:
            docs = results.get((method, split))
            if not docs:
                continue
            tables = _tables(docs)
            for key in keys:
                if key in tables:
                    table.cells[method, split, key] = _cell(tables[key])
    for method in methods:
        for stat in POROSITY_STATISTICS:
            table.answers.append(_answer(table, method, stat, tolerance))
    return table


def _answer(table: StudyTable, method: str, stat: str, tolerance: float) -> Answer:
    key = f"{stat}/rel_error_{table.target}"
    name = metric_spec(f"{stat}/method").label
    within: str | None = None
    first_out: tuple[str, Cell] | None = None
    for split in table.splits:  # from the most acquired to the least
        cell = table.cells.get((method, split, key))
        if cell is None:
            break
        if -tolerance <= cell.low and cell.high <= tolerance:
            within = split
        else:
            first_out = (split, cell)
            break
    pct = f"{tolerance * 100:g} %"
    if within is None:
        sentence = f"{method}: the {name} is not within {pct} of the {table.target} at any acquisition studied"
    else:
        acq = table.acquisitions[within]
        sentence = (f"{method}: the {name} stays within {pct} of the {table.target} down to "
                    f"{acq.describe(table.reference_angles)}")
    if first_out is not None:
        split, cell = first_out
        sentence += (f"; at {table.acquisitions[split].describe(table.reference_angles)} it is off by "
                     f"{_pct(cell.mean)} [{_pct(cell.low)}, {_pct(cell.high)}]")
    return Answer(method, stat, table.target, tolerance, within, sentence + ".")


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value * 100:+.1f} %"


def markdown(table: StudyTable) -> str:
    """The table as Markdown: one section per statistic, a row per method and split."""
    lines = ["# Acquisition study", "", *[f"- {a.sentence}" for a in table.answers if a.statistic == "porosity"],
             ""]
    for key in table.keys():
        lines += [f"## {label(key)} (`{key}`)", "", "| method | split | projections | saving | mean | 95 % interval |",
                  "|---|---|---|---|---|---|"]
        for method in table.methods:
            for split in table.splits:
                cell = table.cells.get((method, split, key))
                if cell is None:
                    continue
                acq = table.acquisitions[split]
                lines.append(f"| {method} | {split} | {acq.projections} | {acq.saving:.3g}× | "
                             f"{format_value(key, cell.mean)} | {format_value(key, cell.low)} – "
                             f"{format_value(key, cell.high)} |")
        lines.append("")
    return "\n".join(lines)
