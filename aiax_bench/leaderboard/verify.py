"""``aiax-bench submit --verify``: re-run an entry's evaluation and compare the numbers.

The re-run is built from the entry's structured fields (method, config,
dataset, profile, split, training protocol, seeds), never by executing the
recorded command string: a submission is data, and running text from it
would run whatever someone wrote there.
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
from aiax_bench.jsonio import dump_json, write_replacing
from aiax_bench.leaderboard.rerun_record import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    VERIFICATIONS,
    check_verification,
    compare_entry,
    compare_runs,
)

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "check_method_ref", "check_verification", "compare_runs",
           "verify_entry"]

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
    from aiax_bench.leaderboard.board import find_entry, load_entry
    from aiax_bench.leaderboard.schema import protocol_split, validate_schema
    from aiax_bench.methods import Budget
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
    budget = entry["provenance"].get("budget")  # a training cap the evaluation ran under
    reruns, last = [], None
    with tempfile.TemporaryDirectory(prefix="aiax-verify-") as tmp:
        for recorded in entry["runs"]:
            log(f"{entry['id']}: re-running {entry['method_ref']} on {entry['dataset']}/{protocol_split(entry)} "
                f"({entry['profile']}), seed {recorded['seed']}, training again")
            request = EvaluationRequest(method=method, split=entry["split"], dataset=entry["dataset"],
                                        profile=entry["profile"], seed=recorded["seed"], config=entry["config"],
                                        tracking_uri=tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                                        output_dir=Path(tmp) / "results",
                                        annotated_slices=entry.get("annotated_slices"),
                                        train_splits=entry.get("train_splits"), reuse_checkpoints=False,
                                        budget=Budget(**budget) if budget else None)
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
