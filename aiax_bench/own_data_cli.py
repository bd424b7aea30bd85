"""Commands for a user's own data: ``analyze``, ``reconstruct`` and ``apply``."""

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


def add_subcommands(sub) -> None:
    """Add ``analyze``, ``reconstruct`` and ``apply`` to the ``aiax-bench`` sub-command parser."""
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
