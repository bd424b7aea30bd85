"""Command-line interface: ``aiax-bench evaluate``, ``methods``, ``datasets``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiax_bench.errors import AiaxError
from aiax_bench.tables import format_table

__all__ = ["format_table", "main"]

#: The image metrics ``evaluate`` prints, in this order (labels, units and formats from the catalog).
TABLE_IMAGE_METRICS = ("mse", "psnr", "ssim", "ssim_slices")
#: The blob scores ``evaluate`` prints for a DCT frame stack (target ``blobs``), in this order.
TABLE_BLOB_METRICS = ("f1", "precision", "recall", "mean_iou", "pixel_jaccard", "count_error", "recall_small",
                      "recall_medium", "recall_large", "recall_psi_short", "recall_psi_medium", "recall_psi_long")


def _spread(agg: dict[str, Any]) -> float | None:
    """Standard deviation over seeds when there are several, else over test volumes."""
    return agg["std_over_seeds"] if agg["n_seeds"] > 1 else agg["std_over_volumes"]


def _mean_std(key: str, agg: dict[str, Any]) -> str:
    from aiax_bench.evaluation.catalog import format_value

    std = _spread(agg)
    return format_value(key, agg["mean"]) + ("" if std is None else f" ± {format_value(key, std).lstrip('+')}")


def metrics_table(result: dict[str, Any]) -> str:
    """The tables ``evaluate`` prints: image quality, porosity statistics, segmentation (labels from the catalog)."""
    from aiax_bench.evaluation.catalog import format_value, metric_spec
    from aiax_bench.evaluation.evaluator import PORE_STATISTICS
    from aiax_bench.results import supervision_label

    metrics = result["metrics"]
    first = next(iter(metrics.values()))
    n_seeds, n_volumes = first["n_seeds"], first["n_volumes"]
    spread = (f"{n_seeds} seeds {result['seeds']} × {n_volumes} test volumes, mean ± std over seeds" if n_seeds > 1
              else f"{n_volumes} test volume{'s' if n_volumes != 1 else ''}, mean ± std over volumes")
    mixture = result.get("train_splits")
    trained = f"trained on {', '.join(mixture)} in equal shares, " if mixture else ""
    parts = [f"{result['method']} on {result['dataset']}/{result['split']} ({result['profile']} profile, "
             f"{trained}{supervision_label(result['supervision'])}, {spread})"]
    rows = []
    # The truth ranks, so it comes first; clean (noise-free FBP) only exists from dataset version 2.0 on.
    targets = [t for t in ("truth", "clean", "reference") if f"psnr/{t}" in metrics]
    for family in TABLE_IMAGE_METRICS:
        if f"{family}/{targets[0] if targets else 'truth'}" in metrics:
            spec = metric_spec(family)
            label = spec.label + (f" ({spec.unit})" if spec.unit else "")
            rows.append([label, *(_mean_std(f"{family}/{t}", metrics[f"{family}/{t}"]) for t in targets)])
    if rows:
        parts.append(format_table(["image metric", *(f"vs {t}" for t in targets)], rows))
    rows = []
    # Without a truth (a user's own scan) the method is compared with the reference only.
    whom = [w for w in ("reference", "truth") if any(f"{n}/{w}" in metrics for n in PORE_STATISTICS)]
    for name in PORE_STATISTICS:
        if f"{name}/method" in metrics:
            spec = metric_spec(name)
            values = [format_value(f"{name}/{who}", metrics[f"{name}/{who}"]["mean"]) for who in ("method", *whom)]
            errors = [format_value(f"{name}/rel_error_{who}", metrics[f"{name}/rel_error_{who}"]["mean"])
                      for who in whom]
            floor = metrics.get(f"{name}/floor_rel_error_truth")
            floors = ["–" if floor is None else format_value(f"{name}/floor_rel_error_truth", floor["mean"])] \
                if "truth" in whom else []
            rows.append([spec.label + (f" ({spec.unit})" if spec.unit else ""), *values, *errors, *floors])
    if rows:
        parts.append(format_table(["porosity statistic", "method", *whom, *(f"error vs {w}" for w in whom),
                                   *(["floor (reference vs truth)"] if "truth" in whom else [])], rows))
    blobs = [k for k in TABLE_BLOB_METRICS if f"{k}/blobs" in metrics]
    if blobs:
        parts.append(format_table(["blob score", "mean"], [[metric_spec(k).label, _mean_std(f"{k}/blobs",
                                                                                             metrics[f"{k}/blobs"])]
                                                          for k in blobs]))
    seg = {k.split("/", 1)[1]: v["mean"] for k, v in metrics.items() if k.startswith("jaccard/")}
    if seg:
        parts.append("Jaccard " + ", ".join(f"{name} {value:.3f}" for name, value in seg.items()))
    # Lesions (the mouse's tumours) by their fixed size strata; pores' Dice by size is in the porosity records.
    for lesion in sorted({k.split("/", 1)[1] for k in metrics if k.startswith("dice_small/")} - {"pore"}):
        strata = ", ".join(f"{s} {format_value(f'dice_{s}/{lesion}', metrics[f'dice_{s}/{lesion}']['mean'])}"
                           for s in ("small", "medium", "large") if f"dice_{s}/{lesion}" in metrics)
        overall = metrics.get(f"dice/{lesion}", {}).get("mean")
        parts.append(f"Dice {lesion} {format_value(f'dice/{lesion}', overall)} (by size: {strata})")
    for run in result["runs"]:
        selected = (run.get("fit_summary") or {}).get("selected")
        if selected:
            chosen = ", ".join(f"{k}={v}" for k, v in selected.items())
            parts.append(f"seed {run['seed']}: settings chosen on the validation volumes: {chosen}")
            break
    eff = result["runs"][0]["efficiency"]
    peak = eff["peak_memory_mb"]
    frames = eff.get("frames_per_volume")
    per_frames = f" ({1000 * eff['inference_seconds_per_volume'] / frames:.2f} s per 1,000 frames)" if frames else ""
    parts.append(f"train {eff['train_seconds']:.1f} s, inference {eff['inference_seconds_per_volume']:.2f} s/volume"
                 f"{per_frames}, {eff['parameters']:.0f} parameters, "
                 f"peak memory {'–' if peak is None else f'{peak:.0f} MB'}")
    return "\n".join(parts)


def split_names(text: str | None) -> list[str] | None:
    """``--train-splits A,B,C`` as a list (split names never hold commas); the harness checks the names."""
    return None if text is None else [name.strip() for name in text.split(",")]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from aiax_bench.harness import EvaluationRequest, run_seeds
    from aiax_bench.methods.base import parse_config_pairs

    seeds = args.seeds if args.seeds else [args.seed]
    request = EvaluationRequest(method=args.method, split=args.split, dataset=args.dataset,
                                profile=args.profile, seed=seeds[0], config=parse_config_pairs(args.config),
                                tracking_uri=args.tracking_uri, output_dir=Path(args.output),
                                annotated_slices=args.annotated, train_splits=split_names(args.train_splits))
    result = run_seeds(request, seeds)
    print(metrics_table(result))
    from aiax_bench.data.registry import resolve

    evaluation = resolve(result["dataset"]).evaluation
    if not evaluation.get("truth", True):
        print(f"no truth: scored against your reference; data range {evaluation['data_range_rule']}; pores below "
              "Otsu's threshold of the reference (protocol reference-otsu)")
    runs = [r["mlflow_run_id"] for r in result["runs"]]
    print(f"MLflow run(s) {', '.join(runs)}; result file {result['result_path']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from aiax_bench.harness import EvaluationRequest, run_training
    from aiax_bench.methods.base import parse_config_pairs

    request = EvaluationRequest(method=args.method, split=args.split, dataset=args.dataset, profile=args.profile,
                                seed=args.seed, config=parse_config_pairs(args.config), annotated_slices=args.annotated,
                                train_splits=split_names(args.train_splits))
    checkpoint = run_training(request)
    print(f"checkpoint: {checkpoint}  (aiax-bench apply --checkpoint {checkpoint} --input ... --output ...)")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from aiax_bench.methods import available_methods, get_method

    rows = []
    for name in sorted(available_methods()):
        cls = get_method(name)
        rows.append([name, cls.task, ",".join(cls.inputs), "yes" if cls.trainable else "no", cls.describe()])
    print(format_table(["method", "task", "inputs", "learns", "description"], rows))
    return 0


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from aiax_bench.data.registry import list_datasets
    from aiax_bench.data.store import store_path
    from aiax_bench.paths import data_dir

    rows = []
    for spec in list_datasets():
        cached = [p for p in spec.profiles if store_path(data_dir(), spec.name, spec.version, p).exists()]
        rows.append([spec.ref, ", ".join(spec.splits), ", ".join(spec.profiles), spec.default_profile,
                     ", ".join(cached) or "-", spec.title])
    print(format_table(["dataset", "splits", "profiles", "default", "in cache", "title"], rows))
    return 0


def cmd_datasets_splits(args: argparse.Namespace) -> int:
    from aiax_bench.data.registry import resolve

    spec = resolve(args.name)
    acq = spec.recipe.get("acquisition", {})
    rows = [[name, s.kind, s.description] for name, s in ((n, spec.split_spec(n)) for n in spec.splits)]
    if spec.frames:
        print(f"splits of {spec.ref} (frame stacks; each split records the same blobs with its detector settings)")
    elif spec.imported:
        print(f"splits of {spec.ref} (your scan, {acq['reference_angles'] or 'no'} projections)")
    elif spec.measured:
        print(f"splits of {spec.ref} (measured, {acq['beam']} beam; reference scan: {acq['description']})")
    else:
        print(f"splits of {spec.ref} (reference scan: {acq['reference_angles']} projections, "
              f"{acq['photons']:g} photons/pixel)")
    print(format_table(["split", "kind", "description"], rows))
    if not spec.frames:  # frame stacks have no reference scan and no slices to annotate
        print("segmentation methods also take split 'reference' (the reference scan as input) "
              "and --annotated K (labels on K training slices per volume)")
    return 0


def cmd_datasets_info(args: argparse.Namespace) -> int:
    from aiax_bench.data.registry import resolve

    spec = resolve(args.name)
    if spec.imported:
        return _imported_info(spec)
    if spec.measured:
        return _measured_info(spec)
    if spec.frames:
        return _frames_info(spec)
    recipe = spec.recipe
    print(f"{spec.ref}: {spec.title}")
    print(f"  recipe sha256   {spec.recipe_sha256}")
    if not any("voxel_size_um" in p for p in spec.profiles.values()):
        print(f"  voxel size      {recipe['voxel_size_um']} µm")
    print(f"  reference scan  {recipe['acquisition']['reference_angles']} projections, "
          f"{recipe['acquisition']['photons']:g} photons/pixel")
    # A cone-beam recipe's splits are always scans of their own (aiax_bench.data.cone).
    independent = spec.beam == "cone" or recipe["acquisition"].get("independent_noise", False)
    print("  noise           " + ("every low-quality scan has its own noise, independent of the reference scan"
                                  if independent else "sparse splits reuse the reference scan's noise"))
    if spec.beam == "cone":
        acq, material = recipe["acquisition"], recipe["material"]
        filters = ", ".join(f"{mm:g} mm {name}" for name, mm in acq["spectrum"]["filters"].items()) or "none"
        print(f"  geometry        cone beam: source {acq['source_origin']:g} volume widths from the axis, detector "
              f"{acq['origin_detector']:g} behind it; a full turn")
        print(f"  tube            {acq['spectrum']['kvp']:g} kVp, filters {filters}; material {material['name']} "
              f"({material['density_g_cm3']:g} g/cm³)")
    phantom = ", ".join(f"{k} {v}" for k, v in recipe["phantom"].items())
    print(f"  phantom         {phantom}")
    evaluation = spec.evaluation
    print(f"  evaluation      data_range {evaluation['data_range']} 1/cm, mask {evaluation['mask']} "
          f"eroded {evaluation.get('mask_erosion', 0)} voxels")
    targets = "truth (exact phantom), clean (noise-free FBP), reference scan" if recipe["reconstruction"].get(
        "store_clean") else "reference scan, truth (exact phantom)"
    print(f"  scored against  {targets}; ranks on {evaluation.get('rank_metric', 'psnr/reference')}")
    if not evaluation.get("porosity", True):
        print("  porosity        none: no pore space (image scores; the segment task ranks on "
              f"{evaluation.get('segment_rank_metric', 'jaccard/mean')})")
    elif "pore_threshold" in evaluation:
        print(f"  porosity        protocol 2.0: pore below {evaluation['pore_threshold']} 1/cm (fixed by the recipe, "
              "the same for method, reference and phantom)")
    else:
        print("  porosity        protocol 1.0: Otsu threshold of the reference scan")
    lesions = evaluation.get("lesions")
    if lesions:
        lo, hi = lesions["strata_mm2"]
        print(f"  lesions         {lesions['name']} ({', '.join(lesions['phases'])}): Dice overall and by size, "
              f"small < {lo:g} mm², medium {lo:g}-{hi:g} mm², large > {hi:g} mm² (largest axial cross-section)")
    rows = [[name, f"{p['size']}³", f"{spec.voxel_size_um(name):g}",
             ", ".join(f"{part}: {len(ids)}" for part, ids in p["samples"].items()),
             spec.content_sha256.get(name, "–")[:16]]
            for name, p in spec.profiles.items()]
    print(format_table(["profile", "size", "voxel (µm)", "samples", "content sha256 (leaderboard entries carry it)"],
                       rows))
    return 0


def _measured_info(spec) -> int:
    recipe = spec.recipe
    evaluation = spec.evaluation
    print(f"{spec.ref}: {spec.title}")
    print(f"  recipe sha256   {spec.recipe_sha256}")
    print(f"  source          measured scans, downloaded (sha256-verified) and converted, never simulated; "
          f"licence {recipe['licence']}")
    print(f"  cite            {recipe['citation']}")
    print(f"  reference scan  {recipe['acquisition']['description']} ({recipe['acquisition']['beam']} beam)")
    print(f"  truth           {recipe['truth']['description']}")
    print(f"  evaluation      data_range {evaluation['data_range']} 1/cm, mask {evaluation['mask']} "
          f"eroded {evaluation.get('mask_erosion', 0)} voxels; ranks on {evaluation.get('rank_metric')}")
    rows = [[name, f"{p['size']}²", ", ".join(f"{part}: {len(ids)}" for part, ids in p["samples"].items()),
             spec.content_sha256.get(name, "–")[:16]]
            for name, p in spec.profiles.items()]
    print(format_table(["profile", "size", "samples", "content sha256 (leaderboard entries carry it)"], rows))
    return 0


def _frames_info(spec) -> int:
    recipe = spec.recipe
    evaluation = spec.evaluation
    print(f"{spec.ref}: {spec.title}")
    print(f"  recipe sha256   {spec.recipe_sha256}")
    print("  source          simulated detector frames (psi, y, x), frame-slab by frame-slab, with exact blob labels")
    print("  simulator       " + ", ".join(f"{k} {v}" for k, v in recipe["spec"].items()))
    print(f"  evaluation      blobs matched one to one at IoU >= {evaluation['iou_threshold']}, mask "
          f"{evaluation['mask']}; ranks on {evaluation.get('rank_metric', 'f1/blobs')}")
    rows = [[name, f"{p['stack']['n_frames']} × {'×'.join(map(str, p['stack']['frame_shape']))}",
             str(p["stack"]["n_blobs"]), ", ".join(f"{part}: {len(ids)}" for part, ids in p["samples"].items()),
             spec.content_sha256.get(name, "–")[:16]]
            for name, p in spec.profiles.items()]
    print(format_table(["profile", "frames", "blobs drawn", "samples", "content sha256 (leaderboard entries carry it)"],
                       rows))
    return 0


def _imported_info(spec) -> int:
    manifest = spec.recipe
    profile = manifest["profiles"]["full"]
    print(f"{spec.ref}: {spec.title} (imported from {manifest['source']} with aiax-bench {manifest['imported_with']})")
    print(f"  size            {'×'.join(map(str, profile['size']))} voxels of {manifest['voxel_size_um']:g} µm "
          f"({manifest['voxel_size']})")
    print(f"  projections     {manifest['acquisition']['reference_angles'] or 'none: a reconstructed volume'}")
    print("  slabs           " + ", ".join(f"{part} rows {a}-{b}" for part, (a, b) in profile["rows"].items()))
    print(f"  splits          {', '.join(spec.splits) or 'none'}")
    evaluation = manifest["evaluation"]
    print(f"  evaluation      against the reference (no truth); {evaluation['data_range_rule']}; pores below "
          "Otsu's threshold of the reference (protocol reference-otsu)")
    steps = ", ".join(k for k in manifest["provenance"] if k not in ("settings", "reader"))
    print(f"  provenance      {manifest['provenance'].get('reader', '?')}; {steps}")
    return 0


def cmd_datasets_build(args: argparse.Namespace) -> int:
    from aiax_bench.data.build import build_store
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import resolve
    from aiax_bench.data.store import store_path
    from aiax_bench.paths import data_dir, ensure_writable

    spec = resolve(args.name)
    profile = args.profile or spec.default_profile
    spec.check_profile(profile)
    path = store_path(data_dir(), spec.name, spec.version, profile)
    if path.exists() and not args.force:
        load(spec.ref, profile=profile, build=False)
        print(f"{spec.ref} ({profile}) is already built at {path} (use --force to rebuild)")
        return 0
    ensure_writable(data_dir())
    attrs = build_store(spec, profile, path, workers=args.workers)
    print(f"built {spec.ref} ({profile}) at {path} in {attrs['build_seconds']} s; "
          f"sha256 {attrs['content_sha256']}")
    return 0


def cmd_datasets_path(args: argparse.Namespace) -> int:
    from aiax_bench.data.registry import resolve
    from aiax_bench.data.store import store_path
    from aiax_bench.paths import data_dir

    if args.name is None:
        print(data_dir())
        return 0
    spec = resolve(args.name)
    print(store_path(data_dir(), spec.name, spec.version, args.profile or spec.default_profile))
    return 0


def cmd_datasets_download(args: argparse.Namespace) -> int:
    from aiax_bench.data.loader import load

    ds = load(args.name, profile=args.profile)
    print(f"{ds.spec.ref} ({ds.profile}) at {ds.path}: {ds.source}, sha256 {ds.content_sha256}")
    return 0


def cmd_datasets_verify(args: argparse.Namespace) -> int:
    from aiax_bench.data.verify import verify_store

    problems = verify_store(args.name, profile=args.profile)
    if problems:
        for line in problems:
            print(line)
        return 1
    print("ok: every array reads back with its recorded content sha256 and fingerprint")
    return 0


def cmd_datasets_package(args: argparse.Namespace) -> int:
    from aiax_bench.data.loader import load
    from aiax_bench.data.package import package_store, registry_lines, write_fingerprint

    ds = load(args.name, profile=args.profile, build=False)
    info = package_store(ds.path, Path(args.out))
    fingerprint = Path(args.out) / f"v{ds.spec.version}-{ds.profile}.fingerprint.json"
    write_fingerprint(info, fingerprint)
    print(f"archive {info['archive']} ({info['size']} bytes); fingerprint {fingerprint}")
    print(f"# paste under {ds.spec.name} > versions > {ds.spec.version!r} > archives in datasets/registry.yaml,")
    print(f"# and copy the fingerprint to datasets/{ds.spec.name}/{fingerprint.name}:")
    print(registry_lines(info, urls=args.url, fingerprint_file=f"{ds.spec.name}/{fingerprint.name}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from aiax_bench.version import __version__

    parser = argparse.ArgumentParser(
        prog="aiax-bench",
        description="Benchmark AI methods for X-ray tomography on versioned datasets: "
                    "score them with image and porosity metrics, log to MLflow, compare on a leaderboard.",
        epilog="example: aiax-bench evaluate --method fbp --split 100proj   "
               "(datasets are built on first use into $AIAX_BENCH_DATA or the user cache directory)",
    )
    parser.add_argument("--version", action="version", version=f"aiax-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("evaluate", help="run a method on a split's test volumes and score it",
                        description="Train (if the method learns) and run METHOD on the test volumes of "
                                    "SPLIT, score MSE, PSNR and SSIM, print a table, write a result JSON "
                                    "and log the run to MLflow.")
    ev.add_argument("--method", required=True, help="registered method (see `aiax-bench methods`) "
                                                    "or path/to/file.py:ClassName")
    ev.add_argument("--split", required=True, help="split name (see `aiax-bench datasets splits foam`); "
                                                   "segmentation methods also take 'reference' (the reference scan)")
    ev.add_argument("--dataset", default="foam", help="NAME or NAME@VERSION (default: foam, latest)")
    ev.add_argument("--profile", default=None, help="dataset size profile: tiny, small (default) or large")
    seed = ev.add_mutually_exclusive_group()
    seed.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    seed.add_argument("--seeds", type=int, nargs="+", metavar="N",
                      help="several seeds: one run each, reported as mean ± std over seeds")
    ev.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                    help="method hyper-parameters, e.g. --config filter=hann")
    ev.add_argument("--tracking-uri", default=None,
                    help="MLflow tracking URI (default: sqlite:///mlflow.db in the current directory)")
    ev.add_argument("--annotated", type=int, default=None, metavar="K",
                    help="segmentation protocol annotated-K: training labels on K slices per volume only")
    ev.add_argument("--train-splits", default=None, metavar="A,B,...",
                    help="mixed-degradation protocol: train and validate on these splits' volumes in equal shares "
                         "(e.g. 50proj,100proj,250proj), then score SPLIT's test volumes")
    ev.add_argument("--output", default="aiax-results", help="directory for result JSON (default aiax-results)")
    ev.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("train", help="train a learned method on a split and print its checkpoint directory",
                        description="Train METHOD on the training volumes of SPLIT (validating on its validation "
                                    "volumes), without scoring; the checkpoint is cached where `evaluate` reuses it.")
    tr.add_argument("--method", required=True, help="a learned method (see `aiax-bench methods`)")
    tr.add_argument("--split", required=True, help="split name")
    tr.add_argument("--dataset", default="foam", help="NAME or NAME@VERSION (default: foam, latest)")
    tr.add_argument("--profile", default=None, help="dataset size profile")
    tr.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    tr.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="method hyper-parameters")
    tr.add_argument("--annotated", type=int, default=None, metavar="K", help="segmentation protocol annotated-K")
    tr.add_argument("--train-splits", default=None, metavar="A,B,...",
                    help="train on these splits' volumes in equal shares instead of SPLIT's (mixed degradations)")
    tr.set_defaults(func=cmd_train)

    me = sub.add_parser("methods", help="list the registered methods")
    me.set_defaults(func=cmd_methods)

    ds = sub.add_parser("datasets", help="list, inspect and build datasets")
    dsub = ds.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    dsub.add_parser("list", help="registered datasets and what is in the cache").set_defaults(
        func=cmd_datasets_list)
    p = dsub.add_parser("splits", help="the splits of a dataset")
    p.add_argument("name", help="NAME or NAME@VERSION")
    p.set_defaults(func=cmd_datasets_splits)
    p = dsub.add_parser("info", help="recipe, profiles and evaluation spec of a dataset")
    p.add_argument("name", help="NAME or NAME@VERSION")
    p.set_defaults(func=cmd_datasets_info)
    p = dsub.add_parser("build", help="build a dataset version from its recipe")
    p.add_argument("name", help="NAME or NAME@VERSION")
    p.add_argument("--profile", default=None, help="tiny, small (default) or large")
    p.add_argument("--force", action="store_true", help="rebuild even if the store exists")
    p.add_argument("--workers", type=int, default=1,
                   help="samples built side by side, one process each (each needs one sample's memory); "
                        "parallel-beam recipes, the others build one sample at a time")
    p.set_defaults(func=cmd_datasets_build)
    p = dsub.add_parser("download", help="fetch a published version (sha256-verified), or rebuild it")
    p.add_argument("name", help="NAME or NAME@VERSION")
    p.add_argument("--profile", default=None, help="tiny, small (default) or large")
    p.set_defaults(func=cmd_datasets_download)
    p = dsub.add_parser("verify", help="re-read a cached store and check its hashes and fingerprint")
    p.add_argument("name", help="NAME or NAME@VERSION")
    p.add_argument("--profile", default=None, help="tiny, small (default) or large")
    p.set_defaults(func=cmd_datasets_verify)
    p = dsub.add_parser("package", help="zip a built store for publication and print its registry lines")
    p.add_argument("name", help="NAME or NAME@VERSION")
    p.add_argument("--profile", default=None, help="tiny, small (default) or large")
    p.add_argument("--out", default="dist", help="output directory (default dist)")
    p.add_argument("--url", action="append", default=[], help="download URL of the archive (repeat: "
                                                              "primary first, then mirrors)")
    p.set_defaults(func=cmd_datasets_package)
    p = dsub.add_parser("path", help="the cache directory, or where a dataset's store lives")
    p.add_argument("name", nargs="?", help="NAME or NAME@VERSION")
    p.add_argument("--profile", default=None)
    p.set_defaults(func=cmd_datasets_path)
    from aiax_bench.own_data_cli import add_subcommands as add_own_data  # import, analyze, reconstruct, apply

    add_own_data(sub)
    from aiax_bench.leaderboard.cli import add_subcommands  # submit, leaderboard

    add_subcommands(sub)
    from aiax_bench.study.cli import add_subcommands as add_study

    add_study(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aiax-bench`` command."""
    # Busy-waiting OpenMP threads make torch many times slower whenever the cores are shared.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AiaxError as exc:
        print(f"aiax-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aiax-bench: interrupted; nothing was left half-written", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output (e.g. `| head`) stopped reading: nothing left to say, and no traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
