"""From raw projections to centred sinograms: each step a named option, recorded in the provenance.

The steps, in the order :func:`preprocess` applies them:

1. **Crop** detector rows and columns (``--crop-rows``, ``--crop-columns``).
2. **Bin** the detector ``b × b`` (``--bin``): counts are summed, so the
   statistics stay those of the photons.
3. **Dead pixels**: pixels whose flat is no brighter than the dark (or not
   finite) carry no signal; they are replaced by the median of their 3×3
   neighbourhood in every projection (own code: a mask and a median filter).
4. **Flat/dark correction**: ``(I - dark) / (flat - dark)``. Flats taken both
   before and after the scan are interpolated linearly in projection index
   (beam and detector drift), else averaged. Transmission is clipped to a
   small positive value where a zero count would give ``log(0)``; the clipped
   pixels are counted.
5. **Zingers** (``--zingers T``): bright outliers from direct hits on the
   detector, removed per projection (Vo et al. 2021, algotom ``remove_zinger``).
6. **Paganin phase retrieval** (``--paganin``): the single-material filter
   ``1 / (1 + π λ z (δ/β) |f|²)`` applied to the transmission (Paganin et al.
   2002; own code, a few lines of FFT, with reflective padding).
7. **−log**: line integrals.
   **Background** (``--background N``): the mean of the ``N`` outermost detector
   columns on each side, which see air, is subtracted from every projection
   row, so that air reads 0 whatever the beam's intensity drift (own code).
8. **Ring removal** (``--rings``): sinogram stripes removed by sorting (Vo et
   al. 2018, algotom ``remove_stripe_based_sorting``).
9. **Centre of rotation**: the Fourier double-wedge method (Vo et al. 2014,
   algotom ``find_center_vo``) on the middle row of a 180° scan, or ``--center``.
   Each sinogram is then shifted (linear interpolation) so that the axis is at
   the detector centre, which the project's projector assumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.ingest.scan import Projections
from aiax_bench.validation import check_positive, check_positive_int

__all__ = ["MIN_TRANSMISSION", "Paganin", "Preprocessing", "bin_projections", "correct", "find_center",
           "paganin_filter", "preprocess", "remove_dead_pixels", "remove_rings", "remove_zingers",
           "shift_to_center", "subtract_background"]

#: Smallest transmission kept: a zero count or a flat no brighter than the dark is clipped to it.
MIN_TRANSMISSION = 1e-6
#: Distance (pixels) at which the zinger filter compares a pixel with its neighbours.
ZINGER_SIZE = 2


@dataclass(frozen=True)
class Paganin:
    """Single-material phase retrieval settings.

    Attributes
    ----------
    delta_beta : float
        Ratio δ/β of the sample's refractive index decrement to its absorption index.
    distance_mm : float
        Sample-detector propagation distance (mm).
    energy_kev : float
        Photon energy (keV).
    pixel_um : float
        Detector pixel at the sample (µm).
    """

    delta_beta: float
    distance_mm: float
    energy_kev: float
    pixel_um: float

    def __post_init__(self) -> None:
        for name in ("delta_beta", "distance_mm", "energy_kev", "pixel_um"):
            check_positive(f"--paganin {name}", getattr(self, name), "")


@dataclass(frozen=True)
class Preprocessing:
    """Which pre-processing steps run, and with what settings (the command line's options).

    Attributes
    ----------
    crop_rows, crop_columns : (int or None, int or None), optional
        Detector rows / columns ``start:stop`` kept.
    bin : int
        Detector binning factor per axis.
    flats : {'auto', 'mean', 'interpolate'}
        How several flats are combined: ``auto`` interpolates when flats were
        taken both before and after the projections.
    dead_pixels : bool
        Replace pixels whose flat has no signal.
    zingers : float, optional
        Relative threshold of the zinger filter (0.05–0.1 typical); off if None.
    paganin : Paganin, optional
        Phase retrieval; off if None.
    background : int
        Detector columns on each side that see air, to zero the background (0: off).
    rings : bool
        Remove sinogram stripes.
    center : float, optional
        Centre of rotation (detector pixels from the first pixel's centre, after
        cropping and binning); estimated if None.
    """

    crop_rows: tuple[int | None, int | None] | None = None
    crop_columns: tuple[int | None, int | None] | None = None
    bin: int = 1
    flats: str = "auto"
    dead_pixels: bool = True
    zingers: float | None = None
    paganin: Paganin | None = None
    background: int = 0
    rings: bool = False
    center: float | None = None

    def __post_init__(self) -> None:
        check_positive_int("--bin", self.bin)
        if self.flats not in ("auto", "mean", "interpolate"):
            raise InputError("--flat-mode", f"is {self.flats!r}", "auto, mean or interpolate")
        if self.zingers is not None:
            check_positive("--zingers", self.zingers, "")
        if not (isinstance(self.background, int) and self.background >= 0):
            raise InputError("--background", f"is {self.background!r}", "0 or a number of detector columns")

    def record(self) -> dict[str, Any]:
        """The settings, JSON-ready, for the provenance."""
        return asdict(self)


def _crop(projections: Projections, rows, columns) -> None:
    r = slice(*rows) if rows else slice(None)
    c = slice(*columns) if columns else slice(None)
    projections.data = projections.data[:, r, c]
    for name in ("flats", "darks"):
        images = getattr(projections, name)
        if images is not None:
            setattr(projections, name, images[:, r, c])
    if projections.data.size == 0:
        raise InputError("--crop-rows/--crop-columns", f"leave {projections.data.shape[1:]} pixels",
                         "a non-empty detector region")


def bin_projections(images: np.ndarray, factor: int, *, average: bool = False) -> np.ndarray:
    """``(n, R, C)`` images binned ``factor × factor`` (rows and columns beyond a multiple are dropped).

    Counts are summed (the photon statistics stay those of the photons);
    transmission and line integrals, which are per-pixel values, are averaged.
    """
    if factor == 1:
        return images
    n, rows, cols = images.shape
    rows, cols = rows // factor * factor, cols // factor * factor
    if rows == 0 or cols == 0:
        raise InputError("--bin", f"is {factor}", f"at most the detector size {images.shape[1:]}")
    view = images[:, :rows, :cols].reshape(n, rows // factor, factor, cols // factor, factor)
    binned = view.sum(axis=(2, 4), dtype=np.float64)
    return (binned / factor**2 if average else binned).astype(np.float32)


def remove_dead_pixels(projections: Projections) -> int:
    """Replace pixels whose mean flat is not above the mean dark by their 3×3 median; returns how many."""
    if projections.flats is None:
        return 0
    flat = projections.flats.mean(0)
    dark = projections.darks.mean(0) if projections.darks is not None else 0.0
    dead = ~np.isfinite(flat) | ~(flat - dark > 0)
    count = int(dead.sum())
    if 0 < count < dead.size:
        for images in (projections.data, projections.flats, projections.darks):
            if images is None:
                continue
            for k in range(images.shape[0]):
                images[k][dead] = ndimage.median_filter(images[k], size=3)[dead]
    return count


def _flat_for_each_projection(projections: Projections, mode: str) -> tuple[np.ndarray, str]:
    """``(A or 1, R, C)`` flat per projection: interpolated between flats before and after, or their mean."""
    flats, positions, n = projections.flats, projections.flat_positions, projections.data.shape[0]
    before = after = None
    if positions is not None:
        before, after = positions <= 0, positions >= n - 1
    can_interpolate = before is not None and before.any() and after.any() and n > 1
    if mode == "interpolate" and not can_interpolate:
        raise InputError("--flat-mode", "is interpolate", "flats taken both before and after the projections")
    if mode == "mean" or not can_interpolate:
        return flats.mean(0)[None], f"mean of {len(flats)}"
    first, last = flats[before].mean(0), flats[after].mean(0)
    weight = (np.arange(n, dtype=np.float32) / (n - 1))[:, None, None]
    return ((1 - weight) * first + weight * last).astype(np.float32), \
        f"interpolated between {int(before.sum())} before and {int(after.sum())} after"


def correct(projections: Projections, *, flat_mode: str = "auto", own_rows: slice | None = None) -> np.ndarray:
    """Transmission ``(I - dark) / (flat - dark)``, clipped to :data:`MIN_TRANSMISSION`; records the clipped count
    (over ``own_rows`` of the detector only, where given: a slab's own rows, not the neighbours it reads)."""
    data = projections.data
    if projections.signal == "transmission":
        transmission = data
        how: dict[str, Any] = {"flats": "none: the file holds transmission already"}
    else:
        if projections.flats is None:
            raise InputError(projections.source, "has no flat (open-beam) images",
                             "projections with flats (--flats FILE), or already-normalised data")
        dark = projections.darks.mean(0) if projections.darks is not None else np.zeros(data.shape[1:], np.float32)
        flat, combined = _flat_for_each_projection(projections, flat_mode)
        transmission = (data - dark) / np.maximum(flat - dark, MIN_TRANSMISSION)
        how = {"flats": len(projections.flats), "flats_combined": combined,
               "darks": 0 if projections.darks is None else len(projections.darks)}
    clipped = int(np.count_nonzero(~(transmission[:, own_rows or slice(None)] >= MIN_TRANSMISSION)))
    projections.provenance.update(flat_dark={**how, "clipped_pixels": clipped})
    return np.clip(np.nan_to_num(transmission, nan=MIN_TRANSMISSION), MIN_TRANSMISSION, None).astype(np.float32)


def remove_zingers(transmission: np.ndarray, threshold: float) -> np.ndarray:
    """Projections ``(A, R, C)`` with zingers removed (algotom ``remove_zinger``, Vo et al. 2021).

    Each pixel is compared with its neighbours 2 pixels away. algotom finds
    them with ``np.roll``, which wraps the top rows onto the bottom ones: each
    projection is padded by reflection first, so an edge pixel meets its own
    side of the detector, and any band of rows gives the same result given 2
    rows of neighbours on each side (what :mod:`aiax_bench.ingest.streamed` reads).
    """
    from algotom.prep.removal import remove_zinger

    reach = ZINGER_SIZE
    out = np.empty(transmission.shape, dtype=np.float32)
    for k, image in enumerate(transmission):
        padded = np.pad(image, reach, mode="reflect")
        out[k] = remove_zinger(padded, threshold, size=ZINGER_SIZE)[reach:-reach, reach:-reach]
    return out


def paganin_filter(transmission: np.ndarray, settings: Paganin) -> np.ndarray:
    """Transmission ``(A, R, C)`` after single-material Paganin phase retrieval (Paganin et al. 2002).

    :func:`aiax_bench.recon.phase.paganin_intensity`, with the settings' units.
    """
    from aiax_bench.recon.phase import paganin_intensity

    wavelength_m = 12.398419843320026e-10 / settings.energy_kev  # hc / E, with hc = 12.398 keV·Å
    return paganin_intensity(transmission, delta_beta=settings.delta_beta, distance_m=settings.distance_mm * 1e-3,
                             wavelength_m=wavelength_m, pixel_size_m=settings.pixel_um * 1e-6,
                             floor=MIN_TRANSMISSION)


def remove_rings(sinograms: np.ndarray, *, size: int = 21) -> np.ndarray:
    """Sinograms ``(R, A, D)`` without the stripes that reconstruct as rings (algotom, sorting-based).

    ``size`` is the median filter's window across the detector (pixels): algotom's default, 21, suits
    detectors of a few thousand pixels; on a narrow detector it flattens real structure too.
    """
    from algotom.prep.removal import remove_stripe_based_sorting

    return np.stack([remove_stripe_based_sorting(s, size=size) for s in sinograms]).astype(np.float32)


def find_center(sinogram: np.ndarray) -> float:
    """Centre of rotation (detector pixels from the first pixel's centre) of a 180° sinogram ``(A, D)``.

    Vo, Atwood & Drakopoulos (2014), Opt. Express 22, 19078, as implemented by
    ``algotom.prep.calculation.find_center_vo``.
    """
    from algotom.prep.calculation import find_center_vo

    return float(find_center_vo(np.asarray(sinogram, dtype=np.float32), ncore=1))


def shift_to_center(sinograms: np.ndarray, center: float) -> np.ndarray:
    """Sinograms ``(..., A, D)`` shifted along the detector so that ``center`` lands on the middle ``(D - 1) / 2``."""
    width = sinograms.shape[-1]
    shift = (width - 1) / 2 - center
    offsets = [0.0] * (sinograms.ndim - 1) + [shift]
    return ndimage.shift(sinograms, offsets, order=1, mode="nearest").astype(np.float32)


def _line_integrals(projections: Projections, settings: Preprocessing, record: dict[str, Any],
                    own_rows: slice | None = None) -> np.ndarray:
    """``(A, R, C)`` line integrals after steps 1–7."""
    if settings.crop_rows or settings.crop_columns:
        _crop(projections, settings.crop_rows, settings.crop_columns)
        record["crop"] = {"rows": settings.crop_rows, "columns": settings.crop_columns}
    if settings.bin > 1:
        average = projections.signal != "counts"
        projections.data = bin_projections(projections.data, settings.bin, average=average)
        projections.flats = None if projections.flats is None else bin_projections(projections.flats, settings.bin)
        projections.darks = None if projections.darks is None else bin_projections(projections.darks, settings.bin)
        record["bin"] = f"{settings.bin}×{settings.bin}, {'averaged' if average else 'counts summed'}"
    if projections.signal == "line-integrals":
        for option, value in (("--zingers", settings.zingers), ("--paganin", settings.paganin)):
            if value is not None:
                raise InputError(option, f"is set for {projections.source}, which holds line integrals",
                                 "raw counts or transmission: these steps act on intensities")
        record["flat_dark"] = "none: the file holds line integrals already"
        return np.asarray(projections.data, dtype=np.float32)
    if settings.dead_pixels:
        record["dead_pixels"] = remove_dead_pixels(projections)
    transmission = correct(projections, flat_mode=settings.flats, own_rows=own_rows)
    if settings.zingers is not None:
        transmission = remove_zingers(transmission, settings.zingers)
        record["zingers"] = f"removed (algotom remove_zinger, threshold {settings.zingers:g})"
    if settings.paganin is not None:
        # The filter acts on the pixels as they are now: binned ones are `bin` times larger.
        binned = replace(settings.paganin, pixel_um=settings.paganin.pixel_um * settings.bin)
        transmission = paganin_filter(transmission, binned)
        record["paganin"] = asdict(binned)
    record["minus_log"] = True
    lines = -np.log(transmission).astype(np.float32)
    if settings.background:
        lines = subtract_background(lines, settings.background)
        record["background"] = f"mean of the {settings.background} outermost columns on each side subtracted"
    return lines


def subtract_background(lines: np.ndarray, columns: int) -> np.ndarray:
    """Line integrals ``(A, R, C)`` with the mean of the ``columns`` outermost columns on each side
    (air) subtracted from every projection row."""
    if not 0 < 2 * columns < lines.shape[-1]:
        raise InputError("--background", f"is {columns}", f"fewer than half the detector's {lines.shape[-1]} columns")
    edges = np.concatenate([lines[..., :columns], lines[..., -columns:]], axis=-1)
    return (lines - edges.mean(axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32)


def preprocess(projections: Projections, settings: Preprocessing = Preprocessing(), *,
               own_rows: slice | None = None) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Centred sinograms ``(R, A, D)`` of line integrals, the centre found or given, and the provenance.

    ``projections.angles`` is left in the sinograms' order (increasing).
    ``own_rows`` (after cropping and binning) are the rows returned, where the
    others were read only as neighbours for the steps that look across rows
    (dead pixels, zingers): the later steps and the clipped-pixel count see
    these rows alone.

    Raises
    ------
    InputError
        For a cone-beam scan, for a fan-beam one with centring, binning or
        column cropping asked for, and for automatic centring of a scan that
        does not span 180°.
    """
    if projections.geometry == "cone":
        raise InputError(projections.source, f"is a cone-beam scan ({projections.geometry_parameters})",
                         "a parallel- or fan-beam scan: cone-beam scans are reconstructed with "
                         "aiax_bench.recon.fdk from Python")
    fan = projections.geometry == "fan"
    if fan:
        for option, value in (("--center", settings.center), ("--bin", settings.bin > 1),
                              ("--crop-columns", settings.crop_columns)):
            if value:
                raise InputError(option, f"is set for the fan-beam scan {projections.source}",
                                 "nothing: a fan-beam scan is reconstructed with the geometry its file records")
    record: dict[str, Any] = {"settings": settings.record()}
    lines = _line_integrals(projections, settings, record, own_rows)
    if own_rows is not None:
        lines = lines[:, own_rows]
    # In angle order from here (after the flat interpolation, which needs acquisition order): interlaced or
    # back-and-forth scans give the centre finder and the ring filter a continuous sinogram.
    order = np.argsort(projections.angles, kind="stable")
    if np.any(order != np.arange(order.size)):
        record["angles_sorted"] = True
        projections.angles = projections.angles[order]
        lines = lines[order]
    projections.provenance.update(record)
    sinograms = np.ascontiguousarray(lines.transpose(1, 0, 2))
    if settings.rings:
        sinograms = remove_rings(sinograms)
    projections.provenance["rings"] = "removed (algotom sorting, size 21)" if settings.rings else "kept"
    if fan:
        # The file's geometry places the rotation axis; rebinning to parallel rays would blur the data.
        center = (sinograms.shape[-1] - 1) / 2
        projections.provenance["center"] = {"pixels": center, "method": "fan beam: the central ray of the file's "
                                            "geometry"}
        return sinograms, center, projections.provenance
    center = settings.center
    if center is None:
        span = np.ptp(projections.angles)
        if not np.pi * 0.95 < span < np.pi * 1.05:
            raise InputError("--center", "is needed", f"automatic centring works on 180° scans; this one spans "
                             f"{np.rad2deg(span):.0f}°")
        center = find_center(sinograms[len(sinograms) // 2])
        how = "Vo et al. 2014 (algotom find_center_vo), middle row"
    else:
        how = "given"
    projections.provenance["center"] = {"pixels": float(center), "method": how}
    return shift_to_center(sinograms, center), float(center), projections.provenance
