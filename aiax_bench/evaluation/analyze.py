"""Porosity analysis of any volume: ``aiax-bench analyze VOLUME --voxel-size 20um``.

The statistics an evaluation reports for a method (pore fraction, pores per
mm³, pore sizes, specific surface, local thickness) for one volume of the
user's own: a reconstruction in grey values, or a segmented (binary) image.

Segmentation
    A binary volume is used as it is, ``--pore-value`` naming the pore value
    (True / 1 by default). A grey-value volume is thresholded with Otsu's
    method on the histogram of the values actually present (not a fixed
    range), pores being the dark (low-attenuation) phase; ``--threshold``
    overrides it.

Pore partitioning
    Connected components count pores only where pores are closed. A pore
    space that percolates (one connected void from face to face, as in a
    sandstone) is one component, so the count says nothing. There the pore
    space is partitioned into pores with the SNOW watershed (Gostick 2017,
    ``porespy.filters.snow_partitioning``: peaks of the smoothed distance
    transform as markers), and the analysis says so and warns.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.evaluation import porosity as pz
from aiax_bench.validation import check_positive

__all__ = ["PARTITIONS", "PoreAnalysis", "analyze_volume", "percolating_axes", "read_volume"]

#: How pores are told apart: connected components, the SNOW watershed, or the first where the space is closed
#: and the second where it percolates.
PARTITIONS = ("auto", "components", "snow")


@dataclass
class PoreAnalysis:
    """Porosity statistics of one volume and how they were obtained.

    Attributes
    ----------
    shape : tuple of int
        Volume shape (z, y, x).
    voxel_size_um : float
        Voxel edge (µm).
    segmentation : str
        How the pore phase was obtained, in words.
    threshold : float or None
        The grey-value threshold (None for a binary volume).
    percolates : list of str
        Axes along which one connected pore crosses the volume (``z``, ``y``, ``x``).
    partition : str
        ``components`` or ``snow``: how pores were counted.
    statistics : dict
        ``porosity``, ``pore_count``, ``pore_density_per_mm3``, ``mean_pore_diameter_mm``,
        ``specific_surface_per_mm``, ``mean_local_thickness_mm`` (mm-based units).
    diameters_mm : list of float
        Equivalent diameters of the complete pores (mm).
    warnings : list of str
        What the user should know about these numbers.
    """

    shape: tuple[int, ...]
    voxel_size_um: float
    segmentation: str
    threshold: float | None
    percolates: list[str]
    partition: str
    statistics: dict[str, float]
    diameters_mm: list[float] = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: an undefined statistic (no complete pore to measure) is null."""
        doc = asdict(self)
        doc["statistics"] = {k: (v if math.isfinite(v) else None) for k, v in self.statistics.items()}
        return doc


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
            volume = _read_raw(path, raw_shape, raw_dtype, raw_offset)
        elif path.is_dir() and suffix != ".zarr":
            import tifffile

            files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".tif", ".tiff"))
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


def _read_raw(path: Path, shape: tuple[int, ...] | None, dtype: str | None, offset: int) -> np.ndarray:
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
    return np.fromfile(path, dtype=dt, offset=offset).reshape(shape)


def _binary_values(volume: np.ndarray) -> np.ndarray | None:
    """The two (or one) values of a binary volume; None for grey values."""
    if volume.dtype != bool and not np.issubdtype(volume.dtype, np.integer):
        return None
    # A sample of slices rules out most grey-value volumes before the whole volume is sorted.
    if np.unique(volume[:: max(1, volume.shape[0] // 16)]).size > 2:
        return None
    values = np.unique(volume)
    return values if values.size <= 2 else None


def _segment(volume: np.ndarray, *, pore_value: float | None, threshold: float | None,
             pores_are: str) -> tuple[np.ndarray, str, float | None]:
    values = _binary_values(volume) if threshold is None else None
    if values is not None:
        if pore_value is None:
            pore_value = True if volume.dtype == bool else values.max()
        if pore_value not in values:
            raise InputError("--pore-value", f"is {pore_value}", f"one of the volume's values {values.tolist()}")
        return volume == pore_value, f"binary volume, pores where the value is {pore_value}", None
    finite = volume[np.isfinite(volume)] if np.issubdtype(volume.dtype, np.floating) else volume
    if threshold is None:
        lo, hi = float(finite.min()), float(finite.max())
        if not hi > lo:
            raise InputError("volume", f"is constant ({lo})", "a volume with contrast between pores and material")
        from skimage.filters import threshold_otsu

        threshold = float(threshold_otsu(finite.astype(np.float64, copy=False), nbins=256))
        how = f"Otsu threshold {threshold:.6g} on the values present [{lo:.6g}, {hi:.6g}]"
    else:
        how = f"fixed threshold {threshold:.6g}"
    if pores_are not in ("dark", "bright"):
        raise InputError("--pores-are", f"is {pores_are!r}", "'dark' (low attenuation, the default) or 'bright'")
    pores = volume < threshold if pores_are == "dark" else volume > threshold
    return pores, f"{how}, pores the {pores_are} phase", float(threshold)


def percolating_axes(pores: np.ndarray) -> list[str]:
    """Axes along which one 6-connected pore touches both opposite faces of the volume."""
    labels, _ = ndimage.label(pores)
    out = []
    for axis, name in enumerate("zyx"):
        first = np.unique(np.take(labels, 0, axis=axis))
        last = np.unique(np.take(labels, -1, axis=axis))
        if np.intersect1d(first[first > 0], last[last > 0]).size:
            out.append(name)
    return out


def _snow(pores: np.ndarray) -> np.ndarray:
    try:
        from porespy.filters import snow_partitioning
    except ImportError:
        raise InputError("--partition snow", "needs porespy, which is not installed",
                         "pip install 'aiax-bench[analysis]'") from None
    return np.asarray(snow_partitioning(pores).regions * pores, dtype=np.int64)


def analyze_volume(volume: np.ndarray, *, voxel_size_um: float, pore_value: float | None = None,
                   threshold: float | None = None, pores_are: str = "dark", partition: str = "auto",
                   mask: np.ndarray | None = None, min_voxels: int = pz.MIN_PORE_VOXELS, thickness: bool = True,
                   workers: int = 1) -> PoreAnalysis:
    """Porosity statistics of a grey-value or segmented volume, as an evaluation reports them.

    Parameters
    ----------
    volume : numpy.ndarray
        3D volume (z, y, x): grey values, or a binary segmentation.
    voxel_size_um : float
        Voxel edge (µm).
    pore_value : float, optional
        For a binary volume, the value of the pores (True / the larger value by default).
    threshold : float, optional
        Grey-value threshold; Otsu's on the values present by default.
    pores_are : {'dark', 'bright'}
        Which side of the threshold is pore (dark: low attenuation).
    partition : {'auto', 'components', 'snow'}
        How pores are counted; ``auto``: SNOW where the pore space percolates.
    mask : numpy.ndarray, optional
        Region analysed (the whole volume by default).
    min_voxels : int
        Components smaller than this are noise specks.
    thickness : bool
        Compute the local thickness (the slowest step).
    workers : int
        Threads for the distance transforms.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise InputError("volume", f"has shape {volume.shape}", "a 3D volume (z, y, x)")
    voxel_size_um = check_positive("voxel_size_um", voxel_size_um, "µm")
    if partition not in PARTITIONS:
        raise InputError("--partition", f"is {partition!r}", f"one of {', '.join(PARTITIONS)}")
    pores, how, used_threshold = _segment(volume, pore_value=pore_value, threshold=threshold, pores_are=pores_are)
    if mask is not None:
        pores &= np.asarray(mask, dtype=bool)
    crossing = percolating_axes(pores)
    notes = []
    chosen = partition if partition != "auto" else ("snow" if crossing else "components")
    if crossing:
        notes.append(f"the pore space percolates along {', '.join(crossing)}: one connected void crosses the volume, "
                     + ("pores are partitioned with the SNOW watershed" if chosen == "snow"
                        else "so the connected-component count is not a pore count"))
    stats = pz.pore_statistics(pores, voxel_size_um=voxel_size_um, mask=mask, min_voxels=min_voxels,
                               thickness=thickness, workers=workers,
                               partition=_snow if chosen == "snow" else None)
    scalars = stats.scalars()
    if not thickness:
        scalars.pop("mean_local_thickness_mm", None)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return PoreAnalysis(shape=tuple(volume.shape), voxel_size_um=voxel_size_um, segmentation=how,
                        threshold=used_threshold, percolates=crossing, partition=chosen,
                        statistics={k: float(v) for k, v in scalars.items() if not isinstance(v, bool)},
                        diameters_mm=[float(d) for d in stats.diameters_mm if math.isfinite(d)], warnings=notes)
