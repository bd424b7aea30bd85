"""``aiax-bench study``: methods × splits × seeds through the one harness, with a table, figures and a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiax_bench.errors import InputError

__all__ = ["add_subcommands"]


def _method_configs(pairs: list[str], methods: list[str]) -> dict[str, dict]:
    """``METHOD:KEY=VALUE`` pairs into per-method ``--config`` overrides."""
    from aiax_bench.methods.base import parse_config_pairs

    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        method, sep, rest = pair.partition(":")
        if not sep or method not in methods:
            raise InputError(f"--config {pair!r}", "does not name a method of the study",
                             f"METHOD:KEY=VALUE with METHOD one of {', '.join(methods)}")
        grouped.setdefault(method, []).append(rest)
    return {m: parse_config_pairs(p) for m, p in grouped.items()}


def cmd_study(args: argparse.Namespace) -> int:
    from aiax_bench.study import StudyPlan, run_study

    plan = StudyPlan(methods=args.method, splits=args.splits, seeds=args.seeds, dataset=args.dataset,
                     profile=args.profile, out=Path(args.out), configs=_method_configs(args.config, args.method),
                     tolerance=args.tolerance / 100, save_predictions=args.save_predictions, threads=args.threads)
    manifest = run_study(plan, cluster=args.cluster, workers=args.workers,
                         cluster_config=Path(args.cluster_config) if args.cluster_config else None,
                         tracking_uri=args.tracking_uri)
    answers = Path(plan.out) / "report" / "answers.json"
    if answers.exists():
        import json

        for answer in json.loads(answers.read_text()):
            if answer["statistic"] == "porosity":
                print(answer["sentence"])
    reused = len(manifest["reused"])
    print(f"{len(manifest['tasks'])} evaluations ({reused} reused) in {manifest['seconds']} s; "
          f"report {manifest.get('report', 'not written')}")
    return 0


def add_subcommands(sub) -> None:
    st = sub.add_parser(
        "study", help="an acquisition study: methods at several splits and seeds, one table, figures and a report",
        description="Run every (method, split, seed) evaluation through the one harness on a dask cluster "
                    "(finished ones are reused), then write a table of every image and porosity statistic "
                    "against the acquisition, figures and one HTML report.",
        epilog="example: aiax-bench study --method msdnet --method fbp --splits 50proj 75proj 100proj 150proj "
               "250proj --seeds 0 1 2 --out study-foam")
    st.add_argument("--method", action="append", required=True, help="a method (repeat for several)")
    st.add_argument("--splits", nargs="+", required=True, help="splits: sparse, dose, binning or continuous")
    st.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    st.add_argument("--dataset", default="foam", help="NAME or NAME@VERSION (default: foam, latest)")
    st.add_argument("--profile", default=None, help="dataset size profile")
    st.add_argument("--cluster", default="local", choices=("local", "slurm", "oar"),
                    help="where the evaluations run (default local)")
    st.add_argument("--workers", type=int, default=None,
                    help="dask workers (batch jobs on slurm or oar); as many as cores by default")
    st.add_argument("--threads", type=int, default=1,
                    help="threads per evaluation (default 1: the numbers of trained networks do not then depend "
                         "on --workers or on a cluster's cores; use more workers instead)")
    st.add_argument("--cluster-config", default=None,
                    help="YAML file of cluster settings (default: clusters.yaml in the user config directory)")
    st.add_argument("--config", nargs="*", default=[], metavar="METHOD:KEY=VALUE",
                    help="hyper-parameters of one method, e.g. msdnet:max_steps=500")
    st.add_argument("--tolerance", type=float, default=5.0,
                    help="how close to the truth a statistic must stay, in percent (default 5)")
    st.add_argument("--save-predictions", action="store_true",
                    help="keep every test volume's prediction as zarr (the first is always kept for the figures)")
    st.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI (default: sqlite:///<out>/mlflow.db)")
    st.add_argument("--out", default="study", help="study directory (default: study)")
    st.set_defaults(func=cmd_study)
