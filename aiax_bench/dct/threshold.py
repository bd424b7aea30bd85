"""The classical segmentation of DCT spots: preprocessing, then a 3D double threshold.

Preprocessing (:func:`preprocess`), frame by frame:

1. the dark frame is subtracted;
2. each frame is divided by its mean over the *margin ring*, the pixels within
   ``margin`` pixels (chessboard distance) outside the direct-beam mask, which
   follows the source's intensity; the result is in units of that mean;
3. the per-pixel moving median over psi (:func:`~aiax_bench.dct.moving_median.moving_median`)
   is subtracted, removing the slowly varying background, and the direct-beam
   pixels are set to 0;
4. each frame is filtered by a 2D median of ``median_size`` pixels square,
   removing zingers and isolated hot pixels.

Double threshold (:func:`double_threshold`) on the preprocessed stack:

1. seeds are the connected components (26-connectivity in ``(psi, y, x)``) of
   the voxels above ``seed_min``;
2. each seed's maximum ``M`` is its brightest voxel (the first in C order on
   ties); seeds are handled by decreasing ``M`` (ties in seed order);
3. a seed's blob is grown from its maximum voxel: the connected component
   (26-connectivity), containing that voxel, of the voxels at or above the
   growth threshold ``t = min(max(c_min, tau * M), c_max, M)`` (``tau * M``
   clamped to ``[c_min, c_max]``, and never above ``M`` so that the maximum
   voxel is always in its blob) that no earlier blob has claimed;
   a seed whose maximum voxel is already claimed adds no blob (it was merged);
4. a blob whose bounding box is, along any axis, shorter than ``min_bbox`` or
   longer than ``max_bbox`` (frames, pixels, pixels) is dropped, and its
   voxels stay free for later seeds;
5. the kept blobs are numbered ``1..K`` in the order they were grown.

Each blob grows in a crop around its maximum voxel, widened until the blob
does not touch the crop's inner faces (or, with ``max_bbox``, until the crop
reaches ``max_bbox`` on every side of the maximum: a blob still touching a face
then exceeds ``max_bbox`` and is dropped), so the work scales with the blobs,
not the stack.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.dct.blobs import match_blobs
from aiax_bench.dct.moving_median import moving_median
from aiax_bench.errors import InputError
from aiax_bench.validation import check_positive_int

__all__ = ["ThresholdParams", "default_threshold_grid", "double_threshold", "fit_threshold_params", "margin_ring",
           "preprocess", "segment_blobs"]

_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity
_FIRST_PAD = 4  # voxels around a blob's maximum in its first crop


def _check_stack(name: str, stack) -> np.ndarray:
    if not isinstance(stack, np.ndarray):
        raise InputError(name, f"is a {type(stack).__name__}", "expected a numpy.ndarray (psi, y, x)")
    if stack.ndim != 3:
        raise InputError(name, f"has shape {stack.shape}", "expected a 3D stack (psi, y, x)")
    if not (np.issubdtype(stack.dtype, np.floating) or np.issubdtype(stack.dtype, np.integer)):
        raise InputError(name, f"has dtype {stack.dtype}", "expected real numbers (integer or floating point)")
    if 0 in stack.shape:
        raise InputError(name, f"has shape {stack.shape}", "expected a non-empty stack")
    return stack


def _check_number(name: str, value, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) or math.isnan(value) \
            or (not allow_inf and math.isinf(value)):
        raise InputError(name, f"is {value!r}", "expected a number" if allow_inf else "expected a finite number")
    return float(value)


def _check_box(name: str, value, *, optional: bool) -> tuple[int, int, int] | None:
    if value is None and optional:
        return None
    try:
        items = tuple(value)
    except TypeError:
        raise InputError(name, f"is {value!r}", "expected three positive integers (psi, y, x)") from None
    if len(items) != 3 or not all(not isinstance(v, bool) and isinstance(v, int | np.integer) and v >= 1
                                  for v in items):
        raise InputError(name, f"is {value!r}", "expected three positive integers (psi, y, x)")
    return tuple(int(v) for v in items)


def _check_params(seed_min, c_min, c_max, tau, min_bbox, max_bbox) -> tuple:
    seed_min = _check_number("seed_min", seed_min)
    c_min = _check_number("c_min", c_min, allow_inf=True)
    c_max = _check_number("c_max", c_max, allow_inf=True)
    if c_min > c_max:
        raise InputError("c_min", f"is {c_min!r}, above c_max {c_max!r}", "expected c_min <= c_max")
    tau = _check_number("tau", tau)
    if not 0 <= tau <= 1:
        raise InputError("tau", f"is {tau!r}", "expected a fraction of the blob's maximum in [0, 1]")
    min_bbox = _check_box("min_bbox", min_bbox, optional=False)
    max_bbox = _check_box("max_bbox", max_bbox, optional=True)
    if max_bbox is not None and any(a > b for a, b in zip(min_bbox, max_bbox, strict=True)):
        raise InputError("max_bbox", f"is {max_bbox!r}, below min_bbox {min_bbox!r}", "expected max_bbox >= min_bbox")
    return seed_min, c_min, c_max, tau, min_bbox, max_bbox


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThresholdParams:
    """Parameters of :func:`double_threshold`, in the units of the preprocessed stack.

    Attributes
    ----------
    seed_min : float
        Seeds are the voxels above it.
    c_min, c_max : float
        Bounds of a blob's growth threshold.
    tau : float
        Growth threshold as a fraction of the seed's maximum, in ``[0, 1]``.
    min_bbox : tuple of int
        Least bounding-box extents ``(psi, y, x)`` of a kept blob (frames, pixels, pixels).
    max_bbox : tuple of int, optional
        Largest bounding-box extents of a kept blob (``None``: no limit).
    """

    seed_min: float
    c_min: float = 0.0
    c_max: float = math.inf
    tau: float = 0.1
    min_bbox: tuple[int, int, int] = (1, 1, 1)
    max_bbox: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        checked = _check_params(self.seed_min, self.c_min, self.c_max, self.tau, self.min_bbox, self.max_bbox)
        for field, value in zip(("seed_min", "c_min", "c_max", "tau", "min_bbox", "max_bbox"), checked, strict=True):
            object.__setattr__(self, field, value)


def margin_ring(direct_beam: np.ndarray, margin: int) -> np.ndarray:
    """The ``(y, x)`` bool ring of pixels within ``margin`` pixels (chessboard distance) outside ``direct_beam``."""
    margin = check_positive_int("margin", margin, "pixels of the ring around the direct beam")
    grown = ndimage.binary_dilation(direct_beam, structure=np.ones((3, 3), dtype=bool), iterations=margin)
    return grown & ~direct_beam


def preprocess(frames: np.ndarray, *, dark: np.ndarray, direct_beam: np.ndarray, window: int, refresh: int,
               median_size: int = 3, margin: int = 4, threads: int | None = None) -> np.ndarray:
    """Dark-subtract, normalise, remove the moving median and median-filter a frame stack (see the module notes).

    Parameters
    ----------
    frames : numpy.ndarray
        ``(psi, y, x)`` detector frames (counts).
    dark : numpy.ndarray
        ``(y, x)`` dark frame (counts).
    direct_beam : numpy.ndarray
        ``(y, x)`` bool mask of the direct beam (not empty).
    window : int
        Frames in each moving median (see :func:`~aiax_bench.dct.moving_median.moving_median`).
    refresh : int
        Frames sharing one moving median.
    median_size : int
        Side (pixels) of the 2D median filter applied to each frame; 1 applies none.
    margin : int
        Width (pixels) of the ring around the direct beam whose mean normalises each frame.
    threads : int, optional
        Threads of the moving median (default: the CPU count); the numbers do not depend on it.

    Returns
    -------
    numpy.ndarray
        ``(psi, y, x)`` float32, in units of each frame's mean over the margin ring; 0 on the direct beam.
    """
    frames = _check_stack("frames", frames)
    shape = frames.shape[1:]
    if not isinstance(dark, np.ndarray) or dark.shape != shape:
        raise InputError("dark", f"has shape {getattr(dark, 'shape', None)}", f"expected {shape} like a frame")
    if not isinstance(direct_beam, np.ndarray) or direct_beam.shape != shape or direct_beam.dtype != bool:
        raise InputError("direct_beam", f"is {getattr(direct_beam, 'dtype', type(direct_beam).__name__)} "
                         f"of shape {getattr(direct_beam, 'shape', None)}", f"expected a bool mask of shape {shape}")
    if not direct_beam.any():
        raise InputError("direct_beam", "selects no pixel", "expected the direct beam's pixels (not empty)")
    median_size = check_positive_int("median_size", median_size, "pixels of the median filter's side")
    ring = margin_ring(direct_beam, margin)
    if not ring.any():
        raise InputError("direct_beam", "leaves no pixel around it", "expected a beam smaller than the frame")

    stack = frames.astype(np.float32) - dark.astype(np.float32)[None]
    level = stack[:, ring].mean(axis=1, dtype=np.float64)
    bad = np.flatnonzero(~(level > 0))
    if bad.size:
        raise InputError("frames", f"frame {int(bad[0])} has a mean of {level[bad[0]]:.3g} over the margin ring",
                         "expected a positive intensity around the direct beam (a wrong dark?)")
    stack /= level.astype(np.float32)[:, None, None]
    stack -= moving_median(stack, window=window, refresh=refresh, threads=threads)
    stack[:, direct_beam] = 0.0
    if median_size > 1:
        stack = ndimage.median_filter(stack, size=(1, median_size, median_size), mode="nearest")
    return stack


def _grow(image: np.ndarray, labels: np.ndarray, peak: tuple[int, ...], threshold: float,
          first_pad: np.ndarray, max_pad: np.ndarray, bounded: bool) -> tuple[tuple[int, ...], np.ndarray] | None:
    """The free region at or above ``threshold`` connected to ``peak``: ``(crop origin, mask)``, or None if too big."""
    shape = np.array(image.shape)
    centre = np.array(peak)
    pad = np.minimum(first_pad, max_pad)
    while True:
        lo = np.maximum(centre - pad, 0)
        hi = np.minimum(centre + pad + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        free = (image[box] >= threshold) & (labels[box] == 0)
        components, _ = ndimage.label(free, structure=_CONNECTIVITY)
        region = components == components[tuple(centre - lo)]
        grow = np.array([(lo[0] > 0 and region[0].any()) or (hi[0] < shape[0] and region[-1].any()),
                         (lo[1] > 0 and region[:, 0].any()) or (hi[1] < shape[1] and region[:, -1].any()),
                         (lo[2] > 0 and region[:, :, 0].any()) or (hi[2] < shape[2] and region[:, :, -1].any())])
        if not grow.any():
            return tuple(int(v) for v in lo), region
        if bounded and np.any(grow & (pad >= max_pad)):
            return None  # it reaches max_bbox voxels from its maximum: longer than max_bbox
        pad = np.where(grow, np.minimum(pad * 2, max_pad), pad)


def double_threshold(image: np.ndarray, *, seed_min: float, c_min: float = 0.0, c_max: float = math.inf,
                     tau: float = 0.1, min_bbox: Sequence[int] = (1, 1, 1),
                     max_bbox: Sequence[int] | None = None) -> np.ndarray:
    """Segment blobs by seeds above ``seed_min`` grown down to a per-blob threshold (see the module notes).

    Parameters
    ----------
    image : numpy.ndarray
        ``(psi, y, x)`` preprocessed stack (finite).
    seed_min : float
        Seeds are the voxels above it (the image's units).
    c_min, c_max : float
        Bounds of a blob's growth threshold (the image's units).
    tau : float
        Growth threshold as a fraction of the seed's maximum, in ``[0, 1]``.
    min_bbox : sequence of int
        Least bounding-box extents ``(psi, y, x)`` of a kept blob (frames, pixels, pixels).
    max_bbox : sequence of int, optional
        Largest bounding-box extents of a kept blob (``None``: no limit).

    Returns
    -------
    numpy.ndarray
        ``(psi, y, x)`` int32 labels: 0 for the background, blobs ``1..K``.
    """
    image = _check_stack("image", image)
    if not np.isfinite(image).all():
        raise InputError("image", "has NaN or infinite values", "expected a finite preprocessed stack")
    seed_min, c_min, c_max, tau, min_bbox, max_bbox = _check_params(seed_min, c_min, c_max, tau, min_bbox, max_bbox)
    seeds, n_seeds = ndimage.label(image > seed_min, structure=_CONNECTIVITY)
    labels = np.zeros(image.shape, dtype=np.int32)
    if n_seeds == 0:
        return labels
    # Each seed's brightest voxel, the first in C order on ties: its voxels by value descending, then index.
    flat = np.flatnonzero(seeds)
    ids = seeds.ravel()[flat]
    values = image.ravel()[flat].astype(np.float64)
    by_seed = np.lexsort((flat, -values, ids))
    first = by_seed[np.flatnonzero(np.r_[True, ids[by_seed][1:] != ids[by_seed][:-1]])]
    maxima = values[first]
    positions = np.stack(np.unravel_index(flat[first], image.shape), axis=1)
    order = np.lexsort((np.arange(n_seeds), -maxima))
    shape = np.array(image.shape)
    bounded = max_bbox is not None
    max_pad = np.array(max_bbox) if bounded else shape
    slices = ndimage.find_objects(seeds)
    low = np.array(min_bbox)
    high = np.array(max_bbox) if bounded else shape
    next_id = 1
    for i in order:
        peak = tuple(int(v) for v in positions[i])
        if labels[peak]:
            continue
        m = maxima[i]
        threshold = min(max(c_min, tau * m), c_max, m)
        seed_box = slices[i]
        # Start with a crop holding the seed (the blob is at least the seed where t <= seed_min).
        first_pad = np.array([max(p - s.start, s.stop - 1 - p) for p, s in zip(peak, seed_box, strict=True)])
        grown = _grow(image, labels, peak, threshold, first_pad + _FIRST_PAD, max_pad, bounded)
        if grown is None:
            continue
        origin, region = grown
        where = np.nonzero(region)
        extent = np.array([w.max() - w.min() + 1 for w in where])
        if np.any(extent < low) or np.any(extent > high):
            continue
        box = tuple(slice(o, o + n) for o, n in zip(origin, region.shape, strict=True))
        labels[box][region] = next_id
        next_id += 1
    return labels


def segment_blobs(image: np.ndarray, params: ThresholdParams) -> np.ndarray:
    """:func:`double_threshold` of ``image`` with ``params``: ``(psi, y, x)`` int32 labels."""
    if not isinstance(params, ThresholdParams):
        raise InputError("params", f"is a {type(params).__name__}", "expected ThresholdParams")
    return double_threshold(image, **dataclasses.asdict(params))


def _as_list(name: str, stacks) -> list[np.ndarray]:
    if isinstance(stacks, np.ndarray):
        stacks = [stacks] if stacks.ndim == 3 else list(stacks)
    stacks = list(stacks)
    if not stacks:
        raise InputError(name, "is empty", "expected at least one stack (psi, y, x)")
    return [_check_stack(f"{name}[{i}]", s) for i, s in enumerate(stacks)]


def _noise_sigma(stacks: list[np.ndarray]) -> float:
    """Robust standard deviation (1.4826 MAD) of the pooled stacks, from a subsample."""
    pooled = np.concatenate([s.ravel()[:: max(1, s.size // 200_000)] for s in stacks]).astype(np.float64)
    sigma = 1.4826 * float(np.median(np.abs(pooled - np.median(pooled))))
    return sigma if sigma > 0 else float(np.std(pooled)) or 1.0


def default_threshold_grid(stacks, labels) -> dict[str, list[Any]]:
    """The candidates :func:`fit_threshold_params` tries by default, from the training stacks and labels.

    With ``s`` the pooled robust noise level (1.4826 times the median absolute
    deviation) of the preprocessed stacks: ``seed_min`` in ``{4, 6, 9} s``,
    ``c_min`` in ``{1.5, 3} s``, ``tau`` in ``{0.05, 0.1, 0.2}``, ``c_max`` infinite,
    ``min_bbox`` ``(1, 1, 1)`` or ``(2, 2, 2)``, and ``max_bbox`` twice the
    largest extents of the training blobs (the stack's shape without any).
    """
    stacks = _as_list("stacks", stacks)
    labels = _as_list("labels", labels)
    sigma = _noise_sigma(stacks)
    largest = np.zeros(3, dtype=np.int64)
    for truth in labels:
        for box in ndimage.find_objects(truth.astype(np.int64, copy=False)):
            if box is not None:
                largest = np.maximum(largest, [s.stop - s.start for s in box])
    shape = np.max([s.shape for s in stacks], axis=0)
    max_bbox = tuple(int(v) for v in (np.minimum(2 * largest, shape) if largest.all() else shape))
    return {"seed_min": [4 * sigma, 6 * sigma, 9 * sigma], "c_min": [1.5 * sigma, 3 * sigma], "c_max": [math.inf],
            "tau": [0.05, 0.1, 0.2], "min_bbox": [(1, 1, 1), (2, 2, 2)], "max_bbox": [max_bbox]}


def fit_threshold_params(stacks, labels, *, grid: Mapping[str, Sequence[Any]] | None = None,
                         iou_threshold: float = 0.5) -> ThresholdParams:
    """The grid point of :class:`ThresholdParams` with the best mean blob F1 over training stacks.

    Parameters
    ----------
    stacks : sequence of numpy.ndarray
        Preprocessed training stacks ``(psi, y, x)`` (one array is taken as one stack).
    labels : sequence of numpy.ndarray
        Their true blob labels, same shapes.
    grid : mapping of str to sequence, optional
        Candidate values per field of :class:`ThresholdParams`; every combination is tried.
        Fields left out take the candidates of :func:`default_threshold_grid`.
    iou_threshold : float
        Least IoU of a matched blob pair (see :func:`~aiax_bench.dct.blobs.match_blobs`).

    Returns
    -------
    ThresholdParams
        The first combination (in the grid's order) reaching the highest mean F1; combinations
        that are not valid parameters (``c_min > c_max``, ``min_bbox > max_bbox``) are skipped.
    """
    stacks = _as_list("stacks", stacks)
    labels = _as_list("labels", labels)
    if len(stacks) != len(labels):
        raise InputError("labels", f"holds {len(labels)} volumes", f"expected one per stack ({len(stacks)})")
    for i, (stack, truth) in enumerate(zip(stacks, labels, strict=True)):
        if stack.shape != truth.shape:
            raise InputError(f"labels[{i}]", f"has shape {truth.shape}", f"expected {stack.shape} like stacks[{i}]")
    fields = [f.name for f in dataclasses.fields(ThresholdParams)]
    given = dict(grid or {})
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise InputError("grid", f"has unknown field(s) {', '.join(unknown)}", f"expected fields of {fields}")
    missing = [f for f in fields if f not in given]
    candidates = {**(default_threshold_grid(stacks, labels) if missing else {}), **given}
    for field in fields:
        values = candidates[field]
        if isinstance(values, np.ndarray):
            values = candidates[field] = values.tolist()
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise InputError(f"grid[{field!r}]", f"is {values!r}", "expected a non-empty sequence")

    best: tuple[float, ThresholdParams] | None = None
    for values in itertools.product(*(candidates[f] for f in fields)):
        try:
            params = ThresholdParams(**dict(zip(fields, values, strict=True)))
        except InputError:
            continue
        f1 = 0.0
        for stack, truth in zip(stacks, labels, strict=True):
            match = match_blobs(segment_blobs(stack, params), truth, iou_threshold=iou_threshold)
            denominator = match.n_pred + match.n_true
            f1 += 2 * match.n_matched / denominator if denominator else 1.0
        f1 /= len(stacks)
        if best is None or f1 > best[0]:
            best = (f1, params)
    if best is None:
        raise InputError("grid", "holds no valid combination", "expected c_min <= c_max and min_bbox <= max_bbox")
    return best[1]
