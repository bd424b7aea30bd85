"""``aiax-bench submit --verify``: re-run an entry's evaluation and compare the numbers.

The re-run is built from the entry's structured fields (method, config,
dataset, profile, split, seeds), never by executing the recorded command
string: a submission is data, and running text from it would run whatever
someone wrote there.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiax_bench.leaderboard.schema import protocol_split, validate_schema
from aiax_bench.leaderboard.submit import dump_json, find_entry, load_entry, write_replacing

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "compare_runs", "verify_entry"]

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


def _default_runner(request) -> dict[str, Any]:
    from aiax_bench.harness import run_evaluation

    return run_evaluation(request)


def verify_entry(ref: str | Path, *, board: Path, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 tracking_uri: str | None = None, runner: Callable[[Any], dict[str, Any]] | None = None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Re-evaluate an entry for each of its seeds and record whether the numbers match.

    An entry scored by another evaluator version is not re-run (its numbers
    cannot match by design): it is reported as ``stale`` and left unchanged,
    and the board flags it for re-scoring.

    Parameters
    ----------
    ref : str or Path
        Entry id, or the path of its file in ``<board>/submissions``.
    board : Path
        The leaderboard folder.
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

    path = find_entry(board, ref)
    raw = path.read_bytes()
    entry = load_entry(path, use_store=True)
    if entry["evaluator_version"] != EVALUATOR_VERSION:
        log(f"{entry['id']}: scored with evaluator {entry['evaluator_version']}, this code has {EVALUATOR_VERSION}; "
            "its numbers need re-scoring (evaluate again and submit a new entry), not verification")
        return {"status": "stale", "evaluator_version": entry["evaluator_version"]}
    runner = runner or _default_runner
    metrics = sorted(entry["metrics"])
    ok, max_diff, worst, last = True, 0.0, None, None
    with tempfile.TemporaryDirectory(prefix="aiax-verify-") as tmp:
        for recorded in entry["runs"]:
            log(f"{entry['id']}: re-running {entry['method_ref']} on {entry['dataset']}/{protocol_split(entry)} "
                f"({entry['profile']}), seed {recorded['seed']}")
            request = EvaluationRequest(method=entry["method_ref"], split=entry["split"], dataset=entry["dataset"],
                                        profile=entry["profile"], seed=recorded["seed"], config=entry["config"],
                                        tracking_uri=tracking_uri or f"sqlite:///{Path(tmp) / 'mlflow.db'}",
                                        output_dir=Path(tmp) / "results",
                                        annotated_slices=entry.get("annotated_slices"))
            last = runner(request)
            run_ok, diff, run_worst = compare_runs(recorded, last, metrics=metrics, rtol=rtol, atol=atol)
            ok, max_diff = ok and run_ok, max(max_diff, diff)
            worst = worst or run_worst
    prov = last["provenance"]
    verification = {
        "status": "verified" if ok else "mismatch",
        "checked": datetime.now(UTC).isoformat(timespec="seconds"),
        "evaluator_version": prov["evaluator_version"],
        "package_version": prov["package_version"],
        "git_commit": prov["git_commit"],
        "dataset_sha256": prov["dataset_sha256"],
        "max_abs_diff": max_diff if math.isfinite(max_diff) else None,
        "worst": worst,
        "rtol": rtol,
        "atol": atol,
        "hardware": prov.get("hardware", {}),
    }
    entry["verification"] = verification
    validate_schema(entry, where=path.name)
    # Only the verification block changes, and only if nobody changed the file meanwhile.
    write_replacing(path, dump_json(entry), expect=raw)
    log(f"{entry['id']}: {'verified' if ok else 'NOT reproduced'} (largest difference {max_diff:.3g}"
        f"{'' if ok else '; ' + str(worst)})")
    return verification
