"""Time forward projection and FBP of whole volumes: aiax-bench vs astra-toolbox vs scikit-image.

For every size N and number of angles A, a volume of N slices of N x N is
projected (A angles, N detector pixels) and reconstructed by FBP (ramp filter):

* ``aiax-cpu`` / ``aiax-cuda``: :class:`aiax_bench.recon.ParallelBeamProjector`,
  all slices batched; the operator is built once (``build s``, not included
  in the forward and FBP times since it is reused for every volume of a
  dataset) and its memory is reported.
* ``astra-cpu``: astra-toolbox's CPU ``linear`` parallel projector and FBP
  (ram-lak), slice by slice, as astra's 2D CPU code works.
* ``skimage``: ``skimage.transform.radon`` / ``iradon`` (ramp); only a few
  slices are timed and the time is scaled to the whole volume (marked ``*``).

Usage::

    python benchmarks/bench_projector.py --sizes 128 256 --angles 100 500 \\
        --out benchmarks/results/projector.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import torch

from aiax_bench.provenance import hardware
from aiax_bench.recon import ParallelBeamProjector, fbp


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    for name in ("scipy", "astra", "skimage"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "missing"
    return out


def _hardware() -> dict[str, object]:
    info: dict[str, object] = hardware()
    if hasattr(os, "getloadavg"):
        info["load_average_start"] = os.getloadavg()
    return info


def _timed(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> tuple[float, object]:
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def _best(fn: Callable[[], object], repeat: int, sync: Callable[[], None] = lambda: None) -> float:
    return min(_timed(fn, sync)[0] for _ in range(repeat))


def _phantom(n: int, seed: int = 0) -> np.ndarray:
    """Random spheres in a cylinder, attenuation ~0.01 per voxel: realistic, cheap to make."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:n, :n, :n]
    c = (n - 1) / 2
    vol = np.where((y - c) ** 2 + (x - c) ** 2 < (0.45 * n) ** 2, 0.01, 0.0).astype(np.float32)
    vol = np.broadcast_to(vol, (n, n, n)).copy()
    for cz, cy, cx, r in rng.uniform([0, 0.2 * n, 0.2 * n, 0.02 * n], [n, 0.8 * n, 0.8 * n, 0.08 * n], (40, 4)):
        vol[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < r * r] = 0.0
    return vol


def bench_aiax(vol, angles, device: str, repeat: int, batch: int) -> dict[str, object]:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    build, proj = _timed(lambda: ParallelBeamProjector(vol.shape[-1], angles, device=device), sync)
    data = torch.from_numpy(vol).to(device)
    forward = _best(lambda: proj.forward(data), repeat, sync)
    sino = proj.forward(data)
    recon = _best(lambda: fbp(sino, projector=proj, batch=batch), repeat, sync)
    return {"build_s": build, "forward_s": forward, "fbp_s": recon,
            "operator_mb": proj.nbytes / 2**20, "slices_timed": vol.shape[0]}


def bench_astra(vol, angles, repeat: int, max_slices: int | None) -> dict[str, object]:
    import astra

    n = vol.shape[-1]
    slices = vol[: max_slices or n]
    vol_geom = astra.create_vol_geom(n, n)
    # Our angle theta is astra's -theta (astra's image y axis points up): same sinograms.
    proj_geom = astra.create_proj_geom("parallel", 1.0, n, -angles)
    pid = astra.create_projector("linear", proj_geom, vol_geom)

    def forward():
        out = []
        for image in slices:
            sid, sino = astra.create_sino(image, pid)
            astra.data2d.delete(sid)
            out.append(sino)
        return out

    def reconstruct(sinos):
        for sino in sinos:
            sid = astra.data2d.create("-sino", proj_geom, sino)
            rid = astra.data2d.create("-vol", vol_geom)
            cfg = astra.astra_dict("FBP")
            cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, FilterType="ram-lak")
            aid = astra.algorithm.create(cfg)
            astra.algorithm.run(aid)
            astra.data2d.get(rid)
            astra.algorithm.delete(aid)
            astra.data2d.delete([sid, rid])

    try:
        fwd_time, sinos = _timed(forward)
        fwd_time = min([fwd_time] + [_best(forward, 1) for _ in range(repeat - 1)])
        fbp_time = _best(lambda: reconstruct(sinos), repeat)
    finally:
        astra.projector.delete(pid)
    scale = n / len(slices)
    return {"build_s": 0.0, "forward_s": fwd_time * scale, "fbp_s": fbp_time * scale,
            "operator_mb": None, "slices_timed": len(slices)}


def bench_skimage(vol, angles, n_slices: int) -> dict[str, object]:
    from skimage.transform import iradon, radon

    n = vol.shape[-1]
    theta = np.rad2deg(angles)
    slices = vol[:n_slices].astype(np.float64)
    fwd_time, sinos = _timed(lambda: [radon(s, theta=theta, circle=True) for s in slices])
    fbp_time, _ = _timed(lambda: [iradon(s, theta=theta, filter_name="ramp", circle=True) for s in sinos])
    scale = n / len(slices)
    return {"build_s": 0.0, "forward_s": fwd_time * scale, "fbp_s": fbp_time * scale,
            "operator_mb": None, "slices_timed": len(slices)}


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, object]]) -> str:
    """Markdown table of the results, with speed-ups relative to astra CPU."""
    head = ("| method | N | A | build s | forward s | FBP s | forward speed-up vs astra "
            "| FBP speed-up vs astra | operator MB |")
    lines = [head, "|" + " --- |" * 9]
    astra = {(r["n"], r["n_angles"]): r for r in rows if r["method"] == "astra-cpu"}
    for r in rows:
        ref = astra.get((r["n"], r["n_angles"]))
        star = "*" if r["slices_timed"] < r["n"] else ""
        up_f = ref["forward_s"] / r["forward_s"] if ref else None
        up_b = ref["fbp_s"] / r["fbp_s"] if ref else None
        lines.append(
            f"| {r['method']} | {r['n']} | {r['n_angles']} | {_fmt(r['build_s'])} "
            f"| {_fmt(r['forward_s'])}{star} | {_fmt(r['fbp_s'])}{star} | {_fmt(up_f, 1)} | {_fmt(up_b, 1)} "
            f"| {_fmt(r['operator_mb'], 0)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="volume sizes N (N^3)")
    parser.add_argument("--angles", type=int, nargs="+", default=[100, 500], help="numbers of angles")
    parser.add_argument("--methods", nargs="+", default=["aiax", "astra", "skimage"],
                        choices=["aiax", "astra", "skimage"], help="what to time (aiax covers CPU and CUDA)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per timing, the best is kept")
    parser.add_argument("--batch", type=int, default=32, help="slices per FBP batch (aiax)")
    parser.add_argument("--astra-repeat", type=int, default=1,
                        help="runs per astra timing (slice by slice, it varies little)")
    parser.add_argument("--astra-slices", type=int, default=None,
                        help="time astra on this many slices and scale to the volume (default: all)")
    parser.add_argument("--skimage-slices", type=int, default=2, help="slices timed for scikit-image")
    parser.add_argument("--skimage-max-angles", type=int, default=None,
                        help="skip scikit-image above this number of angles")
    parser.add_argument("--compatible-mkl", action="store_true",
                        help="select MKL's compatible code path first, as a dataset build does: the projector then "
                             "uses torch's sparse products (the same bytes as its own compiled ones)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/projector.json"))
    args = parser.parse_args(argv)
    if args.compatible_mkl:
        from aiax_bench.mkl_mode import use_compatible_mkl

        use_compatible_mkl()

    from aiax_bench.mkl_mode import compatible_mkl_active

    hardware = {**_hardware(), "mkl_compatible_path": compatible_mkl_active()}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows: list[dict[str, object]] = []
    for n in args.sizes:
        vol = _phantom(n)
        for n_angles in args.angles:
            angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
            runs: list[tuple[str, Callable[[], dict[str, object]]]] = []
            if "aiax" in args.methods:
                runs += [(f"aiax-{d}", partial(bench_aiax, vol, angles, d, args.repeat, args.batch))
                         for d in devices]
            if "astra" in args.methods:
                runs.append(("astra-cpu", partial(bench_astra, vol, angles, args.astra_repeat, args.astra_slices)))
            if "skimage" in args.methods and (args.skimage_max_angles is None
                                              or n_angles <= args.skimage_max_angles):
                runs.append(("skimage", partial(bench_skimage, vol, angles, args.skimage_slices)))
            for method, run in runs:
                print(f"{method} N={n} A={n_angles} ...", file=sys.stderr, flush=True)
                result = run()
                rows.append({"method": method, "n": n, "n_angles": n_angles, **result})
                print(f"  {json.dumps(rows[-1])}", file=sys.stderr, flush=True)

    if hasattr(os, "getloadavg"):
        hardware["load_average_end"] = os.getloadavg()
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "hardware": hardware,
              "versions": _versions(), "args": {k: str(v) for k, v in vars(args).items()}, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    print("\n* timed on fewer slices (see slices_timed in the JSON) and scaled to the whole volume. "
          f"Forward and FBP times exclude building the operator (build s). Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
