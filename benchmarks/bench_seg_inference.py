"""Segmentation U-Net inference at 2048² on the CPU: whole slices against tiles chosen by bytes.

    python benchmarks/bench_seg_inference.py [--size 2048] [--slices 4] [--presets cpu 2.5d] \\
        [--output benchmarks/seg-inference-2048.json]

``UNetSeg.predict_probabilities`` of a ``--slices`` × ``size``² volume with the
default architecture of each preset (untrained: throughput does not depend on
the weights; 3 phases), timed twice in the same process:

* ``whole slices``: every slice in one forward pass (the path before slices
  were tiled; forced here by raising the tile threshold);
* ``tiled by bytes``: the shared slice inference
  (:func:`aiax_bench.training.inference.predict_volume`), which cuts slices
  whose activations exceed 256 MiB into overlapping tiles and blends their
  softmax probabilities.

Reports slices per minute, the tile edge and batch chosen, and the share of
voxels whose most probable phase differs between the two (the tiles' seams).
Peak memory is that of the process (``ru_maxrss``) after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--presets", nargs="+", default=["cpu", "2.5d"])
    parser.add_argument("--output", type=Path, default=HERE / "seg-inference-2048.json")
    args = parser.parse_args()

    import aiax_bench.training.inference as inference
    from aiax_bench.baselines.unet_seg import UNetSeg

    rng = np.random.default_rng(0)
    volume = rng.normal(0.5, 0.2, (args.slices, args.size, args.size)).astype(np.float32)
    rows = []
    for preset in args.presets:
        method = UNetSeg({"preset": preset})
        method.model = method.build_network(3).eval()
        method.n_classes, method.stats = 3, {"mean": 0.5, "std": 0.2}
        bpp = inference.activation_bytes_per_pixel(method.model, method.in_channels)
        plan = inference.inference_plan(bpp, (args.size, args.size), device=torch.device("cpu"))
        results = {}
        for how, tile_bytes in (("whole slices", 1 << 50), ("tiled by bytes", inference.TILE_BYTES)):
            default = inference.TILE_BYTES
            inference.TILE_BYTES = tile_bytes
            try:
                method.predict_probabilities(volume[:1])  # warm-up: allocator and kernels
                start = time.perf_counter()
                probabilities = method.predict_probabilities(volume)
                seconds = time.perf_counter() - start
            finally:
                inference.TILE_BYTES = default
            results[how] = probabilities.argmax(0)
            row = {"preset": preset, "variant": method.config.variant, "how": how,
                   "parameters": method.parameter_count(), "activation_bytes_per_pixel": round(bpp),
                   "tile": plan[1] if how == "tiled by bytes" else None,
                   "batch": plan[0] if how == "tiled by bytes" and plan[1] is not None
                   else method.config.inference_batch_size,
                   "seconds": round(seconds, 2), "slices_per_minute": round(60 * args.slices / seconds, 1),
                   "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        rows[-1]["labels_differing_from_whole"] = float(np.mean(results["whole slices"] != results["tiled by bytes"]))
        rows[-1]["speed_up_vs_whole"] = round(rows[-1]["slices_per_minute"] / rows[-2]["slices_per_minute"], 2)
    result = {"benchmark": "seg-inference", "size": args.size, "slices": args.slices, "runs": rows,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "load_average": list(os.getloadavg())},
              "date": time.strftime("%Y-%m-%d")}
    args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
