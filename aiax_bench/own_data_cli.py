"""Commands for a user's own data: ``import``, ``analyze``, ``reconstruct`` and ``apply``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from aiax_bench.errors import InputError
from aiax_bench.tables import format_table

__all__ = ["add_subcommands", "parse_voxel_size"]

_LENGTH_UNITS = {"um": 1.0, "µm": 1.0, "micron": 1.0, "mm": 1000.0, "nm": 1e-3, "": 1.0}


def parse_voxel_size(text: str) -> float:
    """``20um``, ``0.02 mm``, ``20`` (µm) -> µm; one line naming the option otherwise."""
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


def _range(text: str | None, option: str) -> tuple[int | None, int | None] | None:
    if not text:
        return None
    try:
        start, stop = (int(v) if v else None for v in text.split(":"))
    except ValueError:
        raise InputError(option, f"is {text!r}", "START:STOP, e.g. 0:16") from None
    return start, stop


def _numbers(text: str | None, option: str, count: int | None, kind=float) -> tuple | None:
    if text is None:
        return None
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or (count is not None and len(values) != count):
        raise InputError(option, f"is {text!r}", f"{count or 'some'} comma-separated {kind.__name__} value(s)")
    return values


def _read_options(args: argparse.Namespace):
    from aiax_bench.ingest.scan import ReadOptions

    return ReadOptions(flats=tuple(Path(f) for f in args.flats or ()), darks=tuple(Path(f) for f in args.darks or ()),
                       angles=Path(args.angles) if args.angles else None,
                       angle_range_deg=_numbers(args.angle_range, "--angle-range", 2),
                       data_path=args.data_path, raw_shape=_numbers(args.raw_shape, "--raw-shape", None, int),
                       raw_dtype=args.raw_dtype, raw_offset=args.raw_offset, key=args.key, kind=args.kind)


def _preprocessing(args: argparse.Namespace):
    from aiax_bench.ingest.preprocess import Paganin, Preprocessing

    paganin = _numbers(args.paganin, "--paganin", 4)
    return Preprocessing(crop_rows=_range(args.crop_rows, "--crop-rows"),
                         crop_columns=_range(args.crop_columns, "--crop-columns"), bin=args.bin,
                         flats=args.flat_mode, dead_pixels=not args.keep_dead_pixels, zingers=args.zingers,
                         paganin=Paganin(*paganin) if paganin else None, background=args.background,
                         rings=args.rings, center=args.center)


def _centre_and_clipping(provenance: dict) -> str:
    """The centre of rotation and the clipped-pixel count of a reconstruction's provenance, in words."""
    center, flat_dark = provenance["center"], provenance.get("flat_dark")
    clipped = flat_dark.get("clipped_pixels", 0) if isinstance(flat_dark, dict) else 0  # none for line integrals
    return f"centre of rotation {center['pixels']:.2f} px ({center['method']}); {clipped} pixel(s) clipped"


def cmd_import(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from aiax_bench.ingest.importer import ImportOptions, import_scan

    read = _read_options(args)
    # The second scan has flats, darks and angles of its own, never the first scan's.
    low_read = replace(read, flats=tuple(Path(f) for f in args.low_flats or ()),
                       darks=tuple(Path(f) for f in args.low_darks or ()),
                       angles=Path(args.low_angles) if args.low_angles else None,
                       angle_range_deg=_numbers(args.low_angle_range, "--low-angle-range", 2))
    options = ImportOptions(subsample=_numbers(args.subsample, "--subsample", None, int) or (),
                            low=Path(args.low) if args.low else None, low_read=low_read,
                            parts=_numbers(args.parts, "--parts", 3) or (0.6, 0.2, 0.2),
                            voxel_size_um=parse_voxel_size(args.voxel_size) if args.voxel_size else None,
                            reference_filter=args.reference_filter, title=args.title)
    report = import_scan(args.source, args.name, read=read, settings=_preprocessing(args), options=options,
                         format=args.format, force=args.force)
    manifest = report.manifest
    print(f"{args.source}: imported as dataset {report.name!r} ({'×'.join(map(str, report.shape))} voxels of "
          f"{manifest['voxel_size_um']:g} µm, {manifest['voxel_size']}) in {report.seconds} s at {report.path}")
    if report.center is not None:
        print(_centre_and_clipping(manifest["provenance"]))
    rows = [[part, f"{a}-{b}"] for part, (a, b) in report.parts.items()]
    print(format_table(["part", "rows"], rows))
    print(f"splits: {', '.join(report.splits) or 'none (reference only)'}; scores against the reference "
          f"({manifest['evaluation']['data_range_rule']})")
    print(f"next: aiax-bench evaluate --dataset {report.name} --split SPLIT --method fbp")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from aiax_bench.apply import check_volume_output, write_volume
    from aiax_bench.ingest import read_source, reconstruct
    from aiax_bench.ingest.scan import Projections
    from aiax_bench.jsonio import dump_json, write_replacing

    output = check_volume_output(args.output)
    settings = _preprocessing(args)
    if args.rows:  # the same as --crop-rows, kept for the rows of a quick look
        settings = replace(settings, crop_rows=_range(args.rows, "--rows"))
    if args.out_of_core:
        return _reconstruct_out_of_core(args, output, settings)
    scan = read_source(args.source, _read_options(args), format=args.format)
    if not isinstance(scan, Projections):
        raise InputError(args.source, "holds a reconstructed volume", "raw projections")
    volume, provenance = reconstruct(scan, filter=args.filter, settings=settings)
    write_volume(output, volume)
    write_replacing(output.with_name(output.name + ".json"), dump_json(provenance))
    print(f"{args.source}: {volume.shape[0]} slice(s) of {volume.shape[1]}×{volume.shape[2]} written to {output}; "
          f"{_centre_and_clipping(provenance)}")
    return 0


def _reconstruct_out_of_core(args: argparse.Namespace, output: Path, settings) -> int:
    from tqdm.auto import tqdm

    from aiax_bench.ingest.readers import open_projections
    from aiax_bench.ingest.streamed import reconstruct_out_of_core
    from aiax_bench.jsonio import dump_json, write_replacing

    if not args.memory > 0:
        raise InputError("--memory", f"is {args.memory}", "a positive number of GiB")
    scan = open_projections(args.source, _read_options(args), format=args.format)
    with tqdm(desc="reconstruct", unit="slice", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = reconstruct_out_of_core(scan, output, settings=settings, filter=args.filter,
                                         memory_bytes=int(args.memory * 2**30), progress=progress)
    write_replacing(output.with_name(output.name + ".json"), dump_json(result.provenance))
    resumed = f", {result.resumed_slabs} of {result.slabs} slabs from an earlier run" if result.resumed_slabs else ""
    print(f"{args.source}: {result.shape[0]} slice(s) of {result.shape[1]}×{result.shape[2]} written to {output} "
          f"in {result.seconds:.1f} s ({result.slices_per_second:.2f} slices/s, {result.slab_rows} per slab"
          f"{resumed}); {_centre_and_clipping(result.provenance)}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    import warnings

    from aiax_bench.apply import apply_checkpoint, apply_self_supervised
    from aiax_bench.ingest.volumes import open_volume
    from aiax_bench.jsonio import dump_json, write_replacing

    if (args.checkpoint is None) == (args.method is None):
        raise InputError("--checkpoint/--method", "are both given or both missing",
                         "--checkpoint DIR, or --method noise2inverse to train on an imported scan itself")
    if args.method is not None:
        from aiax_bench.methods.base import parse_config_pairs

        record = apply_self_supervised(args.input, args.output, method=args.method, seed=args.seed,
                                       config=parse_config_pairs(args.config))
        print(f"{record['method']} trained on {record['dataset']} itself in {record['train_seconds']} s")
    else:
        # Read slab by slab where the format allows: the volume may not fit in memory.
        volume = open_volume(args.input)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the record carries the warning; it is printed below
            record = apply_checkpoint(args.checkpoint, volume, args.output, dtype=args.dtype,
                                      batch_size=args.batch_size, progress=sys.stderr.isatty(),
                                      match_intensity=args.match_intensity)
    write_replacing(Path(args.output + ".json"), dump_json(record))
    print(f"{record['method']}: {'×'.join(map(str, record['shape']))} -> {args.output} ({record['dtype']}) in "
          f"{record['seconds']:.1f} s, {record['slices_per_minute']} slices/min")
    if record["warning"]:
        print(f"warning: {record['warning']}")
    return 0


def _add_reading(parser: argparse.ArgumentParser) -> None:
    from aiax_bench.ingest.readers import READERS

    g = parser.add_argument_group("reading (what the file does not say)")
    g.add_argument("--format", choices=list(READERS), default=None, help="reader (default: from the suffix)")
    g.add_argument("--kind", choices=("projections", "volume"), default=None,
                   help="a TIFF/NumPy/raw source holds projections or a reconstructed volume "
                        "(default: projections when angles are given)")
    g.add_argument("--flats", nargs="+", default=None, metavar="FILE", help="flat (open-beam) image file(s)")
    g.add_argument("--darks", nargs="+", default=None, metavar="FILE", help="dark image file(s)")
    g.add_argument("--angles", default=None, metavar="FILE", help="angles file (degrees, one per line)")
    g.add_argument("--angle-range", default=None, metavar="FIRST,LAST",
                   help="evenly spaced angles in degrees, both ends included")
    g.add_argument("--data-path", default=None, help="dataset inside an HDF5 file")
    g.add_argument("--key", default=None, help="variable of a .mat/.npz file (struct.field allowed)")
    g.add_argument("--raw-shape", default=None, metavar="A,R,C", help="shape of a raw binary file")
    g.add_argument("--raw-dtype", default=None, help="dtype of a raw binary file, e.g. <u2")
    g.add_argument("--raw-offset", type=int, default=0, help="header bytes before the raw data")


def _add_preprocessing(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pre-processing (each recorded in the provenance)")
    g.add_argument("--crop-rows", default=None, metavar="START:STOP", help="detector rows kept")
    g.add_argument("--crop-columns", default=None, metavar="START:STOP", help="detector columns kept")
    g.add_argument("--bin", type=int, default=1, help="detector binning per axis (counts summed)")
    g.add_argument("--flat-mode", choices=("auto", "mean", "interpolate"), default="auto",
                   help="several flats: interpolate between before and after (auto where both exist) or average")
    g.add_argument("--keep-dead-pixels", action="store_true", help="do not replace pixels whose flat is dead")
    g.add_argument("--zingers", type=float, default=None, metavar="T",
                   help="remove zingers, relative threshold T (0.05-0.1)")
    g.add_argument("--paganin", default=None, metavar="DELTA_BETA,DISTANCE_MM,ENERGY_KEV,PIXEL_UM",
                   help="Paganin phase retrieval")
    g.add_argument("--background", type=int, default=0, metavar="N",
                   help="zero the air: subtract the mean of the N outermost detector columns on each side")
    g.add_argument("--rings", action="store_true", help="remove ring artefacts (sinogram stripes)")
    g.add_argument("--center", type=float, default=None,
                   help="centre of rotation in detector pixels (default: estimated on the middle row)")


def add_subcommands(sub) -> None:
    """Add ``import``, ``analyze``, ``reconstruct`` and ``apply`` to the ``aiax-bench`` sub-command parser."""
    im = sub.add_parser("import", help="import your own scan as a dataset (--dataset NAME for every command)",
                        description="Read a scan (raw projections of any supported format, or a reconstructed "
                                    "volume), pre-process and reconstruct it, and write a dataset store: the "
                                    "reference, sparse splits of your own projections, train/val/test slabs.")
    im.add_argument("source", help="HDF5 (data-exchange, NXtomo, plain), TIFF, TXRM, .xtekct, .mat, raw, "
                                   "or a volume (TIFF stack, DICOM, NIfTI, .npy/.npz, zarr)")
    im.add_argument("--name", required=True, help="dataset name (lower-case)")
    im.add_argument("--subsample", default=None, metavar="N,N,...",
                    help="sparse splits: N of the scan's projections (e.g. 50,100,250)")
    im.add_argument("--low", default=None, metavar="SCAN",
                    help="a second scan of the sample (short exposure): split 'pair'")
    im.add_argument("--low-flats", nargs="+", default=None, metavar="FILE", help="the second scan's flats")
    im.add_argument("--low-darks", nargs="+", default=None, metavar="FILE", help="the second scan's darks")
    im.add_argument("--low-angles", default=None, metavar="FILE", help="the second scan's angles file (degrees)")
    im.add_argument("--low-angle-range", default=None, metavar="FIRST,LAST", help="the second scan's angles")
    im.add_argument("--voxel-size", default=None, metavar="SIZE", help="voxel edge (default: from the file)")
    im.add_argument("--parts", default=None, metavar="TRAIN,VAL,TEST",
                    help="fractions of the rows in each slab (default 0.6,0.2,0.2)")
    im.add_argument("--reference-filter", default="hann", help="FBP filter of the reference (default hann)")
    im.add_argument("--title", default=None, help="one line describing the dataset")
    im.add_argument("--force", action="store_true", help="replace an import of the same name")
    _add_reading(im)
    _add_preprocessing(im)
    im.set_defaults(func=cmd_import)

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
                        description="Read raw projections with their flats, darks and angles, pre-process them "
                                    "as `import` does, find the centre of rotation and reconstruct with FBP; writes "
                                    "the slices and a provenance JSON beside them.")
    rc.add_argument("source", help="raw projections in any format `import` reads (HDF5, TIFF, TXRM, .mat, raw)")
    rc.add_argument("--output", required=True, help="slices to write: .zarr, .tif or .npy")
    rc.add_argument("--rows", default=None, metavar="START:STOP", help="detector rows to reconstruct (default all)")
    rc.add_argument("--filter", default="hann", help="FBP filter (default hann)")
    rc.add_argument("--out-of-core", action="store_true",
                    help="read the projections slab by slab from the file (HDF5, .npy, raw) and write a .zarr "
                         "volume slab by slab, for scans larger than memory; resumes an interrupted run")
    rc.add_argument("--memory", type=float, default=2.0, metavar="GIB",
                    help="working memory of --out-of-core slabs in GiB (default 2; the result does not depend on it)")
    _add_reading(rc)
    _add_preprocessing(rc)
    rc.set_defaults(func=cmd_reconstruct)

    ap = sub.add_parser("apply", help="run a trained method's checkpoint on a new volume",
                        description="Load the checkpoint (its metadata names the method), run it slab by slab on "
                                    "VOLUME (1/cm) and write the result.")
    ap.add_argument("--checkpoint", default=None, help="checkpoint directory (printed when training writes it)")
    ap.add_argument("--method", default=None,
                    help="instead of a checkpoint: a self-supervised method (noise2inverse) trained on the scan "
                         "itself; --input is then the name of an imported scan")
    ap.add_argument("--seed", type=int, default=0, help="random seed of --method's training")
    ap.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="--method's hyper-parameters")
    ap.add_argument("--input", required=True, help="volume: .zarr, TIFF file or folder, .npy (read slab by slab); "
                                                   "with --method, an imported scan's name")
    ap.add_argument("--output", required=True, help="result: .zarr (written slab by slab), .tif or .npy")
    ap.add_argument("--dtype", choices=("float32", "uint16"), default="float32",
                    help="stored type; uint16 maps the training range (mean ± 5 std) to 0-65535, recorded")
    ap.add_argument("--batch-size", type=int, default=None, help="slices per forward pass")
    ap.add_argument("--match-intensity", action="store_true",
                    help="map the input onto the training inputs' mean and std first (other units or material)")
    ap.set_defaults(func=cmd_apply)
