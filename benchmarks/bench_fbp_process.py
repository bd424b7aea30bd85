"""FBP of a whole volume as a user runs it: one fresh process per tool, imports and operator build included.

    python benchmarks/bench_fbp_process.py --size 256 --angles 500 --before 92aebec \\
        --output benchmarks/fbp-process-256-500.json

The sinograms of a ``size``³ volume of random spheres in a cylinder (``bench_projector._phantom``),
``angles`` over 180°, are made once by astra's CPU ``linear`` projector and saved as ``.npy``. Then each tool
runs in a process of its own, started from nothing: it imports its libraries, reads the sinograms,
reconstructs every slice (ramp filter) and writes the volume as ``.npy``. The wall time of that whole process
(the interpreter's start included; the fastest of ``--repeat`` processes, all kept) and its peak resident
memory are recorded, with the peer, astra-toolbox's CPU FBP slice by slice, in the same run. Each back
projection of ``aiax_bench.recon.fbp`` is measured: ``matrix`` (the stored operator, built in the process),
``fourier`` (a non-uniform FFT, nothing stored) and ``auto`` (what ``fbp`` picks). The difference from
astra's volume is taken over the material (the cylinder less its voids) and stated relative to astra's
maximum there. ``--before COMMIT`` runs the aiax rows again with that commit's code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

#: What each fresh process runs: ``{sino}``, ``{angles}`` and ``{out}`` are file names.
_AIAX = """
import numpy as np
from aiax_bench.recon import fbp
sino = np.load({sino!r}).transpose(1, 0, 2)  # (Z, A, D): detector row z is slice z
angles = np.load({angles!r})
np.save({out!r}, np.asarray(fbp(sino, angles, backprojector={backprojector!r})))
"""

_ASTRA = """
import astra
import numpy as np
sino, angles = np.load({sino!r}), np.load({angles!r})
n = sino.shape[-1]
vol_geom = astra.create_vol_geom(n, n)
proj_geom = astra.create_proj_geom("parallel", 1.0, n, -angles)  # our theta is astra's -theta
pid = astra.create_projector("linear", proj_geom, vol_geom)
out = np.empty((sino.shape[1], n, n), np.float32)
for z in range(sino.shape[1]):
    sid = astra.data2d.create("-sino", proj_geom, np.ascontiguousarray(sino[:, z, :]))
    rid = astra.data2d.create("-vol", vol_geom)
    cfg = astra.astra_dict("FBP")
    cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, FilterType="ram-lak")
    aid = astra.algorithm.create(cfg)
    astra.algorithm.run(aid)
    out[z] = astra.data2d.get(rid)
    astra.algorithm.delete(aid)
    astra.data2d.delete([sid, rid])
np.save({out!r}, out)
"""


def _sinograms(n: int, n_angles: int, folder: Path) -> tuple[Path, Path, np.ndarray]:
    """astra's projections of the phantom, saved (A, Z, D) as a detector reads them."""
    import astra
    from bench_projector import _phantom

    volume = _phantom(n)
    angles = np.linspace(0.0, np.pi, n_angles, endpoint=False)
    vol_geom, proj_geom = astra.create_vol_geom(n, n), astra.create_proj_geom("parallel", 1.0, n, -angles)
    pid = astra.create_projector("linear", proj_geom, vol_geom)
    sino = np.empty((n_angles, n, n), np.float32)
    for z in range(n):
        sid, sino[:, z, :] = astra.create_sino(volume[z], pid)
        astra.data2d.delete(sid)
    astra.projector.delete(pid)
    paths = folder / "sino.npy", folder / "angles.npy"
    np.save(paths[0], sino)
    np.save(paths[1], angles)
    return *paths, volume


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--angles", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="processes per tool; the fastest is kept")
    parser.add_argument("--backprojectors", nargs="+", default=["matrix", "fourier", "auto"])
    parser.add_argument("--before", default=None,
                        help="also run the aiax rows with this git commit's code (a temporary worktree)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/fbp-process.json"))
    args = parser.parse_args(argv)

    from aiax_bench.provenance import hardware

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sino, angles, volume = _sinograms(args.size, args.angles, folder)
        inside = volume > 0
        runs = [("astra-cpu FBP", _ASTRA, {}, None)] + [
            (f"aiax fbp, backprojector={b}", _AIAX, {"backprojector": b}, None) for b in args.backprojectors]
        with ExitStack() as stack:
            if args.before:
                from _worktree import commit_tree

                tree = stack.enter_context(commit_tree(args.before))
                runs += [(f"aiax fbp at {args.before}, backprojector={b}", _AIAX, {"backprojector": b}, tree)
                         for b in args.backprojectors]
            # A process's peak of its children's memory is a running maximum: each tool runs under a parent
            # of its own, so that no tool reads another's peak.
            for name, code, options, source in runs:
                out = folder / "out.npy"
                script = code.format(sino=str(sino), angles=str(angles), out=str(out), **options)
                walls, peaks = zip(*(_measured_in_child(script, source) for _ in range(args.repeat)), strict=True)
                rows.append({"method": name, "wall_s": round(min(walls), 2), "walls_s": [round(w, 2) for w in walls],
                             "peak_rss_mb": round(max(peaks), 1), "volume": np.load(out)})
                print(f"{name}: {min(walls):.2f} s (best of {walls}), {max(peaks):.0f} MB", flush=True)
    reference = rows[0]["volume"]
    scale = float(np.abs(reference[inside]).max())
    for row in rows:
        volume = row.pop("volume")
        difference = (volume - reference)[inside]
        row["rms_vs_astra_of_max"] = float(np.sqrt(np.mean(difference**2)) / scale)
        row["speedup_vs_astra"] = round(rows[0]["wall_s"] / row["wall_s"], 2)
    record = {"benchmark": "FBP of a whole volume, one fresh process per tool", "size": args.size,
              "angles": args.angles, "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "hardware": hardware(), "load_average_end": list(os.getloadavg()), "rows": rows,
              "command": "python benchmarks/bench_fbp_process.py " + " ".join(argv or sys.argv[1:])}
    args.output.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(rows, indent=1))
    return 0


def _measured_in_child(script: str, source: Path | None = None) -> tuple[float, float]:
    """Run ``script`` in a fresh interpreter started by a throw-away parent of its own, so that its peak
    resident memory is the only child peak that parent sees; with the code of ``source`` if given."""
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    probe = textwrap.dedent(f"""
        import resource, subprocess, sys, time
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", {script!r}], check=True)
        wall = time.perf_counter() - start
        print(wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0)
    """)
    # ``python -c`` puts its working directory first on the path: run in the tree whose code is meant.
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env,
                         cwd=source or Path(__file__).resolve().parent.parent).stdout
    wall, peak = (float(v) for v in out.split()[-2:])
    return wall, peak


if __name__ == "__main__":
    raise SystemExit(main())
