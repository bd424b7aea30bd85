"""The result contract: what ``aiax-bench evaluate`` writes and the leaderboard reads.

One shape for one seed and for several: a result holds one run per seed, each
with its per-volume records, and ``metrics`` aggregated from them by
:func:`aggregate_runs`, the only place a mean or a standard deviation of a
score is taken. Standard deviations are sample standard deviations
(``ddof=1``) everywhere, and null where there is a single value.

A result file is named after its MLflow run id and created exclusively, so
concurrent evaluations never overwrite one another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aiax_bench.errors import InputError

__all__ = [
    "RESULT_SCHEMA_VERSION",
    "SUPERVISION",
    "Result",
    "RunResult",
    "aggregate_runs",
    "clean_record",
    "is_number",
    "protocol_label",
    "sample_std",
    "supervision_label",
]

#: Version 2: every result holds ``runs`` (one per seed) and ``metrics`` from :func:`aggregate_runs`.
RESULT_SCHEMA_VERSION = 2

#: Supervision protocols, what they may learn from, and how the board names them. Entries rank only
#: against entries of the same protocol.
SUPERVISION: dict[str, str] = {
    "reference": "reference-supervised",
    "truth": "truth-supervised",
    "self": "self-supervised",
    "none": "none",
}


def supervision_label(protocol: str) -> str:
    """``reference-supervised`` for ``reference``; refuses an unknown protocol."""
    if protocol not in SUPERVISION:
        raise InputError("supervision", f"is {protocol!r}", f"expected one of {sorted(SUPERVISION)}")
    return SUPERVISION[protocol]


def protocol_label(split: str, annotated_slices: int | None = None,
                   train_splits: Sequence[str] | None = None) -> str:
    """The split with its training protocol: ``reference+annotated-5``, ``100proj+mixed-50proj,100proj,250proj``.

    Results and leaderboard entries of one protocol label are compared with
    each other only. The mixture's splits are joined with commas, which split
    names never contain (they do contain '-', as in ``dose-1/16``): the label
    reads back unambiguously.
    """
    label = split
    if annotated_slices:
        label += f"+annotated-{annotated_slices}"
    if train_splits:
        label += "+mixed-" + ",".join(train_splits)
    return label


def sample_std(values: Sequence[float] | np.ndarray) -> float | None:
    """Sample standard deviation (``ddof=1``), or None for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1)) if values.size > 1 else None


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): a value a score can aggregate."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def clean_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record as results keep it: numbers, null for undefined values (NaN, ∞), short text tags.

    Nested data (per-pore distributions) goes to MLflow, not into result files.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, bool) or isinstance(value, dict | list):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


def aggregate_runs(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, and spread over seeds and over volumes, of every metric defined on every volume of every run.

    Parameters
    ----------
    runs : sequence of dict
        One per seed, each with ``records`` (one dict per test volume with
        ``sample_id`` and metric values) on the same sample ids.

    Returns
    -------
    dict
        ``{metric: {mean, std_over_seeds, std_over_volumes, n_seeds, n_volumes}}``: the mean over
        seeds and volumes; the sample standard deviation of the per-seed means (null for one seed)
        and of the per-volume means over seeds (null for one volume). A metric undefined (null) on
        some volume, and text fields, are left out: intervals need every volume's value.
    """
    if not runs:
        raise InputError("runs", "are empty", "expected one run per seed")
    ids = [r["sample_id"] for r in runs[0]["records"]]
    by_id = [{r["sample_id"]: r for r in run["records"]} for run in runs]
    keys = [k for k in runs[0]["records"][0] if k != "sample_id"]
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        cells = [[records.get(sid, {}).get(key) for sid in ids] for records in by_id]
        if not all(is_number(v) for row in cells for v in row):
            continue
        table = np.array(cells, dtype=np.float64)  # table[s, v]: seed s, volume v (matched by sample id)
        out[key] = {
            "mean": float(table.mean()),
            "std_over_seeds": sample_std(table.mean(axis=1)),
            "std_over_volumes": sample_std(table.mean(axis=0)),
            "n_seeds": len(runs),
            "n_volumes": len(ids),
        }
    return out


@dataclass
class RunResult:
    """One seed's evaluation.

    Attributes
    ----------
    seed : int
    created : str
        ISO time the run started (UTC).
    mlflow_run_id : str or None
    records : list of dict
        One per test volume (see :func:`clean_record`).
    efficiency : dict
        ``train_seconds``, ``inference_seconds_per_volume``, ``parameters``, ``peak_memory_mb``.
    ood_records : list of dict, optional
        The out-of-distribution test volumes, scored in a group of their own.
    fit_summary : dict
        What the method chose while fitting (e.g. a classical method's settings tuned on validation).
    command : str, optional
        The command line that produced it.
    """

    seed: int
    created: str
    mlflow_run_id: str | None
    records: list[dict[str, Any]]
    efficiency: dict[str, Any]
    ood_records: list[dict[str, Any]] | None = None
    fit_summary: dict[str, Any] = field(default_factory=dict)
    command: str | None = None


@dataclass
class Result:
    """Everything an evaluation of one method, config, dataset and split gives (one or more seeds).

    ``split`` is the split scored (its test volumes); ``train_splits``, when
    set, are the splits whose training and validation samples the method got,
    in equal shares (the mixed-degradation protocol), else it got ``split``'s.
    """

    method: str
    task: str
    config: dict[str, Any]
    dataset: str
    profile: str
    split: str
    annotated_slices: int | None
    supervision: str
    created: str
    runs: list[RunResult]
    provenance: dict[str, Any]
    train_splits: list[str] | None = None
    schema_version: int = RESULT_SCHEMA_VERSION

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    def metrics(self) -> dict[str, dict[str, Any]]:
        return aggregate_runs([asdict(run) for run in self.runs])

    def ood_metrics(self) -> dict[str, dict[str, Any]] | None:
        if not all(run.ood_records for run in self.runs):
            return None
        return aggregate_runs([{"records": run.ood_records} for run in self.runs])

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (``metrics`` and ``seeds`` derived, never stored independently)."""
        doc = asdict(self)
        runs = doc.pop("runs")
        return {"schema_version": doc.pop("schema_version"), **doc, "seeds": self.seeds,
                "metrics": self.metrics(), "ood_metrics": self.ood_metrics(), "runs": runs}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], *, where: str = "result") -> Result:
        """Read a result document, refusing another schema version or inconsistent aggregates by field."""
        version = doc.get("schema_version")
        if version != RESULT_SCHEMA_VERSION:
            raise InputError(f"{where}: field schema_version", f"is {version!r}",
                             f"expected {RESULT_SCHEMA_VERSION}: evaluate again with this version of aiax-bench")
        names = [f for f in cls.__dataclass_fields__ if f != "runs"]
        # Written before the mixed-degradation protocol existed: such a result trained on its split.
        optional = ("train_splits",)
        missing = [k for k in [*names, "runs"] if k not in doc and k not in optional]
        if missing:
            raise InputError(f"{where}: field {missing[0]}", "is missing",
                             "pass a result file of `aiax-bench evaluate`")
        run_fields = set(RunResult.__dataclass_fields__)
        runs = []
        for i, run in enumerate(doc["runs"]):
            if not isinstance(run, dict) or not {"seed", "records", "efficiency"} <= set(run):
                raise InputError(f"{where}: field runs[{i}]", "lacks seed, records or efficiency",
                                 "pass a result file of `aiax-bench evaluate`")
            runs.append(RunResult(**{k: v for k, v in run.items() if k in run_fields}))
        train_splits = doc.get("train_splits")
        if train_splits is not None and (not isinstance(train_splits, list) or not train_splits
                                         or not all(isinstance(s, str) and s for s in train_splits)):
            raise InputError(f"{where}: field train_splits", f"is {train_splits!r}",
                             "expected null or a non-empty list of split names")
        result = cls(**{k: doc.get(k) for k in names}, runs=runs)
        if doc.get("seeds") is not None and doc["seeds"] != result.seeds:
            raise InputError(f"{where}: field seeds", f"is {doc['seeds']}", f"expected its runs' seeds {result.seeds}")
        from aiax_bench.evaluation.catalog import metric_spec

        stored = doc.get("metrics") or {}
        for key in stored:
            try:
                metric_spec(key)
            except InputError:
                raise InputError(f"{where}: field metrics.{key}", "is not a metric of the catalog",
                                 "pass a result file of `aiax-bench evaluate`") from None
        for key, agg in result.metrics().items():
            mean = (stored.get(key) or {}).get("mean")
            if mean is None or not math.isclose(mean, agg["mean"], rel_tol=1e-9, abs_tol=1e-12):
                raise InputError(f"{where}: field metrics.{key}.mean", f"is {mean}",
                                 f"expected {agg['mean']}, the mean of the per-volume records")
        return result
