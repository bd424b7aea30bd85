"""FBP of real-detector slices, where the projector's matrix is too large to keep.

    python benchmarks/bench_fbp_large.py [--sizes 1260x360 2048x1500] [--slices 16] [--pixel-max 1300] [--with-rebuilt]

For each ``D x A`` (detector pixels × angles over 180°) one slice of a disc
phantom is projected (by astra-toolbox's CPU ``linear`` projector: Joseph's
model, as ours) and reconstructed with ramp FBP by

* ``aiax fourier``: :func:`aiax_bench.recon.fbp` as a user calls it (the
  operator would exceed its 4 GiB limit, so ``auto`` back-projects through a
  non-uniform FFT);
* ``aiax pixel`` (detectors up to ``--pixel-max``): the transpose of the same
  Joseph matrix computed pixel by pixel, without storing it;
* ``astra``: astra-toolbox 2.5's CPU ``FBP`` (ram-lak) in the same run: the peer;
* ``aiax rebuilt`` (``--with-rebuilt``, detectors up to ``--pixel-max``): the
  previous path, the sparse operator rebuilt block by block at the call.

Times are wall seconds on this machine's threads, counting every build: one
slice alone (the process's first call, with its one-off imports and FFT
plans, then again), and per slice of a stack of ``--slices`` (the rows of a scan are
reconstructed together, sharing the geometry's arithmetic); astra
reconstructs slice by slice. The accuracy is the largest difference from
astra's slice inside the disc, relative to the image's maximum. Writes
``--output`` (``benchmarks/fbp-large.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def phantom(n: int) -> np.ndarray:
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    image = (np.hypot(y, x) < 0.4 * n) * 1.0 + (np.hypot(y - 0.1 * n, x + 0.08 * n) < 0.1 * n) * 0.5
    return (image * 0.01).astype(np.float32)


def astra_pair(image: np.ndarray, angles: np.ndarray):
    import astra

    n = image.shape[0]
    vol = astra.create_vol_geom(n, n)
    geometry = astra.create_proj_geom("parallel", 1.0, n, -angles)  # ours(theta) == astra(-theta)
    pid = astra.create_projector("linear", geometry, vol)
    sid, sino = astra.create_sino(image, pid)
    rid = astra.data2d.create("-vol", vol)
    cfg = astra.astra_dict("FBP")
    cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, FilterType="ram-lak")
    start = time.perf_counter()
    aid = astra.algorithm.create(cfg)
    astra.algorithm.run(aid)
    seconds = time.perf_counter() - start
    slice_ = astra.data2d.get(rid)
    astra.algorithm.delete(aid)
    astra.data2d.delete([sid, rid])
    astra.projector.delete(pid)
    return np.asarray(sino, dtype=np.float32), slice_, seconds


def main() -> None:
    from aiax_bench.recon import ParallelBeamProjector, fbp
    from aiax_bench.recon.projector import operator_nbytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1260x360", "2048x1500"])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--pixel-max", type=int, default=1300, help="largest detector timed pixel by pixel")
    parser.add_argument("--with-rebuilt", action="store_true")
    parser.add_argument("--output", type=Path, default=HERE / "fbp-large.json")
    parser.add_argument("--threads-check", action="store_true", help="time the Fourier stack on 1 and 2 threads")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        n, a = (int(v) for v in size.split("x"))
        angles = np.linspace(0, np.pi, a, endpoint=False)
        image = phantom(n)
        sino, reference, astra_s = astra_pair(image, angles)
        inside = np.hypot(*(np.mgrid[:n, :n] - (n - 1) / 2)) < 0.45 * n
        row = {"detector": n, "angles": a, "operator_gb": round(operator_nbytes(n, a) / 1e9, 1),
               "astra_seconds_per_slice": round(astra_s, 2), "stack_slices": args.slices}
        stack = np.repeat(sino[None], args.slices, axis=0)
        for how in ("fourier", "pixel"):
            if how == "pixel" and n > args.pixel_max:
                continue
            start = time.perf_counter()
            ours = np.asarray(fbp(sino, angles, backprojector=how))
            first = time.perf_counter() - start  # the process's first call: imports and plans included
            start = time.perf_counter()
            fbp(sino, angles, backprojector=how)
            one = time.perf_counter() - start
            start = time.perf_counter()
            fbp(stack, angles, backprojector=how)
            per_slice = (time.perf_counter() - start) / args.slices
            row[how] = {"seconds_first_call": round(first, 2), "seconds_one_slice": round(one, 2),
                        "seconds_per_slice_of_stack": round(per_slice, 2),
                        "speedup_vs_astra_one_slice": round(astra_s / one, 2),
                        "speedup_vs_astra_in_a_stack": round(astra_s / per_slice, 2),
                        "max_difference_vs_astra": float(np.abs(ours - reference)[inside].max()
                                                         / np.abs(reference).max()),
                        "rms_difference_vs_astra": float(np.sqrt(np.mean((ours - reference)[inside] ** 2))
                                                         / np.abs(reference).max())}
        if args.threads_check:  # the Fourier back projection of the stack alone, on 1 and on 2 threads
            from aiax_bench.recon.fbp import backproject_fourier, filter_sinogram

            filtered = filter_sinogram(torch.as_tensor(stack))
            row["fourier_backprojection_seconds_per_slice"] = {}
            for workers in (1, 2):
                start = time.perf_counter()
                backproject_fourier(filtered, angles, n, workers=workers)
                row["fourier_backprojection_seconds_per_slice"][workers] = round(
                    (time.perf_counter() - start) / args.slices, 2)
        if args.with_rebuilt and n <= args.pixel_max:  # beyond, a rebuild takes hours
            projector = ParallelBeamProjector(n, angles, device="cpu")
            start = time.perf_counter()
            from aiax_bench.recon.fbp import filter_sinogram

            projector.backward(filter_sinogram(torch.as_tensor(sino)[None]))
            row["rebuilt_seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    doc = {"rows": rows, "threads": torch.get_num_threads(),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
           "command": "python benchmarks/bench_fbp_large.py " + " ".join(
               ["--sizes", *args.sizes, "--slices", str(args.slices), "--pixel-max", str(args.pixel_max)]
               + (["--with-rebuilt"] * args.with_rebuilt) + (["--threads-check"] * args.threads_check)
               + ["--output", os.path.relpath(args.output, HERE.parent)])}
    args.output.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
