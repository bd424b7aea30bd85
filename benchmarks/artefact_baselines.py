"""Baselines on the artefact splits of a dataset: FBP, FBP after stripe removal or linearisation, a U-Net.

    python benchmarks/artefact_baselines.py --profile tiny --output benchmarks/artefact-baselines-tiny.json
    python benchmarks/artefact_baselines.py --profile small --learned --output benchmarks/artefact-baselines-small.json
    python benchmarks/artefact_baselines.py --profile small --learned --splits beam-hardening \
        --output benchmarks/artefact-beam-hardening-small.json
    python benchmarks/artefact_baselines.py --profile small --dataset composite@2.1 \
        --output benchmarks/artefact-baselines-composite-small.json
    python benchmarks/artefact_baselines.py --profile small --learned --dataset am-metal@2.1 \
        --output benchmarks/artefact-baselines-am-metal-small.json

Each row is one `aiax-bench evaluate` on an artefact split, scored against the truth on the held-out test
volumes (foam@2.1's detector artefacts; foam@2.2's beam hardening, the one split it adds to 2.1): `fbp`
(seed 0) tuned on the validation volumes (`tune=reference`), with and without the sorting-based stripe removal
(`remove_rings=true`, its window tuned with the filter) or the linearisation with the recorded spectrum
(`linearise=true`), and the stripe removal at algotom's default window (21 pixels, `tune=none`, cosine filter)
to show why the window is tuned. With `--learned`, the U-Net (CPU preset, a fixed number of steps) on every
artefact split, seeds 0, 1 and 2: the row holds the mean and the standard deviation over the seeds of each
seed's mean over the test volumes. ``--dataset`` runs the rows on another dataset's splits of those names
(a cone-beam dataset's with FDK in place of FBP); a dataset without porosity statistics (mouse) has no
pore-count column.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

ROWS = [
    ("beam-hardening", "FBP, tuned", {"tune": "reference"}),
    ("beam-hardening", "linearisation + FBP, tuned", {"tune": "reference", "linearise": True}),
    ("rings", "FBP, tuned", {"tune": "reference"}),
    ("blur", "FBP, tuned", {"tune": "reference"}),
    ("zingers", "FBP, tuned", {"tune": "reference"}),
    ("rings", "stripe removal + FBP, tuned", {"tune": "reference", "remove_rings": True}),
    ("rings", "stripe removal (window 21) + FBP (cosine)", {"tune": "none", "filter": "cosine",
                                                             "remove_rings": True, "ring_size": 21}),
    ("flat-noise", "FBP, tuned", {"tune": "reference"}),
    ("flat-noise", "stripe removal + FBP, tuned", {"tune": "reference", "remove_rings": True}),
]
#: The learned rows (``--learned``): one network on every artefact split, three seeds.
LEARNED = [(split, "U-Net (CPU preset)", {"max_seconds": None})
           for split in ("rings", "blur", "zingers", "flat-noise", "beam-hardening")]
#: The dataset of each split: foam@2.2 is foam@2.1 (the same bytes) and a beam-hardening split.
DATASETS = {"beam-hardening": "foam@2.2"}
SEEDS = (0, 1, 2)


def main() -> None:
    from aiax_bench.harness import EvaluationRequest, run_seeds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/artefact-baselines-tiny.json"))
    parser.add_argument("--learned", action="store_true", help="add the U-Net on every split (3 seeds)")
    parser.add_argument("--learned-only", action="store_true", help="only the U-Net rows")
    parser.add_argument("--splits", nargs="+", default=None, help="only the rows of these splits")
    parser.add_argument("--dataset", default=None, help="the rows' splits of this dataset (default: foam@2.1/2.2)")
    args = parser.parse_args()
    rows = []
    plan = [] if args.learned_only else [("fbp", (0,), row) for row in ROWS]
    plan += [("unet", SEEDS, row) for row in LEARNED] if args.learned or args.learned_only else []
    plan = [item for item in plan if args.splits is None or item[2][0] in args.splits]
    if args.dataset:
        from aiax_bench.data.registry import resolve

        plan = [item for item in plan if item[2][0] in resolve(args.dataset).splits]
    with tempfile.TemporaryDirectory() as tmp:
        tracking = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        for method, seeds, (split, label, config) in plan:
            dataset = args.dataset or DATASETS.get(split, "foam@2.1")
            result = run_seeds(EvaluationRequest(method=method, dataset=dataset, profile=args.profile, split=split,
                                                 config=config, tracking_uri=tracking, output_dir=Path(tmp) / "r",
                                                 figures=False), list(seeds))
            m = result["metrics"]
            row = {"dataset": dataset, "split": split, "method": label, "config": config, "seeds": list(seeds),
                   "selected": result["runs"][0]["fit_summary"].get("selected"),
                   "psnr_truth_db": round(m["psnr/truth"]["mean"], 3),
                   "ssim_truth": round(m["ssim/truth"]["mean"], 4),
                   "test_volumes": m["psnr/truth"]["n_volumes"],
                   "dataset_sha256": result["provenance"]["dataset_sha256"]}
            if "pore_count/rel_error_truth" in m:
                row["pore_count_rel_error_truth"] = round(m["pore_count/rel_error_truth"]["mean"], 4)
            if len(seeds) > 1:
                row["psnr_truth_db_std_over_seeds"] = round(m["psnr/truth"]["std_over_seeds"], 3)
            rows.append(row)
            print(f"{split:<11} {label:<45} {rows[-1]['psnr_truth_db']:7.2f} dB")
    where = f"{args.dataset}'s" if args.dataset else "foam@2.1's and 2.2's"
    doc = {"benchmark": f"baselines on {where} artefact splits", "profile": args.profile, "rows": rows,
           "command": f"python benchmarks/artefact_baselines.py --profile {args.profile}"
                      f"{' --learned' if args.learned else ''}{' --learned-only' if args.learned_only else ''}"
                      f"{' --splits ' + ' '.join(args.splits) if args.splits else ''}"
                      f"{' --dataset ' + args.dataset if args.dataset else ''} --output {args.output}"}
    args.output.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
