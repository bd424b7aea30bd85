"""The DCT moving median against numpy.median per window, on the same chunk, and the users' full stack projected.

    python benchmarks/bench_moving_median.py --output benchmarks/moving-median.json

A chunk of ``--frames`` frames of ``--pixels`` x ``--pixels`` (Poisson counts around a smooth
background), window ``--window`` (the users' w = 500), refresh ``--refresh`` (2s + 1 with s = 25). Both
give the same numbers (checked). The projection to the users' 2000 x 2000 x 7,200-frame stack scales
the compiled kernel's time per pixel and block on one thread to its 4·10⁶ pixels x 142 blocks, and
divides by the cores at the parallel efficiency measured here from 1 thread to all;
reading the stack is not included. The users' reported figure is 15 minutes on 16 cores (Python) for the
preprocessing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from aiax_bench.dct import moving_median, moving_median_reference, refresh_windows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1020)
    parser.add_argument("--pixels", type=int, default=64)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--refresh", type=int, default=51)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/moving-median.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    background = 100 + 20 * np.sin(np.linspace(0, 3, args.frames))[:, None, None]
    stack = rng.poisson(background * np.ones((1, args.pixels, args.pixels))).astype(np.float32)
    blocks = refresh_windows(args.frames, window=args.window, refresh=args.refresh).shape[0]
    moving_median(stack[:, :2, :2], window=args.window, refresh=args.refresh, threads=1)  # compile (cached)

    def timed(fn, **kw):
        start = time.perf_counter()
        out = fn(stack, window=args.window, refresh=args.refresh, **kw)
        return out, time.perf_counter() - start

    reference, reference_s = timed(moving_median_reference)
    one, one_s = timed(moving_median, threads=1)
    cores = os.cpu_count() or 1
    every, every_s = timed(moving_median, threads=cores)
    assert one.tobytes() == reference.tobytes() == every.tobytes()
    per_selection = one_s / (args.pixels**2 * blocks)
    scaling = one_s / every_s
    users = 2000 * 2000 * int(np.ceil(7200 / args.refresh))
    doc = {
        "benchmark": "moving median (DCT)", "frames": args.frames, "pixels": [args.pixels, args.pixels],
        "window": args.window, "refresh": args.refresh, "blocks": blocks, "identical": True,
        "numpy_median_s": round(reference_s, 3), "compiled_1_thread_s": round(one_s, 3),
        f"compiled_{cores}_threads_s": round(every_s, 3),
        "speedup_vs_numpy_1_thread": round(reference_s / one_s, 1),
        f"speedup_vs_numpy_{cores}_threads": round(reference_s / every_s, 1),
        "thread_scaling_1_to_all": round(scaling, 2),
        "seconds_per_pixel_block_1_thread": per_selection,
        # Cores k at the parallel efficiency measured here (speed-up from 1 to all threads over their count).
        "parallel_efficiency": round(scaling / cores, 2),
        "projected_users_stack_minutes": {f"{k} cores": round(users * per_selection / (k * scaling / cores) / 60, 1)
                                          for k in (2, 16)},
        "users_reported_minutes_16_cores": 15,
        "machine": {"platform": platform.platform(), "cpus": cores, "load_average": list(os.getloadavg())},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
