"""Command-line interface: ``aiax-bench evaluate``, ``methods``, ``datasets``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiax_bench.errors import AiaxError, InputError
from aiax_bench.tables import format_table

__all__ = ["format_table", "main"]

#: The image metrics ``evaluate`` prints, in this order (labels, units and formats from the catalog).
TABLE_IMAGE_METRICS = ("mse", "psnr", "ssim", "ssim_slices")


def _parse_config(pairs: Sequence[str]) -> dict[str, Any]:
    import yaml

    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError("--config", f"item {pair!r} is not KEY=VALUE", "write e.g. --config filter=hann")
        try:
            config[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            config[key] = value  # plain text; the method's Config types decide whether it is valid
    return config


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
    parts = [f"{result['method']} on {result['dataset']}/{result['split']} ({result['profile']} profile, "
             f"{supervision_label(result['supervision'])}, {spread})"]
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
    for name in PORE_STATISTICS:
        if f"{name}/method" in metrics:
            spec = metric_spec(name)
            values = [format_value(f"{name}/{who}", metrics[f"{name}/{who}"]["mean"])
                      for who in ("method", "reference", "truth")]
            errors = [format_value(f"{name}/rel_error_{who}", metrics[f"{name}/rel_error_{who}"]["mean"])
                      for who in ("reference", "truth")]
            floor = metrics.get(f"{name}/floor_rel_error_truth")
            rows.append([spec.label + (f" ({spec.unit})" if spec.unit else ""), *values, *errors,
                         "–" if floor is None else format_value(f"{name}/floor_rel_error_truth", floor["mean"])])
    if rows:
        parts.append(format_table(["porosity statistic", "method", "reference", "truth", "error vs ref",
                                   "error vs truth", "floor (reference vs truth)"], rows))
    seg = {k.split("/", 1)[1]: v["mean"] for k, v in metrics.items() if k.startswith("jaccard/")}
    if seg:
        parts.append("Jaccard " + ", ".join(f"{name} {value:.3f}" for name, value in seg.items()))
    for run in result["runs"]:
        selected = (run.get("fit_summary") or {}).get("selected")
        if selected:
            chosen = ", ".join(f"{k}={v}" for k, v in selected.items())
            parts.append(f"seed {run['seed']}: settings chosen on the validation volumes: {chosen}")
            break
    eff = result["runs"][0]["efficiency"]
    peak = eff["peak_memory_mb"]
    parts.append(f"train {eff['train_seconds']:.1f} s, inference {eff['inference_seconds_per_volume']:.2f} s/volume, "
                 f"{eff['parameters']:.0f} parameters, peak memory {'–' if peak is None else f'{peak:.0f} MB'}")
    return "\n".join(parts)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from aiax_bench.harness import EvaluationRequest, run_seeds

    seeds = args.seeds if args.seeds else [args.seed]
    request = EvaluationRequest(method=args.method, split=args.split, dataset=args.dataset,
                                profile=args.profile, seed=seeds[0], config=_parse_config(args.config),
                                tracking_uri=args.tracking_uri, output_dir=Path(args.output),
                                annotated_slices=args.annotated)
    result = run_seeds(request, seeds)
    print(metrics_table(result))
    runs = [r["mlflow_run_id"] for r in result["runs"]]
    print(f"MLflow run(s) {', '.join(runs)}; result file {result['result_path']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from aiax_bench.harness import EvaluationRequest, run_training

    request = EvaluationRequest(method=args.method, split=args.split, dataset=args.dataset, profile=args.profile,
                                seed=args.seed, config=_parse_config(args.config), annotated_slices=args.annotated)
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
    acq = spec.recipe["acquisition"]
    rows = [[name, s.kind, s.description] for name, s in ((n, spec.split_spec(n)) for n in spec.splits)]
    print(f"splits of {spec.ref} (reference scan: {acq['reference_angles']} projections, "
          f"{acq['photons']:g} photons/pixel)")
    print(format_table(["split", "kind", "description"], rows))
    print("segmentation methods also take split 'reference' (the reference scan as input) "
          "and --annotated K (labels on K training slices per volume)")
    return 0


def cmd_datasets_info(args: argparse.Namespace) -> int:
    from aiax_bench.data.registry import resolve

    spec = resolve(args.name)
    recipe = spec.recipe
    print(f"{spec.ref}: {spec.title}")
    print(f"  recipe sha256   {spec.recipe_sha256}")
    print(f"  voxel size      {recipe['voxel_size_um']} µm")
    print(f"  reference scan  {recipe['acquisition']['reference_angles']} projections, "
          f"{recipe['acquisition']['photons']:g} photons/pixel")
    independent = recipe["acquisition"].get("independent_noise", False)
    print("  noise           " + ("every low-quality scan has its own noise, independent of the reference scan"
                                  if independent else "sparse splits reuse the reference scan's noise"))
    phantom = ", ".join(f"{k} {v}" for k, v in recipe["phantom"].items())
    print(f"  phantom         {phantom}")
    evaluation = spec.evaluation
    print(f"  evaluation      data_range {evaluation['data_range']} 1/cm, mask {evaluation['mask']} "
          f"eroded {evaluation.get('mask_erosion', 0)} voxels")
    targets = "truth (exact phantom), clean (noise-free FBP), reference scan" if recipe["reconstruction"].get(
        "store_clean") else "reference scan, truth (exact phantom)"
    print(f"  scored against  {targets}; ranks on {evaluation.get('rank_metric', 'psnr/reference')}")
    if "pore_threshold" in evaluation:
        print(f"  porosity        protocol 2.0: pore below {evaluation['pore_threshold']} 1/cm (fixed by the recipe, "
              "the same for method, reference and phantom)")
    else:
        print("  porosity        protocol 1.0: Otsu threshold of the reference scan")
    rows = [[name, f"{p['size']}³", ", ".join(f"{part}: {len(ids)}" for part, ids in p["samples"].items()),
             spec.content_sha256.get(name, "–")[:16]]
            for name, p in spec.profiles.items()]
    print(format_table(["profile", "size", "samples", "content sha256 (leaderboard entries carry it)"], rows))
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
    attrs = build_store(spec, profile, path)
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


_LENGTH_UNITS = {"um": 1.0, "µm": 1.0, "micron": 1.0, "mm": 1000.0, "nm": 1e-3, "": 1.0}


def parse_voxel_size(text: str) -> float:
    """``20um``, ``0.02 mm``, ``20`` (µm) -> µm; one line naming the option otherwise."""
    import re

    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([a-zµ]*)\s*", text)
    try:
        value = float(match.group(1)) * _LENGTH_UNITS[match.group(2)] if match else float("nan")
    except (ValueError, KeyError):
        value = float("nan")
    if not value > 0:
        raise InputError("--voxel-size", f"is {text!r}", "a positive length such as 20um, 0.02mm or 20 (µm)")
    return value


def cmd_analyze(args: argparse.Namespace) -> int:
    import warnings

    from aiax_bench.evaluation.analyze import analyze_volume, read_volume
    from aiax_bench.evaluation.catalog import format_value, metric_spec
    from aiax_bench.jsonio import dump_json, write_replacing

    voxel_um = parse_voxel_size(args.voxel_size)
    shape = None
    if args.raw_shape:
        try:
            shape = tuple(int(v) for v in args.raw_shape.split(","))
        except ValueError:
            raise InputError("--raw-shape", f"is {args.raw_shape!r}", "three integers Z,Y,X") from None
    volume = read_volume(args.volume, key=args.key, raw_shape=shape, raw_dtype=args.raw_dtype,
                         raw_offset=args.raw_offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the analysis carries its warnings; they are printed below
        analysis = analyze_volume(volume, voxel_size_um=voxel_um, pore_value=args.pore_value,
                                  threshold=args.threshold, pores_are=args.pores_are, partition=args.partition,
                                  thickness=not args.no_thickness)
    print(f"{args.volume}: {'×'.join(map(str, analysis.shape))} voxels of {voxel_um:g} µm; {analysis.segmentation}; "
          f"pores counted by {'the SNOW watershed' if analysis.partition == 'snow' else 'connected components'}")
    rows = []
    for name, value in analysis.statistics.items():
        spec = metric_spec(f"{name}/method")
        rows.append([spec.label + (f" ({spec.unit})" if spec.unit else ""), format_value(f"{name}/method", value)])
    print(format_table(["statistic", "value"], rows))
    for note in analysis.warnings:
        print(f"warning: {note}")
    if args.output:
        write_replacing(Path(args.output), dump_json(analysis.to_dict()))
        print(f"analysis written to {args.output}")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np

    from aiax_bench.ingest import read_scan, reconstruct
    from aiax_bench.jsonio import dump_json, write_replacing

    rows = None
    if args.rows:
        try:
            start, stop = (int(v) if v else None for v in args.rows.split(":"))
        except ValueError:
            raise InputError("--rows", f"is {args.rows!r}", "START:STOP, e.g. 0:16") from None
        rows = slice(start, stop)
    output = Path(args.output)
    if output.suffix not in (".zarr", ".tif", ".tiff", ".npy"):
        raise InputError("--output", f"is {args.output!r}", "a .zarr, .tif or .npy path")
    scan = read_scan(args.source, flat=args.flat, dark=args.dark, angles=args.angles)
    volume, provenance = reconstruct(scan, center=args.center, rows=rows, filter=args.filter, rings=args.rings)
    if output.suffix == ".zarr":
        import zarr

        zarr.create_array(str(output), data=volume, overwrite=True)
    elif output.suffix == ".npy":
        np.save(output, volume)
    else:
        import tifffile

        tifffile.imwrite(output, volume)
    write_replacing(output.with_name(output.name + ".json"), dump_json(provenance))
    center = provenance["center"]
    print(f"{args.source}: {volume.shape[0]} slice(s) of {volume.shape[1]}×{volume.shape[2]} written to {output}; "
          f"centre of rotation {center['pixels']:.2f} px ({center['method']}); "
          f"{provenance['flat_dark']['clipped_pixels']} pixel(s) clipped")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    import warnings

    from aiax_bench.apply import apply_checkpoint
    from aiax_bench.evaluation.analyze import read_volume
    from aiax_bench.jsonio import dump_json, write_replacing

    source = Path(args.input)
    if source.suffix == ".zarr" and source.exists():
        import zarr

        volume = zarr.open_array(str(source), mode="r")  # read slab by slab: the volume may not fit in memory
    else:
        volume = read_volume(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the record carries the warning; it is printed below
        record = apply_checkpoint(args.checkpoint, volume, args.output, dtype=args.dtype,
                                  batch_size=args.batch_size, progress=sys.stderr.isatty())
    write_replacing(Path(args.output + ".json"), dump_json(record))
    print(f"{record['method']}: {'×'.join(map(str, record['shape']))} -> {args.output} ({record['dtype']}) in "
          f"{record['seconds']:.1f} s, {record['slices_per_minute']} slices/min")
    if record["warning"]:
        print(f"warning: {record['warning']}")
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
    an = sub.add_parser("analyze", help="porosity statistics of any volume (yours, reconstructed or segmented)",
                        description="Segment the pores of VOLUME (Otsu on the values present, or a binary image as "
                                    "it is), partition a percolating pore space (SNOW), and report pore fraction, "
                                    "pores per mm³, sizes, specific surface and local thickness.")
    an.add_argument("volume", help="TIFF file or folder of slices, .npy, .npz, .zarr, or raw binary")
    an.add_argument("--voxel-size", required=True, metavar="SIZE", help="voxel edge, e.g. 20um, 0.02mm or 20 (µm)")
    an.add_argument("--pore-value", type=float, default=None, help="binary volume: the value of the pores "
                                                                   "(default True / the larger value)")
    an.add_argument("--threshold", type=float, default=None, help="grey-value threshold (default: Otsu)")
    an.add_argument("--pores-are", choices=("dark", "bright"), default="dark",
                    help="which side of the threshold is pore (default dark: low attenuation)")
    an.add_argument("--partition", choices=("auto", "components", "snow"), default="auto",
                    help="how pores are counted (default auto: SNOW watershed where the pore space percolates)")
    an.add_argument("--key", default=None, help="array name inside an .npz")
    an.add_argument("--raw-shape", default=None, metavar="Z,Y,X", help="shape of a raw binary volume")
    an.add_argument("--raw-dtype", default=None, help="dtype of a raw binary volume, e.g. uint8 or <f4")
    an.add_argument("--raw-offset", type=int, default=0, help="header bytes before a raw volume's data")
    an.add_argument("--no-thickness", action="store_true", help="skip the local thickness (the slowest step)")
    an.add_argument("--output", default=None, metavar="FILE.json", help="also write the analysis as JSON")
    an.set_defaults(func=cmd_analyze)

    rc = sub.add_parser("reconstruct", help="reconstruct your own raw projections (flat/dark, -log, centre, FBP)",
                        description="Read raw projections with their flats, darks and angles, correct them, find "
                                    "the centre of rotation and reconstruct with FBP; writes the slices and a "
                                    "provenance JSON beside them.")
    rc.add_argument("source", help="raw scan: HDF5 data-exchange (exchange/data, data_white, data_dark, theta), "
                                   "or a folder of TIFF projections (with --flat, --dark, --angles)")
    rc.add_argument("--flat", default=None, help="flat-field (open-beam) TIFF of a TIFF folder")
    rc.add_argument("--dark", default=None, help="dark TIFF of a TIFF folder")
    rc.add_argument("--angles", default=None, help="angles file (degrees) of a TIFF folder")
    rc.add_argument("--rings", action="store_true", help="remove ring artefacts (sinogram stripes) first")
    rc.add_argument("--output", required=True, help="slices to write: .zarr, .tif or .npy")
    rc.add_argument("--center", type=float, default=None,
                    help="centre of rotation in detector pixels (default: estimated on the middle row)")
    rc.add_argument("--rows", default=None, metavar="START:STOP", help="detector rows to reconstruct (default all)")
    rc.add_argument("--filter", default="hann", help="FBP filter (default hann)")
    rc.set_defaults(func=cmd_reconstruct)

    ap = sub.add_parser("apply", help="run a trained method's checkpoint on a new volume",
                        description="Load the checkpoint (its metadata names the method), run it slab by slab on "
                                    "VOLUME (1/cm) and write the result.")
    ap.add_argument("--checkpoint", required=True, help="checkpoint directory (printed when training writes it)")
    ap.add_argument("--input", required=True, help="volume: .zarr (read slab by slab), TIFF file or folder, .npy")
    ap.add_argument("--output", required=True, help="result: .zarr (written slab by slab), .tif or .npy")
    ap.add_argument("--dtype", choices=("float32", "uint16"), default="float32",
                    help="stored type; uint16 maps the training range (mean ± 5 std) to 0-65535, recorded")
    ap.add_argument("--batch-size", type=int, default=None, help="slices per forward pass")
    ap.set_defaults(func=cmd_apply)

    from aiax_bench.leaderboard.cli import add_subcommands  # submit, leaderboard

    add_subcommands(sub)
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
