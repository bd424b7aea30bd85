"""What an evaluation process pays once: its imports, and its first call's excess over the next ones.

    python benchmarks/bench_first_call.py --sizes 64 128 --before 7507533^ \\
        --output benchmarks/first-call.json

Each process starts from nothing, imports the Evaluator, makes one synthetic pair
(:class:`aiax_bench.evaluation.synthetic.SyntheticFoam`, seed 0) and scores it with
:func:`aiax_bench.evaluation.evaluator.evaluate_arrays` ``--calls`` times in a row (truth, labels and
the sample mask eroded by 2: every metric of the full suite). The one-off cost is the first call's time
less the fastest later call's: what loading libraries and compiled kernels adds to a process that
scores one volume, as a leaderboard or study worker does. ``--processes`` fresh processes per size and
code, their median kept; with ``--before COMMIT`` the same run repeats it with that commit's code (a
temporary worktree), process after process alternating between the two codes, after one unrecorded process
of each (a fresh worktree compiles its numba kernels into its cache then).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CHILD = """
import json, sys, time
started = time.perf_counter()
from aiax_bench.evaluation.evaluator import evaluate_arrays
from aiax_bench.evaluation.synthetic import SyntheticFoam
imported = time.perf_counter() - started
size, calls = int(sys.argv[1]), int(sys.argv[2])
foam = SyntheticFoam(size, seed=0)
method, reference = foam.pair()
options = dict(truth=foam.truth(), labels=foam.labels(), mask=foam.mask(), mask_erosion=2, data_range=4.2,
               voxel_size_um=20.0)
seconds = []
for _ in range(calls):
    start = time.perf_counter()
    record = evaluate_arrays(method, reference, **options)
    seconds.append(time.perf_counter() - start)
import aiax_bench
print(json.dumps({"import_s": imported, "calls_s": seconds, "keys": len([k for k in record if k != "distributions"]),
                  "imported_from": str(__import__("pathlib").Path(aiax_bench.__file__).resolve().parent.parent),
                  "modules": sorted(m for m in ("scipy.stats", "porespy", "numba", "skimage") if m in sys.modules)}))
"""


def _process(size: int, calls: int, source: Path | None) -> dict:
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", CHILD, str(size), str(calls)], capture_output=True, text=True,
                          env=env, cwd=str(source or HERE.parent))
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    row = json.loads(done.stdout.strip().splitlines()[-1])
    imported_from = Path(row.pop("imported_from"))
    if source is not None and imported_from != source.resolve():  # else both rows would time today's code
        raise SystemExit(f"the earlier commit's run imported aiax_bench from {imported_from}, not its worktree")
    return row


def _summary(code: str, size: int, runs: list[dict]) -> dict:
    first = statistics.median(r["calls_s"][0] for r in runs)
    later = statistics.median(min(r["calls_s"][1:]) for r in runs)
    return {"code": code, "size": size, "processes": len(runs),
            "import_s": round(statistics.median(r["import_s"] for r in runs), 3),
            "first_call_s": round(first, 3), "later_call_s": round(later, 3),
            "one_off_s": round(statistics.median(r["calls_s"][0] - min(r["calls_s"][1:]) for r in runs), 3),
            "keys": runs[0]["keys"], "modules_loaded": runs[0]["modules"],
            "runs": [{"import_s": round(r["import_s"], 3), "calls_s": [round(s, 3) for s in r["calls_s"]]}
                     for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--calls", type=int, default=3, help="evaluations per process (at least 2)")
    parser.add_argument("--processes", type=int, default=3, help="fresh processes per size and code")
    parser.add_argument("--before", default=None, help="also run this git commit's code, alternating")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    if args.calls < 2 or args.processes < 1:
        parser.error("--calls must be at least 2 and --processes at least 1")
    from contextlib import nullcontext

    from _worktree import commit_tree

    from aiax_bench.provenance import code_provenance

    code = code_provenance()["git_commit"][:7]
    rows = []
    with commit_tree(args.before) if args.before else nullcontext() as tree:
        codes = [("today", None)] + ([(args.before, tree)] if args.before else [])
        for _, source in codes:  # unrecorded: a fresh worktree compiles its numba kernels into its cache first
            _process(min(args.sizes), 2, source)
        for size in args.sizes:
            runs: dict[str, list[dict]] = {label: [] for label, _ in codes}
            for _ in range(args.processes):
                for label, source in codes:
                    runs[label].append(_process(size, args.calls, source))
            for label, _ in codes:
                rows.append(_summary(label, size, runs[label]))
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "runs"}), flush=True)
    args.output.write_text(json.dumps({
        "benchmark": "first-call", "runs": rows, "code": code,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
