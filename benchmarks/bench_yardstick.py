"""The yardstick measured: known volumes through the whole scoring path of a dataset.

Scores the exact phantom, the noise-free reconstruction ``clean``, the
reference scan and every sparse split's FBP input with the Evaluator, then
prints and writes

- where the phantom ranks on each default metric (it must be first);
- the FBP pore-count error against the truth for each number of projections,
  with the reference scan's own error (the protocol's floor) beside it, and
  how far 50 → 250 projections move it.

Usage::

    python benchmarks/bench_yardstick.py --dataset foam@2.0 --profile small \\
        --output benchmarks/yardstick-foam-small.json

The Markdown table is written next to the JSON (``.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

STATISTICS = ("psnr/truth", "ssim/truth", "psnr/clean", "psnr/reference", "jaccard/pore",
              "porosity/rel_error_truth", "pore_count/rel_error_truth", "pore_density_per_mm3/rel_error_truth")


def measure(dataset: str, profile: str, splits: list[str]) -> dict[str, Any]:
    import aiax_bench
    from aiax_bench.evaluation.yardstick import rank_checks, score_known_volumes

    started = time.perf_counter()
    ds = aiax_bench.load(dataset, profile=profile)
    scores = score_known_volumes(ds, splits)
    rows = rank_checks(scores)
    candidates = {name: {key: {k: s["aggregate"][key][k] for k in ("mean", "std", "n")}
                         for key in STATISTICS if key in s["aggregate"]}
                  for name, s in scores.items()}
    count_error = {split: scores[f"fbp:{split}"]["aggregate"]["pore_count/rel_error_truth"]["mean"]
                   for split in splits}
    floor = scores["reference"]["aggregate"]["pore_count/rel_error_truth"]["mean"]
    first, last = splits[0], splits[-1]
    return {
        "dataset": ds.spec.ref, "profile": profile, "dataset_sha256": ds.content_sha256,
        "dataset_build_seconds": ds.attrs.get("build_seconds"),
        "n_test_volumes": len(scores["truth"]["records"]),
        "evaluator_version": scores["truth"]["records"][0]["evaluator_version"],
        "segmentation_protocol": scores["truth"]["records"][0]["segmentation_protocol"],
        "segmentation_threshold": scores["truth"]["records"][0]["segmentation_threshold"],
        "rank_checks": rows,
        "truth_first_on_every_metric": all(r["truth_first"] for r in rows),
        "candidates": candidates,
        "fbp_pore_count_rel_error_truth": count_error,
        "reference_pore_count_rel_error_truth": floor,
        "pore_count_error_ratio": {"from": first, "to": last,
                                   "ratio": abs(count_error[first]) / max(abs(count_error[last]), 1e-12)},
        "seconds": round(time.perf_counter() - started, 1),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
    }


def table(report: dict[str, Any]) -> str:
    def fmt(value: float) -> str:
        return "∞" if np.isinf(value) else f"{value:.4g}"

    lines = [f"Yardstick of {report['dataset']} ({report['profile']} profile, {report['n_test_volumes']} test "
             f"volumes; evaluator {report['evaluator_version']}, porosity protocol "
             f"{report['segmentation_protocol']}, threshold {report['segmentation_threshold']} 1/cm)", "",
             "| candidate | " + " | ".join(STATISTICS) + " |", "|---" * (len(STATISTICS) + 1) + "|"]
    for name, stats in report["candidates"].items():
        lines.append(f"| {name} | " + " | ".join(fmt(stats[k]["mean"]) if k in stats else "–"
                                                 for k in STATISTICS) + " |")
    lines += ["", "| metric | phantom | best other | phantom first |", "|---|---|---|---|"]
    for row in report["rank_checks"]:
        other = row["best_other"]
        lines.append(f"| {row['metric']} | {fmt(row['truth'])} | {other['name']} {fmt(other['value'])} | "
                     f"{'yes' if row['truth_first'] else 'NO'} |")
    ratio = report["pore_count_error_ratio"]
    lines += ["", "FBP pore-count error against the truth: "
              + ", ".join(f"{s} {v:+.1%}" for s, v in report["fbp_pore_count_rel_error_truth"].items())
              + f"; reference scan (floor) {report['reference_pore_count_rel_error_truth']:+.1%}; "
              f"{ratio['from']} → {ratio['to']} moves it {ratio['ratio']:.1f}×."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="foam@2.0")
    parser.add_argument("--profile", default="small")
    parser.add_argument("--splits", nargs="+", default=["50proj", "75proj", "100proj", "150proj", "250proj"])
    parser.add_argument("--output", type=Path, default=Path("yardstick.json"))
    args = parser.parse_args()
    report = measure(args.dataset, args.profile, args.splits)
    text = table(report)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=float) + "\n")
    args.output.with_suffix(".md").write_text(text + "\n")


if __name__ == "__main__":
    main()
