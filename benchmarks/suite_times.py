"""The test suite's wall time and its slowest tests, from pytest's own ``--durations`` report.

    python benchmarks/suite_times.py --label "after" --output benchmarks/suite-times.json
    python benchmarks/suite_times.py --log pytest.log --commit abc1234 --label "before" --output ...

Runs ``python -m pytest -q --durations=N`` (the README's test command, with the slowest tests listed) in this
checkout, or reads the output of such a run from ``--log``, and adds one run to ``--output``: the total wall
seconds pytest printed, the counts of passed and skipped tests, and each of the slowest phases (setup, call or
teardown of one test). The suite's goal is under 10 minutes on 2 cores; what else the machine ran meanwhile is
not in pytest's output: say it with ``--note``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUMMARY = re.compile(r"=*\s*(?P<counts>[\w ,]+) in (?P<seconds>[\d.]+)s")
DURATION = re.compile(r"^\s*(?P<seconds>[\d.]+)s (?P<phase>setup|call|teardown)\s+(?P<test>\S+)")


def parse(text: str) -> dict:
    """Total seconds, counts and slowest phases of one pytest output."""
    summaries = [m for m in (SUMMARY.search(line) for line in text.splitlines()) if m and "passed" in m["counts"]]
    if not summaries:
        raise SystemExit("suite_times: no pytest summary line ('N passed ... in S s') in the output")
    last = summaries[-1]
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", last["counts"])}
    slowest = [{"seconds": float(m["seconds"]), "phase": m["phase"], "test": m["test"]}
               for m in (DURATION.match(line) for line in text.splitlines()) if m]
    return {"seconds": float(last["seconds"]), "counts": counts, "slowest": slowest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=None, help="read this pytest output instead of running the suite")
    parser.add_argument("--commit", default=None, help="with --log: the commit the suite ran at")
    parser.add_argument("--durations", type=int, default=30, help="slowest phases to list")
    parser.add_argument("--label", required=True, help="what this run is (e.g. before or after a change)")
    parser.add_argument("--note", default="", help="the conditions of the run (other jobs, services started)")
    parser.add_argument("--output", type=Path, default=HERE / "suite-times.json")
    args = parser.parse_args()
    if args.log is not None:
        text, commit = args.log.read_text(), args.commit or "unknown"
    else:
        command = [sys.executable, "-m", "pytest", "-q", f"--durations={args.durations}"]
        done = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True)
        text = done.stdout + done.stderr
        if done.returncode != 0:
            raise SystemExit(text[-3000:])
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent, capture_output=True,
                                text=True).stdout.strip() or "unknown"
    run = {"label": args.label, "commit": commit, **parse(text), "note": args.note,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "date": time.strftime("%Y-%m-%d")}
    run["slowest"] = run["slowest"][:args.durations]
    record = json.loads(args.output.read_text()) if args.output.exists() else {"benchmark": "suite-times", "runs": []}
    record["runs"].append(run)
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{args.label}: {run['seconds']:.1f} s, {run['counts']}")


if __name__ == "__main__":
    main()
