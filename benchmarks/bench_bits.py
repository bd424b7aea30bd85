"""Same recipe, same bytes: a dataset store rebuilt with different thread counts.

Builds ``DATASET`` at ``PROFILE`` once per thread count, each in a fresh
process with ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and torch's thread
count set to it, and compares the stores' content sha256 (and every array's
sha256), and each with the content sha256 the registry publishes for that
profile. The CPU's vector extensions are recorded (on a CPU with AVX-512,
MKL's kernels took other code paths than on the machine that published the
stores). Prints a table and writes JSON.

Usage::

    python benchmarks/bench_bits.py --dataset foam@2.0 --profile tiny --threads 1 2 4 \\
        --output benchmarks/bits-foam-tiny.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_BUILD = """
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from aiax_bench.data.build import build_store
from aiax_bench.data.registry import resolve
t0 = time.perf_counter()
attrs = build_store(resolve(sys.argv[1]), sys.argv[2], __import__("pathlib").Path(sys.argv[4]), quiet=True)
import zarr
root = zarr.open_group(sys.argv[4], mode="r")
arrays = {sid: dict(root[f"samples/{sid}"].attrs)["sha256"] for sid in attrs["samples"]}
print(json.dumps({"content_sha256": attrs["content_sha256"], "arrays": arrays,
                  "torch_threads": torch.get_num_threads(), "seconds": round(time.perf_counter() - t0, 1)}))
"""


def build_with_threads(dataset: str, profile: str, threads: int) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", _BUILD, dataset, profile, str(threads),
                               str(Path(tmp) / "store.zarr")], env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _vector_extensions() -> list[str]:
    """The CPU's AVX flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags.split(":", 1)[1].split() if f.startswith("avx"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="foam@2.0")
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--output", type=Path, default=Path("bits.json"))
    args = parser.parse_args()
    from aiax_bench.data.registry import resolve

    registered = (resolve(args.dataset).content_sha256 or {}).get(args.profile)
    runs = {t: build_with_threads(args.dataset, args.profile, t) for t in args.threads}
    first = runs[args.threads[0]]
    differing = sorted({f"{sid}/{name}" for run in runs.values() for sid, arrays in run["arrays"].items()
                        for name, digest in arrays.items() if first["arrays"][sid][name] != digest})
    report = {
        "dataset": args.dataset, "profile": args.profile,
        "content_sha256": {str(t): r["content_sha256"] for t, r in runs.items()},
        "build_seconds": {str(t): r["seconds"] for t, r in runs.items()},
        "identical": len({r["content_sha256"] for r in runs.values()}) == 1 and not differing,
        "registered_content_sha256": registered,
        "matches_registry": None if registered is None else all(r["content_sha256"] == registered
                                                                 for r in runs.values()),
        "differing_arrays": differing,
        "n_arrays": sum(len(a) for a in first["arrays"].values()),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "vector_extensions": _vector_extensions()},
    }
    print("| threads | content sha256 | build s |\n|---|---|---|")
    for t, r in runs.items():
        print(f"| {t} | {r['content_sha256']} | {r['seconds']} |")
    print(f"identical: {report['identical']} ({report['n_arrays']} arrays; differing: {differing or 'none'}); "
          f"matches the registry: {report['matches_registry']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
