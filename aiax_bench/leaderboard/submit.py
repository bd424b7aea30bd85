"""From result files to leaderboard entries: ``aiax-bench submit``.

An entry is one JSON file under ``<board>/submissions/``. It is created
exclusively (a complete temporary file hard-linked to its final name), so
concurrent submissions never lose or corrupt one another, and an existing
entry is never overwritten.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiax_bench.errors import InputError, StoreError
from aiax_bench.leaderboard.schema import (
    SUBMISSION_SCHEMA_VERSION,
    aggregate_runs,
    protocol_split,
    validate_entry,
    validate_schema,
)

__all__ = [
    "DEFAULT_BOARD",
    "board_dir",
    "build_entry",
    "check_name",
    "dump_json",
    "entry_files",
    "entry_id",
    "entry_path",
    "find_entry",
    "load_entries",
    "load_entry",
    "load_result",
    "normalise_paper",
    "portable_command",
    "read_json",
    "runs_from_result",
    "submissions_dir",
    "submit",
    "write_new_file",
    "write_replacing",
]

#: The leaderboard folder, relative to the current directory (the repository root).
DEFAULT_BOARD = Path("leaderboard")

_EFFICIENCY = {
    "type": "object",
    "required": ["train_seconds", "inference_seconds_per_volume", "parameters", "peak_memory_mb"],
    "properties": {
        "train_seconds": {"type": "number", "minimum": 0},
        "inference_seconds_per_volume": {"type": "number", "minimum": 0},
        "parameters": {"type": "integer", "minimum": 0},
        "peak_memory_mb": {"type": ["number", "null"], "minimum": 0},
    },
}
_RECORDS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "object", "required": ["sample_id"], "properties": {"sample_id": {"type": "string"}}},
}

#: What a result file of ``aiax-bench evaluate`` must hold: one seed (``records``,
#: ``efficiency``, ``provenance.seed``) or several (``seeds`` and ``runs``).
RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["method", "task", "config", "dataset", "profile", "split", "provenance"],
    "properties": {
        "method": {"type": "string"},
        "task": {"type": "string"},
        "config": {"type": "object"},
        "dataset": {"type": "string"},
        "profile": {"type": "string"},
        "split": {"type": "string"},
        "annotated_slices": {"type": ["integer", "null"], "minimum": 1},
        "created": {"type": "string"},
        "metrics": {"type": "object"},
        "records": _RECORDS,
        "efficiency": _EFFICIENCY,
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["seed", "records", "efficiency"],
                "properties": {"seed": {"type": "integer", "minimum": 0}, "records": _RECORDS,
                               "efficiency": _EFFICIENCY, "created": {"type": "string"},
                               "mlflow_run_id": {"type": ["string", "null"]}, "metrics": {"type": "object"},
                               "command": {"type": "string"}},
            },
        },
        "provenance": {
            "type": "object",
            "required": ["dataset_sha256", "recipe_sha256", "dataset_source", "evaluator_version",
                         "package_version", "git_commit", "git_dirty", "command", "hardware"],
            "properties": {"seed": {"type": "integer", "minimum": 0}, "command": {"type": "string"},
                           "hardware": {"type": "object"}},
        },
    },
}

_RESULT_HINT = "pass a result file written by `aiax-bench evaluate`"
# Fields that must agree between result files combined into one entry.
_SAME_ACROSS_SEEDS = ("method", "task", "config", "dataset", "profile", "split", "annotated_slices")
_SAME_PROVENANCE = ("dataset_sha256", "recipe_sha256", "evaluator_version", "package_version", "git_commit")


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def read_json(path: Path, *, allow_nan: bool = False) -> Any:
    """Parse a JSON file; NaN and Infinity (not JSON, but what Python writes) only with ``allow_nan``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(path, f"cannot read file ({exc.strerror or exc})", "check the path") from None
    try:
        return json.loads(text) if allow_nan else json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InputError(str(path), f"is not valid JSON ({exc})", "expected a JSON document") from None


def _clean_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record as an entry keeps it: numbers, null for undefined (NaN) values, short text tags.

    Nested data (per-pore distributions) stays in the result file and MLflow:
    entries carry per-volume scalars only.
    """
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, bool) or isinstance(value, dict | list):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


def _check_means(metrics: dict[str, Any], records: list[dict[str, Any]], where: str) -> None:
    """A result's aggregate means must be those of its per-volume records (catches hand edits)."""
    for key, agg in metrics.items():
        values = [r.get(key) for r in records]
        # Only fully defined metrics can be checked (the evaluator leaves undefined volumes out of its mean).
        if (not isinstance(agg, dict) or not isinstance(agg.get("mean"), int | float) or not math.isfinite(agg["mean"])
                or any(isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) for v in values)):
            continue
        mean = math.fsum(values) / len(values)
        if not math.isclose(agg["mean"], mean, rel_tol=1e-9, abs_tol=1e-12):
            raise InputError(f"{where}: field metrics.{key}.mean", f"is {agg['mean']}",
                             f"expected {mean}, the mean of the per-volume records")


def runs_from_result(result: dict[str, Any], *, where: str = "result") -> list[dict[str, Any]]:
    """The per-seed runs of a result file, single-seed or multi-seed.

    Parameters
    ----------
    result : dict
        A parsed result file.
    where : str
        Prefix of error messages (the file name).

    Returns
    -------
    list of dict
        ``{seed, created, mlflow_run_id, records, efficiency[, command]}`` per seed.
    """
    validate_schema(result, where=where, schema=RESULT_SCHEMA, hint=_RESULT_HINT)
    if "runs" in result:
        runs = []
        for i, run in enumerate(result["runs"]):
            _check_means(run.get("metrics", {}), run["records"], f"{where}: runs[{i}]")
            runs.append({"seed": run["seed"], "created": run.get("created", result.get("created")),
                         "mlflow_run_id": run.get("mlflow_run_id"),
                         "records": [_clean_record(r) for r in run["records"]],
                         "efficiency": run["efficiency"],
                         **({"command": run["command"]} if "command" in run else {})})
        if "seeds" in result and sorted(result["seeds"]) != sorted(r["seed"] for r in runs):
            raise InputError(f"{where}: field seeds", f"is {result['seeds']}",
                             f"expected the seeds of its runs {[r['seed'] for r in runs]}")
        return runs
    for key in ("records", "efficiency"):
        if key not in result:
            raise InputError(f"{where}: field {key}", "is missing",
                             "a result has per-volume `records` and `efficiency` (one seed) or `runs` (several)")
    seed = result["provenance"].get("seed")
    if not isinstance(seed, int):
        raise InputError(f"{where}: field provenance.seed", "is missing", "a one-seed result records its seed")
    _check_means(result.get("metrics", {}), result["records"], where)
    return [{"seed": seed, "created": result.get("created"), "mlflow_run_id": result.get("mlflow_run_id"),
             "records": [_clean_record(r) for r in result["records"]], "efficiency": result["efficiency"]}]


def load_result(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read one result file: ``(document, runs)``."""
    document = read_json(path, allow_nan=True)  # Python's json writes undefined metrics as NaN
    return document, runs_from_result(document, where=Path(path).name)


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


def build_entry(results: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]], *, name: str,
                authors: Sequence[str], code_url: str, paper: str | None = None,
                base: Path | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Combine result files (one per seed, or one multi-seed file) into one leaderboard entry.

    Parameters
    ----------
    results : sequence of (dict, list)
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
        An entry (not yet checked against the registry: see ``validate_entry``).
    """
    if not results:
        raise InputError("RESULT", "is missing", "pass at least one result file of `aiax-bench evaluate`")
    name = check_name(name)
    authors = [a.strip() for a in authors if a and a.strip()]
    if not authors:
        raise InputError("--authors", "is empty", "list at least one author")
    base = base or Path.cwd()
    first, _ = results[0]
    for i, (doc, _) in enumerate(results[1:], start=2):
        for key in _SAME_ACROSS_SEEDS:
            if doc.get(key) != first.get(key):
                raise InputError(f"result file {i}: field {key}", f"is {doc.get(key)!r}",
                                 f"expected {first.get(key)!r} as in the first file: one entry is one method, "
                                 "config and protocol")
        for key in _SAME_PROVENANCE:
            if doc["provenance"].get(key) != first["provenance"].get(key):
                raise InputError(f"result file {i}: field provenance.{key}", f"is {doc['provenance'].get(key)!r}",
                                 f"expected {first['provenance'].get(key)!r}: combine seeds of one code and data "
                                 "version")
    runs = []
    for doc, doc_runs in results:
        for run in doc_runs:
            runs.append({**run, "command": run.get("command", doc["provenance"]["command"])})
    runs.sort(key=lambda r: r["seed"])
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise InputError("RESULT", f"repeat seeds {seeds}", "each seed may appear in one run only")
    prov = {k: v for k, v in first["provenance"].items() if k != "seed"}
    command = portable_command(prov["command"], base=base)
    prov.update(dataset=first["dataset"], profile=first["profile"], split=first["split"], seeds=seeds,
                command=command)
    for run in runs:
        run["command"] = portable_command(run["command"], base=base)
        run["created"] = _timestamp(run.get("created")) or _timestamp(first.get("created"))
    efficiencies = [r["efficiency"] for r in runs]
    peaks = [e["peak_memory_mb"] for e in efficiencies if e.get("peak_memory_mb") is not None]
    entry = {
        "submission_schema_version": SUBMISSION_SCHEMA_VERSION,
        "id": entry_id(dataset=first["dataset"], profile=first["profile"], split=protocol_split(first), name=name),
        "name": name,
        "authors": authors,
        "code_url": _url(code_url, "--code-url"),
        "paper": normalise_paper(paper),
        "submitted": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "method": first["method"],
        "method_ref": _portable_value(_method_ref(first["method"], command), base),
        "task": first["task"],
        "config": first["config"],
        "dataset": first["dataset"],
        "profile": first["profile"],
        "split": first["split"],
        **({"annotated_slices": first["annotated_slices"]} if first.get("annotated_slices") else {}),
        "evaluator_version": prov["evaluator_version"],
        "seeds": seeds,
        "metrics": aggregate_runs(runs),
        "efficiency": {
            "train_seconds": round(sum(e["train_seconds"] for e in efficiencies) / len(runs), 3),
            "inference_seconds_per_volume": round(
                sum(e["inference_seconds_per_volume"] for e in efficiencies) / len(runs), 4),
            "parameters": max(e["parameters"] for e in efficiencies),
            "peak_memory_mb": max(peaks) if peaks else None,
        },
        "runs": [{k: r[k] for k in ("seed", "created", "mlflow_run_id", "command", "records", "efficiency")}
                 for r in runs],
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


def board_dir(board: Path) -> Path:
    """The leaderboard folder, which must exist (so a typo never scatters boards around)."""
    if not Path(board).is_dir():
        raise StoreError(board, "is not a leaderboard folder",
                         "run from the repository root (it has leaderboard/) or pass --board DIR")
    return Path(board)


def submissions_dir(board: Path, *, create: bool = False) -> Path:
    """``<board>/submissions``, refusing one that (through a link) lies outside the board."""
    board = board_dir(board)
    folder = board / "submissions"
    if create:
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(folder, f"cannot create ({exc.strerror or exc})", "check the permissions") from None
    if folder.exists() and not folder.resolve().is_relative_to(board.resolve()):
        raise StoreError(folder, "points outside the leaderboard folder", "make submissions/ a plain folder")
    return folder


def entry_path(board: Path, entry_id_: str) -> Path:
    """Where entry ``entry_id_`` lives; refuses any id that would leave ``<board>/submissions``."""
    folder = submissions_dir(board, create=True)
    path = folder / f"{entry_id_}.json"
    if (not re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", entry_id_)
            or path.resolve().parent != folder.resolve()):
        raise InputError("entry name", f"{entry_id_!r} would leave {folder}",
                         "entry names are letters, digits, '.', '-' only")
    return path


def dump_json(document: Any) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


def _temp_copy(path: Path, data: bytes) -> str:
    """A complete, synced temporary file next to ``path`` (hidden, so board readers skip it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp's 0600 would make the checked-in file private
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(path.parent, f"cannot write ({exc.strerror or exc})", "check the permissions") from None
    return tmp


def write_new_file(path: Path, document: Any) -> Path:
    """Create ``path`` holding ``document`` as JSON, atomically, and only if it does not exist.

    The content goes to a temporary file first, which is then hard-linked to
    ``path``: the link fails if ``path`` exists (even as a dangling link), and
    readers see either no file or the complete one.
    """
    data = dump_json(document)
    tmp = _temp_copy(path, data)
    exists = StoreError(path, "an entry of that name exists already",
                        "entries are never overwritten: choose another --name")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise exists from None
    except OSError:
        # File systems without hard links: an exclusive create is still never an overwrite.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise exists from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_replacing(path: Path, data: bytes | str, *, expect: bytes | None = None) -> Path:
    """Replace ``path`` atomically; with ``expect``, only if it still holds exactly those bytes."""
    data = data.encode() if isinstance(data, str) else data
    tmp = _temp_copy(path, data)
    try:
        if expect is not None and path.read_bytes() != expect:
            raise StoreError(path, "changed while it was being processed", "run the command again")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def submit(results: Sequence[Path], *, name: str, authors: Sequence[str], code_url: str,
           paper: str | None = None, board: Path = DEFAULT_BOARD, base: Path | None = None) -> Path:
    """Turn result files into a new, validated entry under ``<board>/submissions``.

    Parameters
    ----------
    results : sequence of Path
        Result files of ``aiax-bench evaluate``: one multi-seed file, or one
        file per seed of the same method, config and data.
    name, authors, code_url, paper
        What the board shows.
    board : Path
        The leaderboard folder (``./leaderboard`` by default).
    base : Path, optional
        Where relative paths in the recorded command start (the current directory).

    Returns
    -------
    Path
        The new entry file.

    Raises
    ------
    InputError
        A result or option is invalid (the field is named).
    StoreError
        The entry exists already or cannot be written.
    """
    entry = build_entry([load_result(Path(p)) for p in results], name=name, authors=authors,
                        code_url=code_url, paper=paper, base=base)
    path = entry_path(board, entry["id"])
    validate_entry(entry, where=path.name)
    return write_new_file(path, entry)


def find_entry(board: Path, ref: str | Path) -> Path:
    """The entry file named by its id or its path, which must lie in ``<board>/submissions``."""
    folder = submissions_dir(board)
    candidate = Path(ref)
    path = candidate if candidate.suffix == ".json" else folder / f"{ref}.json"
    if not path.is_file():
        raise StoreError(path, "no such entry", f"entries are the files in {folder}")
    if path.resolve().parent != folder.resolve():
        raise InputError("ENTRY", f"{ref!s} is not in {folder}", "name an entry of this leaderboard")
    return path


def load_entry(path: Path, *, use_store: bool = False) -> dict[str, Any]:
    """One entry file, validated (schema, registry, aggregates) and matching its file name.

    Raises
    ------
    InputError
        Naming the file and the field at fault.
    """
    path = Path(path)
    entry = validate_entry(read_json(path), where=path.name, use_store=use_store)
    try:
        expected = entry_id(dataset=entry["dataset"], profile=entry["profile"], split=protocol_split(entry),
                            name=entry["name"])
    except InputError as exc:
        raise InputError(f"{path.name}: field name", exc.problem, exc.expected) from None
    if entry["id"] != expected or path.stem != expected:
        raise InputError(f"{path.name}: field id", f"is {entry['id']!r} in a file named {path.name!r}",
                         f"expected {expected!r} for both (dataset--profile--split--name)")
    return entry


def entry_files(board: Path) -> list[Path]:
    """The entry files of the board, skipping hidden ones (temporary files of writes in progress)."""
    folder = submissions_dir(board)
    if not folder.exists():
        return []
    return [p for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]


def load_entries(board: Path = DEFAULT_BOARD, *, use_store: bool = False
                 ) -> list[tuple[Path, dict[str, Any]]]:
    """Every entry of the board, validated, in file-name order.

    Raises
    ------
    InputError
        On the first invalid entry, naming the file and the field.
    """
    return [(path, load_entry(path, use_store=use_store)) for path in entry_files(board)]
