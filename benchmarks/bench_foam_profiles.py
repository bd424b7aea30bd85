"""The foam of a recipe is one material at every profile: porosity and void sizes per volume size.

Generates the phantom of ``DATASET``'s recipe (test-sample parameters) at
each size for a few seeds and reports the sample porosity and the void-radius
statistics (µm) of the voids centred in the sample, with their spread over
seeds and the relative difference to the smallest size. Prints a table and
writes JSON.

Usage::

    python benchmarks/bench_foam_profiles.py --dataset foam@2.0 --sizes 64 128 256 512 --seeds 8 3 2 1 \\
        --output benchmarks/foam-profiles.json
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

STATS = ("porosity", "void_radius_mean_um", "void_radius_q10_um", "void_radius_q50_um", "void_radius_q90_um")


def main() -> None:
    from aiax_bench.data.build import _phantom_params
    from aiax_bench.data.registry import resolve
    from aiax_bench.sim.phantoms import make_phantom

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="foam@2.0")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--seeds", type=int, nargs="+", default=[8, 3, 2])
    parser.add_argument("--output", type=Path, default=Path("foam-profiles.json"))
    args = parser.parse_args()
    spec = resolve(args.dataset)
    rows = {}
    for size, n_seeds in zip(args.sizes, args.seeds, strict=True):
        values = {k: [] for k in STATS}
        started = time.perf_counter()
        for seed in range(1000, 1000 + n_seeds):
            generator, params = _phantom_params(spec.recipe, "test", size, seed)
            phantom = make_phantom(generator, **params)
            for k in STATS:
                values[k].append(float(phantom.params[k]))
        rows[str(size)] = {"seeds": n_seeds, "seconds_per_phantom": round((time.perf_counter() - started) / n_seeds, 2),
                           **{k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0}
                              for k, v in values.items()}}
    first = rows[str(args.sizes[0])]
    worst = max(abs(rows[s][k]["mean"] / first[k]["mean"] - 1) for s in rows for k in STATS)
    report = {"dataset": spec.ref, "recipe_sha256": spec.recipe_sha256, "sizes": rows,
              "largest_relative_difference_to_smallest": worst,
              "created": datetime.now(UTC).isoformat(timespec="seconds")}
    print("| size | seeds | " + " | ".join(STATS) + " | s / phantom |\n|---" * 1 + "|---" * (len(STATS) + 2) + "|")
    for size, row in rows.items():
        cells = " | ".join(f"{row[k]['mean']:.4g} ± {row[k]['std']:.2g}" for k in STATS)
        print(f"| {size}³ | {row['seeds']} | {cells} | {row['seconds_per_phantom']} |")
    print(f"largest relative difference to {args.sizes[0]}³: {worst:.1%}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
