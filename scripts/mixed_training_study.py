"""Train on one number of angles or on their mixture, test on every one: does the PSNR curve go flat?

The biomedical users report that a U-Net trained at one noise level generalises
poorly, and that training on a mixture (equal shares of 30, 60, 90, 120 and 150
angles) gives a flat PSNR over the number of angles. This study checks the
claim on mouse@1.0 through the one harness::

    python scripts/mixed_training_study.py --out results/mouse-mixed-training [--profile small]

For every training protocol (each split alone, then ``--train-splits`` with all
five) and every test split, the U-Net (the users' tanh activations) is
evaluated with seeds 0, 1 and 2; tuned FBP on each test split is the classical
row. Each training is cached as a checkpoint, so a protocol trains once per
seed and is then scored on every test split. Results accumulate in
``<out>/summary.json`` (a finished cell is never run again: the study resumes);
the figure is drawn from it (``--figure docs/figures/mouse-mixed-training.png``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DATASET = "mouse@1.0"
SPLITS = ("30proj", "60proj", "90proj", "120proj", "150proj")
SEEDS = (0, 1, 2)
#: The users' U-Net: tanh activations; a fixed number of steps, never a wall-clock cap (the load would decide).
UNET_CONFIG = {"activation": "tanh", "max_seconds": None}
METRICS = ("psnr/truth", "ssim/truth")


def _protocols() -> list[tuple[str, list[str]]]:
    return [(split, [split]) for split in SPLITS] + [("mixed", list(SPLITS))]


def _cell(result: dict, seeds) -> dict:
    """Each seed's mean over the test volumes of :data:`METRICS` (the result document holds every record)."""
    from aiax_bench.results import aggregate_runs

    per_seed = {}
    for run in result["runs"]:
        agg = aggregate_runs([{"records": run["records"]}])
        per_seed[str(run["seed"])] = {m: agg[m]["mean"] for m in METRICS}
    return {"seeds": list(seeds), "per_seed": per_seed}


def run(out: Path, profile: str) -> dict:
    from aiax_bench.harness import EvaluationRequest, run_seeds

    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {
        "dataset": DATASET, "profile": profile, "splits": list(SPLITS), "unet_config": UNET_CONFIG, "cells": {}}
    cells = summary["cells"]
    todo = [("fbp", "fbp", None, test, (0,), {}) for test in SPLITS]
    todo += [("unet", name, mixture, test, SEEDS, UNET_CONFIG) for name, mixture in _protocols() for test in SPLITS]
    for method, protocol, mixture, test, seeds, config in todo:
        key = f"{method}|{protocol}|{test}"
        if key in cells:
            continue
        request = EvaluationRequest(method=method, split=test, dataset=DATASET, profile=profile, config=dict(config),
                                    output_dir=out / "runs", train_splits=mixture,
                                    tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
        result = run_seeds(request, list(seeds))
        cells[key] = {"method": method, "trained_on": protocol, "tested_on": test,
                      "result_file": os.path.relpath(result["result_path"], out) if "result_path" in result else None,
                      **_cell(result, seeds)}
        summary_path.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"{key}: " + ", ".join(f"{m} {sum(v[m] for v in cells[key]['per_seed'].values()) / len(seeds):.3f}"
                                     for m in METRICS), flush=True)
    return summary


def figure(summary: dict, path: Path) -> None:
    """PSNR against the truth over the number of angles: one line per training protocol, mean ± std of seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    angles = [int(s.removesuffix("proj")) for s in summary["splits"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150)
    cells = summary["cells"]
    lines = [("fbp", "fbp", "tuned FBP", dict(color="0.4", linestyle=":", marker="s"))]
    lines += [("unet", s, f"U-Net trained on {s}", dict(alpha=0.6, marker="o", markersize=3))
              for s in summary["splits"]]
    lines += [("unet", "mixed", "U-Net trained on the mixture", dict(color="black", linewidth=2.2, marker="D"))]
    for method, protocol, label, style in lines:
        keys = [f"{method}|{protocol}|{s}" for s in summary["splits"]]
        if not all(k in cells for k in keys):
            continue
        values = np.array([[v["psnr/truth"] for v in cells[k]["per_seed"].values()] for k in keys])
        mean = values.mean(axis=1)
        std = values.std(axis=1, ddof=1) if values.shape[1] > 1 else np.zeros_like(mean)
        ax.errorbar(angles, mean, yerr=std, label=label, capsize=2, **style)
    ax.set_xlabel("projections (of a 600-angle reference)")
    ax.set_ylabel("PSNR vs the exact phantom (dB)")
    ax.set_xticks(angles)
    ax.set_title(f"{summary['dataset']} {summary['profile']}: single-split vs mixed training (3 seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="study folder (summary.json, result files)")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--figure", type=Path, help="where to draw the figure (PNG)")
    parser.add_argument("--figure-only", action="store_true", help="draw from the summary, run nothing")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    summary = json.loads((args.out / "summary.json").read_text()) if args.figure_only else run(args.out,
                                                                                              args.profile)
    if args.figure:
        figure(summary, args.figure)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
