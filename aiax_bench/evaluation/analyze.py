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
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.evaluation import porosity as pz
from aiax_bench.ingest.volumes import read_volume
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
