"""Real raw scans to slices: the centre found against the documented one, and the slices.

    python benchmarks/real_reconstruction.py [--realdata DIR]

For the APS tooth (HDF5 data-exchange) and the Diamond I13 cylinder (TIFF
projections, one flat, one dark, an angles file; rings removed), writes
``benchmarks/real-<scan>.json`` (centre found, provenance) and
``benchmarks/real-<scan>.png`` (a slice about the found centre and about the
detector's centre, where the off-centre axis doubles edges).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from aiax_bench.ingest import read_scan, reconstruct

HERE = Path(__file__).resolve().parent
#: scan name: (source, reader options, documented centre (px), rows, ring removal)
SCANS = {
    "tooth": ("tooth-aps/tooth.h5", {}, 295.5, slice(0, 1), False),
    "i13": ("i13-diamond/tiffs", {"flat": "i13-diamond/flat_00001.tiff", "dark": "i13-diamond/dark_00001.tiff",
                                  "angles": "i13-diamond/angles.txt"}, 86.5, slice(60, 76), True),
}


def one(root: Path, name: str) -> dict:
    source, options, documented, rows, rings = SCANS[name]
    options = {k: root / v for k, v in options.items()}
    start = time.perf_counter()
    found, provenance = reconstruct(read_scan(root / source, **options), rows=rows, rings=rings)
    seconds = time.perf_counter() - start
    width = found.shape[-1]
    naive, _ = reconstruct(read_scan(root / source, **options), rows=rows, rings=rings, center=(width - 1) / 2)
    center = provenance["center"]["pixels"]
    doc = {"source": source, "documented_center_px": documented, "found_center_px": center,
           "difference_px": center - documented, "detector_center_px": (width - 1) / 2,
           "seconds": round(seconds, 1), "provenance": provenance}
    (HERE / f"real-{name}.json").write_text(json.dumps(doc, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mid = len(found) // 2
    lo, hi = np.percentile(found[mid], [1, 99.5])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2))
    for ax, image, title in ((axes[0], found[mid], f"centre found: {center:.2f} px"),
                             (axes[1], naive[mid], f"detector centre: {(width - 1) / 2:.1f} px")):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{source}: raw projections → flat/dark, −log{', rings removed' if rings else ''}, centre, "
                 "FBP (Hann)")
    fig.tight_layout()
    fig.savefig(HERE / f"real-{name}.png", dpi=80)
    return {k: v for k, v in doc.items() if k != "provenance"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=HERE.parents[1] / "shared" / "realdata")
    args = parser.parse_args()
    for name in SCANS:
        print(json.dumps(one(args.realdata, name)))


if __name__ == "__main__":
    main()
