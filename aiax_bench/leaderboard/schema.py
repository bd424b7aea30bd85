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

import numpy as np

from aiax_bench.data.registry import REFERENCE_SPLIT
from aiax_bench.errors import InputError, UnknownNameError

__all__ = [
    "SUBMISSION_SCHEMA_VERSION",
    "aggregate_runs",
    "check_entry",
    "expected_dataset_sha256",
    "load_schema",
    "protocol_split",
    "published_dataset_sha256",
    "scored_sample_ids",
    "validate_entry",
    "validate_schema",
]

SUBMISSION_SCHEMA_VERSION = 1

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
    return spec


def protocol_split(doc: dict[str, Any]) -> str:
    """The split an entry competes in: the split name, with ``+annotated-k`` under the annotated-k protocol."""
    k = doc.get("annotated_slices")
    return doc["split"] if not k else f"{doc['split']}+annotated-{k}"


def scored_sample_ids(spec, profile: str) -> list[str]:
    """Ids of the test volumes of ``spec`` at ``profile``, in store order.

    Mirrors ``aiax_bench.data.build.sample_ids`` (a test keeps the two equal)
    without importing the simulation stack, so that checking a submission
    stays fast and light.
    """
    return [f"test-{k:03d}" for k, _ in enumerate(spec.profiles[profile]["samples"]["test"])]


def expected_dataset_sha256(ref: str, profile: str, *, root: Path | None = None,
                            use_store: bool = True) -> str | None:
    """Content sha256 that results on ``ref`` at ``profile`` must carry, or None if unknown.

    The registry is asked first: a published archive of the profile records
    its store's ``content_sha256`` (so does a ``content_sha256`` key per
    profile, if the registry grows one). Where the registry publishes none,
    the store in the local cache (``AIAX_BENCH_DATA``) is asked, if present.

    Parameters
    ----------
    ref : str
        ``name@version``.
    profile : str
        Dataset size profile.
    root : Path, optional
        Cache directory; ``aiax_bench.paths.data_dir()`` by default.
    use_store : bool
        Also ask the local store (off for checks that must not depend on the
        machine, e.g. the test that validates committed submissions).

    Returns
    -------
    str or None
        The expected hash, or None where neither source knows it.
    """
    from aiax_bench.data.registry import resolve

    spec = resolve(ref)
    published = published_dataset_sha256(spec, profile)
    if published or not use_store:
        return published
    from aiax_bench.data.store import store_path
    from aiax_bench.paths import data_dir

    path = store_path(root or data_dir(), spec.name, spec.version, profile)
    if not path.exists():
        return None
    try:
        import zarr

        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # an unreadable store vouches for nothing; the loader reports it properly
        return None
    if attrs.get("recipe_sha256") != spec.recipe_sha256:
        return None
    return attrs.get("content_sha256")


def published_dataset_sha256(spec, profile: str) -> str | None:
    """The registry's content sha256 for ``spec`` at ``profile`` (None until one is published)."""
    # getattr: the registry grows these fields over time; an older DatasetVersion lacks them.
    per_profile = getattr(spec, "content_sha256", None)
    if isinstance(per_profile, dict) and per_profile.get(profile):
        return per_profile[profile]
    archive = (getattr(spec, "archives", None) or {}).get(profile) or {}
    return archive.get("content_sha256")


def _check_dataset_hash(entry: dict[str, Any], spec, where: str, *, root: Path | None, use_store: bool) -> None:
    recorded = entry["provenance"]["dataset_sha256"]
    if recorded == "rebuilt":
        return
    expected = expected_dataset_sha256(spec.ref, entry["profile"], root=root, use_store=use_store)
    if expected is None or recorded == expected:
        return
    # A copy rebuilt from the recipe may differ in the last bits; the loader has then checked it
    # against the published fingerprint, so only a published hash can excuse it.
    if entry["provenance"].get("dataset_source") == "rebuilt" and published_dataset_sha256(spec, entry["profile"]):
        return
    raise InputError(f"{where}: field provenance.dataset_sha256",
                     f"is {recorded[:12]}…, but {spec.ref} ({entry['profile']}) has content sha256 {expected[:12]}…",
                     "the result was computed on other data: evaluate again on the registered version")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def aggregate_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean ± std over seeds, and std over volumes, of every metric defined on every volume of every run.

    Parameters
    ----------
    runs : list of dict
        One per seed, each with ``records`` (one dict per test volume with
        ``sample_id`` and metric values) on the same sample ids.

    Returns
    -------
    dict
        ``{metric: {mean, std_over_seeds, std_over_volumes, n_seeds, n_volumes}}``. A metric left
        undefined (null) on some volume, and text fields such as protocol tags, are not aggregated:
        a bootstrap over volumes needs every volume's value.
    """
    ids = [r["sample_id"] for r in runs[0]["records"]]
    by_id = [{r["sample_id"]: r for r in run["records"]} for run in runs]
    keys = [k for k in runs[0]["records"][0] if k != "sample_id"]
    out: dict[str, dict[str, Any]] = {}
    for key in sorted(keys):
        cells = [[records.get(sid, {}).get(key) for sid in ids] for records in by_id]
        if not all(_is_number(v) for row in cells for v in row):
            continue
        table = np.array(cells, dtype=np.float64)  # table[s, v]: seed s, volume v (matched by sample id)
        per_seed = table.mean(axis=1)
        out[key] = {
            "mean": float(per_seed.mean()),
            "std_over_seeds": float(per_seed.std(ddof=1)) if len(runs) > 1 else None,
            "std_over_volumes": float(table.mean(axis=0).std()),
            "n_seeds": len(runs),
            "n_volumes": len(ids),
        }
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=AGGREGATE_RTOL, abs_tol=1e-12)


def check_entry(entry: dict[str, Any], *, where: str = "submission", root: Path | None = None,
                use_store: bool = True) -> None:
    """The checks beyond the schema: registry, consistency, recomputed aggregates, data hash.

    Parameters
    ----------
    entry : dict
        A schema-valid submission.
    where : str
        Prefix of error messages (the file name).
    root : Path, optional
        Dataset cache for the hash check.
    use_store : bool
        Whether the local store may vouch for the dataset hash.

    Raises
    ------
    InputError
        Naming the field at fault.
    """
    spec = _resolve(entry, where)
    prov = entry["provenance"]
    for key in ("dataset", "profile", "split", "evaluator_version", "seeds"):
        if prov[key] != entry[key]:
            raise InputError(f"{where}: field provenance.{key}", f"is {prov[key]!r}",
                             f"expected {entry[key]!r} like the entry's {key}")
    seeds = [run["seed"] for run in entry["runs"]]
    if seeds != entry["seeds"]:
        raise InputError(f"{where}: field runs", f"has seeds {seeds}", f"expected one run per seed {entry['seeds']}")
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
        for i, run in enumerate(entry["runs"]):
            for j, record in enumerate(run["records"]):
                if not _is_number(record.get(key)):
                    raise InputError(f"{where}: field runs[{i}].records[{j}].{key}",
                                     f"is {record.get(key)!r}", "expected a number: it is aggregated in metrics")
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
    _check_dataset_hash(entry, spec, where, root=root, use_store=use_store)


def validate_entry(entry: Any, *, where: str = "submission", root: Path | None = None,
                   use_store: bool = True) -> dict[str, Any]:
    """Schema check, then :func:`check_entry`; returns ``entry`` when valid."""
    validate_schema(entry, where=where)
    check_entry(entry, where=where, root=root, use_store=use_store)
    return entry
