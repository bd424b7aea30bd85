"""A leaderboard entry built from result files: combined seeds, portable paths, names and ids."""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiax_bench.errors import InputError
from aiax_bench.jsonio import read_json
from aiax_bench.leaderboard.schema import SUBMISSION_SCHEMA_VERSION, protocol_split
from aiax_bench.results import Result, aggregate_runs

__all__ = ["build_entry", "check_name", "entry_id", "load_result", "normalise_paper", "portable_command"]


# Fields that must agree between result files combined into one entry.
_SAME_ACROSS_SEEDS = ("method", "task", "config", "dataset", "profile", "split", "annotated_slices", "train_splits",
                      "supervision")
_SAME_PROVENANCE = ("dataset_sha256", "recipe_sha256", "evaluator_version", "package_version", "git_commit", "budget")


def load_result(path: Path) -> Result:
    """Read one result file of ``aiax-bench evaluate`` (:class:`~aiax_bench.results.Result`)."""
    document = read_json(path)
    if not isinstance(document, dict):
        raise InputError(str(path), "is not a result document", "pass a result file of `aiax-bench evaluate`")
    return Result.from_dict(document, where=Path(path).name)


def _portable_path(value: str, base: Path) -> str:
    """An absolute path made relative to ``base``, or cut to its file name when outside it."""
    if not os.path.isabs(value):
        return value
    path = Path(value)
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.name


def _portable_value(value: str, base: Path) -> str:
    if ".py:" in value:  # path/to/file.py:ClassName
        file, _, cls = value.rpartition(":")
        return f"{_portable_path(file, base)}:{cls}"
    scheme = re.match(r"^(sqlite|file):(/*)(.*)$", value)
    if scheme and len(scheme.group(2)) >= 3:
        # sqlite:///rel.db is relative; sqlite:////abs/path.db is absolute.
        prefix, rest = f"{scheme.group(1)}:///", "/" * (len(scheme.group(2)) - 3) + scheme.group(3)
        return prefix + _portable_path(rest, base)
    return _portable_path(value, base)


def portable_command(command: str, *, base: Path) -> str:
    """``command`` with every absolute path made relative to ``base`` (or cut to its name).

    Committed entries must not carry local paths (``/home/...``, ``/tmp/...``).
    """
    try:
        tokens = shlex.split(command)
    except ValueError:
        tokens = command.split()
    out = []
    for token in tokens:
        if token.startswith("--") and "=" in token:
            option, _, value = token.partition("=")
            out.append(f"{option}={_portable_value(value, base)}")
        else:
            out.append(_portable_value(token, base))
    return shlex.join(out)


def _scrub(document: Any, roots: list[tuple[str, str]]) -> Any:
    """Replace local directory prefixes inside every string of ``document``."""
    if isinstance(document, dict):
        return {k: _scrub(v, roots) for k, v in document.items()}
    if isinstance(document, list):
        return [_scrub(v, roots) for v in document]
    if isinstance(document, str):
        for root, replacement in roots:
            document = document.replace(root, replacement)
    return document


def _local_roots(base: Path) -> list[tuple[str, str]]:
    # Longest first, so a work directory under the home directory becomes ".", not "~/...".
    roots = {str(base.resolve()) + "/": "", str(Path.home()) + "/": "~/",
             str(Path(tempfile.gettempdir()).resolve()) + "/": "<tmp>/"}
    return sorted(((k, v) for k, v in roots.items() if len(k) > 1), key=lambda kv: -len(kv[0]))


def _method_ref(method: str, command: str) -> str:
    """How to load the method again: the ``--method`` value of the command, if it named a file."""
    try:
        tokens = shlex.split(command)
    except ValueError:
        return method
    for i, token in enumerate(tokens):
        value = tokens[i + 1] if token == "--method" and i + 1 < len(tokens) else (
            token.partition("=")[2] if token.startswith("--method=") else None)
        if value and ".py:" in value:
            return value
    return method


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")


def check_name(name: str) -> str:
    """Refuse a display name that is empty, has control characters or could act as a path."""
    if not name or not name.strip():
        raise InputError("--name", "is empty", "give the entry a short title, e.g. 'U-Net base 16 (2.5D)'")
    # The file name is a slug of the name, so nothing could escape in fact; a name that reads like a path
    # out of submissions/ (absolute, home, '..', backslashes) is refused all the same, as the user asked.
    if (name.startswith(("/", "~")) or "\\" in name or any(part.strip() in ("..", ".") for part in name.split("/"))
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)):
        raise InputError("--name", f"{name!r} reads as a path (leading '/' or '~', '..', '\\') or has a control "
                         "character", "an entry name is a plain title; it becomes the file name under submissions/")
    if not _slug(name):
        raise InputError("--name", f"{name!r} has no letter or digit", "give the entry a title with letters")
    if len(name) > 100:
        raise InputError("--name", f"is {len(name)} characters long", "expected at most 100")
    return name


def entry_id(*, dataset: str, profile: str, split: str, name: str) -> str:
    """File name (without ``.json``) of an entry: ``<dataset>--<profile>--<split>--<name>``."""
    return "--".join(_slug(part) for part in (dataset, profile, split, check_name(name)))


def _url(value: str, option: str) -> str:
    if not re.fullmatch(r"https?://[^\s<>\"'`\\]+", value or ""):
        raise InputError(option, f"{value!r} is not an http(s) URL", "expected e.g. https://github.com/you/method")
    return value


def normalise_paper(value: str | None) -> str | None:
    """A paper reference as a URL: URLs as given, DOIs via doi.org, arXiv ids via arxiv.org."""
    if value is None:
        return None
    doi = re.fullmatch(r"(?:doi:)?(10\.\d{4,9}/[^\s<>\"'`\\]+)", value, flags=re.IGNORECASE)
    if doi:
        return f"https://doi.org/{doi.group(1)}"
    arxiv = re.fullmatch(r"(?:arxiv:)?(\d{4}\.\d{4,5}(?:v\d+)?)", value, flags=re.IGNORECASE)
    if arxiv:
        return f"https://arxiv.org/abs/{arxiv.group(1)}"
    return _url(value, "--paper")


def build_entry(results: Sequence[Result], *, name: str, authors: Sequence[str], code_url: str,
                paper: str | None = None, base: Path | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Combine results (one multi-seed result, or one per seed) into one leaderboard entry.

    Parameters
    ----------
    results : sequence of Result
        ``load_result(path)`` of each file.
    name, authors, code_url, paper
        What the board shows; ``paper`` may be a URL, a DOI or an arXiv id.
    base : Path, optional
        Directory that local paths in the recorded command are made relative
        to (the current directory by default).
    now : datetime, optional
        Submission time (for reproducible tests).

    Returns
    -------
    dict
        An entry (not yet checked against the registry: see ``validate_entry``), unverified.
    """
    if not results:
        raise InputError("RESULT", "is missing", "pass at least one result file of `aiax-bench evaluate`")
    name = check_name(name)
    authors = [a.strip() for a in authors if a and a.strip()]
    if not authors:
        raise InputError("--authors", "is empty", "list at least one author")
    base = base or Path.cwd()
    first = results[0]
    for i, result in enumerate(results[1:], start=2):
        for key in _SAME_ACROSS_SEEDS:
            if getattr(result, key) != getattr(first, key):
                raise InputError(f"result file {i}: field {key}", f"is {getattr(result, key)!r}",
                                 f"expected {getattr(first, key)!r} as in the first file: one entry is one method, "
                                 "config and protocol")
        for key in _SAME_PROVENANCE:
            if result.provenance.get(key) != first.provenance.get(key):
                raise InputError(f"result file {i}: field provenance.{key}", f"is {result.provenance.get(key)!r}",
                                 f"expected {first.provenance.get(key)!r}: combine seeds of one code and data "
                                 "version")
    runs = []
    for result in results:
        for run in result.runs:
            runs.append({"seed": run.seed, "created": _timestamp(run.created) or _timestamp(result.created),
                         "mlflow_run_id": run.mlflow_run_id,
                         "command": portable_command(run.command or result.provenance["command"], base=base),
                         "records": run.records, "efficiency": run.efficiency, "fit_summary": run.fit_summary})
    runs.sort(key=lambda r: r["seed"])
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise InputError("RESULT", f"repeat seeds {seeds}", "each seed may appear in one run only")
    prov = {k: v for k, v in first.provenance.items() if k != "seed"}
    command = portable_command(prov["command"], base=base)
    prov.update(dataset=first.dataset, profile=first.profile, split=first.split, seeds=seeds, command=command,
                supervision=first.supervision)
    efficiencies = [r["efficiency"] for r in runs]
    peaks = [e["peak_memory_mb"] for e in efficiencies if e.get("peak_memory_mb") is not None]
    doc = {"split": first.split, "annotated_slices": first.annotated_slices, "train_splits": first.train_splits}
    entry = {
        "submission_schema_version": SUBMISSION_SCHEMA_VERSION,
        "id": entry_id(dataset=first.dataset, profile=first.profile, split=protocol_split(doc), name=name),
        "name": name,
        "authors": authors,
        "code_url": _url(code_url, "--code-url"),
        "paper": normalise_paper(paper),
        "submitted": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "method": first.method,
        "method_ref": _portable_value(_method_ref(first.method, command), base),
        "task": first.task,
        "supervision": first.supervision,
        "config": first.config,
        "dataset": first.dataset,
        "profile": first.profile,
        "split": first.split,
        **({"annotated_slices": first.annotated_slices} if first.annotated_slices else {}),
        **({"train_splits": list(first.train_splits)} if first.train_splits else {}),
        "evaluator_version": prov["evaluator_version"],
        "seeds": seeds,
        "metrics": aggregate_runs(runs),
        "efficiency": {
            "train_seconds": round(sum(e["train_seconds"] for e in efficiencies) / len(runs), 3),
            "inference_seconds_per_volume": round(
                sum(e["inference_seconds_per_volume"] for e in efficiencies) / len(runs), 4),
            "parameters": max(e["parameters"] for e in efficiencies),
            "peak_memory_mb": max(peaks) if peaks else None,
            # Frame stacks: what the board divides the time per volume by, for seconds per 1,000 frames.
            **({"frames_per_volume": efficiencies[0]["frames_per_volume"]}
               if "frames_per_volume" in efficiencies[0] else {}),
        },
        "runs": runs,
        "provenance": prov,
        "verification": {"status": "unverified"},
    }
    return _scrub(entry, _local_roots(base))


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).isoformat(timespec="seconds")
    except ValueError:
        return None
