"""The build time each built store recorded (`build_seconds`), with its dataset, profile and content sha256.

    python benchmarks/store_build_times.py --root "$AIAX_BENCH_DATA" --note "..." \\
        --output benchmarks/store-build-times.json

Every ``<root>/<name>/<version>/<profile>.zarr`` is listed: the seconds its build took, wall clock, as
``datasets build`` measured them, and its content sha256, so that a row can be matched with the registry.
What else the machine ran meanwhile is not in the stores: say it with ``--note``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    import zarr

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, nargs="+", required=True, help="data roots holding built stores")
    parser.add_argument("--note", default="", help="the conditions of the builds (load, other jobs)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/store-build-times.json"))
    args = parser.parse_args()
    rows = []
    for root in args.root:
        for store in sorted(root.glob("*/*/*.zarr")):
            attrs = zarr.open_group(str(store), mode="r").attrs
            if "content_sha256" not in attrs:
                continue  # not a complete simulated store
            rows.append({"dataset": f"{attrs['name']}@{attrs['version']}", "profile": attrs["profile"],
                         "samples": len(attrs.get("samples", [])), "splits": len(attrs.get("splits", [])),
                         "build_seconds": attrs.get("build_seconds"), "content_sha256": attrs["content_sha256"]})
            print(json.dumps(rows[-1]))
    args.output.write_text(json.dumps({
        "benchmark": "build seconds recorded by each store", "rows": rows, "note": args.note,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/store_build_times.py --root DATA_ROOT [...] --note NOTE "
                   f"--output {args.output}"}, indent=1) + "\n")


if __name__ == "__main__":
    main()
