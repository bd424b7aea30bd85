"""``analyze`` on real segmented and grey-value volumes with documented answers.

    python benchmarks/analyze_realdata.py [--realdata DIR]

Writes ``benchmarks/analyze-realdata.json`` and ``.md``: the porosity of the
porespy sandstones (Bentheimer 500³, Berea 200³, Leopard 100³) against their
documented values, and, for the qim3d cement, the analysis against an
independent Otsu threshold and connected-component count (scikit-image, scipy).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from aiax_bench.evaluation import porosity as pz
from aiax_bench.evaluation.analyze import analyze_volume, read_volume

HERE = Path(__file__).resolve().parent
SANDSTONES = [  # file, reader options, pore value, voxel (µm), documented porosity
    ("bentheimer.npz", {}, True, 1.0, 0.200),
    ("test_berea.zip", {"raw_shape": (200, 200, 200), "raw_dtype": "uint8"}, 0, 5.345, 0.199),
    ("image_Leopard_slice100.npy", {}, 1, 2.25, 0.262),
]


def sandstone(root: Path, name: str, options: dict, pore_value, voxel_um: float, documented: float) -> dict:
    path = root / "porespy-sandstones" / name
    with tempfile.TemporaryDirectory() as tmp:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                [raw] = [n for n in archive.namelist() if n.endswith(".raw")]
                path = Path(archive.extract(raw, tmp))
        volume = read_volume(path, **options)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyze_volume(volume, voxel_size_um=voxel_um, pore_value=pore_value, partition="components",
                                  thickness=False)
    porosity = analysis.statistics["porosity"]
    return {"volume": name, "shape": list(volume.shape), "documented_porosity": documented,
            "porosity": round(porosity, 5), "difference": round(porosity - documented, 5),
            "percolates": analysis.percolates, "seconds": round(time.perf_counter() - start, 1)}


def cement(root: Path) -> dict:
    volume = read_volume(root / "qim3d-microct" / "cement_128x128x128.tif")
    analysis = analyze_volume(volume, voxel_size_um=1.0, thickness=False)
    threshold = float(threshold_otsu(volume.astype(np.float64), nbins=256))
    labels, _ = ndimage.label(volume < threshold)
    sizes = np.bincount(labels.ravel())[1:]
    kept = np.flatnonzero(sizes >= pz.MIN_PORE_VOXELS) + 1
    faces = np.zeros(volume.shape, dtype=bool)
    faces[[0, -1]] = faces[:, [0, -1]] = faces[:, :, [0, -1]] = True
    cut = np.isin(kept, np.unique(labels[faces]))
    return {"volume": "cement_128x128x128.tif", "threshold": analysis.threshold, "independent_threshold": threshold,
            "pore_count": analysis.statistics["pore_count"],
            "independent_pore_count": float((~cut).sum() + 0.5 * cut.sum()),
            "porosity": analysis.statistics["porosity"],
            "independent_porosity": float(sizes[kept - 1].sum() / volume.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=HERE.parents[1] / "shared" / "realdata")
    args = parser.parse_args()
    rows = [sandstone(args.realdata, *spec) for spec in SANDSTONES]
    doc = {"sandstones": rows, "cement": cement(args.realdata)}
    (HERE / "analyze-realdata.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["| volume | shape | documented porosity | analyze | difference | percolates | seconds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['volume']} | {'×'.join(map(str, r['shape']))} | {r['documented_porosity']:.3f} | "
              f"{r['porosity']:.4f} | {r['difference']:+.4f} | {', '.join(r['percolates']) or 'no'} | {r['seconds']} |"
              for r in rows]
    c = doc["cement"]
    lines += ["", "| cement (qim3d) | analyze | independent (skimage Otsu + scipy label) |", "|---|---|---|",
              f"| threshold | {c['threshold']:.4f} | {c['independent_threshold']:.4f} |",
              f"| pore count | {c['pore_count']:g} | {c['independent_pore_count']:g} |",
              f"| porosity | {c['porosity']:.5f} | {c['independent_porosity']:.5f} |"]
    (HERE / "analyze-realdata.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
