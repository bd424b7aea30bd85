"""The submission schema and the checks a JSON Schema cannot express.

Every leaderboard entry is validated twice: structurally against
``submission.schema.json`` (shipped with the package), then against the
registry (dataset, profile, split, test sample ids, dataset content hash) and
against itself (aggregates recomputed from the per-volume records).
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from aiax_bench.data.registry import REFERENCE_SPLIT
from aiax_bench.errors import InputError, UnknownNameError
from aiax_bench.leaderboard.rerun_record import check_verification
from aiax_bench.results import aggregate_runs, is_number, protocol_label

__all__ = [
    "SUBMISSION_SCHEMA_VERSION",
    "aggregate_runs",
    "check_entry",
    "load_schema",
    "protocol_split",
    "published_dataset_sha256",
    "scored_sample_ids",
    "validate_entry",
    "validate_schema",
]

SUBMISSION_SCHEMA_VERSION = 2

#: Relative tolerance when a stored aggregate is compared with the one recomputed from the records.
AGGREGATE_RTOL = 1e-9


@cache
def load_schema() -> dict[str, Any]:
    """The submission JSON Schema (Draft 2020-12) shipped with the package."""
    text = resources.files("aiax_bench.leaderboard").joinpath("submission.schema.json").read_text()
    return json.loads(text)


def _field(path) -> str:
    """``runs[0].records[1].psnr/reference`` from a jsonschema path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def validate_schema(document: Any, *, where: str = "submission", schema: dict[str, Any] | None = None,
                    hint: str = "see aiax_bench/leaderboard/submission.schema.json") -> None:
    """Check ``document`` against a JSON Schema (the submission schema by default), naming the first bad field.

    Raises
    ------
    InputError
        With ``field`` set to ``"<where>: field <dotted.path>"``.
    """
    import jsonschema
    from jsonschema.exceptions import best_match

    validator = jsonschema.Draft202012Validator(schema or load_schema())
    error = best_match(validator.iter_errors(document))
    if error is None:
        return
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # Name the missing field itself, not its parent.
        missing = [key for key in error.validator_value if key not in error.instance]
        raise InputError(f"{where}: field {_field([*path, missing[0]])}", "is missing",
                         f"it is required; {hint}")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(key for key in error.instance if key not in known)
        raise InputError(f"{where}: field {_field([*path, extra[0]])}", "is not a known field",
                         f"allowed here: {', '.join(sorted(known))}")
    if error.validator == "type":
        raise InputError(f"{where}: field {_field(path)}", f"has type {_json_type(error.instance)}",
                         f"expected {error.validator_value}")
    raise InputError(f"{where}: field {_field(path)}", f"is invalid ({error.message})", hint)


def _resolve(entry: dict[str, Any], where: str):
    from aiax_bench.data.registry import resolve

    try:
        spec = resolve(entry["dataset"])
    except UnknownNameError as exc:
        raise InputError(f"{where}: field dataset", f"names no registered dataset ({exc})",
                         "submit results on a dataset listed by `aiax-bench datasets list`") from None
    if entry["profile"] not in spec.profiles:
        raise InputError(f"{where}: field profile", f"{entry['profile']!r} is not a profile of {spec.ref}",
                         f"expected one of {sorted(spec.profiles)}")
    segment = entry.get("task") == "segment"
    if entry["split"] not in spec.splits and not (segment and entry["split"] == REFERENCE_SPLIT):
        raise InputError(f"{where}: field split", f"{entry['split']!r} is not a split of {spec.ref}",
                         f"expected one of {sorted(spec.splits)}" + (f" or {REFERENCE_SPLIT!r}" if segment else ""))
    if entry.get("annotated_slices") and not segment:
        raise InputError(f"{where}: field annotated_slices", f"is {entry['annotated_slices']} for task "
                         f"{entry.get('task')!r}", "null: the annotated-k protocol is for segmentation entries only")
    _check_train_splits(entry, spec, where)
    return spec


def _check_train_splits(entry: dict[str, Any], spec, where: str) -> None:
    """A mixture names splits of the dataset, each once, never the reference scan, never with annotated-k."""
    mixture = entry.get("train_splits")
    if mixture is None:
        return
    for i, name in enumerate(mixture):
        if name not in spec.splits:
            raise InputError(f"{where}: field train_splits[{i}]", f"{name!r} is not a split of {spec.ref}",
                             f"expected one of {sorted(spec.splits)} (the reference scan is no training split)")
    if len(set(mixture)) != len(mixture):
        raise InputError(f"{where}: field train_splits", f"is {mixture}", "each split once")
    if mixture == [entry["split"]]:
        raise InputError(f"{where}: field train_splits", f"is {mixture}, the entry's own split",
                         "null: training on the split scored is the ordinary protocol")
    if entry.get("annotated_slices"):
        raise InputError(f"{where}: field train_splits", f"is {mixture} with annotated_slices "
                         f"{entry['annotated_slices']}", "one protocol at a time: null, or no annotated_slices")


def protocol_split(doc: dict[str, Any]) -> str:
    """The split an entry competes in: the split name, with ``+annotated-k`` under the annotated-k protocol and
    ``+mixed-A,B,C`` when it trained on a mixture of splits (:func:`~aiax_bench.results.protocol_label`)."""
    return protocol_label(doc["split"], doc.get("annotated_slices"), doc.get("train_splits"))


def scored_sample_ids(spec, profile: str) -> list[str]:
    """Ids of the test volumes of ``spec`` at ``profile``, in store order.

    Mirrors ``aiax_bench.data.build.sample_ids`` (a test keeps the two equal)
    without importing the simulation stack, so that checking a submission
    stays fast and light.
    """
    return [f"test-{k:03d}" for k, _ in enumerate(spec.profiles[profile]["samples"]["test"])]


def published_dataset_sha256(spec, profile: str) -> str | None:
    """The registry's content sha256 for ``spec`` at ``profile`` (None until one is published)."""
    # getattr: the registry grows these fields over time; an older DatasetVersion lacks them.
    per_profile = getattr(spec, "content_sha256", None)
    if isinstance(per_profile, dict) and per_profile.get(profile):
        return per_profile[profile]
    archive = (getattr(spec, "archives", None) or {}).get(profile) or {}
    return archive.get("content_sha256")


def _check_hashes(entry: dict[str, Any], spec, where: str) -> None:
    """Recipe and dataset content hashes must be the registry's: rebuilt data is bit-identical by design."""
    prov = entry["provenance"]
    if prov["recipe_sha256"] != spec.recipe_sha256:
        raise InputError(f"{where}: field provenance.recipe_sha256", f"is {prov['recipe_sha256'][:12]}…",
                         f"expected {spec.recipe_sha256[:12]}…, the registry's recipe of {spec.ref}")
    expected = published_dataset_sha256(spec, entry["profile"])
    if expected is None:
        raise InputError(f"{where}: field profile", f"{entry['profile']!r} of {spec.ref} has no content sha256 in "
                         "the registry", "entries are scored on data the registry publishes a hash for")
    recorded = prov["dataset_sha256"]
    if recorded != expected:
        raise InputError(f"{where}: field provenance.dataset_sha256",
                         f"is {recorded[:12]}…, but {spec.ref} ({entry['profile']}) has content sha256 "
                         f"{expected[:12]}…",
                         "the result was computed on other data: evaluate again on the registered version")


def _check_values(entry: dict[str, Any], where: str) -> None:
    """Every score is a metric of the catalog, inside the range that metric can take."""
    from aiax_bench.evaluation.catalog import metric_spec

    for key in entry["metrics"]:
        metric_spec(key)  # an unknown metric is refused by name
    for i, run in enumerate(entry["runs"]):
        for j, record in enumerate(run["records"]):
            for key, value in record.items():
                if key in _TEXT_FIELDS or value is None:
                    continue
                field = f"{where}: field runs[{i}].records[{j}].{key}"
                try:
                    spec = metric_spec(key)
                except InputError:
                    raise InputError(field, "is not a metric of the catalog",
                                     "records hold the evaluator's metrics only") from None
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise InputError(field, f"is {value!r}", "expected a number, or null where undefined")
                spec.check(key, float(value), field)


#: Record fields that are protocol tags, not scores.
_TEXT_FIELDS = ("sample_id", "evaluator_version", "segmentation_protocol")


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=AGGREGATE_RTOL, abs_tol=1e-12)


def _check_records(entry: dict[str, Any], spec, where: str) -> None:
    """Every run scores exactly the test volumes, with finite numbers for every aggregated metric."""
    expected_ids = sorted(scored_sample_ids(spec, entry["profile"]))
    for i, run in enumerate(entry["runs"]):
        ids = [r["sample_id"] for r in run["records"]]
        if sorted(ids) != expected_ids:
            raise InputError(f"{where}: field runs[{i}].records", f"cover sample ids {sorted(ids)}",
                             f"expected the test volumes of {spec.ref} ({entry['profile']}): {expected_ids}")
        for j, record in enumerate(run["records"]):
            for key, value in record.items():
                if isinstance(value, float) and not math.isfinite(value):
                    raise InputError(f"{where}: field runs[{i}].records[{j}].{key}", f"is {value}",
                                     "expected a finite number, or null where the metric is undefined")
            for key in entry["metrics"]:
                if not is_number(record.get(key)):
                    raise InputError(f"{where}: field runs[{i}].records[{j}].{key}",
                                     f"is {record.get(key)!r}", "expected a number: it is aggregated in metrics")


def check_entry(entry: dict[str, Any], *, where: str = "submission", board: Path | None = None) -> None:
    """The checks beyond the schema: registry, catalog ranges, consistency, recomputed aggregates, hashes,
    and the verification record.

    Parameters
    ----------
    entry : dict
        A schema-valid submission.
    where : str
        Prefix of error messages (the file name).
    board : Path, optional
        The leaderboard folder, where a verified entry's re-run record lies
        (``verifications/``); without it a ``verified`` status is refused.

    Raises
    ------
    InputError
        Naming the field at fault.
    """
    spec = _resolve(entry, where)
    prov = entry["provenance"]
    for key in ("dataset", "profile", "split", "evaluator_version", "seeds", "supervision"):
        if prov[key] != entry[key]:
            raise InputError(f"{where}: field provenance.{key}", f"is {prov[key]!r}",
                             f"expected {entry[key]!r} like the entry's {key}")
    # Absent from entries of the ordinary protocol (and from those written before mixtures existed).
    if prov.get("train_splits") != entry.get("train_splits"):
        raise InputError(f"{where}: field provenance.train_splits", f"is {prov.get('train_splits')!r}",
                         f"expected {entry.get('train_splits')!r} like the entry's train_splits")
    seeds = [run["seed"] for run in entry["runs"]]
    if seeds != entry["seeds"]:
        raise InputError(f"{where}: field runs", f"has seeds {seeds}", f"expected one run per seed {entry['seeds']}")
    _check_records(entry, spec, where)
    _check_values(entry, where)
    recomputed = aggregate_runs(entry["runs"])
    if set(recomputed) != set(entry["metrics"]):
        odd = sorted(set(recomputed) ^ set(entry["metrics"]))
        raise InputError(f"{where}: field metrics", f"does not match the runs' records (differs in {odd[:5]})",
                         "expected exactly the metrics defined on every volume of every run")
    for key, agg in recomputed.items():
        for stat, value in agg.items():
            if not _close(entry["metrics"][key][stat], value):
                raise InputError(f"{where}: field metrics.{key}.{stat}", f"is {entry['metrics'][key][stat]}",
                                 f"expected {value}, as recomputed from the runs' per-volume records")
    _check_hashes(entry, spec, where)
    check_verification(entry, where=where, board=board)


def validate_entry(entry: Any, *, where: str = "submission", board: Path | None = None) -> dict[str, Any]:
    """Schema check, then :func:`check_entry`; returns ``entry`` when valid."""
    validate_schema(entry, where=where)
    check_entry(entry, where=where, board=board)
    return entry
