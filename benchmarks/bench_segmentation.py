"""Segmentation task: unet-seg (2D / 2.5D / 3D) against the threshold baseline, over seeds.

Runs ``aiax-bench evaluate`` (through :func:`aiax_bench.harness.run_evaluation`,
so every run is a normal result file and MLflow run) for each method, split,
annotated-k protocol and seed of the grid, then prints one table of the mean
± standard deviation over seeds of the per-class Jaccard index, with the
parameter count, training time and inference time per volume, and writes it
as JSON. Existing result files in ``--results`` are reused, so an interrupted
grid resumes and ``--table-only`` tabulates what is there.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_segmentation.py --dataset composite \\
        --results seg-results --output benchmarks/results/segmentation.json

The default grid is the issue's: composite, small profile, ``reference`` (the
reference scan as input) and ``100proj``, annotated-5, unet-seg presets 2d,
2.5d and 3d with seeds 0, 1, 2, and the threshold presets (multi-Otsu, with
clean-up, and thresholds from the annotated labels).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aiax_bench.results import sample_std

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

UNET_PRESETS = ("2d", "2.5d", "3d")
THRESHOLD_CONFIGS = ({"preset": "otsu"}, {"preset": "clean"}, {"thresholds": "labels"})


def grid(args: argparse.Namespace) -> list[tuple[str, str, int | None, int, dict]]:
    runs = []
    for split in args.splits:
        for config in THRESHOLD_CONFIGS:
            runs.append(("threshold", split, args.annotated, 0, config))
        for preset in args.presets:
            for seed in args.seeds:
                runs.append(("unet-seg", split, args.annotated, seed, {"preset": preset}))
    return runs


def label(method: str, config: dict) -> str:
    """The method and the options in which ``config`` (a preset or a full config) departs from the defaults."""
    from aiax_bench.methods import get_method

    cls = get_method(method)
    default, full = cls().config_dict(), cls(config).config_dict()
    changed = {k: v for k, v in full.items() if default.get(k) != v}
    return f"{method} {' '.join(f'{k}={v}' for k, v in changed.items())}".strip()


def existing(results: Path) -> dict[tuple, dict]:
    """Result files already in ``results``, by (method + config, split, annotated, seed)."""
    found = {}
    for path in results.rglob("*.json"):
        doc = json.loads(path.read_text())
        if doc.get("schema_version") != 2 or len(doc.get("seeds", [])) != 1:
            continue
        seed = doc["seeds"][0]
        found[(label(doc["method"], doc["config"]), doc["split"], doc.get("annotated_slices"), seed)] = doc
    return found


def run_grid(args: argparse.Namespace) -> None:
    from aiax_bench.harness import EvaluationRequest, run_evaluation

    done = existing(args.results)
    for method, split, k, seed, config in grid(args):
        if (label(method, config), split, k, seed) in done:
            continue
        print(f"running {label(method, config)} on {args.dataset}/{split} annotated-{k} seed {seed}",
              file=sys.stderr, flush=True)
        run_evaluation(EvaluationRequest(method=method, split=split, dataset=args.dataset, profile=args.profile,
                                         seed=seed, config=config, annotated_slices=k,
                                         tracking_uri=args.tracking_uri, output_dir=args.results))


def table(results: Path) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for (name, split, k, _), doc in existing(results).items():
        groups[(name, split, k)].append(doc)
    rows = []
    for (name, split, k), docs in sorted(groups.items(), key=lambda kv: (kv[0][1], str(kv[0][2]), kv[0][0])):
        classes = [key.split("/", 1)[1] for key in docs[0]["metrics"] if key.startswith("jaccard/")]
        row = {"method": name, "split": split, "annotated_slices": k, "seeds": sorted(d["seeds"][0] for d in docs)}
        for c in classes:
            values = np.array([d["metrics"][f"jaccard/{c}"]["mean"] for d in docs])
            row[f"jaccard/{c}"] = {"mean": float(values.mean()), "std": sample_std(values)}
        for key in ("parameters", "train_seconds", "inference_seconds_per_volume"):
            row[key] = float(np.mean([d["runs"][0]["efficiency"][key] for d in docs]))
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    classes = sorted({k.split("/", 1)[1] for r in rows for k in r if k.startswith("jaccard/")} - {"mean"})
    head = ["method", "split", "k", "seeds", *[f"J {c}" for c in classes], "J mean", "params", "train s",
            "infer s/vol"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        cells = [r["method"], r["split"], str(r["annotated_slices"] or "all"), str(len(r["seeds"]))]
        for c in [*classes, "mean"]:
            m = r.get(f"jaccard/{c}")
            cells.append("–" if m is None else f"{m['mean']:.3f}" + ("" if m['std'] is None else f" ± {m['std']:.3f}"))
        cells += [f"{r['parameters']:,.0f}", f"{r['train_seconds']:.0f}", f"{r['inference_seconds_per_volume']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="composite")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--splits", nargs="+", default=["reference", "100proj"])
    parser.add_argument("--annotated", type=int, default=5, help="annotated-k protocol (slices per volume)")
    parser.add_argument("--presets", nargs="+", default=list(UNET_PRESETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results", type=Path, default=Path("seg-results"), help="result files (reused)")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default sqlite:///mlflow.db)")
    parser.add_argument("--output", type=Path, default=Path("bench_segmentation.json"))
    parser.add_argument("--table-only", action="store_true", help="tabulate the result files, run nothing")
    args = parser.parse_args(argv)
    if not args.table_only:
        run_grid(args)
    rows = table(args.results)
    print_table(rows)
    from aiax_bench.provenance import code_provenance, hardware

    code = {k: v for k, v in code_provenance().items() if k != "command"}  # the command holds local paths
    doc = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "dataset": args.dataset,
           "profile": args.profile, "hardware": hardware(), **code, "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
