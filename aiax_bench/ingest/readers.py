"""Readers of raw scans, one per format, in one registry (:data:`READERS`).

Each reader uses a maintained library for the file format: h5py (HDF5
data-exchange, NeXus NXtomo, plain HDF5), tifffile (TIFF), olefile (Zeiss
TXRM/XRM), configparser (Nikon ``.xtekct``), scipy.io or h5py (MATLAB ``.mat``);
the volume readers (DICOM with pydicom, NIfTI with nibabel, TIFF, NumPy, zarr,
raw) are in :mod:`aiax_bench.ingest.volumes`. Every refusal is one line naming
the file, the field and what was expected.
"""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.ingest.scan import NO_OPTIONS, Projections, ReadOptions, VolumeScan
from aiax_bench.ingest.volumes import natural_sorted

__all__ = ["READERS", "ReadOptions", "Reader", "detect_format", "read_angles", "read_data_exchange",
           "read_images", "read_scan", "read_source", "read_tiff_scan"]


# --------------------------------------------------------------------------- shared helpers

def read_angles(path: Path | str, n_projections: int) -> tuple[np.ndarray, str]:
    """Angles (degrees) for ``n_projections`` from a text file of numbers, and how they were taken.

    A file with more entries than projections (some scanners also list the
    angle at which each flat and dark was taken, repeated before and after the
    scan) gives the one strictly increasing run of ``n_projections`` values.
    """
    path = Path(path)
    try:
        values = np.loadtxt(path, dtype=np.float64).ravel()
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot be read as numbers ({exc})", "one angle in degrees per line") from None
    if values.size == n_projections:
        return values, f"{path.name}: {n_projections} angles"
    steps = np.diff(values) > 0
    for start in range(values.size - n_projections + 1):
        run = values[start:start + n_projections]
        rest = np.concatenate([values[:start], values[start + n_projections:]])
        repeats = np.isclose(rest[:, None], run[[0, -1]][None, :], atol=1e-6).any(axis=1).all()
        if steps[start:start + n_projections - 1].all() and repeats:
            return (run,
                    f"{path.name}: the increasing run of {n_projections} of its {values.size} angles "
                    f"(entries {start}-{start + n_projections - 1}; the rest repeat the first and last angle)")
    raise InputError(str(path), f"holds {values.size} angles with no increasing run of {n_projections}",
                     "one angle per projection")


def _given_angles(options: ReadOptions, n: int, source: str) -> tuple[np.ndarray, str]:
    """Angles (degrees) from ``--angles`` or ``--angle-range``, or a one-line refusal."""
    if options.angles is not None:
        return read_angles(options.angles, n)
    if options.angle_range_deg is not None:
        first, last = options.angle_range_deg
        return np.linspace(first, last, n), f"--angle-range {first:g},{last:g} ({n} evenly spaced, both ends)"
    raise InputError(source, "stores no projection angles", "--angles FILE (degrees) or --angle-range FIRST,LAST")


def _given_projections(data: np.ndarray, source: Path, options: ReadOptions, reader: str,
                       **provenance: Any) -> Projections:
    """Projections from a file that holds only the frames: angles, flats and darks come from ``options``."""
    theta, how = _given_angles(options, data.shape[0], str(source))
    return Projections(data=data, flats=_extra_images(options.flats, data.shape[1:], "flat", options.data_path),
                       darks=_extra_images(options.darks, data.shape[1:], "dark", options.data_path),
                       angles=np.deg2rad(theta), source=str(source),
                       provenance={"reader": reader, "angles": how, **provenance})


def _h5_dataset(handle, name: str, path: Path, expected: str):
    try:
        return handle[name]
    except KeyError:
        raise InputError(f"{path.name}: field {name}", "is missing or a dangling link", expected) from None


def read_images(path: Path | str, *, data_path: str | None = None) -> np.ndarray:
    """``(n, rows, columns)`` float32 images from a TIFF, HDF5, Zeiss XRM or ``.npy`` file (flats and darks)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "is not a file", "a flat or dark image file (TIFF, HDF5, XRM, .npy)")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            images = _imread(path)
        elif suffix in (".h5", ".hdf5", ".hdf", ".nxs"):
            with _open_h5(path, "an HDF5 image file") as handle:
                images = _h5_dataset(handle, data_path or "entry/data/data", path,
                                     "the images (set --data-path)")[()]
        elif suffix in (".xrm", ".txrm"):
            images = _read_ole_images(path)[0]
        elif suffix == ".npy":
            images = np.load(path, allow_pickle=False)
        else:
            raise InputError(str(path), f"has suffix {suffix!r}", "a TIFF, HDF5, XRM or .npy image file")
        images = np.asarray(images, dtype=np.float32)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(str(path), f"cannot be read ({type(exc).__name__}: {exc})", "a flat or dark image file") \
            from None
    if images.ndim not in (2, 3):
        raise InputError(str(path), f"holds an array of shape {images.shape}", "2D images")
    return images[None] if images.ndim == 2 else images


def _imread(path: Path) -> np.ndarray:
    """One TIFF file, or a one-line refusal naming it."""
    import tifffile

    try:
        return tifffile.imread(path)
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise InputError(str(path), f"cannot be read as TIFF ({type(exc).__name__}: {exc})", "a TIFF image") \
            from None


def _extra_images(files: tuple[Path, ...], shape: tuple[int, ...], name: str,
                  data_path: str | None) -> np.ndarray | None:
    if not files:
        return None
    stacks = [read_images(f, data_path=data_path) for f in files]
    for f, stack in zip(files, stacks, strict=True):
        if stack.shape[1:] != shape:
            raise InputError(str(f), f"has {name} images of {stack.shape[1:]}", f"the projections' {shape}")
    return np.concatenate(stacks)


# --------------------------------------------------------------------------- HDF5: data-exchange, NXtomo, plain

def read_data_exchange(path: Path | str, options: ReadOptions = NO_OPTIONS, *, lazy: bool = False) -> Projections:
    """Projections, flats, darks and angles (degrees) of an HDF5 data-exchange file (APS / TomoPy layout).

    With ``lazy`` the projections stay in the file (an ``h5py.Dataset``, read by slicing; the file stays
    open while it is referenced).
    """
    path = Path(path)
    handle = _open_h5(path, "an HDF5 data-exchange file")
    try:
        def read(name: str, required: bool, dtype=np.float32) -> np.ndarray | None:
            if name not in handle:
                if required:
                    raise InputError(f"{path.name}: field {name}", "is missing",
                                     "the data-exchange layout (exchange/data, data_white, data_dark, theta)")
                return None
            return np.asarray(handle[name][()], dtype=dtype)

        data = handle["exchange/data"] if lazy and "exchange/data" in handle else read("exchange/data", True)
        flats, darks = read("exchange/data_white", False), read("exchange/data_dark", False)
        theta = None if options.has_angles else read("exchange/theta", True, np.float64)
    finally:
        if not lazy:
            handle.close()
    _check_stack(path, "exchange/data", data)
    how = "exchange/theta"
    if theta is None:
        theta, how = _given_angles(options, data.shape[0], str(path))
    if theta.shape != (data.shape[0],):
        raise InputError(f"{path.name}: field exchange/theta", f"has {theta.size} angles",
                         f"one per projection ({data.shape[0]})")
    for name, images in (("data_white", flats), ("data_dark", darks)):
        if images is not None and images.shape[1:] != data.shape[1:]:
            raise InputError(f"{path.name}: field exchange/{name}", f"has images of {images.shape[1:]}",
                             f"the projections' {data.shape[1:]}")
    return Projections(data=data, flats=flats, darks=darks, angles=np.deg2rad(theta), source=str(path),
                       provenance={"reader": f"HDF5 data-exchange (h5py{_LAZY_NOTE if lazy else ''})", "angles": how,
                                   "angles_deg": [float(theta[0]), float(theta[-1])]})


def _open_h5(path: Path, expected: str):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(str(path), f"cannot be opened as HDF5 ({exc})", expected) from None


#: Said in the provenance of projections left in their file.
_LAZY_NOTE = ", read slab by slab"


def _check_stack(path: Path, field: str, data: np.ndarray) -> None:
    if data.ndim != 3:
        raise InputError(f"{path.name}: field {field}", f"has shape {data.shape}", "(angles, rows, columns)")


def _walk_h5(group, prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Every dataset below ``group`` by path, and the links that dangle (skipped, not fatal)."""
    import h5py

    found: dict[str, Any] = {}
    dangling: list[str] = []
    for key in group:
        path = f"{prefix}/{key}"
        try:
            item = group[key]
        except (KeyError, OSError):
            dangling.append(path)
            continue
        if isinstance(item, h5py.Group):
            sub, bad = _walk_h5(item, path)
            found.update(sub)
            dangling += bad
        else:
            found[path] = item
    return found, dangling


#: Names NeXus files use for the rotation angle of each frame, most specific first.
_ANGLE_NAMES = ("rotation_angle", "gts_theta_value", "theta", "rotation", "angle")


def read_nxtomo(path: Path | str, options: ReadOptions = NO_OPTIONS) -> Projections:
    """A NeXus NXtomo scan (Diamond, ESRF): frames sorted by ``image_key`` (0 projection, 1 flat, 2 dark).

    External links are followed; links that dangle (files not copied with
    the master file) are listed in the provenance and skipped unless the frames
    or the image keys themselves are behind them. Flats taken before and after
    the projections keep their positions, for interpolation.
    """
    path = Path(path)
    with _open_h5(path, "a NeXus/HDF5 file") as handle:
        datasets, dangling = _walk_h5(handle)
        keys_at = [p for p in datasets if p.rsplit("/", 1)[-1] == "image_key"]
        if not keys_at:
            raise InputError(f"{path.name}: field image_key", "is missing", "an NXtomo file (frames with image_key)")
        image_key = np.asarray(datasets[keys_at[0]][()]).astype(int)
        frames_at = options.data_path or _nx_frames_path(datasets, image_key.size, path)
        frames_ds = _h5_dataset(handle, frames_at, path, "the detector frames")
        _check_virtual_sources(frames_ds, frames_at, path)
        frames = np.asarray(frames_ds[()], dtype=np.float32)
        angles_at = None if options.has_angles else _nx_angles_path(datasets, image_key.size)
        theta = None
        if angles_at is not None:
            theta = np.asarray(datasets[angles_at][()], dtype=np.float64)
            units = datasets[angles_at].attrs.get("units", b"degree")
            if (units.decode() if isinstance(units, bytes) else str(units)).lower().startswith("rad"):
                theta = np.rad2deg(theta)
    _check_stack(path, frames_at, frames)
    if frames.shape[0] != image_key.size:
        raise InputError(f"{path.name}: field {frames_at}", f"has {frames.shape[0]} frames",
                         f"one per image_key entry ({image_key.size})")
    projection = np.flatnonzero(image_key == 0)
    if projection.size == 0:
        raise InputError(f"{path.name}: field {keys_at[0]}", "has no projection (0) frame", "frames keyed 0, 1, 2")
    how = angles_at
    if theta is None:
        theta, how = _given_angles(options, projection.size, str(path))
    else:
        theta = theta[projection]
    flat_index = np.flatnonzero(image_key == 1)
    dark_index = np.flatnonzero(image_key == 2)
    # A flat taken before the first projection sits at position 0, one after the last at the end.
    positions = np.searchsorted(projection, flat_index).clip(0, projection.size - 1).astype(np.float64)
    return Projections(data=frames[projection], flats=frames[flat_index] if flat_index.size else None,
                       darks=frames[dark_index] if dark_index.size else None, angles=np.deg2rad(theta),
                       source=str(path), flat_positions=positions if flat_index.size else None,
                       provenance={"reader": "NeXus NXtomo (h5py)", "frames": frames_at, "image_key": keys_at[0],
                                   "angles": how, "frames_by_key": {"projections": int(projection.size),
                                                                    "flats": int(flat_index.size),
                                                                    "darks": int(dark_index.size)},
                                   "dangling_links": dangling})


def _check_virtual_sources(dataset, field: str, path: Path) -> None:
    """A virtual dataset whose source files are missing reads as zeros without a word: refuse it."""
    if not getattr(dataset, "is_virtual", False):
        return
    for source in dataset.virtual_sources():
        name = Path(source.file_name)
        if source.file_name != "." and not (name if name.is_absolute() else path.parent / name).is_file():
            raise InputError(f"{path.name}: field {field}", f"maps frames to {source.file_name}, which is missing",
                             "every source file of the virtual dataset beside the master file")


def _nx_frames_path(datasets: dict[str, Any], n: int, path: Path) -> str:
    candidates = [p for p, d in datasets.items() if d.ndim == 3 and d.shape[0] == n]
    preferred = [p for p in candidates if p.endswith("/data")]
    if not (preferred or candidates):
        raise InputError(f"{path.name}: field data", f"has no 3D dataset of {n} frames",
                         "the detector frames (set --data-path)")
    return (preferred or candidates)[0]


def _nx_angles_path(datasets: dict[str, Any], n: int) -> str | None:
    for name in _ANGLE_NAMES:
        for p, d in datasets.items():
            if p.rsplit("/", 1)[-1] == name and d.ndim == 1 and d.shape[0] == n:
                return p
    return None


def read_hdf5_frames(path: Path | str, options: ReadOptions = NO_OPTIONS, *, lazy: bool = False) -> Projections:
    """Projections in a plain HDF5 dataset (``--data-path``, default ``entry/data/data``), with flats and
    darks in separate files (``--flats``, ``--darks``) and the angles given (Diamond I12 and similar);
    left in the file with ``lazy``."""
    path = Path(path)
    name = options.data_path or "entry/data/data"
    handle = _open_h5(path, "an HDF5 file of projections")
    try:
        dataset = _h5_dataset(handle, name, path, "the projections (set --data-path)")
        data = dataset if lazy else np.asarray(dataset[()], np.float32)
    finally:
        if not lazy:
            handle.close()
    _check_stack(path, name, data)
    return _given_projections(data, path, options, f"HDF5 dataset {name} (h5py{_LAZY_NOTE if lazy else ''})",
                              flat_files=[str(f) for f in options.flats], dark_files=[str(f) for f in options.darks])


def read_hdf5(path: Path | str, options: ReadOptions = NO_OPTIONS, *, lazy: bool = False) -> Projections:
    """Any HDF5 scan: data-exchange, NXtomo (``image_key``), or a plain dataset, recognised by content.

    With ``lazy`` the projections stay in the file; NXtomo, whose flats and darks are frames of the same
    dataset, is then refused.
    """
    path = Path(path)
    with _open_h5(path, "an HDF5 file") as handle:
        exchange = "exchange/data" in handle
        datasets, _ = _walk_h5(handle) if not exchange else ({}, [])
    if exchange:
        return read_data_exchange(path, options, lazy=lazy)
    if any(p.rsplit("/", 1)[-1] == "image_key" for p in datasets):
        if lazy:
            raise InputError(str(path), "is NXtomo, whose flats and darks are interleaved with the projections",
                             "a data-exchange file, a plain HDF5 dataset, .npy or raw projections for --out-of-core")
        return read_nxtomo(path, options)
    return read_hdf5_frames(path, options, lazy=lazy)


# --------------------------------------------------------------------------- TIFF projections

def read_tiff_scan(folder: Path | str, options: ReadOptions = NO_OPTIONS) -> Projections:
    """Projections from a folder of 2D TIFFs (in name order) or one multi-page TIFF, with flat and dark
    images and angles (``--angles`` file or ``--angle-range``)."""
    folder = Path(folder)
    if folder.is_file():
        data = np.asarray(_imread(folder), dtype=np.float32)
        _check_stack(folder, "pages", data)
        what = f"multi-page TIFF ({data.shape[0]} pages, tifffile)"
    else:
        given = {Path(f).resolve() for f in (*options.flats, *options.darks)}
        files = natural_sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff")
                               and p.resolve() not in given) if folder.is_dir() else []
        if not files:
            raise InputError(str(folder), "holds no .tif/.tiff projections", "a folder of 2D TIFF projections")
        stack = [np.asarray(_imread(p), dtype=np.float32) for p in files]
        for p, image in zip(files, stack, strict=True):
            if image.shape != stack[0].shape:
                raise InputError(str(p), f"has shape {image.shape}", f"{stack[0].shape} like {files[0].name}")
        data = np.stack(stack)
        what = f"TIFF folder ({len(files)} files, tifffile)"
    return _given_projections(data, folder, options, what)


# --------------------------------------------------------------------------- Zeiss TXRM / XRM

#: ``ImageInfo/DataType`` codes of Zeiss files.
_OLE_DTYPES = {5: np.uint16, 10: np.float32}


def _ole_array(ole, name: str, dtype) -> np.ndarray | None:
    """Stream ``name`` as an array of ``dtype`` (a trailing partial element dropped), None if absent."""
    if not ole.exists(name):
        return None
    raw = ole.openstream(name).read()
    size = np.dtype(dtype).itemsize
    return np.frombuffer(raw[:len(raw) // size * size], dtype=dtype)


def _read_ole_images(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The images of a Zeiss TXRM (a tomography) or XRM (one image) file and its metadata streams."""
    import olefile

    if not olefile.isOleFile(str(path)):
        raise InputError(str(path), "is not an OLE2 compound file", "a Zeiss/Xradia TXRM or XRM file")
    with olefile.OleFileIO(str(path)) as ole:
        meta: dict[str, Any] = {}
        for name in ("ImagesTaken", "ImageHeight", "ImageWidth", "DataType"):
            value = _ole_array(ole, f"ImageInfo/{name}", "<i4")
            if value is None or value.size == 0:
                raise InputError(f"{path.name}: stream ImageInfo/{name}", "is missing", "a Zeiss TXRM/XRM file")
            meta[name] = int(value[0])
        dtype = _OLE_DTYPES.get(meta["DataType"])
        if dtype is None:
            raise InputError(f"{path.name}: stream ImageInfo/DataType", f"is {meta['DataType']}",
                             f"one of {sorted(_OLE_DTYPES)} (uint16, float32)")
        shape = (meta["ImageHeight"], meta["ImageWidth"])
        images = []
        for k in range(1, meta["ImagesTaken"] + 1):
            # Zeiss files hold 100 images per ImageData folder.
            name = f"ImageData{(k - 1) // 100 + 1}/Image{k}"
            raw = _ole_array(ole, name, dtype)
            if raw is None:
                raise InputError(f"{path.name}: stream {name}", "is missing", f"{meta['ImagesTaken']} images")
            if raw.size != shape[0] * shape[1]:
                raise InputError(f"{path.name}: stream {name}", f"holds {raw.size} pixels", f"{shape[0]}×{shape[1]}")
            images.append(raw.reshape(shape))
        angles = _ole_array(ole, "ImageInfo/Angles", "<f4")
        pixel = _ole_array(ole, "ImageInfo/PixelSize", "<f4")
        reference = None
        if ole.exists("ReferenceData/Image"):
            # The reference has a data type of its own (often float32 beside uint16 images).
            code = _ole_array(ole, "ReferenceData/DataType", "<i4")
            ref_dtype = _OLE_DTYPES.get(int(code[0]), dtype) if code is not None and code.size else dtype
            ref = _ole_array(ole, "ReferenceData/Image", ref_dtype)
            if ref.size != shape[0] * shape[1]:
                raise InputError(f"{path.name}: stream ReferenceData/Image", f"holds {ref.size} pixels",
                                 f"{shape[0]}×{shape[1]} like the images")
            reference = ref.reshape(shape)
    meta.update(angles=None if angles is None else angles[:meta["ImagesTaken"]].astype(np.float64),
                pixel_size_um=None if pixel is None or not pixel.size else float(pixel[0]), reference=reference)
    return np.stack(images).astype(np.float32), meta


def read_txrm(path: Path | str, options: ReadOptions = NO_OPTIONS) -> Projections:
    """A Zeiss/Xradia TXRM tomography: images, angles and pixel size from its streams (olefile).

    The open-beam reference is the file's ``ReferenceData/Image`` when it holds
    one, else the ``--flats`` file(s) (often a separate XRM).
    """
    path = Path(path)
    data, meta = _read_ole_images(path)
    if meta["angles"] is not None and not options.has_angles:
        theta, how = meta["angles"], "ImageInfo/Angles"
        if theta.shape != (data.shape[0],):
            raise InputError(f"{path.name}: stream ImageInfo/Angles", f"holds {theta.size} angles",
                             f"one per image ({data.shape[0]}), or --angles / --angle-range")
    else:
        theta, how = _given_angles(options, data.shape[0], str(path))
    flats = _extra_images(options.flats, data.shape[1:], "flat", options.data_path)
    if flats is None and meta["reference"] is not None:
        flats = meta["reference"][None].astype(np.float32)
    darks = _extra_images(options.darks, data.shape[1:], "dark", options.data_path)
    return Projections(data=data, flats=flats, darks=darks, angles=np.deg2rad(theta), source=str(path),
                       pixel_size_um=meta["pixel_size_um"],
                       provenance={"reader": "Zeiss TXRM (olefile)", "angles": how,
                                   "pixel_size_um": meta["pixel_size_um"],
                                   "reference": "ReferenceData/Image" if meta["reference"] is not None else
                                   [str(f) for f in options.flats]})


# --------------------------------------------------------------------------- Nikon XTek CT

#: ``.xtekct`` keys a cone-beam import needs, with what each is.
_XTEK_KEYS = {"Projections": "number of projections", "InitialAngle": "first angle (degrees)",
              "AngularStep": "angle step (degrees)", "SrcToObject": "source-object distance (mm)",
              "SrcToDetector": "source-detector distance (mm)", "DetectorPixelSizeX": "detector pixel (mm)"}


def read_xtekct(path: Path | str) -> dict[str, float | str]:
    """The geometry of a Nikon ``.xtekct`` file (configparser), checked key by key."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive CamelCase
    try:
        parser.read(path, encoding="utf-8-sig")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise InputError(str(path), f"cannot be parsed ({type(exc).__name__})", "a Nikon .xtekct file") from None
    if "XTekCT" not in parser:
        raise InputError(f"{path.name}: section [XTekCT]", "is missing", "a Nikon .xtekct file")
    section = parser["XTekCT"]
    values: dict[str, float | str] = {"Name": section.get("Name", path.stem)}
    for key, what in _XTEK_KEYS.items():
        try:
            values[key] = float(section[key])
        except (KeyError, ValueError):
            values[key] = float("nan")
        positive = key not in ("InitialAngle", "AngularStep")
        if not np.isfinite(values[key]) or (positive and not values[key] > 0):
            raise InputError(f"{path.name}: field {key}", f"is {section.get(key)!r}",
                             f"a {'positive ' if positive else ''}number: the {what}")
    return values


def read_nikon(path: Path | str, options: ReadOptions = NO_OPTIONS) -> Projections:
    """A Nikon XTek CT scan: the ``.xtekct`` geometry and the TIFF projections beside it.

    Projections are the folder's TIFFs named ``<Name>_NNNN.tif``, or, for a
    single radiograph, the TIFF with the ``.xtekct`` file's stem. Nikon writes
    flat-field corrected projections (transmission). The geometry is cone beam:
    it is read and recorded, and reconstruction asks for a cone-beam projector.
    """
    path = Path(path)
    xtek = read_xtekct(path)
    folder = path.parent
    files = natural_sorted(folder.glob(f"{xtek['Name']}_[0-9]*.tif")) or sorted(folder.glob(f"{path.stem}.tif"))
    if not files:
        raise InputError(str(folder), f"holds no projections {xtek['Name']}_NNNN.tif or {path.stem}.tif",
                         "the TIFF projections beside the .xtekct file")

    data = np.stack([np.asarray(_imread(f), dtype=np.float32) for f in files])
    theta = xtek["InitialAngle"] + xtek["AngularStep"] * np.arange(len(files))
    magnification = xtek["SrcToDetector"] / xtek["SrcToObject"]
    geometry = {k: float(xtek[k]) for k in ("SrcToObject", "SrcToDetector", "DetectorPixelSizeX")}
    return Projections(data=data, flats=None, darks=None, angles=np.deg2rad(theta), source=str(path),
                       signal="transmission", geometry="cone", geometry_parameters=geometry,
                       pixel_size_um=1000.0 * float(xtek["DetectorPixelSizeX"]) / magnification,
                       provenance={"reader": "Nikon .xtekct (configparser) + TIFF (tifffile)",
                                   "projections_in_file": int(xtek["Projections"]), "projections_found": len(files),
                                   "geometry": "cone", "magnification": magnification})


# --------------------------------------------------------------------------- MATLAB sinograms, raw binary

def _mat_variables(path: Path) -> dict[str, Any]:
    import scipy.io

    try:
        return {k: v for k, v in scipy.io.loadmat(path, simplify_cells=True).items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        import h5py

        with _open_h5(path, "a MATLAB .mat file") as handle:
            return {k: np.asarray(handle[k][()]).T for k in handle if isinstance(handle[k], h5py.Dataset)}
    except (ValueError, OSError) as exc:
        raise InputError(str(path), f"cannot be read as MATLAB ({exc})", "a .mat file") from None


def read_mat(path: Path | str, options: ReadOptions = NO_OPTIONS) -> Projections:
    """A sinogram from a MATLAB ``.mat`` file: ``(angles, columns)`` or ``(angles, rows, columns)`` line integrals.

    The variable is ``--key`` (a struct field as ``struct.field``), else the
    one 2D/3D array, else a struct's ``sinogram``; the struct's
    ``parameters.angles`` (degrees) are used when present. A struct that
    records a fan-beam geometry (``geometryType``, distances) is reported as fan beam.
    """
    path = Path(path)
    variables = _mat_variables(path)
    sinogram, parameters, where = _mat_sinogram(variables, options.key, path)
    if sinogram.ndim == 2:
        sinogram = sinogram[:, None, :]
    angles_deg = parameters.get("angles")
    if angles_deg is not None and not options.has_angles and np.size(angles_deg) == sinogram.shape[0]:
        theta, how = np.asarray(angles_deg, dtype=np.float64).ravel(), f"{where}.parameters.angles"
    else:
        theta, how = _given_angles(options, sinogram.shape[0], str(path))
    geometry = "fan" if "fan" in str(parameters.get("geometryType", "")).lower() or "distanceSourceDetector" \
        in parameters else "parallel"
    distances = {k: float(np.asarray(parameters[k]).ravel()[0]) for k in (
        "distanceSourceOrigin", "distanceSourceDetector", "pixelSize", "pixelSizePost")
        if k in parameters and np.asarray(parameters[k]).size}
    return Projections(data=np.asarray(sinogram, dtype=np.float32), flats=None, darks=None,
                       angles=np.deg2rad(theta), source=str(path), signal="line-integrals", geometry=geometry,
                       geometry_parameters=distances,
                       provenance={"reader": "MATLAB .mat (scipy.io)", "variable": where, "angles": how,
                                   "geometry": geometry})


def _mat_sinogram(variables: dict[str, Any], key: str | None, path: Path) -> tuple[np.ndarray, dict, str]:
    if key is not None:
        name, _, field = key.partition(".")
        value = variables.get(name)
        if isinstance(value, dict) and field:
            value = value.get(field)
        if not isinstance(value, np.ndarray) or value.ndim not in (2, 3):
            raise InputError(f"{path.name}: variable {key}", "is missing or not a 2D/3D array",
                             f"one of {sorted(variables)}")
        return value, {}, key
    arrays = {k: v for k, v in variables.items() if isinstance(v, np.ndarray) and v.ndim in (2, 3)}
    if len(arrays) == 1:
        (name, value), = arrays.items()
        return value, {}, name
    structs = {k: v for k, v in variables.items() if isinstance(v, dict) and "sinogram" in v}
    if len(structs) == 1:
        (name, value), = structs.items()
        parameters = value.get("parameters", {})
        return np.asarray(value["sinogram"]), parameters if isinstance(parameters, dict) else {}, name
    raise InputError(str(path), f"holds variables {sorted(variables)}", "one sinogram, or --key NAME to choose it")


def read_raw_projections(path: Path | str, options: ReadOptions = NO_OPTIONS, *, lazy: bool = False) -> Projections:
    """Projections in raw binary: ``--raw-shape A,R,C``, ``--raw-dtype`` and ``--raw-offset`` header bytes
    (memory-mapped with ``lazy``)."""
    from aiax_bench.ingest.volumes import read_raw

    path = Path(path)
    data = read_raw(path, options.raw_shape, options.raw_dtype, options.raw_offset, memory_map=lazy)
    data = data if lazy else data.astype(np.float32)
    _check_stack(path, "--raw-shape", data)
    return _given_projections(data, path, options, f"raw binary {options.raw_dtype} {options.raw_shape}, offset "
                                                   f"{options.raw_offset} B{_LAZY_NOTE if lazy else ''}")


def read_npy_projections(path: Path | str, options: ReadOptions = NO_OPTIONS, *, lazy: bool = False) -> Projections:
    """Projections ``(angles, rows, columns)`` saved with NumPy, with the angles, flats and darks given
    (memory-mapped with ``lazy``)."""
    path = Path(path)
    try:
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
        data = data if lazy else np.asarray(data, dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot be read as .npy ({exc})", "a NumPy array file") from None
    _check_stack(path, "array", data)
    return _given_projections(data, path, options, f".npy projections (numpy{_LAZY_NOTE if lazy else ''})")


# --------------------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Reader:
    """One source format: how it is recognised and read."""

    name: str
    description: str
    read: Callable[[Path, ReadOptions], Projections | VolumeScan]


def _volume(path: Path, options: ReadOptions) -> VolumeScan:
    from aiax_bench.ingest.volumes import read_volume_scan

    return read_volume_scan(path, options)


READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("hdf5", "HDF5: data-exchange (exchange/data, data_white, data_dark, theta), NeXus NXtomo (image_key), "
                   "or a plain dataset (--data-path) with --flats/--darks files", read_hdf5),
    Reader("tiff-projections", "TIFF projections: a folder of 2D files or one multi-page file, with --flats, "
                               "--darks and --angles/--angle-range", read_tiff_scan),
    Reader("txrm", "Zeiss/Xradia TXRM tomography (olefile)", read_txrm),
    Reader("nikon", "Nikon XTek .xtekct with its TIFF projections (cone beam)", read_nikon),
    Reader("mat", "MATLAB .mat sinogram (line integrals)", read_mat),
    Reader("npy-projections", "NumPy projections (--kind projections, angles, flats, darks)", read_npy_projections),
    Reader("raw-projections", "raw binary projections (--raw-shape, --raw-dtype, --raw-offset, angles)",
           read_raw_projections),
    Reader("volume", "a reconstructed volume: TIFF stack, DICOM series, NIfTI, .npy/.npz, zarr, raw", _volume),
)}


def detect_format(path: Path, options: ReadOptions) -> str:
    """The :data:`READERS` name for ``path``: by suffix, and for TIFF, NumPy and raw files by ``options.kind``
    (projections when angles are given)."""
    suffix = "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".nii.gz") else path.suffix.lower()
    projections = options.kind == "projections" or (options.kind is None and options.has_angles)
    if suffix in (".h5", ".hdf5", ".hdf", ".nxs", ".cxi"):
        return "hdf5"
    if suffix == ".txrm":
        return "txrm"
    if suffix == ".xtekct":
        return "nikon"
    if suffix == ".mat":
        return "mat"
    if suffix in (".dcm", ".nii", ".nii.gz", ".zarr", ".npz") or (suffix == ".npy" and not projections):
        return "volume"
    if path.is_dir():
        if any(path.glob("*.xtekct")) and not projections:
            return "nikon"
        return "tiff-projections" if projections else "volume"
    if suffix in (".tif", ".tiff"):
        return "tiff-projections" if projections else "volume"
    if suffix in (".raw", ".bin", ".vol") or options.raw_shape is not None:
        return "raw-projections" if projections else "volume"
    if suffix == ".npy":
        return "npy-projections" if projections else "volume"
    raise InputError(str(path), f"has suffix {suffix!r}",
                     "one of: " + "; ".join(f"{r.name} ({r.description})" for r in READERS.values()))


def read_source(source: Path | str, options: ReadOptions = NO_OPTIONS, *,
                format: str | None = None) -> Projections | VolumeScan:
    """Read ``source`` with the reader ``format`` names, or the one :func:`detect_format` picks."""
    path = Path(source)
    if not path.exists():
        raise InputError(str(path), "does not exist", "a scan file or folder")
    if format is not None and format not in READERS:
        raise InputError("--format", f"is {format!r}", f"one of {list(READERS)}")
    if path.is_dir() and format is None and any(path.glob("*.xtekct")) and options.kind != "volume":
        path = sorted(path.glob("*.xtekct"))[0]
    name = format or detect_format(path, options)
    return READERS[name].read(path, options)


#: Formats whose readers can leave the projections in the file, read slab by slab (``lazy=True``:
#: ``reconstruct --out-of-core``).
LAZY_READERS: dict[str, Callable[..., Projections]] = {
    "hdf5": read_hdf5, "npy-projections": read_npy_projections, "raw-projections": read_raw_projections}


def open_projections(source: Path | str, options: ReadOptions = NO_OPTIONS, *,
                     format: str | None = None) -> Projections:
    """Projections whose ``data`` stays in the file and is read by slicing (flats and darks are read whole).

    For HDF5 (data-exchange or a plain dataset), ``.npy`` and raw files; the
    other formats are refused in one line (convert them, or reconstruct in memory).
    """
    path = Path(source)
    if not path.exists():
        raise InputError(str(path), "does not exist", "a scan file")
    if format is not None and format not in READERS:
        raise InputError("--format", f"is {format!r}", f"one of {list(READERS)}")
    name = format or detect_format(path, options)
    if name not in LAZY_READERS:
        raise InputError(str(path), f"is read by the {name} reader, which loads it whole",
                         f"projections in {', '.join(LAZY_READERS)} for --out-of-core")
    return LAZY_READERS[name](path, options, lazy=True)


def read_scan(source: Path | str, *, flat: Path | str | None = None, dark: Path | str | None = None,
              angles: Path | str | None = None) -> Projections:
    """A raw scan: an HDF5 file (data-exchange, NXtomo), or a TIFF folder with ``flat``, ``dark`` and ``angles``."""
    source = Path(source)
    if source.is_dir() and angles is None:
        raise InputError("--angles", "is missing", "an angles file (degrees) for a TIFF folder")
    options = ReadOptions(flats=(Path(flat),) if flat else (), darks=(Path(dark),) if dark else (),
                          angles=Path(angles) if angles else None)
    scan = read_source(source, options)
    if not isinstance(scan, Projections):
        raise InputError(str(source), "holds a reconstructed volume", "raw projections")
    return scan
