"""One sample of a dataset built at a given size: wall time and peak resident memory.

    python benchmarks/bench_build.py --dataset foam@2.0 --sizes 128 256 [--seed 101] \\
        [--output benchmarks/build-foam-2.0.json]

Each size builds a profile of one training sample (the recipe's phantom,
acquisition and every split, as ``datasets build`` does) in a fresh process,
whose peak resident memory (``ru_maxrss``) and wall time are recorded, with
the bytes of that sample's arrays: what a build held at once before it wrote
each array as soon as it was made. A full profile repeats the sample's work
for each of its samples, so its time is about the samples times this one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import copy, dataclasses, json, resource, sys, tempfile, time
from pathlib import Path
import zarr
from aiax_bench.data.build import build_store
from aiax_bench.data.registry import resolve
spec = resolve(sys.argv[1])
recipe = copy.deepcopy(spec.recipe)
recipe["profiles"]["one"] = {"size": int(sys.argv[2]),
                             "samples": {"train": [int(sys.argv[3])], "val": [], "test": [], "ood-test": []}}
spec = dataclasses.replace(spec, recipe=recipe)
with tempfile.TemporaryDirectory(dir=sys.argv[4] or None) as folder:
    start = time.perf_counter()
    attrs = build_store(spec, "one", Path(folder) / "one.zarr", quiet=True)
    seconds = time.perf_counter() - start
    group = zarr.open_group(str(Path(folder) / "one.zarr"), mode="r")
    sample = group["samples/train-000"]
    held = sum(a.nbytes for _, a in sample.arrays()) + sum(
        a.nbytes for _, s in sample["splits"].groups() for _, a in s.arrays())
print(json.dumps({"seconds": round(seconds, 1), "sample_array_mb": round(held / 2**20),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="foam@2.0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--workdir", default=None, help="where the temporary stores go (default: the system's)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        done = subprocess.run([sys.executable, "-c", CHILD, args.dataset, str(size), str(args.seed),
                               args.workdir or ""], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        row = {"size": size, **json.loads(done.stdout.strip().splitlines()[-1])}
        print(json.dumps(row), flush=True)
        rows.append(row)
    output = args.output or HERE / f"build-{args.dataset.replace('@', '-')}.json"
    output.write_text(json.dumps({
        "benchmark": "build", "dataset": args.dataset, "seed": args.seed, "runs": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
