"""Time and peak memory of one local study with 1 and with 2 workers.

    python benchmarks/bench_study.py [--profile tiny] [--methods fbp-ramp msdnet] \\
        [--splits 50proj 100proj] [--seeds 0 1] [--config msdnet:max_steps=300] \\
        [--output benchmarks/study-local.json]

Each worker count runs the same study from scratch (a new study directory,
a fresh `aiax-bench study` process) on the local cluster. Peak memory is the
largest sum of the resident memory of the study process and all its
children (the dask scheduler's and the workers' processes), sampled every
0.2 s; the dataset is built beforehand, so neither run pays for it, and
each run has a data directory of its own without trained checkpoints, so
each trains its networks. The
aggregates of the two runs must be equal: the worker count changes the
schedule, not the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run(workers: int, args: argparse.Namespace, folder: Path) -> dict:
    from aiax_bench.paths import ENV_DATA, data_dir

    out = folder / f"workers-{workers}"
    # A data directory of its own, holding the dataset but no trained checkpoint: each run trains.
    data = folder / f"data-{workers}"
    data.mkdir()
    for entry in data_dir().iterdir():
        if entry.name != "checkpoints":
            (data / entry.name).symlink_to(entry)
    env = {**os.environ, ENV_DATA: str(data)}
    command = [sys.executable, "-m", "aiax_bench.cli", "study", "--profile", args.profile, "--out", str(out),
               "--workers", str(workers), "--splits", *args.splits, "--seeds", *map(str, args.seeds)]
    for method in args.methods:
        command += ["--method", method]
    if args.config:
        command += ["--config", *args.config]
    load_before = os.getloadavg()
    start = time.perf_counter()
    log = folder / f"workers-{workers}.log"
    with log.open("w") as sink:  # a file, not a pipe nobody reads until the end: that would block the workers
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=folder, env=env)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, tree_rss_mb(proc.pid))
            time.sleep(0.2)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(log.read_text()[-3000:])
    manifest = json.loads((out / "study.json").read_text())
    table = (out / "report" / "study-table.csv").read_text()
    return {"workers": workers, "seconds": round(seconds, 1), "peak_rss_mb": round(peak),
            "evaluations": len(manifest["tasks"]), "seconds_per_task": manifest.get("seconds_per_task", {}),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()], "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--methods", nargs="+", default=["fbp-ramp", "msdnet"])
    parser.add_argument("--splits", nargs="+", default=["50proj", "100proj"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--config", nargs="*", default=["msdnet:max_steps=300"])
    parser.add_argument("--output", type=Path, default=HERE / "study-local.json")
    args = parser.parse_args()
    from aiax_bench.data.loader import load

    load("foam", profile=args.profile)  # built once, outside the timed runs
    rows = []
    with tempfile.TemporaryDirectory(prefix="aiax-study-bench-") as folder:
        for workers in (1, 2):
            row = run(workers, args, Path(folder))
            print(json.dumps({k: v for k, v in row.items() if k != "table"}), flush=True)
            rows.append(row)
    same = rows[0]["table"] == rows[1]["table"]
    for row in rows:
        row.pop("table")
    args.output.write_text(json.dumps({
        "benchmark": "study-local", "profile": args.profile, "methods": args.methods, "splits": args.splits,
        "seeds": args.seeds, "config": args.config, "runs": rows, "tables_equal": same,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
    print(f"tables equal: {same}; JSON written to {args.output}")


if __name__ == "__main__":
    main()
