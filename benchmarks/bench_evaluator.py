"""Time the evaluation suite on synthetic foam pairs and compare each part with its obvious peer.

Parts and peers, on the same data in the same run:

- ``ssim_3d``: ours (NumPy and compiled kernels) vs ``skimage.metrics.structural_similarity`` (Gaussian
  window σ = 1.5, population covariance, same data range); values must agree to 1e-4.
- ``ssim_slices``: ours vs scikit-image's 2D SSIM in a loop over z-slices.
- ``pore_statistics``: labels, volumes, cut flags, Crofton surface (ours,
  cc3d + NumPy) vs ``porespy.metrics.regionprops_3D`` on the same labels
  (its surface and sphericity come from marching cubes); pore counts and
  volumes must be equal.
- ``local_thickness``: ours vs ``porespy.filters.local_thickness(method='bf')``
  (warm: its numba compilation is timed separately); maps must be equal.
- ``full_suite``: everything the Evaluator computes for one volume (image
  metrics against reference and truth, threshold, porosity statistics of
  method, reference and truth with local thickness, Jaccard / Dice, Dice by
  pore size), from scratch.
- ``figures``: the three evaluation figures.

``--out-of-core N`` also writes an N³ pair to zarr (128³ chunks) and
evaluates it block by block in a fresh process (its peak resident memory is
the process's own), then checks that the chunked path gives the in-memory
numbers on a 256³ crop.

Usage::

    python benchmarks/bench_evaluator.py                        # 128³, 256³, 512³
    python benchmarks/bench_evaluator.py --sizes 128 256 --out-of-core 1024
    python benchmarks/bench_evaluator.py --output results.json --no-peers

Timings are wall-clock and CPU seconds (CPU time is the steadier figure on
a shared machine); the load average before and after each size is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA_RANGE, VOXEL_UM, EROSION, SEED = 4.2, 20.0, 2, 0
#: Arrays of the out-of-core pair: everything a complete record needs.
OUT_OF_CORE_ARRAYS = ("method", "reference", "truth", "labels", "mask")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB): VmHWM, which exec resets (ru_maxrss keeps the parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, *args, **kwargs) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def available_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return float("inf")


def eroded(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_erosion(mask, structure, iterations=EROSION)


def part(name: str, times: tuple[float, float], peer: tuple[float, float] | None = None, peer_name: str = "",
         **extra: Any) -> dict[str, Any]:
    row = {"part": name, "ours_wall_s": round(times[0], 3), "ours_cpu_s": round(times[1], 3)}
    if peer is not None:
        row.update({"peer": peer_name, "peer_wall_s": round(peer[0], 3), "peer_cpu_s": round(peer[1], 3),
                    "speedup_wall": round(peer[0] / times[0], 2),
                    "speedup_cpu": round(peer[1] / max(times[1], 1e-9), 2)})
    row.update(extra)
    return row


def bench_ssim(method: np.ndarray, reference: np.ndarray, *, workers: int, peers: bool,
               result: dict[str, Any]) -> list[dict[str, Any]]:
    """3D and slice-wise SSIM with both kernels against scikit-image."""
    from aiax_bench.evaluation import metrics

    rows: list[dict[str, Any]] = []
    # SSIM, 3D, no mask: the definition scikit-image computes. Both kernels, the compiled one warm (its
    # one-off load is timed apart).
    _, load_wall, _ = timed(metrics.ssim, method[:16, :16, :16], reference[:16, :16, :16], data_range=DATA_RANGE,
                            kernel="compiled")
    result["compiled_kernel_load_s"] = round(load_wall, 2)
    ours = {k: timed(metrics.ssim, method, reference, data_range=DATA_RANGE, workers=workers, kernel=k)
            for k in ("numpy", "compiled")}
    peer, theirs = None, None
    if peers and available_gb() > 14 * method.size * 8 / 1e9 + 2:
        from skimage.metrics import structural_similarity

        theirs, pw, pc = timed(structural_similarity, method, reference, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False, data_range=DATA_RANGE)
        peer = (pw, pc)
    for kernel, (value, w, c) in ours.items():
        row_args: dict[str, Any] = {"ours": value}
        if theirs is not None:
            row_args.update(skimage=float(theirs), abs_diff=float(abs(theirs - value)))
        elif peers:
            row_args["skipped_peer"] = "not enough free memory for scikit-image's float64 temporaries"
        rows.append(part(f"ssim_3d ({kernel})", (w, c), peer, "skimage structural_similarity", **row_args))

    ours = {k: timed(metrics.ssim_slices, method, reference, data_range=DATA_RANGE, workers=workers, kernel=k)
            for k in ("numpy", "compiled")}
    peer, theirs = None, None
    if peers:
        from skimage.metrics import structural_similarity

        def skimage_slices() -> float:
            return float(np.mean([structural_similarity(method[z], reference[z], gaussian_weights=True, sigma=1.5,
                                                        use_sample_covariance=False, data_range=DATA_RANGE)
                                  for z in range(method.shape[0])]))
        theirs, pw, pc = timed(skimage_slices)
        peer = (pw, pc)
    for kernel, (value, w, c) in ours.items():
        extra: dict[str, Any] = {"ours": value}
        if theirs is not None:
            extra.update(skimage=theirs, abs_diff=abs(theirs - value))
        rows.append(part(f"ssim_slices ({kernel})", (w, c), peer, "skimage 2D SSIM per slice", **extra))

    return rows


def bench_size(size: int, *, workers: int, peers: bool, figures_dir: Path) -> dict[str, Any]:
    from aiax_bench.evaluation import porosity as pz
    from aiax_bench.evaluation.evaluator import evaluate_arrays
    from aiax_bench.evaluation.synthetic import SyntheticFoam

    load_before = os.getloadavg()
    foam, gen_wall, _ = timed(SyntheticFoam, size, seed=SEED)
    (method, reference), pair_wall, _ = timed(foam.pair)
    truth, labels, mask = foam.truth(), foam.labels(), foam.mask()
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"size": size, "n_pores_generated": len(foam.spheres),
                              "generate_s": round(gen_wall + pair_wall, 1)}

    rows += bench_ssim(method, reference, workers=workers, peers=peers, result=result)

    # Pore statistics of the protocol's segmentation; porespy gets the same (speck-free) labels.
    roi = eroded(mask)  # inside the sample, as the Evaluator: outside, the air would be one huge "pore"
    threshold = pz.otsu_threshold(reference, data_range=DATA_RANGE, mask=roi)
    pores = pz.segment_pores(method, threshold=threshold, mask=roi)
    stats, w, c = timed(pz.pore_statistics, pores, voxel_size_um=VOXEL_UM, mask=roi, thickness=False,
                        keep_labels=True, workers=workers)
    peer, extra = None, {"pores": stats.n_interior + stats.n_border}
    if peers:
        try:
            import porespy as ps
        except ImportError:
            extra["skipped_peer"] = "porespy not installed"
        else:
            def regionprops() -> tuple[list, list]:
                # porespy's properties are lazy: ask for what ours gives (volume, surface).
                props = ps.metrics.regionprops_3D(stats.labels)
                return props, [(p.volume, p.surface_area) for p in props]
            (props, values), pw, pc = timed(regionprops)
            peer = (pw, pc)
            volumes = np.sort([v for v, _ in values])
            extra.update(porespy_pores=len(props),
                         volumes_equal=bool(np.array_equal(volumes, np.sort(stats.all_volumes))),
                         # porespy's mask= counts outside voxels as solid: give it the region's voxels only
                         porosity_equal=bool(np.isclose(ps.metrics.porosity(stats.labels[roi] > 0),
                                                        stats.porosity)))
    rows.append(part("pore_statistics", (w, c), peer, "porespy regionprops_3D (volume, surface_area)", **extra))

    clean = stats.labels > 0
    lt, w, c = timed(pz.local_thickness, clean, workers=workers)
    peer, extra = None, {"max_radius_voxels": int(lt.max())}
    if peers:
        try:
            import porespy as ps
        except ImportError:
            extra["skipped_peer"] = "porespy not installed"
        else:
            _, compile_s, _ = timed(ps.filters.local_thickness, clean, method="bf")  # numba compiles
            theirs, pw, pc = timed(ps.filters.local_thickness, clean, method="bf")
            peer = (pw, pc)
            extra.update(porespy_first_call_s=round(compile_s, 2), equal=bool(np.array_equal(lt, theirs)))
    rows.append(part("local_thickness", (w, c), peer, "porespy local_thickness bf (warm)", **extra))

    record, w, c = timed(evaluate_arrays, method, reference, truth=truth, labels=labels, mask=mask,
                         mask_erosion=EROSION, data_range=DATA_RANGE, voxel_size_um=VOXEL_UM, workers=workers)
    rows.append(part("full_suite", (w, c), keys=len([k for k in record if k != "distributions"])))

    from aiax_bench.evaluation.evaluator import ArraySample
    from aiax_bench.evaluation.figures import write_figures

    sample = ArraySample("volume", {"high": reference, "labels": labels, "low": None},
                          {"voxel_size_um": VOXEL_UM})
    _, w, c = timed(write_figures, sample, method, figures_dir / f"{size}", data_range=DATA_RANGE,
                    mask=roi, threshold=record["segmentation_threshold"],
                    distributions=record["distributions"])
    rows.append(part("figures", (w, c)))
    result.update(parts=rows, load_before=[round(v, 2) for v in load_before],
                  load_after=[round(v, 2) for v in os.getloadavg()], peak_rss_mb=round(peak_rss_mb()))
    result["record"] = {k: v for k, v in record.items() if k != "distributions"}
    return result


# --------------------------------------------------------------------------- out of core

def worker_write(directory: str, size: int) -> dict[str, Any]:
    from aiax_bench.evaluation.synthetic import SyntheticFoam

    foam, pack_s, _ = timed(SyntheticFoam, size, seed=SEED)
    _, write_s, _ = timed(foam.write_zarr, directory, chunks=128, names=OUT_OF_CORE_ARRAYS, progress=True)
    return {"pack_s": round(pack_s, 1), "write_s": round(write_s, 1), "peak_rss_mb": round(peak_rss_mb())}


def worker_evaluate(directory: str, workers: int) -> dict[str, Any]:
    from aiax_bench.evaluation.chunked import evaluate_chunked

    d = Path(directory)
    record, wall, cpu = timed(evaluate_chunked, d / "method.zarr", d / "reference.zarr", data_range=DATA_RANGE,
                              voxel_size_um=VOXEL_UM, mask=d / "mask.zarr", mask_erosion=EROSION,
                              truth=d / "truth.zarr", truth_labels=d / "labels.zarr", complete=True,
                              workers=workers, progress=True)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mb": round(peak_rss_mb()),
            "record": record}


def crop_check(directory: str, crop: int, workers: int) -> dict[str, Any]:
    """The chunked path on a crop (64³ blocks) against the in-memory functions on the same arrays."""
    import zarr

    from aiax_bench.evaluation import metrics
    from aiax_bench.evaluation import porosity as pz
    from aiax_bench.evaluation.chunked import evaluate_chunked
    from aiax_bench.evaluation.segmentation import (
        SIZE_STRATA,
        class_scores_record,
        confusion_matrix,
        dice_by_size,
        scores_from_confusion,
        size_strata,
    )

    d = Path(directory)
    big = {n: zarr.open_array(str(d / f"{n}.zarr"), mode="r") for n in OUT_OF_CORE_ARRAYS}
    n = big["method"].shape[0]
    # A crop that holds the edge of the cylinder, so that mask handling is part of the check.
    start = (0, (n - crop) // 2, max(0, int(0.05 * n) - 10))
    region = tuple(slice(s, s + crop) for s in start)
    arrays = {k: np.asarray(v[region]) for k, v in big.items()}
    out = d / "crop"
    for k, v in arrays.items():
        stored = zarr.create_array(str(out / f"{k}.zarr"), shape=v.shape, chunks=(64,) * 3, dtype=v.dtype,
                                   overwrite=True)
        stored[...] = v
    chunked, cw, _ = timed(evaluate_chunked, out / "method.zarr", out / "reference.zarr", data_range=DATA_RANGE,
                           voxel_size_um=VOXEL_UM, mask=out / "mask.zarr", mask_erosion=EROSION, chunks=64,
                           truth=out / "truth.zarr", truth_labels=out / "labels.zarr", complete=True,
                           workers=workers)
    pred, ref, mask = arrays["method"], arrays["reference"], eroded(arrays["mask"])
    memory = {}
    for name, target in (("reference", ref), ("truth", arrays["truth"])):
        memory[f"mse/{name}"] = metrics.mse(pred, target, mask=mask)
        memory[f"psnr/{name}"] = metrics.psnr(pred, target, data_range=DATA_RANGE, mask=mask)
        memory[f"ssim/{name}"] = metrics.ssim(pred, target, data_range=DATA_RANGE, mask=mask)
        memory[f"ssim_slices/{name}"] = metrics.ssim_slices(pred, target, data_range=DATA_RANGE, mask=mask)
    t = pz.otsu_threshold(ref, data_range=DATA_RANGE, mask=mask)
    memory["segmentation_threshold"] = t
    rim = pz.mask_rim(mask, mask.shape)
    truth_pores = (arrays["labels"] == 2) & mask
    method_pores = pz.segment_pores(pred, threshold=t, mask=mask)
    stats = {who: pz.pore_statistics(pores, voxel_size_um=VOXEL_UM, mask=mask, rim=rim, keep_labels=True)
             for who, pores in (("method", method_pores), ("reference", pz.segment_pores(ref, threshold=t, mask=mask)),
                                ("truth", truth_pores))}
    memory.update(pz.porosity_record(stats, floor=True))
    confusion = confusion_matrix(method_pores.astype(np.uint8), truth_pores.astype(np.uint8), n_classes=2, mask=mask)
    j, dc = scores_from_confusion(confusion)
    memory.update(class_scores_record(j, dc, ("solid", "pore"), (0, 1)))
    strata, _ = size_strata(stats["truth"].all_volumes)
    by_size = dice_by_size(stats["method"].labels, stats["truth"].labels, strata)
    memory.update({f"dice_{name}/pore": value for name, value in zip(SIZE_STRATA, by_size, strict=True)})
    diffs = {k: abs(chunked[k] - v) / max(abs(v), 1e-300) for k, v in memory.items() if not np.isnan(v)}
    return {"crop_region": [[s.start, s.stop] for s in region], "keys_compared": len(diffs),
            "max_relative_difference": max(diffs.values()), "worst_key": max(diffs, key=diffs.get),
            "chunked_wall_s": round(cw, 1), "pores_method": memory["pore_count/method"]}


def run_worker(mode: str, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_worker", mode, *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def out_of_core(size: int, crop: int, workers: int, scratch: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=scratch, prefix="aiax-ooc-") as directory:
        written = run_worker("write", directory, str(size))
        evaluated = run_worker("evaluate", directory, str(workers))
        check = crop_check(directory, crop, workers)
    return {"size": size, "chunks": 128, "write": written, "evaluate": evaluated, "crop_check": check}


# --------------------------------------------------------------------------- report

def table(results: list[dict[str, Any]]) -> str:
    lines = ["| size | part | ours wall s | ours CPU s | peer | peer wall s | peer CPU s "
             "| speed-up (wall / CPU) | check |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for row in res["parts"]:
            check = ""
            if "abs_diff" in row:
                check = f"|Δ| = {row['abs_diff']:.1e}"
            elif "volumes_equal" in row:
                check = f"{row['pores']} pores, equal: {row['volumes_equal'] and row['porosity_equal']}"
            elif "equal" in row:
                check = f"maps equal: {row['equal']}"
            elif row["part"] == "full_suite":
                check = f"{row['keys']} record keys"
            peer = row.get("peer", "")
            speed = f"{row['speedup_wall']}× / {row['speedup_cpu']}×" if peer else ""
            lines.append(f"| {res['size']}³ | {row['part']} | {row['ours_wall_s']} | {row['ours_cpu_s']} | {peer} | "
                         f"{row.get('peer_wall_s', '')} | {row.get('peer_cpu_s', '')} | {speed} | {check} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 512], help="edges of the in-memory pairs")
    parser.add_argument("--out-of-core", type=int, default=0, metavar="N",
                        help="also evaluate an N³ zarr pair block by block (e.g. 1024; takes many minutes)")
    parser.add_argument("--crop", type=int, default=256, help="edge of the crop compared with the in-memory path")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="threads")
    parser.add_argument("--no-peers", action="store_true", help="skip scikit-image and porespy")
    parser.add_argument("--scratch", default=None, help="directory for the out-of-core zarr files")
    parser.add_argument("--output", type=Path, default=Path("bench_evaluator.json"), help="JSON result file")
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._worker:
        mode, *rest = args._worker
        out = worker_write(rest[0], int(rest[1])) if mode == "write" else worker_evaluate(rest[0], int(rest[1]))
        print(json.dumps(out, default=float))
        return 0

    from aiax_bench.provenance import hardware

    report: dict[str, Any] = {"benchmark": "evaluator", "hardware": hardware(), "workers": args.workers,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "sizes": []}
    figures_dir = Path(tempfile.mkdtemp(prefix="aiax-bench-figures-"))
    for size in args.sizes:
        print(f"{size}³ ...", file=sys.stderr, flush=True)
        report["sizes"].append(bench_size(size, workers=args.workers, peers=not args.no_peers,
                                          figures_dir=figures_dir))
        args.output.write_text(json.dumps(report, indent=2, default=float))
    if args.out_of_core:
        print(f"out of core {args.out_of_core}³ ...", file=sys.stderr, flush=True)
        report["out_of_core"] = out_of_core(args.out_of_core, args.crop, args.workers, args.scratch)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    args.output.write_text(json.dumps(report, indent=2, default=float))
    print(table(report["sizes"]))
    if "out_of_core" in report:
        ooc = report["out_of_core"]
        ev, check = ooc["evaluate"], ooc["crop_check"]
        print(f"\nout of core {ooc['size']}³ (zarr, 128³ chunks): {ev['wall_s']} s wall, {ev['cpu_s']} s CPU, "
              f"peak resident memory {ev['peak_rss_mb']} MB; data written in {ooc['write']['write_s']} s")
        print(f"{args.crop}³ crop: chunked vs in-memory, {check['keys_compared']} numbers, largest relative "
              f"difference {check['max_relative_difference']:.1e} ({check['worst_key']})")
    print(f"\nJSON written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
