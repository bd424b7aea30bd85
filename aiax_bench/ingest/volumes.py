"""Readers of reconstructed volumes: TIFF stacks, NumPy, zarr, raw binary, DICOM series and NIfTI.

DICOM is read with pydicom (slices ordered by their position along the
slice normal, rescaled to Hounsfield units by each file's slope and
intercept), NIfTI with nibabel (the data array turned to ``(z, y, x)``, voxel
size from the header). Every refusal is one line naming the file, the field
and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.ingest.scan import ReadOptions, VolumeScan

__all__ = ["SliceStack", "natural_sorted", "open_volume", "read_dicom", "read_nifti", "read_raw", "read_volume",
           "read_volume_scan"]


def natural_sorted(paths) -> list[Path]:
    """Paths in name order with numbers compared as numbers (``p_2`` before ``p_10``)."""
    import re

    return sorted(paths, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def read_volume(path: Path | str, *, key: str | None = None, raw_shape: tuple[int, ...] | None = None,
                raw_dtype: str | None = None, raw_offset: int = 0) -> np.ndarray:
    """A 3D volume from a TIFF stack (one multi-page file or a folder of slices), ``.npy``, ``.npz``, a zarr
    array, or raw binary (with ``raw_shape`` and ``raw_dtype``).

    Raises
    ------
    InputError
        Naming the file and what was expected (one line).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "does not exist", "a TIFF file or folder, .npy, .npz, .zarr or raw volume")
    suffix = path.suffix.lower()
    try:
        if raw_shape is not None or suffix == ".raw":
            volume = read_raw(path, raw_shape, raw_dtype, raw_offset)
        elif path.is_dir() and suffix != ".zarr":
            import tifffile

            files = natural_sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
            if not files:
                raise InputError(str(path), "holds no .tif/.tiff slices", "a folder of 2D TIFF slices")
            volume = np.stack([tifffile.imread(f) for f in files])
        elif suffix in (".tif", ".tiff"):
            import tifffile

            volume = tifffile.imread(path)
        elif suffix == ".npy":
            volume = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if key is None and len(names) != 1:
                    raise InputError(str(path), f"holds arrays {names}", "pass --key NAME to choose one")
                volume = archive[key or names[0]]
        elif suffix == ".zarr":
            import zarr

            volume = np.asarray(zarr.open_array(str(path), mode="r"))
        else:
            raise InputError(str(path), f"has suffix {suffix!r}",
                             "a TIFF file or folder, .npy, .npz, .zarr, or raw with --raw-shape and --raw-dtype")
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(str(path), f"cannot be read ({type(exc).__name__}: {exc})",
                         "a readable 3D volume") from None
    if volume.ndim != 3:
        raise InputError(str(path), f"has shape {volume.shape}", "a 3D volume (z, y, x)")
    return volume


def read_raw(path: Path, shape: tuple[int, ...] | None, dtype: str | None, offset: int, *,
             memory_map: bool = False) -> np.ndarray:
    """A raw binary array of ``shape`` and NumPy ``dtype`` after ``offset`` header bytes, size-checked
    (read-only and memory-mapped with ``memory_map``)."""
    if shape is None or dtype is None:
        raise InputError(str(path), "is raw binary without --raw-shape and --raw-dtype",
                         "pass --raw-shape Z,Y,X and --raw-dtype (e.g. uint8, <f4)")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError("--raw-dtype", f"is {dtype!r}", "a NumPy dtype such as uint8, <u2 or <f4") from None
    need = int(np.prod(shape)) * dt.itemsize
    size = path.stat().st_size - offset
    if size != need:
        raise InputError(str(path), f"holds {size} bytes after offset {offset}",
                         f"{need} bytes for shape {tuple(shape)} of {dt}")
    if memory_map:
        return np.memmap(path, dtype=dt, mode="r", offset=offset, shape=tuple(shape))
    return np.fromfile(path, dtype=dt, offset=offset).reshape(shape)


def _slice_position(ds, fallback: int) -> float:
    """Where a slice sits along the series' normal (the cross product of its row and column directions)."""
    position = getattr(ds, "ImagePositionPatient", None)
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if position is None:
        return float(getattr(ds, "InstanceNumber", fallback))
    if orientation is None:
        return float(position[2])
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
    return float(np.dot(normal, np.asarray(position, float)))


def read_dicom(path: Path | str) -> VolumeScan:
    """A DICOM series (a folder of ``.dcm`` files, or one file) in Hounsfield units, ordered along z."""
    import pydicom

    path = Path(path)
    files = sorted(path.glob("*.dcm")) if path.is_dir() else [path]
    if not files:
        raise InputError(str(path), "holds no .dcm files", "a DICOM series")
    slices = []
    series = set()
    for f in files:
        try:
            ds = pydicom.dcmread(f)
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # pydicom raises many types for damaged files
            raise InputError(str(f), f"cannot be read as DICOM ({type(exc).__name__}: {exc})",
                             "a DICOM image file") from None
        if pixels.ndim != 2:
            raise InputError(f"{f.name}: field NumberOfFrames", f"gives pixels of shape {pixels.shape}",
                             "one 2D image per file")
        series.add(str(getattr(ds, "SeriesInstanceUID", "")))
        hu = pixels * float(getattr(ds, "RescaleSlope", 1.0)) + float(getattr(ds, "RescaleIntercept", 0.0))
        slices.append((_slice_position(ds, len(slices)), hu, ds))
    if len(series) > 1:
        raise InputError(str(path), f"holds {len(series)} series (SeriesInstanceUID)", "one series per folder")
    slices.sort(key=lambda item: item[0])
    positions = [s[0] for s in slices]
    if len(set(positions)) != len(positions):
        raise InputError(str(path), "holds two slices at one position (ImagePositionPatient)", "one slice each")
    shapes = {s[1].shape for s in slices}
    if len(shapes) != 1:
        raise InputError(str(path), f"holds slices of shapes {sorted(shapes)}", "one image size per series")
    first = slices[0][2]
    spacing = getattr(first, "PixelSpacing", None)
    voxel_um = 1000.0 * float(spacing[0]) if spacing is not None else None
    volume = np.stack([s[1] for s in slices]).astype(np.float32)
    return VolumeScan(volume=volume, source=str(path), voxel_size_um=voxel_um, units="HU",
                      provenance={"reader": f"DICOM series ({len(files)} file(s), pydicom)",
                                  "modality": str(getattr(first, "Modality", "")),
                                  "slice_thickness_mm": float(getattr(first, "SliceThickness", 0) or 0)})


def read_nifti(path: Path | str) -> VolumeScan:
    """A NIfTI volume (nibabel): the array ``(x, y, z)`` turned to ``(z, y, x)``, voxel size from the header."""
    import nibabel

    path = Path(path)
    try:
        image = nibabel.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise InputError(str(path), f"cannot be read as NIfTI ({type(exc).__name__}: {exc})", "a .nii/.nii.gz file") \
            from None
    if data.ndim != 3:
        raise InputError(f"{path.name}: field dim", f"is {data.ndim}D", "a 3D volume")
    spatial_unit = image.header.get_xyzt_units()[0] or "mm"  # NIfTI's default unit is the millimetre
    to_um = {"mm": 1000.0, "micron": 1.0, "meter": 1e6}.get(spatial_unit, 1000.0)
    zooms = [float(z) * to_um for z in image.header.get_zooms()[:3]]
    return VolumeScan(volume=np.ascontiguousarray(data.transpose(2, 1, 0)), source=str(path),
                      voxel_size_um=zooms[0], units="HU" if data.min() < -500 else "grey value",
                      provenance={"reader": "NIfTI (nibabel)", "voxel_size_um_xyz": zooms,
                                  "anisotropic": len({round(z, 6) for z in zooms}) > 1})


def read_volume_scan(path: Path | str, options: ReadOptions | None = None) -> VolumeScan:
    """Any reconstructed volume: DICOM, NIfTI, or what :func:`read_volume` reads."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".dcm") or (path.is_dir() and any(path.glob("*.dcm"))):
        return read_dicom(path)
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti(path)
    key = options.key if options else None
    raw = (options.raw_shape, options.raw_dtype, options.raw_offset) if options else (None, None, 0)
    volume = read_volume(path, key=key, raw_shape=raw[0], raw_dtype=raw[1], raw_offset=raw[2])
    return VolumeScan(volume=np.asarray(volume, dtype=np.float32), source=str(path),
                      provenance={"reader": "volume (tifffile / numpy / zarr / raw)", "dtype": str(volume.dtype)})


class SliceStack:
    """A TIFF stack read slice by slice on demand: ``stack[a:b]`` loads only slices ``a`` to ``b``.

    A folder of 2D TIFFs (one file per slice, in name order) or one
    multi-page TIFF. Values are returned as float32.
    """

    def __init__(self, path: Path | str) -> None:
        import tifffile

        self.path = Path(path)
        try:
            if self.path.is_dir():
                self._files = natural_sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
                if not self._files:
                    raise InputError(str(self.path), "holds no .tif/.tiff slices", "a folder of 2D TIFF slices")
                self._tiff = None
                first = tifffile.imread(self._files[0])
                n = len(self._files)
            else:
                self._files = []
                self._tiff = tifffile.TiffFile(self.path)
                first = self._tiff.pages[0].asarray()
                n = len(self._tiff.pages)
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
            raise InputError(str(self.path), f"cannot be read as TIFF ({type(exc).__name__}: {exc})",
                             "a TIFF stack") from None
        if first.ndim != 2:
            raise InputError(str(self._files[0] if self._files else self.path), f"has pages of shape {first.shape}",
                             "2D slices")
        self.shape = (n, *first.shape)
        self.ndim = 3
        self.dtype = np.dtype(np.float32)

    def _slice(self, k: int) -> np.ndarray:
        import tifffile

        image = tifffile.imread(self._files[k]) if self._files else self._tiff.pages[k].asarray()
        if image.shape != self.shape[1:]:
            where = self._files[k] if self._files else f"{self.path} page {k}"
            raise InputError(str(where), f"has shape {image.shape}", f"{self.shape[1:]} like the first slice")
        return image.astype(np.float32)

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        first, rest = index[0], index[1:]
        if isinstance(first, int | np.integer):
            return self._slice(int(first))[rest] if rest else self._slice(int(first))
        if first is Ellipsis:
            first, rest = slice(None), ()
        picks = range(*first.indices(self.shape[0]))
        block = np.stack([self._slice(k) for k in picks]) if len(picks) else np.empty((0, *self.shape[1:]), np.float32)
        return block[(slice(None), *rest)] if rest else block

    def __array__(self, dtype=None, copy=None):
        return self[...] if dtype is None else self[...].astype(dtype)


def open_volume(path: Path | str) -> Any:
    """A volume to read slab by slab where the format allows: zarr, ``.npy`` (memory-mapped) and TIFF stacks;
    anything else is read whole by :func:`read_volume`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr" and path.exists():
        import zarr

        return zarr.open_array(str(path), mode="r")
    if suffix == ".npy" and path.is_file():
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if (suffix in (".tif", ".tiff") and path.is_file()) or (path.is_dir() and suffix != ".zarr"):
        stack = SliceStack(path)
        if stack.shape[0] > 1 or path.is_dir():
            return stack
    return read_volume(path)
