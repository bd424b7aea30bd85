"""Raw projections of a user's own scan to a reconstruction: read, correct, find the centre, reconstruct.

``aiax-bench reconstruct SOURCE --output volume.zarr`` runs these steps, each
recorded in the returned provenance:

1. **Read** the projections, flats, darks and angles. Supported here: HDF5
   data-exchange (the APS / TomoPy layout: ``exchange/data``,
   ``exchange/data_white``, ``exchange/data_dark``, ``exchange/theta`` in
   degrees), read with h5py; and a folder of TIFF projections with flat and
   dark TIFFs and an angles text file (degrees), read with tifffile.
2. **Flat/dark correction**: ``(I - mean dark) / (mean flat - mean dark)``,
   clipped to a small positive transmission where detector zeros or a
   flat weaker than the dark would give ``log(0)``; the number of clipped
   pixels is recorded.
3. **−log** of the transmission: line integrals.
4. **Ring removal** (optional, ``--rings``): stripes in the sinograms removed
   by sorting (Vo et al. 2018, algotom ``remove_stripe_based_sorting``).
5. **Centre of rotation**: estimated by the Fourier "double-wedge" method of
   Vo et al. (2014) as algotom implements it (``find_center_vo``) on the
   middle detector row of a 180° scan, or given (``--center``, in detector
   pixels from the first pixel's centre).
6. **Reconstruction**: each sinogram is shifted (sub-pixel, linear) so that
   the rotation axis is at the detector's centre, then reconstructed with the
   project's FBP (:func:`aiax_bench.recon.fbp`). Attenuation is per voxel
   unless a pixel size is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError

__all__ = ["Projections", "correct", "find_center", "read_angles", "read_data_exchange", "read_scan", "read_tiff_scan",
           "reconstruct", "remove_rings", "shift_to_center"]

#: Smallest transmission kept: a zero count or a flat no brighter than the dark is clipped to it.
MIN_TRANSMISSION = 1e-6


@dataclass
class Projections:
    """Raw projections of one scan.

    Attributes
    ----------
    data : numpy.ndarray
        ``(angles, rows, columns)`` detector counts.
    flats, darks : numpy.ndarray or None
        ``(n, rows, columns)`` open-beam and dark images.
    angles : numpy.ndarray
        Projection angles (radians).
    source : str
        Where they were read from.
    provenance : dict
        What reading and each later step did.
    """

    data: np.ndarray
    flats: np.ndarray | None
    darks: np.ndarray | None
    angles: np.ndarray
    source: str
    provenance: dict[str, Any] = field(default_factory=dict)


def read_data_exchange(path: Path | str) -> Projections:
    """Projections, flats, darks and angles (degrees) of an HDF5 data-exchange file."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(str(path), f"cannot be opened as HDF5 ({exc})", "an HDF5 data-exchange file") from None
    with handle:
        def read(name: str, required: bool, dtype=np.float32) -> np.ndarray | None:
            if name not in handle:
                if required:
                    raise InputError(f"{path.name}: field {name}", "is missing",
                                     "the data-exchange layout (exchange/data, data_white, data_dark, theta)")
                return None
            return np.asarray(handle[name][()], dtype=dtype)

        data = read("exchange/data", True)
        flats, darks = read("exchange/data_white", False), read("exchange/data_dark", False)
        theta = read("exchange/theta", True, np.float64)
    if data.ndim != 3:
        raise InputError(f"{path.name}: field exchange/data", f"has shape {data.shape}", "(angles, rows, columns)")
    if theta.shape != (data.shape[0],):
        raise InputError(f"{path.name}: field exchange/theta", f"has {theta.size} angles",
                         f"one per projection ({data.shape[0]})")
    for name, images in (("data_white", flats), ("data_dark", darks)):
        if images is not None and images.shape[1:] != data.shape[1:]:
            raise InputError(f"{path.name}: field exchange/{name}", f"has images of {images.shape[1:]}",
                             f"the projections' {data.shape[1:]}")
    return Projections(data=data, flats=flats, darks=darks, angles=np.deg2rad(theta), source=str(path),
                       provenance={"reader": "HDF5 data-exchange (h5py)", "angles_deg": [float(theta[0]),
                                                                                        float(theta[-1])]})


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
        if steps[start:start + n_projections - 1].all():
            return (values[start:start + n_projections],
                    f"{path.name}: the increasing run of {n_projections} of its {values.size} angles "
                    f"(entries {start}-{start + n_projections - 1}; the rest repeat the first and last angle)")
    raise InputError(str(path), f"holds {values.size} angles with no increasing run of {n_projections}",
                     "one angle per projection")


def read_tiff_scan(folder: Path | str, *, flat: Path | str | None, dark: Path | str | None,
                   angles: Path | str) -> Projections:
    """Projections from a folder of 2D TIFFs (in name order), with flat and dark TIFF files and an angles file."""
    import tifffile

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff")) if folder.is_dir() else []
    if not files:
        raise InputError(str(folder), "holds no .tif/.tiff projections", "a folder of 2D TIFF projections")

    def images(paths: list[Path]) -> np.ndarray:
        stack = [np.asarray(tifffile.imread(p), dtype=np.float32) for p in paths]
        for p, image in zip(paths, stack, strict=True):
            if image.shape != stack[0].shape:
                raise InputError(str(p), f"has shape {image.shape}", f"{stack[0].shape} like {paths[0].name}")
        return np.stack(stack)

    data = images(files)
    extra = {}
    for name, value in (("flat", flat), ("dark", dark)):
        if value is not None:
            extra[name] = images([Path(value)]) if Path(value).is_file() else None
            if extra[name] is None:
                raise InputError(f"--{name}", f"is {value}, not a file", "a TIFF image")
            if extra[name].shape[1:] != data.shape[1:]:
                raise InputError(str(value), f"has shape {extra[name].shape[1:]}", f"{data.shape[1:]} like the "
                                 "projections")
    theta, how = read_angles(angles, len(files))
    return Projections(data=data, flats=extra.get("flat"), darks=extra.get("dark"), angles=np.deg2rad(theta),
                       source=str(folder), provenance={"reader": f"TIFF folder ({len(files)} files, tifffile)",
                                                       "angles": how})


def read_scan(source: Path | str, *, flat: Path | str | None = None, dark: Path | str | None = None,
              angles: Path | str | None = None) -> Projections:
    """A raw scan: an HDF5 data-exchange file, or a TIFF folder with ``flat``, ``dark`` and ``angles``."""
    source = Path(source)
    if source.is_dir():
        if angles is None:
            raise InputError("--angles", "is missing", "an angles file (degrees) for a TIFF folder")
        return read_tiff_scan(source, flat=flat, dark=dark, angles=angles)
    return read_data_exchange(source)


def correct(projections: Projections) -> np.ndarray:
    """Line integrals ``-log((I - dark) / (flat - dark))``, clipped; records the clipped pixel count."""
    data = projections.data
    dark = projections.darks.mean(0) if projections.darks is not None else np.zeros(data.shape[1:], np.float32)
    if projections.flats is None:
        raise InputError(f"{projections.source}", "has no flat (open-beam) images",
                         "projections with flats, or already-normalised data")
    flat = projections.flats.mean(0)
    transmission = (data - dark) / np.maximum(flat - dark, MIN_TRANSMISSION)
    clipped = int(np.count_nonzero(~(transmission >= MIN_TRANSMISSION)))
    transmission = np.clip(np.nan_to_num(transmission, nan=MIN_TRANSMISSION), MIN_TRANSMISSION, None)
    projections.provenance.update(flat_dark={"flats": len(projections.flats),
                                             "darks": 0 if projections.darks is None else len(projections.darks),
                                             "clipped_pixels": clipped},
                                  minus_log=True)
    return -np.log(transmission).astype(np.float32)


def find_center(sinogram: np.ndarray) -> float:
    """Centre of rotation (detector pixels from the first pixel's centre) of a 180° sinogram ``(A, D)``.

    Vo, Atwood & Drakopoulos (2014), Opt. Express 22, 19078, as implemented by
    ``algotom.prep.calculation.find_center_vo``.
    """
    from algotom.prep.calculation import find_center_vo

    return float(find_center_vo(np.asarray(sinogram, dtype=np.float32), ncore=1))


def remove_rings(sinograms: np.ndarray) -> np.ndarray:
    """Sinograms ``(R, A, D)`` without the stripes that reconstruct as rings (algotom, sorting-based)."""
    from algotom.prep.removal import remove_stripe_based_sorting

    return np.stack([remove_stripe_based_sorting(s, size=21) for s in sinograms]).astype(np.float32)


def shift_to_center(sinograms: np.ndarray, center: float) -> np.ndarray:
    """Sinograms ``(..., A, D)`` shifted along the detector so that ``center`` lands on the middle ``(D - 1) / 2``."""
    width = sinograms.shape[-1]
    shift = (width - 1) / 2 - center
    offsets = [0.0] * (sinograms.ndim - 1) + [shift]
    return ndimage.shift(sinograms, offsets, order=1, mode="nearest").astype(np.float32)


def reconstruct(projections: Projections, *, center: float | None = None, rows: slice | None = None,
                filter: str = "hann", rings: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Slices ``(rows, D, D)`` (attenuation per voxel) and the provenance of every step.

    Parameters
    ----------
    projections : Projections
        A scan read by one of the readers.
    center : float, optional
        Centre of rotation in detector pixels; estimated on the middle row if omitted.
    rows : slice, optional
        Detector rows to reconstruct (all by default).
    filter : str
        FBP apodisation window (see :data:`aiax_bench.recon.fbp.FILTERS`).
    rings : bool
        Remove sinogram stripes (rings) before the centre is found.
    """
    from aiax_bench.recon import fbp

    lines = correct(projections)  # (A, R, D)
    sinograms = np.ascontiguousarray(lines.transpose(1, 0, 2))  # (R, A, D)
    if rows is not None:
        sinograms = sinograms[rows]
    if rings:
        sinograms = remove_rings(sinograms)
    span = np.ptp(projections.angles)
    if center is None:
        if not np.pi * 0.95 < span < np.pi * 1.05:
            raise InputError("--center", "is needed", f"automatic centring works on 180° scans; this one spans "
                             f"{np.rad2deg(span):.0f}°")
        center = find_center(sinograms[len(sinograms) // 2])
        how = "Vo et al. 2014 (algotom find_center_vo), middle row"
    else:
        how = "given"
    volume = fbp(shift_to_center(sinograms, center), projections.angles, filter=filter)
    provenance = {**projections.provenance, "rings": "removed (algotom sorting, size 21)" if rings else "kept",
                  "center": {"pixels": center, "method": how},
                  "reconstruction": {"algorithm": "FBP", "filter": filter, "units": "1/voxel"}}
    return np.asarray(volume, dtype=np.float32), provenance
