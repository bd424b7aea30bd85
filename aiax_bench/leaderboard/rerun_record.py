"""The re-run record of a verified entry, and the checks that tie an entry's verification block to it.

Pure checks on data already in the board folder: nothing here runs a method
(that is :mod:`aiax_bench.leaderboard.verify`), so the schema checks can use
them without importing the evaluation harness.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from aiax_bench.errors import InputError
from aiax_bench.evaluation.catalog import is_rankable
from aiax_bench.jsonio import read_json

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "VERIFICATIONS", "check_verification", "compare_entry", "compare_runs"]

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
