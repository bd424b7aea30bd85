"""``aiax-bench submit --verify``: re-run an entry's evaluation and compare the numbers.

The re-run is built from the entry's structured fields (method, config,
dataset, profile, split, seeds), never by executing the recorded command
string: a submission is data, and running text from it would run whatever
someone wrote there.
"""

from __future__ import annotations

import hashlib
import math
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiax_bench.errors import InputError
from aiax_bench.jsonio import dump_json, read_json, write_replacing

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "check_method_ref", "check_verification", "compare_runs",
           "verify_entry"]

#: Where a verified entry's re-run records live, relative to the board folder.
VERIFICATIONS = "verifications"

#: Relative tolerance of a re-scored metric. Deterministic methods reproduce
#: exactly; trained ones vary in the last digits across CPUs and BLAS builds.
DEFAULT_RTOL = 1e-3
#: Absolute tolerance, for metrics near zero (MSE of a good method).
DEFAULT_ATOL = 1e-6


def compare_runs(recorded: dict[str, Any], rerun: dict[str, Any], *, metrics: list[str], rtol: float,
                 atol: float) -> tuple[bool, float, str | None]:
    """Compare one seed's recorded and re-run per-volume records.

    Returns
    -------
    (bool, float, str or None)
        Whether every metric of every volume agrees within ``atol + rtol·|recorded|``,
        the largest absolute difference, and a description of the worst disagreement.
    """
    new = {r["sample_id"]: r for r in rerun["records"]}
    ok, worst_diff, worst = True, 0.0, None
    for record in recorded["records"]:
        sid = record["sample_id"]
        for key in metrics:
            old = record[key]
            value = new.get(sid, {}).get(key)
            if value is None or not math.isfinite(value):
                return False, math.inf, f"seed {recorded['seed']}, {sid}: {key} missing from the re-run"
            diff = abs(value - old)
            if diff > worst_diff:
                worst_diff = diff
            if diff > atol + rtol * abs(old):
                if ok or worst is None:
                    worst = f"seed {recorded['seed']}, {sid}: {key} recorded {old:.6g}, re-run {value:.6g}"
                ok = False
    return ok, worst_diff, worst


def _rankable(metrics) -> list[str]:
    from aiax_bench.evaluation.catalog import is_rankable

    return sorted(k for k in metrics if is_rankable(k))


def compare_entry(entry: dict[str, Any], rerun_runs: list[dict[str, Any]], *, rtol: float,
                  atol: float) -> tuple[bool, float, str | None]:
    """Compare every recorded run of ``entry`` with the re-run of the same seed (see :func:`compare_runs`)."""
    by_seed = {run["seed"]: run for run in rerun_runs}
    metrics = _rankable(entry["metrics"])
    ok, max_diff, worst = True, 0.0, None
    for recorded in entry["runs"]:
        rerun = by_seed.get(recorded["seed"])
        if rerun is None:
            return False, math.inf, f"seed {recorded['seed']} was not re-run"
        run_ok, diff, run_worst = compare_runs(recorded, rerun, metrics=metrics, rtol=rtol, atol=atol)
        ok, max_diff, worst = ok and run_ok, max(max_diff, diff), worst or run_worst
    return ok, max_diff, worst


def check_method_ref(method_ref: str, *, repo_root: Path) -> str:
    """The method an entry names, if verification may run it: a registered method, or a file in the checkout.

    Raises
    ------
    InputError
        For a file outside ``repo_root`` (after resolving links and ``..``), a
        missing file, or a name no entry point registers.
    """
    from aiax_bench.methods import available_methods

    if ".py:" not in method_ref:
        if method_ref not in available_methods():
            raise InputError("method_ref", f"{method_ref!r} is not a registered method",
                             "verification runs registered methods or files inside the repository checkout")
        return method_ref
    file, _, cls = method_ref.rpartition(":")
    root = repo_root.resolve()
    path = (root / file).resolve()
    if not path.is_relative_to(root) or not path.is_file() or Path(file).is_absolute():
        raise InputError("method_ref", f"{method_ref!r} is not a file inside the repository checkout {root.name}/",
                         "verification runs registered methods or files inside the repository checkout only")
    return f"{path}:{cls}"


def _default_runner(request) -> dict[str, Any]:
    from aiax_bench.harness import run_evaluation

    return run_evaluation(request, write=False)


def verify_entry(ref: str | Path, *, board: Path, yes_run_code: bool = False,
                 confirm: Callable[[str], bool] | None = None, rtol: float = DEFAULT_RTOL,
                 atol: float = DEFAULT_ATOL, tracking_uri: str | None = None,
                 runner: Callable[[Any], dict[str, Any]] | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Re-run an entry for each of its seeds (training again) and record whether the numbers match.

    Only ``verify_entry`` writes a ``verified`` (or ``mismatch``) status. It
    stores the re-run's per-volume records in ``<board>/verifications/<id>.json``
    and, in the entry, the verifying commit (a clean checkout is required), the
    largest difference and that file's sha256; ``leaderboard --check``
    recomputes the comparison from them, so a status written by hand is refused.

    Parameters
    ----------
    ref : str or Path
        Entry id, or the path of its file in ``<board>/submissions``.
    board : Path
        The leaderboard folder; the repository checkout is its parent.
    yes_run_code : bool
        Consent to run the entry's code. Without it ``confirm`` is asked, and
        without ``confirm`` nothing runs.
    confirm : callable, optional
        ``confirm(question) -> bool``, e.g. an interactive prompt.
    rtol, atol : float
        Tolerance of every per-volume metric.
    tracking_uri : str, optional
        MLflow store of the re-runs (a temporary one, discarded, by default).
    runner : callable, optional
        ``run_evaluation`` or a stand-in with its signature (tests).
    log : callable
        Progress messages.

    Returns
    -------
    dict
        The verification block written into the entry, or ``{"status": "stale", ...}``.
    """
    from aiax_bench.evaluation.evaluator import EVALUATOR_VERSION
    from aiax_bench.harness import EvaluationRequest
    from aiax_bench.leaderboard.schema import protocol_split, validate_schema
    from aiax_bench.leaderboard.submit import find_entry, load_entry
    from aiax_bench.provenance import code_provenance

    path = find_entry(board, ref)
    raw = path.read_bytes()
    entry = load_entry(path)
    if entry["evaluator_version"] != EVALUATOR_VERSION:
        log(f"{entry['id']}: scored with evaluator {entry['evaluator_version']}, this code has {EVALUATOR_VERSION}; "
            "its numbers need re-scoring (evaluate again and submit a new entry), not verification")
        return {"status": "stale", "evaluator_version": entry["evaluator_version"]}
    method = check_method_ref(entry["method_ref"], repo_root=Path(board).resolve().parent)
    question = (f"verify {entry['id']}: this runs {entry['method_ref']!r} ({len(entry['runs'])} seed(s)) "
                "on this machine. Run it?")
    if not yes_run_code and not (confirm is not None and confirm(question)):
        raise InputError("--yes-run-code", "was not given",
                         "verification runs the entry's code: pass --yes-run-code (or confirm at the prompt)")
    git = code_provenance()
    if git["git_dirty"] is not False or not re.fullmatch(r"[0-9a-f]{40}", str(git["git_commit"])):
        raise InputError("verifying code", f"is at commit {git['git_commit']} with uncommitted changes "
                         f"({git['git_dirty']})", "verify from a clean checkout: a verification names the commit "
                         "that re-ran the entry")
    runner = runner or _default_runner
    reruns, last = [], None
    with tempfile.TemporaryDirectory(prefix="aiax-verify-") as tmp:
        for recorded in entry["runs"]:
            log(f"{entry['id']}: re-running {entry['method_ref']} on {entry['dataset']}/{protocol_split(entry)} "
                f"({entry['profile']}), seed {recorded['seed']}, training again")
            request = EvaluationRequest(method=method, split=entry["split"], dataset=entry["dataset"],
                                        profile=entry["profile"], seed=recorded["seed"], config=entry["config"],
                                        tracking_uri=tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                                        output_dir=Path(tmp) / "results",
                                        annotated_slices=entry.get("annotated_slices"), reuse_checkpoints=False)
            last = runner(request)
            for run in last["runs"]:
                reruns.append({"seed": run["seed"], "mlflow_run_id": run.get("mlflow_run_id"),
                               "records": run["records"]})
    ok, max_diff, worst = compare_entry(entry, reruns, rtol=rtol, atol=atol)
    prov = last["provenance"]
    record = {"entry_id": entry["id"], "git_commit": git["git_commit"], "runs": reruns}
    record_path = Path(board) / VERIFICATIONS / f"{entry['id']}.json"
    record_path.parent.mkdir(parents=True, exist_ok=True)
    data = dump_json(record)
    write_replacing(record_path, data, expect=record_path.read_bytes() if record_path.exists() else None)
    verification = {
        "status": "verified" if ok else "mismatch",
        "checked": datetime.now(UTC).isoformat(timespec="seconds"),
        "evaluator_version": prov["evaluator_version"],
        "package_version": prov["package_version"],
        "git_commit": git["git_commit"],
        "git_dirty": False,
        "dataset_sha256": prov["dataset_sha256"],
        "max_abs_diff": max_diff if math.isfinite(max_diff) else 1e308,
        "worst": worst,
        "rtol": rtol,
        "atol": atol,
        "rerun_file": f"{VERIFICATIONS}/{record_path.name}",
        "rerun_sha256": hashlib.sha256(data).hexdigest(),
        "hardware": prov.get("hardware", {}),
    }
    entry["verification"] = verification
    validate_schema(entry, where=path.name)
    # Only the verification block changes, and only if nobody changed the file meanwhile.
    write_replacing(path, dump_json(entry), expect=raw)
    log(f"{entry['id']}: {'verified' if ok else 'NOT reproduced'} (largest difference {max_diff:.3g}"
        f"{'' if ok else '; ' + str(worst)})")
    return verification


def check_verification(entry: dict[str, Any], *, where: str, board: Path | None) -> None:
    """Refuse a ``verified`` or ``mismatch`` status that no re-run on record supports.

    The re-run record (``verification.rerun_file``) must exist in the board,
    have the recorded sha256, hold a run for every seed, and, compared with the
    entry's records, give the recorded largest difference and status.
    """
    check = entry["verification"]
    if check["status"] == "unverified":
        return
    field = f"{where}: field verification"
    if check["evaluator_version"] != entry["evaluator_version"]:
        raise InputError(f"{field}.evaluator_version", f"is {check['evaluator_version']!r}",
                         f"expected {entry['evaluator_version']!r}, the entry's")
    if check["dataset_sha256"] != entry["provenance"]["dataset_sha256"]:
        raise InputError(f"{field}.dataset_sha256", f"is {check['dataset_sha256'][:12]}…",
                         "expected the entry's dataset hash")
    if board is None:
        raise InputError(f"{field}.status", f"is {check['status']!r} with no board to find its re-run in",
                         "check the entry inside its leaderboard folder")
    record_path = Path(board) / check["rerun_file"]
    try:
        data = record_path.read_bytes()
    except OSError:
        raise InputError(f"{field}.rerun_file", f"names {check['rerun_file']}, which does not exist",
                         "a verified status is written by `aiax-bench submit --verify` only") from None
    if hashlib.sha256(data).hexdigest() != check["rerun_sha256"]:
        raise InputError(f"{field}.rerun_sha256", "does not match the re-run record",
                         "verify the entry again with `aiax-bench submit --verify`")
    record = read_json(record_path)
    if not isinstance(record, dict) or record.get("entry_id") != entry["id"] or not isinstance(
            record.get("runs"), list) or record.get("git_commit") != check["git_commit"]:
        raise InputError(f"{field}.rerun_file", "is not the re-run record of this entry and commit",
                         "verify the entry again with `aiax-bench submit --verify`")
    ok, max_diff, _ = compare_entry(entry, record["runs"], rtol=check["rtol"], atol=check["atol"])
    recorded = check["max_abs_diff"]
    if not (math.isclose(recorded, max_diff, rel_tol=1e-9, abs_tol=1e-15)
            or (not math.isfinite(max_diff) and recorded >= 1e308)):
        raise InputError(f"{field}.max_abs_diff", f"is {recorded}",
                         f"expected {max_diff}, recomputed from the re-run record")
    if check["status"] != ("verified" if ok else "mismatch"):
        raise InputError(f"{field}.status", f"is {check['status']!r}",
                         f"expected {'verified' if ok else 'mismatch'}: the re-run record "
                         f"{'agrees' if ok else 'disagrees'} with the entry")
