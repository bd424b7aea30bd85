"""Out-of-core reconstruction of a 2048-pixel, 1,500-projection scan: peak memory and throughput.

    python benchmarks/bench_reconstruct_streamed.py [--columns 2048] [--angles 1500] [--rows 8 24] \\
        [--in-memory-rows 8] [--memory 2] [--workdir DIR] [--scan FOLDER] \\
        [--output benchmarks/reconstruct-streamed.json]

A scan of ``--rows`` detector rows (counts of a holed cylinder, analytic chord
lengths with Poisson noise, one flat and one dark) is written as a ``.npy``
file, and ``aiax-bench reconstruct --out-of-core`` reads it slab by slab as it
would read a 2048-row scan: flat/dark, -log, the centre found on the middle
row, Hann FBP, slabs written to zarr. Each run is a fresh process; its peak
resident memory is the kernel's high-water mark (``ru_maxrss``) for that
process, which counts the pages of a memory-mapped file it holds as well as
its own arrays, and its time counts everything (imports, centring, reading,
writing).

The peer in the same run is the in-memory ``aiax-bench reconstruct`` of
``--in-memory-rows`` rows: the same arithmetic, whose memory grows with the
rows (the whole scan, the whole volume and a 32-slice FBP batch in memory).

With ``--rows 2048 --in-memory-rows 0`` the whole 2048 × 2048² × 1,500 volume
is reconstructed (the scan takes 25 GB of disk and the volume 34 GB, in
``--workdir``); otherwise it is projected from the measured throughput (slices
per second after the first slab). ``--scan FOLDER`` reads an earlier run's
scan again (kept with hard links, say): each of ``--rows`` is then that many
of its rows, read through the mapping of the whole file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PHOTONS = 20000.0


def scan_files(folder: Path, n_angles: int) -> dict[str, str]:
    """The scan, flat and dark files of ``folder`` and the last of its ``n_angles`` angles over 180° (degrees)."""
    files = {name: str(folder / f"{name}.npy") for name in ("scan", "flat", "dark")}
    files["last_deg"] = repr(float(np.rad2deg(np.linspace(0.0, np.pi, n_angles, endpoint=False)[-1])))
    return files


def write_scan(folder: Path, rows: int, columns: int, n_angles: int) -> dict[str, str]:
    """Counts ``(A, rows, columns)`` of a cylinder (radius 0.4 D) with two holes that move with the row."""
    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    t = np.arange(columns) - (columns - 1) / 2
    rng = np.random.default_rng(0)
    data = np.lib.format.open_memmap(folder / "scan.npy", mode="w+", dtype=np.float32,
                                     shape=(n_angles, rows, columns))
    mu = 2.0 / (0.8 * columns)  # a line integral of 2 across the cylinder: 13 % transmission

    # Every row reuses the same few buffers: fresh arrays of this size were at times faulted in at a second each.
    def chords_into(out: np.ndarray, radius: float, cx: float, cy: float) -> np.ndarray:
        np.subtract(t[None, :], (cx * np.cos(angles) + cy * np.sin(angles))[:, None], out=out)
        np.square(out, out=out)
        np.subtract(radius**2, out, out=out)
        np.clip(out, 0, None, out=out)
        np.sqrt(out, out=out)
        out *= 2
        return out

    cylinder = chords_into(np.empty((n_angles, columns)), 0.4 * columns, 0.0, 0.0)
    still_hole = chords_into(np.empty((n_angles, columns)), 0.05 * columns, -0.15 * columns, 0.1 * columns)
    moving_hole, expected = np.empty((n_angles, columns)), np.empty((n_angles, columns))
    # Rows are drawn one by one (the same draws whatever the block) and written in blocks: a row alone is
    # 1,500 scattered runs of the file.
    block = max(1, min(rows, (512 * 2**20) // (n_angles * columns * 4)))
    buffer = np.empty((n_angles, block, columns), np.float32)
    for first in range(0, rows, block):
        count = min(block, rows - first)
        for r in range(first, first + count):
            shift = (r / max(rows, 1) - 0.5) * 0.05 * columns
            np.subtract(cylinder, chords_into(moving_hole, 0.1 * columns, 0.1 * columns + shift, 0.0), out=expected)
            expected -= still_hole
            expected *= -mu
            np.exp(expected, out=expected)
            expected *= PHOTONS
            buffer[:, r - first, :] = rng.poisson(expected)
        data[:, first:first + count, :] = buffer[:, :count, :]
    data.flush()
    del data
    np.save(folder / "flat.npy", np.full((1, rows, columns), PHOTONS, np.float32))
    np.save(folder / "dark.npy", np.zeros((1, rows, columns), np.float32))
    return scan_files(folder, n_angles)


#: Runs a command and prints its peak resident memory: the children's high-water mark of a process that has
#: only this one child, so each measurement is of its own run.
PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)")


def run(files: dict[str, str], output: Path, *, out_of_core: bool, memory_gib: float,
        crop_rows: int | None = None) -> dict:
    """One ``aiax-bench reconstruct`` in a fresh process (of the first ``crop_rows`` rows, if given): wall seconds
    and peak RSS (MB)."""
    command = [str(Path(sys.executable).with_name("aiax-bench")), "reconstruct", files["scan"], "--output",
               str(output), "--kind", "projections", "--angle-range", f"0,{files['last_deg']}",
               "--flats", files["flat"], "--darks", files["dark"]]
    if out_of_core:
        command += ["--out-of-core", "--memory", str(memory_gib)]
    if crop_rows is not None:
        command += ["--crop-rows", f"0:{crop_rows}"]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    peak_kb = int(done.stderr.rsplit("peak_rss_kb", 1)[1].split()[0])
    # The command's own summary, without this run's temporary paths.
    line = done.stdout.strip().splitlines()[-1].replace(files["scan"], "scan.npy").replace(str(output), output.name)
    record = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_kb / 1024), "message": line}
    if out_of_core:
        record["slices_per_second_after_start"] = float(line.split(" s (")[1].split(" slices/s")[0])
    return record


def reuse_scan(folder: Path, rows: list[int], *, memory_gib: float, workdir: Path | None) -> list[dict]:
    """Out-of-core runs of the first ``rows`` rows of the scan in ``folder``, each a fresh process."""
    n_angles, n_rows, n_columns = np.load(folder / "scan.npy", mmap_mode="r").shape
    files = scan_files(folder, n_angles)
    records = []
    for count in rows:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            record = run(files, Path(tmp) / "ooc.zarr", out_of_core=True, memory_gib=memory_gib, crop_rows=count)
        record.update(rows=count, how="out of core", scan_shape=[n_angles, n_rows, n_columns],
                      seconds_per_slice=round(record["seconds"] / count, 2))
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=2048)
    parser.add_argument("--angles", type=int, default=1500)
    parser.add_argument("--rows", type=int, nargs="+", default=[8, 24])
    parser.add_argument("--in-memory-rows", type=int, default=8, help="rows of the in-memory peer (0: none)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the scans and volumes are written")
    parser.add_argument("--memory", type=float, default=2.0, help="--memory of the out-of-core runs (GiB)")
    parser.add_argument("--output", type=Path, default=HERE / "reconstruct-streamed.json")
    parser.add_argument("--scan", type=Path, default=None,
                        help="a folder holding an earlier run's scan.npy, flat.npy and dark.npy: each of --rows is "
                             "that many of its rows, read out of core from the whole file (nothing is written)")
    args = parser.parse_args()
    import torch

    rows_out = []
    if args.scan is not None:
        rows_out = reuse_scan(args.scan, args.rows, memory_gib=args.memory, workdir=args.workdir)
        args.columns, args.angles = rows_out[0]["scan_shape"][2], rows_out[0]["scan_shape"][0]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for rows in [] if args.scan is not None else sorted({*args.rows, args.in_memory_rows} - {0}):
            folder = Path(tmp) / f"rows{rows}"
            folder.mkdir()
            start = time.perf_counter()
            files = write_scan(folder, rows, args.columns, args.angles)
            scan_seconds = round(time.perf_counter() - start, 1)
            kinds = [True] + ([False] if rows == args.in_memory_rows else [])
            for out_of_core in kinds:
                target = folder / ("ooc.zarr" if out_of_core else "mem.zarr")
                record = run(files, target, out_of_core=out_of_core, memory_gib=args.memory)
                record.update(rows=rows, how="out of core" if out_of_core else "in memory", scan_written_s=scan_seconds,
                              seconds_per_slice=round(record["seconds"] / rows, 2))
                print(json.dumps(record), flush=True)
                rows_out.append(record)
            if len(kinds) == 2:  # the same bytes both ways
                import zarr

                same = np.array_equal(np.asarray(zarr.open_array(str(folder / "ooc.zarr"))[...]),
                                      np.asarray(zarr.open_array(str(folder / "mem.zarr"))[...]))
                rows_out[-1]["equal_to_out_of_core"] = bool(same)
            for path in folder.iterdir():
                if path.suffix == ".npy":
                    path.unlink()
    largest = max((r for r in rows_out if r["how"] == "out of core"), key=lambda r: r["rows"])
    per_second = largest["slices_per_second_after_start"]
    if largest["rows"] == args.columns:
        full = {"rows": args.columns, "hours_measured": round(largest["seconds"] / 3600, 2),
                "from": "the whole volume, reconstructed in this run"}
    else:
        full = {"rows": args.columns, "hours_projected": round(args.columns / per_second / 3600, 2),
                "from": f"{per_second} slices/s of the {largest['rows']}-row run"}
    result = {
        "benchmark": "reconstruct-streamed", "columns": args.columns, "angles": args.angles,
        "memory_gib": args.memory, "runs": rows_out, "full_volume": full,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_average": list(os.getloadavg())},
        "date": time.strftime("%Y-%m-%d"),
    }
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(full))


if __name__ == "__main__":
    main()
