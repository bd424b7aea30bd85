"""Void packing of foam@1.0: today's packer against the one of an earlier commit, at growing sizes.

Both get the arguments ``foam_phantom`` gives them for the foam@1.0 recipe
(largest void 0.06 of the edge, smallest 1.5 voxels, walls of 2 voxels,
cylinder radius 0.45 of the edge, porosity 0.35) and the same seed; the
voids they place must be identical. The earlier packer (``--before``, loaded
from git) lowers the room of every candidate at every placement; sizes above
``--before-max`` are timed for today's packer only.

Usage::

    python benchmarks/bench_packing.py --before 7b50d56 --output benchmarks/packing.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def arguments(size: int) -> dict:
    cylinder_radius = 0.45
    return {"height": size, "radius": cylinder_radius * size, "porosity": 0.35, "max_void_radius": 0.06 * size,
            "min_void_radius": 1.5, "min_wall": 2.0, "n_candidates": int(0.5 * size**3 * cylinder_radius**2)}


def _load(path: Path):
    spec = importlib.util.spec_from_file_location("packing_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    from aiax_bench.provenance import hardware
    from aiax_bench.sim.phantoms._common import _pack_voids

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 192, 256, 384, 512])
    parser.add_argument("--before", default=None, help="git commit whose packer is the peer")
    parser.add_argument("--before-max", type=int, default=256, help="largest size the peer is timed at")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--output", type=Path, default=Path("packing.json"))
    args = parser.parse_args(argv)
    before = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.before:
            source = Path(tmp) / "common_before.py"
            source.write_text(subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{args.before}:aiax_bench/sim/phantoms/_common.py"],
                capture_output=True, text=True, check=True).stdout)
            before = _load(source)
        rows = []
        for size in args.sizes:
            t0 = time.perf_counter()
            voids = _pack_voids(np.random.default_rng(args.seed), **arguments(size))
            row = {"size": size, "candidates": arguments(size)["n_candidates"], "voids": int(voids.shape[0]),
                   "seconds": round(time.perf_counter() - t0, 2)}
            if before is not None and size <= args.before_max:
                t0 = time.perf_counter()
                theirs = before._pack_voids(np.random.default_rng(args.seed), **arguments(size))
                row["before_seconds"] = round(time.perf_counter() - t0, 2)
                row["speedup"] = round(row["before_seconds"] / row["seconds"], 1)
                row["identical"] = bool(np.array_equal(voids, theirs))
            rows.append(row)
            print(row, file=sys.stderr)
    for key in ("seconds", "before_seconds"):
        timed = [r for r in rows if key in r]
        if len(timed) >= 2:  # growth exponent in the edge N between the smallest and largest size timed
            a, b = timed[0], timed[-1]
            rows[-1 if key == "seconds" else len(timed) - 1][f"{key}_exponent"] = round(
                math.log(b[key] / a[key]) / math.log(b["size"] / a["size"]), 2)
    report = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "before": args.before,
              "hardware": hardware(), "rows": rows}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    columns = ["size", "candidates", "voids", "seconds", "before_seconds", "speedup", "identical"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
