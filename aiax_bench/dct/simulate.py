"""Seeded DCT frame stacks ``(psi, y, x)`` with the exact label of every diffraction spot ("blob").

A stack is built as a detector would record it:

* **blobs**: each is a truncated anisotropic Gaussian in ``(psi, y, x)``
  (``P exp(-q / 2)`` with ``q`` the squared Mahalanobis distance to its centre,
  zero where ``q > truncate**2``), rotated in the frame's plane, with a peak
  ``P`` drawn log-uniformly over ``peak_counts`` (about a decade). Its extent in
  psi grows toward the rotation axis, the frame's vertical centre line
  ``x_axis = (nx - 1) / 2``: with ``d = |x - x_axis| / (nx / 2)`` the psi sigma
  is ``psi_sigma[0] / max(d, psi_sigma[0] / psi_sigma[1])`` times a log-normal
  jitter, clipped to ``psi_sigma``. Blobs keep clear of the direct beam and of
  the frame's edges, and may overlap one another (unless ``overlap=False``);
  their centres in psi are drawn over the whole stack, so blobs near its first
  or last frame are cut by it;
* **illumination**: a flat background, a glow decaying exponentially with the
  distance to the direct-beam rectangle, and the direct beam itself (a
  rectangle at the frame's centre, ``beam_counts`` inside; 0 is a beam stop);
* **source**: everything above is multiplied, frame by frame, by the source
  intensity ``1 + a sin(2 pi psi / period + phase) + jitter N(0, 1)``;
* **detector**: photon (Poisson) noise, zingers (single-frame bright pixels and
  short streaks, added to the counts), optionally the 2x2 mosaic of a detector
  read as four sub-images (one gain per quadrant on the counts, one offset per
  quadrant in the dark), the dark frame (offset plus a fixed pattern), Gaussian
  readout noise, and hot pixels stuck at ``hot_counts`` in every frame and in
  the dark.

Labels
------
Blob ``k`` *supports* a voxel where its noise-free intensity is at least
``label_fraction`` times its peak (``I_k >= label_fraction * P_k``). A voxel's
label is the blob, among those supporting it, with the largest noise-free
intensity there (ties to the blob drawn first); 0 where no blob supports it.
Blobs left with no voxel (hidden under brighter ones) are dropped and the rest
numbered ``1..K`` in the order they were drawn.

Every random draw comes from ``numpy.random.Generator`` streams spawned from the
seed, one per component (geometry, source, photons, zingers, mosaic, dark,
readout, hot pixels): the same seed gives the same bytes, and switching one
component on or off leaves the draws of the others unchanged.

A stack larger than memory is made frame-slab by frame-slab
(:class:`SpotStackStream`), with the same bytes as :func:`simulate_spot_stack`
(which is its one-slab case).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.validation import check_positive_int

__all__ = ["SpotBlob", "SpotSlab", "SpotStack", "SpotStackSpec", "SpotStackStream", "simulate_spot_stack"]

_STREAMS = ("geometry", "source", "photons", "zingers", "mosaic", "dark", "readout", "hot")
_MAX_TRIES = 2000  # placements tried per blob before giving up


def _range(name: str, value) -> tuple[float, float]:
    """A ``(low, high)`` range of positive numbers."""
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise InputError(name, f"is {value!r}", "expected a pair (low, high)") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) \
                or not np.isfinite(v) or v <= 0:
            raise InputError(name, f"is {value!r}", "expected a pair of positive numbers")
    if lo > hi:
        raise InputError(name, f"is {value!r}", "expected low <= high")
    return float(lo), float(hi)


def _shape(name: str, value, *, least: int) -> tuple[int, int]:
    """``(ny, nx)``-like pairs: two whole numbers of at least ``least``, in any order."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise InputError(name, f"is {value!r}", "expected a pair (rows, columns)") from None
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < least:
            raise InputError(name, f"is {value!r}", f"expected a pair of integers >= {least}")
    return int(a), int(b)


def _nonnegative(name: str, value, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not np.isfinite(value) or value < 0:
        raise InputError(name, f"is {value!r}", f"expected a non-negative number of {unit}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpotStackSpec:
    """What a simulated DCT frame stack holds. Intensities are in detector counts per frame.

    Attributes
    ----------
    n_frames : int
        Frames over the rotation angle psi.
    frame_shape : tuple of int
        ``(ny, nx)`` pixels of a frame.
    n_blobs : int
        Blobs drawn (fewer may remain if some are hidden under brighter ones).
    beam_size : tuple of int
        ``(height, width)`` in pixels of the direct-beam rectangle at the frame's centre.
    beam_counts : float
        Counts inside the direct-beam rectangle (0: a beam stop).
    beam_clearance : int
        Pixels kept between the direct-beam rectangle and any blob's truncated extent.
    yx_sigma : tuple of float
        Range (pixels) of a blob's two in-plane Gaussian sigmas, each drawn uniformly.
    psi_sigma : tuple of float
        Range (frames) of a blob's Gaussian sigma in psi (see the module notes).
    psi_jitter : float
        Standard deviation of the log of the psi sigma's random factor.
    peak_counts : tuple of float
        Range of the blobs' peak intensities, drawn log-uniformly.
    truncate : float
        Blobs are zero beyond this many sigmas (Mahalanobis distance).
    label_fraction : float
        Fraction of its peak above which a blob supports a voxel (see the module notes);
        at least ``exp(-truncate**2 / 2)``.
    background_counts : float
        Flat background.
    glow_counts, glow_length : float
        Glow at the direct beam's edge (counts) and its exponential decay length (pixels).
    source_amplitude, source_period, source_jitter : float
        Relative amplitude and period (frames) of the source's oscillation, and its relative
        frame-to-frame jitter.
    dark_counts, dark_spread : float
        Mean of the dark frame and the standard deviation of its fixed pattern.
    readout_sigma : float
        Standard deviation of the Gaussian readout noise.
    poisson : bool
        Draw photon noise (else the frames hold the expected counts).
    n_hot_pixels : int
        Hot pixels, stuck at ``hot_counts`` in every frame and in the dark.
    hot_counts : float
        Value of the hot pixels.
    zingers_per_frame : float
        Mean number of zingers per frame (Poisson).
    zinger_counts : tuple of float
        Range of a zinger's counts per pixel, drawn uniformly.
    zinger_length : int
        Longest zinger streak (pixels, along a row, a column or a diagonal); 1 gives single pixels.
    overlap : bool
        Allow blobs' truncated bounding boxes to intersect.
    grid : bool
        Read the detector as a 2x2 mosaic of sub-images, each with its own gain and offset.
    grid_gain_spread : float
        Standard deviation of the quadrants' gains around 1.
    grid_offset_spread : float
        Standard deviation of the quadrants' offsets (counts, in the dark and every frame).
    """

    n_frames: int = 64
    frame_shape: tuple[int, int] = (128, 128)
    n_blobs: int = 40
    beam_size: tuple[int, int] = (16, 16)
    beam_counts: float = 3000.0
    beam_clearance: int = 4
    yx_sigma: tuple[float, float] = (1.0, 2.5)
    psi_sigma: tuple[float, float] = (1.0, 5.0)
    psi_jitter: float = 0.2
    peak_counts: tuple[float, float] = (50.0, 500.0)
    truncate: float = 3.0
    label_fraction: float = 0.1
    background_counts: float = 10.0
    glow_counts: float = 150.0
    glow_length: float = 12.0
    source_amplitude: float = 0.1
    source_period: float = 40.0
    source_jitter: float = 0.02
    dark_counts: float = 100.0
    dark_spread: float = 3.0
    readout_sigma: float = 2.0
    poisson: bool = True
    n_hot_pixels: int = 8
    hot_counts: float = 10000.0
    zingers_per_frame: float = 1.0
    zinger_counts: tuple[float, float] = (500.0, 5000.0)
    zinger_length: int = 4
    overlap: bool = True
    grid: bool = False
    grid_gain_spread: float = 0.1
    grid_offset_spread: float = 20.0

    def __post_init__(self) -> None:
        for name in ("n_frames", "n_blobs", "n_hot_pixels", "beam_clearance", "zinger_length"):
            value = getattr(self, name)
            least = 1 if name in ("n_frames", "zinger_length") else 0
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                raise InputError(name, f"is {value!r}", f"expected an integer >= {least}")
        object.__setattr__(self, "frame_shape", _shape("frame_shape", self.frame_shape, least=1))
        object.__setattr__(self, "beam_size", _shape("beam_size", self.beam_size, least=0))
        if self.beam_size[0] >= self.frame_shape[0] or self.beam_size[1] >= self.frame_shape[1]:
            raise InputError("beam_size", f"is {self.beam_size!r}",
                             f"expected smaller than the frame {self.frame_shape}")
        for name in ("yx_sigma", "psi_sigma", "peak_counts", "zinger_counts"):
            object.__setattr__(self, name, _range(name, getattr(self, name)))
        units = {"psi_jitter": "log units", "beam_counts": "counts", "background_counts": "counts",
                 "glow_counts": "counts", "source_amplitude": "relative units", "source_jitter": "relative units",
                 "dark_counts": "counts", "dark_spread": "counts", "readout_sigma": "counts", "hot_counts": "counts",
                 "zingers_per_frame": "zingers", "grid_gain_spread": "relative units",
                 "grid_offset_spread": "counts"}
        for name, unit in units.items():
            _nonnegative(name, getattr(self, name), unit)
        for name, unit in (("truncate", "sigmas"), ("glow_length", "pixels"), ("source_period", "frames"),
                           ("label_fraction", "fractions of a blob's peak")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
                raise InputError(name, f"is {value!r}", f"expected a positive number of {unit}")
        if not math.exp(-self.truncate ** 2 / 2) <= self.label_fraction < 1:
            raise InputError("label_fraction", f"is {self.label_fraction!r}",
                             f"expected in [exp(-truncate**2 / 2), 1) = [{math.exp(-self.truncate ** 2 / 2):.3g}, 1)")
        if self.source_amplitude >= 1:
            raise InputError("source_amplitude", f"is {self.source_amplitude!r}", "expected below 1")
        if self.n_hot_pixels > self.frame_shape[0] * self.frame_shape[1]:
            raise InputError("n_hot_pixels", f"is {self.n_hot_pixels}", "expected at most the frame's pixel count")
        if 2 * self.truncate * self.yx_sigma[1] >= min(self.frame_shape) - 1:
            raise InputError("yx_sigma", f"is {self.yx_sigma!r}",
                             f"expected blobs ({self.truncate} sigmas each side) to fit a frame {self.frame_shape}")


@dataclasses.dataclass(frozen=True)
class SpotBlob:
    """One labelled blob of a simulated stack.

    Attributes
    ----------
    id : int
        Its label in :attr:`SpotStack.labels` (1..K).
    centre : tuple of float
        ``(psi, y, x)`` of the Gaussian's centre (frames, pixels, pixels).
    sigma : tuple of float
        ``(psi, u, v)`` Gaussian sigmas: frames, then pixels along its two in-plane axes.
    angle : float
        In-plane rotation of its ``u`` axis from the ``y`` axis toward ``x`` (radians).
    peak : float
        Noise-free peak intensity (counts per frame, before the source's modulation).
    centroid : tuple of float
        ``(psi, y, x)`` mean position of its labelled voxels.
    bbox : tuple of tuple of int
        ``((psi0, psi1), (y0, y1), (x0, x1))``: half-open bounds of its labelled voxels.
    psi_extent : int
        Frames its labelled voxels span (``psi1 - psi0``).
    voxels : int
        Number of its labelled voxels.
    """

    id: int
    centre: tuple[float, float, float]
    sigma: tuple[float, float, float]
    angle: float
    peak: float
    centroid: tuple[float, float, float]
    bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    psi_extent: int
    voxels: int


@dataclasses.dataclass(frozen=True, eq=False)
class SpotStack:
    """A simulated frame stack and its ground truth.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(psi, y, x)`` float32 detector frames (counts, dark included).
    labels : numpy.ndarray
        ``(psi, y, x)`` int32 blob labels (0 background, 1..K; see the module notes).
    dark : numpy.ndarray
        ``(y, x)`` float32 dark frame (counts).
    direct_beam : numpy.ndarray
        ``(y, x)`` bool mask of the direct-beam rectangle.
    blobs : tuple of SpotBlob
        The labelled blobs, ``blobs[k - 1].id == k``.
    signal : numpy.ndarray
        ``(psi, y, x)`` float32 noise-free blob intensity (counts, before the source's modulation).
    source : numpy.ndarray
        ``(psi,)`` float64 relative source intensity of each frame.
    quadrant_gain : numpy.ndarray
        ``(2, 2)`` float64 gains of the detector's quadrants (ones without ``grid``).
    hot_pixels : numpy.ndarray
        ``(n, 2)`` int64 ``(y, x)`` of the hot pixels.
    spec : SpotStackSpec
        The parameters it was drawn with.
    seed : int
        The seed it was drawn with.
    """

    frames: np.ndarray
    labels: np.ndarray
    dark: np.ndarray
    direct_beam: np.ndarray
    blobs: tuple[SpotBlob, ...]
    signal: np.ndarray
    source: np.ndarray
    quadrant_gain: np.ndarray
    hot_pixels: np.ndarray
    spec: SpotStackSpec
    seed: int


@dataclasses.dataclass(frozen=True)
class _Draw:
    centre: np.ndarray  # (3,) psi, y, x
    sigma: np.ndarray  # (3,) psi, u, v
    angle: float
    peak: float
    half: np.ndarray  # (3,) half extents of the truncated support


def _beam_box(spec: SpotStackSpec) -> tuple[int, int, int, int]:
    (ny, nx), (bh, bw) = spec.frame_shape, spec.beam_size
    y0, x0 = (ny - bh) // 2, (nx - bw) // 2
    return y0, y0 + bh, x0, x0 + bw


def _draw_blobs(spec: SpotStackSpec, rng: np.random.Generator) -> list[_Draw]:
    ny, nx = spec.frame_shape
    by0, by1, bx0, bx1 = _beam_box(spec)
    clear = spec.beam_clearance
    axis, half_width = (nx - 1) / 2, nx / 2
    lo_psi, hi_psi = spec.psi_sigma
    draws: list[_Draw] = []
    for _ in range(spec.n_blobs):
        su, sv = rng.uniform(*spec.yx_sigma, size=2)
        angle = float(rng.uniform(0.0, math.pi))
        peak = float(math.exp(rng.uniform(math.log(spec.peak_counts[0]), math.log(spec.peak_counts[1]))))
        jitter = float(math.exp(spec.psi_jitter * rng.standard_normal()))
        c, s = math.cos(angle), math.sin(angle)
        half_y = spec.truncate * math.hypot(su * c, sv * s)
        half_x = spec.truncate * math.hypot(su * s, sv * c)
        for _ in range(_MAX_TRIES):
            y = rng.uniform(half_y, ny - 1 - half_y)
            x = rng.uniform(half_x, nx - 1 - half_x)
            psi = rng.uniform(0.0, spec.n_frames - 1)
            near_beam = (y + half_y >= by0 - clear and y - half_y <= by1 - 1 + clear
                         and x + half_x >= bx0 - clear and x - half_x <= bx1 - 1 + clear)
            if near_beam and spec.beam_size[0] * spec.beam_size[1] > 0:
                continue
            d = abs(x - axis) / half_width
            sigma_psi = min(max(lo_psi / max(d, lo_psi / hi_psi) * jitter, lo_psi), hi_psi)
            half = np.array([spec.truncate * sigma_psi, half_y, half_x])
            centre = np.array([psi, y, x])
            if not spec.overlap and any(np.all(np.abs(centre - o.centre) <= half + o.half) for o in draws):
                continue
            draws.append(_Draw(centre, np.array([sigma_psi, su, sv]), angle, peak, half))
            break
        else:
            raise InputError("n_blobs", f"is {spec.n_blobs}: only {len(draws)} blobs could be placed",
                             "expected fewer blobs, smaller blobs, a larger frame or overlap=True")
    return draws


def _illumination(spec: SpotStackSpec) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = spec.frame_shape
    by0, by1, bx0, bx1 = _beam_box(spec)
    beam = np.zeros((ny, nx), dtype=bool)
    beam[by0:by1, bx0:bx1] = True
    if beam.any():
        distance = ndimage.distance_transform_edt(~beam)
        glow = spec.glow_counts * np.exp(-distance / spec.glow_length)
    else:  # no beam: the glow's origin is the frame's centre
        yy, xx = np.mgrid[:ny, :nx]
        glow = spec.glow_counts * np.exp(-np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2) / spec.glow_length)
    return spec.background_counts + glow + spec.beam_counts * beam, beam


def _paint(spec: SpotStackSpec, draws: list[_Draw], start: int, stop: int, *,
           signal: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Noise-free blob intensity and the labels (ids = draw order + 1, before compaction) of frames
    ``[start, stop)``; each voxel's numbers do not depend on the frames painted with it."""
    shape = (stop - start, *spec.frame_shape)
    total = np.zeros(shape, dtype=np.float32) if signal else None
    best = np.zeros(shape, dtype=np.float32)  # intensity of the voxel's current label
    labels = np.zeros(shape, dtype=np.int32)
    q_max = spec.truncate ** 2
    q_label = -2.0 * math.log(spec.label_fraction)
    full = (spec.n_frames, *spec.frame_shape)
    for k, draw in enumerate(draws, start=1):
        lo = np.maximum(np.floor(draw.centre - draw.half).astype(int), 0)
        hi = np.minimum(np.ceil(draw.centre + draw.half).astype(int) + 1, full)
        if np.any(hi <= lo):
            continue
        lo[0], hi[0] = max(lo[0], start), min(hi[0], stop)
        if hi[0] <= lo[0]:
            continue  # the blob lies outside these frames
        dp, dy, dx = (np.arange(a, b, dtype=np.float64) - c for a, b, c in zip(lo, hi, draw.centre, strict=True))
        c, s = math.cos(draw.angle), math.sin(draw.angle)
        u = dy[:, None] * c + dx[None, :] * s
        v = -dy[:, None] * s + dx[None, :] * c
        q = (dp[:, None, None] / draw.sigma[0]) ** 2 + ((u / draw.sigma[1]) ** 2 + (v / draw.sigma[2]) ** 2)[None]
        intensity = np.where(q <= q_max, draw.peak * np.exp(-0.5 * q), 0.0).astype(np.float32)
        box = (slice(lo[0] - start, hi[0] - start), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        if total is not None:
            total[box] += intensity
        take = (q <= q_label) & (intensity > best[box])
        labels[box][take] = k
        best[box][take] = intensity[take]
    return total, labels


@dataclasses.dataclass(frozen=True)
class _Zingers:
    """Every zinger voxel of a stack, in the order they are added: ``(frame, y, x)`` and counts."""

    frame: np.ndarray
    y: np.ndarray
    x: np.ndarray
    counts: np.ndarray

    def add(self, counts: np.ndarray, start: int) -> None:
        """Add the zingers of frames ``[start, start + len(counts))`` to ``counts`` in place."""
        inside = (self.frame >= start) & (self.frame < start + counts.shape[0])
        np.add.at(counts, (self.frame[inside] - start, self.y[inside], self.x[inside]), self.counts[inside])


def _draw_zingers(spec: SpotStackSpec, rng: np.random.Generator) -> _Zingers:
    n_frames, (ny, nx) = spec.n_frames, spec.frame_shape
    per_frame = rng.poisson(spec.zingers_per_frame, size=n_frames)
    total = int(per_frame.sum())
    if total == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Zingers(empty, empty, empty, np.zeros(0))
    frame = np.repeat(np.arange(n_frames), per_frame)
    y0 = rng.integers(0, ny, size=total)
    x0 = rng.integers(0, nx, size=total)
    steps = np.array([(0, 1), (1, 0), (1, 1), (1, -1)])[rng.integers(0, 4, size=total)]
    length = rng.integers(1, spec.zinger_length + 1, size=total)
    amplitude = rng.uniform(*spec.zinger_counts, size=total)
    along = np.arange(spec.zinger_length)
    keep = along[None, :] < length[:, None]
    ys = y0[:, None] + steps[:, :1] * along[None, :]
    xs = x0[:, None] + steps[:, 1:] * along[None, :]
    keep &= (ys >= 0) & (ys < ny) & (xs >= 0) & (xs < nx)
    fs = np.broadcast_to(frame[:, None], keep.shape)
    return _Zingers(fs[keep], ys[keep], xs[keep], np.broadcast_to(amplitude[:, None], keep.shape)[keep])


def _streams(seed: int) -> dict[str, np.random.Generator]:
    return dict(zip(_STREAMS, (np.random.Generator(np.random.PCG64(s))
                               for s in np.random.SeedSequence(int(seed)).spawn(len(_STREAMS))), strict=True))


#: Voxels painted at once while the labels are counted (frames per pass: this over the frame's pixels).
_LABEL_PASS_VOXELS = 1 << 24


@dataclasses.dataclass(frozen=True, eq=False)
class SpotSlab:
    """Consecutive frames of a simulated stack, as :meth:`SpotStackStream.slabs` yields them.

    Attributes
    ----------
    start : int
        Index (psi) of its first frame.
    frames : numpy.ndarray
        ``(n, y, x)`` float32 detector frames (counts, dark included).
    labels : numpy.ndarray
        ``(n, y, x)`` int32 blob labels.
    signal : numpy.ndarray
        ``(n, y, x)`` float32 noise-free blob intensity (counts, before the source's modulation).
    """

    start: int
    frames: np.ndarray
    labels: np.ndarray
    signal: np.ndarray


class SpotStackStream:
    """A simulated stack (see the module notes) made frame-slab by frame-slab, for stacks larger than memory.

    The constructor draws everything but the frames and counts the labels (one pass over the
    frames, painting the blobs only); :meth:`slabs` then yields the frames in slabs. Their bytes
    are :func:`simulate_spot_stack`'s whatever the slab size: each voxel's intensity and label
    come from the blobs alone, and the photon and readout noise are drawn in C order, one slab
    after the other, from the same streams.

    Parameters
    ----------
    spec : SpotStackSpec, optional
        What to simulate (default: ``SpotStackSpec()``).
    seed : int
        Seed of every random draw.

    Attributes
    ----------
    spec : SpotStackSpec
    seed : int
    shape : tuple of int
        ``(psi, y, x)`` of the stack.
    blobs : tuple of SpotBlob
        The labelled blobs, ``blobs[k - 1].id == k``.
    dark : numpy.ndarray
        ``(y, x)`` float32 dark frame (counts).
    direct_beam : numpy.ndarray
        ``(y, x)`` bool mask of the direct-beam rectangle.
    source : numpy.ndarray
        ``(psi,)`` float64 relative source intensity of each frame.
    quadrant_gain : numpy.ndarray
        ``(2, 2)`` float64 gains of the detector's quadrants.
    hot_pixels : numpy.ndarray
        ``(n, 2)`` int64 ``(y, x)`` of the hot pixels.
    """

    def __init__(self, spec: SpotStackSpec | None = None, *, seed: int = 0) -> None:
        spec = SpotStackSpec() if spec is None else spec
        if not isinstance(spec, SpotStackSpec):
            raise InputError("spec", f"is a {type(spec).__name__}", "expected a SpotStackSpec")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise InputError("seed", f"is {seed!r}", "expected a non-negative integer")
        self.spec, self.seed = spec, int(seed)
        n_frames, (ny, nx) = spec.n_frames, spec.frame_shape
        self.shape = (n_frames, ny, nx)
        rngs = _streams(self.seed)

        self._draws = _draw_blobs(spec, rngs["geometry"])
        self._remap, self.blobs = self._count_labels()

        rng = rngs["source"]
        phase = rng.uniform(0.0, 2 * math.pi)
        psi = np.arange(n_frames)
        source = (1.0 + spec.source_amplitude * np.sin(2 * math.pi * psi / spec.source_period + phase)
                  + spec.source_jitter * rng.standard_normal(n_frames))
        self.source = np.maximum(source, 0.05)  # a source never runs negative, whatever the jitter
        illumination, self.direct_beam = _illumination(spec)
        self._illumination = illumination.astype(np.float32)
        self._zingers = _draw_zingers(spec, rngs["zingers"])

        gain = np.ones((2, 2))
        offset = np.zeros((2, 2))
        if spec.grid:
            rng = rngs["mosaic"]
            gain = np.maximum(1.0 + spec.grid_gain_spread * rng.standard_normal((2, 2)), 0.2)
            offset = spec.grid_offset_spread * rng.standard_normal((2, 2))
        self.quadrant_gain = gain
        rows = (np.arange(ny) >= ny // 2).astype(int)
        cols = (np.arange(nx) >= nx // 2).astype(int)
        self._gain_map = gain[rows[:, None], cols[None, :]].astype(np.float32)
        # The frames get the dark before the hot pixels are set, in both.
        self._dark_counts = (spec.dark_counts + spec.dark_spread * rngs["dark"].standard_normal((ny, nx))
                             + offset[rows[:, None], cols[None, :]]).astype(np.float32)
        hot = rngs["hot"].choice(ny * nx, size=spec.n_hot_pixels, replace=False)
        self.hot_pixels = np.stack(np.unravel_index(np.sort(hot), (ny, nx)), axis=1).astype(np.int64)
        self.dark = self._dark_counts.copy()
        self.dark[self.hot_pixels[:, 0], self.hot_pixels[:, 1]] = spec.hot_counts

    def _count_labels(self) -> tuple[np.ndarray, tuple[SpotBlob, ...]]:
        """The compaction of the draws' labels to ``1..K`` and the blob table, in one pass over the frames."""
        spec, draws = self.spec, self._draws
        n = len(draws)
        counts = np.zeros(n + 1, dtype=np.int64)
        # Coordinates are whole numbers: their float64 sums are exact in any order (below 2**53).
        sums = np.zeros((3, n + 1))
        lo = np.full((3, n + 1), np.iinfo(np.int64).max)
        hi = np.full((3, n + 1), -1)
        step = max(1, _LABEL_PASS_VOXELS // (spec.frame_shape[0] * spec.frame_shape[1]))
        for start in range(0, spec.n_frames, step):
            stop = min(start + step, spec.n_frames)
            _, labels = _paint(spec, draws, start, stop, signal=False)
            fg = np.flatnonzero(labels)
            ids = labels.ravel()[fg]
            counts += np.bincount(ids, minlength=n + 1)
            coords = np.unravel_index(fg, labels.shape)
            for axis, c in enumerate(coords):
                sums[axis] += np.bincount(ids, weights=c + (start if axis == 0 else 0), minlength=n + 1)
            for k, box in enumerate(ndimage.find_objects(labels, max_label=n), start=1):
                if box is not None:
                    first = np.array([box[0].start + start, box[1].start, box[2].start])
                    last = np.array([box[0].stop + start, box[1].stop, box[2].stop])
                    lo[:, k] = np.minimum(lo[:, k], first)
                    hi[:, k] = np.maximum(hi[:, k], last)
        present = np.flatnonzero(counts[1:]) + 1
        remap = np.zeros(n + 1, dtype=np.int32)
        remap[present] = np.arange(1, present.size + 1, dtype=np.int32)
        blobs = []
        for i, k in enumerate(present, start=1):
            draw = draws[k - 1]
            bbox = tuple((int(lo[a, k]), int(hi[a, k])) for a in range(3))
            blobs.append(SpotBlob(
                id=i, centre=tuple(float(v) for v in draw.centre), sigma=tuple(float(v) for v in draw.sigma),
                angle=draw.angle, peak=draw.peak, centroid=tuple(float(sums[a, k] / counts[k]) for a in range(3)),
                bbox=bbox, psi_extent=bbox[0][1] - bbox[0][0], voxels=int(counts[k])))
        return remap, tuple(blobs)

    def slabs(self, frames: int) -> Iterator[SpotSlab]:
        """The stack in slabs of ``frames`` consecutive frames (the last may be shorter), in order.

        Parameters
        ----------
        frames : int
            Frames per slab.

        Yields
        ------
        SpotSlab
            Frames, labels and noise-free signal of each slab.
        """
        frames = check_positive_int("frames", frames, "frames per slab")
        spec = self.spec
        rngs = _streams(self.seed)  # the noise streams restart with every pass
        source = self.source.astype(np.float32)
        ys, xs = self.hot_pixels[:, 0], self.hot_pixels[:, 1]
        for start in range(0, spec.n_frames, frames):
            stop = min(start + frames, spec.n_frames)
            signal, raw = _paint(spec, self._draws, start, stop)
            expected = (self._illumination[None] + signal) * source[start:stop, None, None]
            counts = rngs["photons"].poisson(expected).astype(np.float32) if spec.poisson else expected
            self._zingers.add(counts, start)
            stack = counts * self._gain_map[None]
            stack += self._dark_counts[None]
            if spec.readout_sigma > 0:
                stack += np.float32(spec.readout_sigma) * rngs["readout"].standard_normal(stack.shape,
                                                                                           dtype=np.float32)
            stack[:, ys, xs] = spec.hot_counts
            yield SpotSlab(start=start, frames=stack, labels=self._remap[raw], signal=signal)


def simulate_spot_stack(spec: SpotStackSpec | None = None, *, seed: int = 0) -> SpotStack:
    """Draw a DCT frame stack and its exact blob labels (see the module notes).

    Parameters
    ----------
    spec : SpotStackSpec, optional
        What to simulate (default: ``SpotStackSpec()``).
    seed : int
        Seed of every random draw: the same seed and spec give the same bytes.

    Returns
    -------
    SpotStack
        Frames (counts), labels, dark frame, direct-beam mask and the blob table.
    """
    stream = SpotStackStream(spec, seed=seed)
    [whole] = stream.slabs(stream.spec.n_frames)
    return SpotStack(frames=whole.frames, labels=whole.labels, dark=stream.dark, direct_beam=stream.direct_beam,
                     blobs=stream.blobs, signal=whole.signal, source=stream.source,
                     quadrant_gain=stream.quadrant_gain, hot_pixels=stream.hot_pixels, spec=stream.spec,
                     seed=stream.seed)
