"""What a reader hands on: raw projections of a scan, or an already reconstructed volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GEOMETRIES", "NO_OPTIONS", "SIGNALS", "Projections", "ReadOptions", "VolumeScan"]

#: What the projection values are: detector counts (flat/dark still to apply), transmission ``I/I0``, or line
#: integrals ``-log(I/I0)`` (a sinogram already corrected by the facility's software).
SIGNALS = ("counts", "transmission", "line-integrals")
#: Beam geometries a reader can report; the project's projector reconstructs ``parallel`` only.
GEOMETRIES = ("parallel", "fan", "cone")


@dataclass
class Projections:
    """Projections of one scan, as read.

    Attributes
    ----------
    data : numpy.ndarray
        ``(angles, rows, columns)`` float32.
    flats, darks : numpy.ndarray or None
        ``(n, rows, columns)`` open-beam and dark images.
    angles : numpy.ndarray
        Projection angles (radians), one per projection.
    source : str
        Where they were read from.
    signal : {'counts', 'transmission', 'line-integrals'}
        What ``data`` holds (see :data:`SIGNALS`).
    flat_positions : numpy.ndarray, optional
        For each flat, the projection index it was taken next to (flats taken
        before and after the scan are interpolated between).
    geometry : {'parallel', 'fan', 'cone'}
        Beam geometry; ``geometry_parameters`` holds its distances (mm).
    pixel_size_um : float, optional
        Detector pixel at the sample (µm), where the file records it.
    provenance : dict
        What reading and each later step did.
    """

    data: np.ndarray
    flats: np.ndarray | None
    darks: np.ndarray | None
    angles: np.ndarray
    source: str
    signal: str = "counts"
    flat_positions: np.ndarray | None = None
    geometry: str = "parallel"
    geometry_parameters: dict[str, float] = field(default_factory=dict)
    pixel_size_um: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.signal in SIGNALS and self.geometry in GEOMETRIES


@dataclass
class VolumeScan:
    """A reconstructed volume ``(Z, Y, X)``, e.g. from the scanner's software, DICOM or NIfTI.

    Attributes
    ----------
    volume : numpy.ndarray
        float32 values (attenuation, Hounsfield units or grey values, as stored).
    voxel_size_um : float, optional
        Voxel edge (µm), where the file records it.
    units : str
        What the values are (``"HU"``, ``"grey value"``, ...).
    """

    volume: np.ndarray
    source: str
    voxel_size_um: float | None = None
    units: str = "grey value"
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReadOptions:
    """What a file does not say for itself, given on the command line.

    Attributes
    ----------
    flats, darks : tuple of Path
        Separate flat (open-beam) and dark image files (TIFF, HDF5, XRM, ``.npy``).
    angles : Path, optional
        Text file of angles in degrees.
    angle_range_deg : (float, float), optional
        First and last angle (degrees, both included, as ``tomopy.angles``), for
        files that store none.
    data_path : str, optional
        Dataset inside an HDF5 file (default: the format's own).
    raw_shape, raw_dtype, raw_offset
        Layout of a raw binary file: shape, NumPy dtype and header bytes.
    key : str, optional
        Variable of a ``.mat`` or ``.npz`` file.
    kind : {'projections', 'volume'}, optional
        Whether an ambiguous file (TIFF, NumPy, raw) holds projections or a
        reconstructed volume; default: projections when angles are given.
    """

    flats: tuple[Path, ...] = ()
    darks: tuple[Path, ...] = ()
    angles: Path | None = None
    angle_range_deg: tuple[float, float] | None = None
    data_path: str | None = None
    raw_shape: tuple[int, ...] | None = None
    raw_dtype: str | None = None
    raw_offset: int = 0
    key: str | None = None
    kind: str | None = None

    @property
    def has_angles(self) -> bool:
        return self.angles is not None or self.angle_range_deg is not None


#: Nothing given on the command line.
NO_OPTIONS = ReadOptions()
