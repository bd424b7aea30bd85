"""Cone-beam forward projection and FDK on the CPU: the compiled loops against the tensor path, same run.

    python benchmarks/bench_cone.py --output benchmarks/cone-cpu.json

A cube of ``--size``³ voxels in a circular cone-beam scan of ``--angles`` source positions over a full
turn (source at 6 volume widths from the axis, detector at 3 more, pixels of 1.5 voxels at the
detector: a cone of about 10 degrees). The forward projection is timed with the compiled loop the CPU
runs and with the tensor path the projector runs on a GPU (run here on the CPU; the peer), on
``--peer-angles`` of the angles (it is too slow for all) and scaled to all; both give the same bytes
(checked on those angles). FDK (ramp filter) is timed on the whole scan. Times are wall seconds, the
median of ``--repeats`` runs after one to compile (cached on disk).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def _timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    import torch

    from aiax_bench.recon import ConeBeamGeometry, ConeBeamProjector, fdk

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--angles", type=int, default=400)
    parser.add_argument("--peer-angles", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/cone-cpu.json"))
    args = parser.parse_args()
    n = args.size
    geometry = ConeBeamGeometry(source_origin=6.0 * n, origin_detector=3.0 * n, det_spacing=1.5, row_spacing=1.5)
    angles = np.linspace(0.0, 2 * np.pi, args.angles, endpoint=False)
    shape = dict(n_pixels=n, n_slices=n, n_rows=n + 8, n_detector=n + 8)
    volume = np.zeros((n, n, n), dtype=np.float32)
    volume[n // 4:3 * n // 4, n // 4:3 * n // 4, n // 4:3 * n // 4] = 1.0
    flat = torch.from_numpy(volume).reshape(-1)

    projector = ConeBeamProjector(geometry, angles, **shape)
    projector.forward(volume[:, :, :])  # compile (cached)
    compiled_s, projections = _timed(lambda: projector.forward(volume), args.repeats)
    fdk_s, _ = _timed(lambda: fdk(projections, angles, geometry, n_pixels=n, n_slices=n), args.repeats)

    few = ConeBeamProjector(geometry, angles[:args.peer_angles], **shape, cache_bytes=0)
    tensor_s, tensor_out = _timed(lambda: few._forward_tensor(flat), 1)
    same = bool(np.array_equal(tensor_out.numpy(), projections[:args.peer_angles]))
    tensor_all_s = tensor_s * args.angles / args.peer_angles
    doc = {
        "benchmark": "cone-beam forward projection and FDK, CPU",
        "volume": [n, n, n], "angles": args.angles, "detector": [n + 8, n + 8],
        "forward_compiled_s": round(compiled_s, 3),
        "forward_tensor_path_s": round(tensor_all_s, 3),
        "forward_tensor_path_measured_angles": args.peer_angles,
        "forward_speedup_vs_tensor_path": round(tensor_all_s / compiled_s, 1),
        "forward_same_bytes": same,
        "fdk_s": round(fdk_s, 3),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "cpu": platform.processor(),
        "command": "python benchmarks/bench_cone.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{'step':<28}{'seconds':>10}")
    print(f"{'forward, compiled':<28}{compiled_s:>10.2f}")
    print(f"{'forward, tensor path':<28}{tensor_all_s:>10.2f}  (x{tensor_all_s / compiled_s:.1f}, same bytes: {same})")
    print(f"{'FDK':<28}{fdk_s:>10.2f}")


if __name__ == "__main__":
    main()
