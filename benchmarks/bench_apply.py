"""Peak memory and throughput of ``aiax-bench apply`` on a large TIFF stack.

    python benchmarks/bench_apply.py [--size 2048] [--slices 256] [--checkpoint DIR] [--workdir DIR]

Writes a synthetic uint16 multi-page TIFF (``--slices`` pages of ``--size``²:
discs of two grey levels with noise, as a lab scanner exports), then runs
``aiax-bench apply --match-intensity`` with a U-Net checkpoint (the foam@2.0
100proj U-Net, seed 0, trained or reused by ``aiax-bench train``) to a zarr
output, in a child process whose peak resident memory is read from
``getrusage``. The peer in the same run is reading the stack once, page by
page, with tifffile: the input-bound floor. Writes
``benchmarks/apply-<size>x<size>x<slices>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# The command in its own process, which reports its own peak resident memory (Linux: kB).
_MEASURED = """
import resource, sys
from aiax_bench.cli import main
code = main(sys.argv[1:])
print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def write_stack(path: Path, size: int, slices: int) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    body = np.hypot(yy, xx) < 0.45 * size
    centres = rng.uniform(-0.35 * size, 0.35 * size, (60, 2))
    radii = rng.uniform(0.01 * size, 0.04 * size, 60)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for z in range(slices):
            image = np.where(body, 30000.0, 3000.0)
            for (cy, cx), r in zip(centres, radii * (0.6 + 0.4 * np.cos(z / 9.0)), strict=True):
                box = (slice(max(0, int(cy + size / 2 - r)), int(cy + size / 2 + r) + 1),
                       slice(max(0, int(cx + size / 2 - r)), int(cx + size / 2 + r) + 1))
                hole = np.hypot(yy[box] - cy, xx[box] - cx) < r
                image[box][hole] = 3000.0
            image += rng.normal(0, 1500, image.shape)
            tif.write(np.clip(image, 0, 65535).astype(np.uint16), contiguous=True)


def read_floor(path: Path) -> float:
    import tifffile

    start = time.perf_counter()
    with tifffile.TiffFile(path) as tif:
        for page in tif.pages:
            page.asarray()
    return time.perf_counter() - start


def checkpoint_dir() -> str:
    done = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "train", "--method", "unet", "--dataset",
                           "foam@2.0", "--split", "100proj", "--seed", "0", "--config", "max_seconds=null"],
                          capture_output=True, text=True, check=True)
    return re.search(r"checkpoint: (\S+)", done.stdout).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-apply-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = workdir / "stack.tif"
    if not stack.exists():
        partial = stack.with_suffix(".partial")
        write_stack(partial, args.size, args.slices)
        partial.rename(stack)  # an interrupted run leaves no truncated stack to be reused
    checkpoint = args.checkpoint or checkpoint_dir()
    floor = read_floor(stack)
    output = workdir / "out.zarr"
    shutil.rmtree(output, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURED, "apply", "--checkpoint", checkpoint, "--input",
                           str(stack), "--output", str(output), "--match-intensity"], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    peak_kb = int(re.search(r"peak_rss_kb (\d+)", done.stdout).group(1))
    record = json.loads((workdir / "out.zarr.json").read_text())
    doc = {
        "volume": [args.slices, args.size, args.size], "input": "uint16 multi-page TIFF",
        "input_gb": round(stack.stat().st_size / 1e9, 2), "method": record["method"],
        "peak_rss_gb": round(peak_kb / 1e6, 2), "limit_gb": 4.0,
        "apply_seconds": record["seconds"], "wall_seconds": round(wall, 1),
        "slices_per_minute": record["slices_per_minute"],
        "peer": {"name": "tifffile, read every page once", "seconds": round(floor, 1),
                 "slices_per_minute": round(args.slices / floor * 60, 1)},
        "ratio_apply_to_read": round(record["seconds"] / floor, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "command": "python benchmarks/bench_apply.py " + f"--size {args.size} --slices {args.slices}",
    }
    (HERE / f"apply-{args.size}x{args.size}x{args.slices}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print("| volume | peak RSS (GB) | limit (GB) | apply s | slices/min | read-only s (tifffile) | apply / read |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.slices}×{args.size}² | {doc['peak_rss_gb']} | 4.0 | {record['seconds']:.0f} | "
          f"{record['slices_per_minute']} | {floor:.1f} | {doc['ratio_apply_to_read']} |")


if __name__ == "__main__":
    main()
