"""Real raw scans, end to end through the command line: import, evaluate, train, apply.

    python benchmarks/real_import.py [--realdata DIR] [--workdir DIR]

1. ``aiax-bench import`` the APS tooth (HDF5 data-exchange, raw counts) and the
   Diamond I13 cylinder (TIFF projections, flat, dark, angles; rings removed),
   each with a sparse split of its own projections (``--subsample``).
2. On I13 (45 of its 91 projections): ``aiax-bench evaluate`` tuned FBP and
   Noise2Inverse (3 seeds, self-supervised on the import's own sinograms),
   scored against the import's reference (all 91 projections).
3. On the tooth (45 of 181 projections): ``aiax-bench train`` a U-Net on
   foam@2.0 100proj, ``aiax-bench apply --match-intensity`` it to the tooth's
   sparse reconstruction, and score it, the ramp FBP input and a Hann FBP of
   the same projections against the tooth's reference.

Writes ``benchmarks/real-import.json``, ``benchmarks/real-import.md`` and the
slices ``benchmarks/real-import-tooth.png`` and ``benchmarks/real-import-i13.png``.
Imports go to the user data directory as ``real-tooth`` and ``real-i13``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DOCUMENTED_CENTER = {"real-tooth": 295.5, "real-i13": 86.5}
SEEDS = ("0", "1", "2")


def cli(*args: str, workdir: Path) -> str:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-m", "aiax_bench.cli", *args], capture_output=True, text=True, env=env)
    (workdir / "commands.log").open("a").write(f"$ aiax-bench {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise SystemExit(f"aiax-bench {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def imports(root: Path, workdir: Path) -> dict[str, dict]:
    i13 = root / "i13-diamond"
    commands = {
        "real-tooth": ["import", str(root / "tooth-aps" / "tooth.h5"), "--name", "real-tooth", "--subsample", "45"],
        "real-i13": ["import", str(i13 / "tiffs"), "--name", "real-i13", "--flats", str(i13 / "flat_00001.tiff"),
                     "--darks", str(i13 / "dark_00001.tiff"), "--angles", str(i13 / "angles.txt"), "--rings",
                     "--subsample", "45"],
    }
    out = {}
    for name, args in commands.items():
        stdout = cli(*args, "--force", workdir=workdir)
        center = float(re.search(r"centre of rotation ([0-9.]+) px", stdout).group(1))
        out[name] = {"command": "aiax-bench " + " ".join(a if not a.startswith(str(root)) else
                                                        "<realdata>" + a[len(str(root)):] for a in args),
                     "center_px": center, "documented_center_px": DOCUMENTED_CENTER[name],
                     "difference_px": round(center - DOCUMENTED_CENTER[name], 3)}
    return out


def _means(result_file: Path) -> dict[str, dict[str, float]]:
    result = json.loads(result_file.read_text())
    keys = ("psnr/reference", "ssim/reference", "ssim_slices/reference", "porosity/rel_error_reference")
    return {k: {"mean": result["metrics"][k]["mean"], "std": result["metrics"][k].get("std"),
                "n_seeds": result["metrics"][k]["n_seeds"]} for k in keys if k in result["metrics"]}


def i13_methods(workdir: Path) -> dict[str, dict]:
    rows = {}
    for method, extra in (("fbp-ramp", []), ("fbp", []),
                          ("noise2inverse", ["--seeds", *SEEDS, "--config", "max_seconds=null"])):
        stdout = cli("evaluate", "--dataset", "real-i13", "--split", "45proj", "--method", method, *extra,
                     "--output", str(workdir / "results"), "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}",
                     workdir=workdir)
        rows[method] = _means(Path(re.search(r"result file (\S+)", stdout).group(1)))
    return rows


def tooth_apply(workdir: Path) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    from aiax_bench.data.loader import load
    from aiax_bench.evaluation.metrics import psnr, ssim_slices
    from aiax_bench.recon import fbp

    stdout = cli("train", "--method", "unet", "--dataset", "foam@2.0", "--split", "100proj", "--seed", "0",
                 "--config", "max_seconds=null", workdir=workdir)
    checkpoint = re.search(r"checkpoint: (\S+)", stdout).group(1)
    dataset = load("real-tooth")
    sample = dataset.split("45proj").test[0]
    low, high, mask = (np.asarray(sample.read(k)) for k in ("low", "high", "mask"))
    np.save(workdir / "tooth-45proj.npy", low)
    record = json.loads(cli("apply", "--checkpoint", checkpoint, "--input", str(workdir / "tooth-45proj.npy"),
                            "--output", str(workdir / "tooth-unet.npy"), "--match-intensity",
                            workdir=workdir) and (workdir / "tooth-unet.npy.json").read_text())
    voxel_cm = dataset.spec.recipe["voxel_size_um"] * 1e-4
    hann = np.asarray(fbp(np.asarray(sample.read("sinogram")), sample.angles, filter="hann")) / voxel_cm
    candidates = {"FBP ramp (the input)": low, "FBP Hann": hann.astype(np.float32),
                  "U-Net trained on foam 100proj, applied": np.load(workdir / "tooth-unet.npy")}
    data_range = dataset.spec.evaluation["data_range"]
    rows = {name: {"psnr/reference": psnr(v, high, data_range=data_range, mask=mask),
                   "ssim_slices/reference": ssim_slices(v, high, data_range=data_range, mask=mask)}
            for name, v in candidates.items()}
    rows["U-Net trained on foam 100proj, applied"]["intensity_map"] = record["intensity_map"]
    return rows, {**candidates, "reference (all 181 projections, FBP Hann)": high}


def figure(name: str, images: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = next(v for k, v in images.items() if k.startswith("reference"))
    mid = reference.shape[0] // 2
    lo, hi = np.percentile(reference[mid], [1, 99.5])
    fig, axes = plt.subplots(1, len(images), figsize=(4.2 * len(images), 4.6))
    for ax, (label, volume) in zip(np.atleast_1d(axes), images.items(), strict=True):
        ax.imshow(volume[mid], cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(HERE / f"real-import-{name}.png", dpi=70)
    plt.close(fig)


def i13_images() -> dict[str, np.ndarray]:
    from aiax_bench.data.loader import load

    sample = load("real-i13").split("45proj").test[0]
    return {"45 of 91 projections, FBP ramp": np.asarray(sample.read("low")),
            "reference (all 91 projections, FBP Hann)": np.asarray(sample.read("high"))}


def markdown(doc: dict) -> str:
    lines = ["# Real scans, imported and scored against their own reference", "",
             "Made by `python benchmarks/real_import.py`.", "", "## Import: raw files to a dataset in one command", "",
             "| scan | centre found (px) | documented (px) | difference (px) |", "|---|---|---|---|"]
    for name, row in doc["imports"].items():
        lines.append(f"| {name} | {row['center_px']:.2f} | {row['documented_center_px']} | "
                     f"{row['difference_px']:+.2f} |")
    lines += ["", "## I13: 45 of 91 projections, against the reference of all 91", "",
              "| method | seeds | PSNR (dB) | SSIM 3D | porosity error vs reference |", "|---|---|---|---|---|"]
    for method, m in doc["i13"].items():
        std = m["psnr/reference"]["std"]
        lines.append(f"| {method} | {m['psnr/reference']['n_seeds']} | {m['psnr/reference']['mean']:.2f}"
                     f"{f' ± {std:.2f}' if std else ''} | {m['ssim/reference']['mean']:.4f} | "
                     f"{100 * m['porosity/rel_error_reference']['mean']:+.1f} % |")
    lines += ["", "## Tooth: 45 of 181 projections, against the reference of all 181", "",
              "| reconstruction | PSNR (dB) | SSIM (slice mean) |", "|---|---|---|"]
    for name, m in doc["tooth"].items():
        lines.append(f"| {name} | {m['psnr/reference']:.2f} | {m['ssim_slices/reference']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=HERE.parents[1] / "shared" / "realdata")
    parser.add_argument("--workdir", type=Path, default=None, help="results and logs (default: a temporary folder)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="real-import-"))
    workdir.mkdir(parents=True, exist_ok=True)
    doc = {"imports": imports(args.realdata, workdir)}
    doc["i13"] = i13_methods(workdir)
    doc["tooth"], tooth_images = tooth_apply(workdir)
    figure("tooth", tooth_images, "APS tooth: 45 of 181 projections; foam-trained U-Net applied with --match-intensity")
    figure("i13", i13_images(), "Diamond I13: imported with rings removed, 45 of 91 projections")
    (HERE / "real-import.json").write_text(json.dumps(doc, indent=1) + "\n")
    (HERE / "real-import.md").write_text(markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
