"""Fan-beam geometry with a flat detector: a lab CT's central slice.

Coordinates are the parallel-beam projector's: pixel ``(i, j)`` of an
``N x N`` slice is centred on ``(x, y) = (j - (N-1)/2, i - (N-1)/2)``, all
lengths in voxel units. At angle ``theta`` the beam travels along
``t = (-sin theta, cos theta)`` and the detector's axis is
``n = (cos theta, sin theta)``: with the source infinitely far away this is
the parallel-beam geometry at the same angle.

* The source sits at ``-source_origin t - axis_offset n``.
* The central ray leaves the source along ``t`` and meets the detector
  ``source_origin + origin_detector`` away; the detector's centre lies
  ``detector_offset`` from that point along ``n``.
* Detector pixel ``d`` is centred ``(d - (D-1)/2) det_spacing`` from the
  detector's centre.

``axis_offset`` is the rotation axis's distance from the central ray (a
centre-of-rotation error), ``detector_offset`` a detector shifted sideways,
as in astra-toolbox's and RTK's vector geometries. With both zero this is
astra-toolbox's ``fanflat`` geometry at the same angles, applied to the slice
flipped upside down (astra's image ``y`` axis points the other way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from aiax_bench.errors import InputError
from aiax_bench.recon.projector import SparseProjector
from aiax_bench.validation import check_finite_number, check_positive

__all__ = ["FanBeamProjector", "angle_weights", "geometry_in_voxels", "parker_weights", "source_frame",
           "source_position"]


def geometry_in_voxels(*, pixel: float, source_origin: float, source_detector: float,
                       voxel: float | None = None) -> dict[str, float]:
    """A scanner's fan-beam geometry (any one length unit) in voxels of the effective pixel size.

    The voxel is the detector pixel divided by the magnification (source–detector over source–axis
    distance) unless given; returns the :class:`FanBeamProjector` keywords ``det_spacing``,
    ``source_origin`` and ``origin_detector``, and ``voxel`` in the scanner's unit.
    """
    voxel = pixel * source_origin / source_detector if voxel is None else voxel
    return {"det_spacing": pixel / voxel, "source_origin": source_origin / voxel,
            "origin_detector": (source_detector - source_origin) / voxel, "voxel": voxel}


def source_frame(coords: np.ndarray, theta: float, *, source_origin: float, axis_offset: float,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Each pixel's distance from the source along the central ray, and from the central ray across it.

    ``coords`` are the pixel centres along one axis (voxel units); both results are ``(N, N)`` float32
    (rows ``y``, columns ``x``). They are separable in ``x`` and ``y``, so each costs one addition of
    two vectors computed in float64.
    """
    cos, sin = math.cos(theta), math.sin(theta)

    def vector(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)

    along = vector(coords * cos)[:, None] + vector(source_origin - coords * sin)[None, :]
    across = vector(coords * sin)[:, None] + vector(coords * cos + axis_offset)[None, :]
    return along, across


def source_position(theta: float, *, source_origin: float, axis_offset: float) -> tuple[float, float]:
    """The source's ``(x, y)`` in the slice (voxel units from its centre) at angle ``theta``: the point
    :func:`source_frame` measures its distances from (``along = across = 0``)."""
    cos, sin = math.cos(theta), math.sin(theta)
    return source_origin * sin - axis_offset * cos, -source_origin * cos - axis_offset * sin


def angle_weights(angles: np.ndarray) -> np.ndarray:
    """Each source position's share of a divergent-beam FBP integral (radians), ``(A,)``.

    An angle weighs half the angular step on each side of it. A full turn
    (360 degrees within one step) measures every line twice, so its weights
    are halved; a shorter arc counts each measured line once, and lines it
    misses stay missing (a limited-angle reconstruction); on a short scan
    (180 degrees plus the fan) :func:`parker_weights` share the lines measured
    twice.
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.size == 1:
        return np.array([math.pi])
    order = np.argsort(angles, kind="stable")
    ordered = angles[order]
    gaps = np.diff(ordered)
    step = float(np.median(gaps))
    # Half the gap to each neighbour; the ends take the median step beyond them.
    share = np.empty(angles.size)
    share[order] = (np.concatenate(([step], gaps)) + np.concatenate((gaps, [step]))) / 2
    covered = ordered[-1] - ordered[0] + step
    return share / 2 if covered >= 2 * math.pi - step / 2 else share


def parker_weights(angles: np.ndarray, fan_angles: np.ndarray) -> np.ndarray | None:
    """Parker's weights of a short scan, ``(A, D)``, or None when the scan is not one.

    A short scan turns through 180 degrees plus the fan (``pi + 2 delta`` with
    ``delta`` at least the largest fan angle ``gamma`` of a detector pixel) and
    measures some lines twice, near its two ends. Parker's smooth weights
    (Med. Phys. 9:254, 1982) share each twice-measured line between its two
    measurements and sum to one over them, so FBP counts every line once.
    Scans shorter than ``pi + 2 max|gamma|`` (limited angle) and full turns get
    None: they need no such weights.

    Parameters
    ----------
    angles : numpy.ndarray
        Source angles (radians), increasing; the scan starts at the first.
    fan_angles : numpy.ndarray
        Each detector pixel's angle ``gamma`` to the central ray (radians), ``(D,)``.
    """
    angles = np.asarray(angles, dtype=np.float64)
    gamma = np.asarray(fan_angles, dtype=np.float64)
    if angles.size < 2:
        return None
    step = float(np.median(np.diff(np.sort(angles))))
    span = float(angles.max() - angles.min()) + step  # each view stands for its step
    largest = float(np.abs(gamma).max())
    if span >= 2 * math.pi - step / 2 or span < math.pi + 2 * largest:
        return None
    delta = (span - math.pi) / 2
    # Each view's angle from the scan's start, its step's middle at the view.
    beta = (angles - angles.min() + step / 2)[:, None]
    g = gamma[None, :]
    weights = np.ones((angles.size, gamma.size))
    rising = beta < 2 * (delta - g)
    weights = np.where(rising, np.sin(np.pi / 4 * beta / np.maximum(delta - g, 1e-12)) ** 2, weights)
    falling = beta > math.pi - 2 * g
    weights = np.where(falling, np.sin(np.pi / 4 * (math.pi + 2 * delta - beta) / np.maximum(delta + g, 1e-12)) ** 2,
                       weights)
    return np.clip(weights, 0.0, 1.0)


@dataclass(eq=False)
class FanBeamProjector(SparseProjector):
    """Forward and back projection of slice stacks in fan-beam geometry (flat detector).

    The parameters of :class:`~aiax_bench.recon.SparseProjector` (``det_spacing``
    is the detector pixel's physical size, in voxel units), and, keyword only:

    Parameters
    ----------
    source_origin : float
        Distance from the source to the rotation axis (voxel units).
    origin_detector : float
        Distance from the rotation axis to the detector (voxel units).
    detector_offset : float
        Sideways shift of the detector's centre from the central ray (voxel units).
    axis_offset : float
        Distance of the rotation axis from the central ray (voxel units).

    Notes
    -----
    Each ray runs from the source to a detector pixel's centre and goes
    through the slice with Joseph's model, as in the parallel-beam projector,
    so ``backward`` is ``forward``'s exact transpose. The source must lie
    outside the slice's circumscribed circle.
    """

    source_origin: float = field(kw_only=True)
    origin_detector: float = field(kw_only=True)
    detector_offset: float = field(default=0.0, kw_only=True)
    axis_offset: float = field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        self.source_origin = check_positive("source_origin", self.source_origin, "voxels")
        self.origin_detector = check_positive("origin_detector", self.origin_detector, "voxels")
        self.detector_offset = check_finite_number("detector_offset", self.detector_offset, "voxels")
        self.axis_offset = check_finite_number("axis_offset", self.axis_offset, "voxels")
        radius = abs(self.axis_offset) + self.n_pixels / math.sqrt(2)
        if self.source_origin <= radius:
            raise InputError("source_origin", f"is {self.source_origin:g} voxels",
                             f"the source must lie outside the slice (more than {radius:.1f} voxels from the axis)")
        super().__post_init__()

    @property
    def source_detector(self) -> float:
        """Distance from the source to the detector along the central ray (voxel units)."""
        return self.source_origin + self.origin_detector

    def detector_positions(self) -> np.ndarray:
        """Each detector pixel's distance from the central ray along the detector (voxel units)."""
        d = self.n_detector
        return (np.arange(d) - (d - 1) / 2.0) * self.det_spacing + self.detector_offset

    def _fan_angles(self) -> np.ndarray:
        # Each detector pixel's ray leaves the source at this angle to the central ray.
        return np.arctan2(self.detector_positions(), self.source_detector)

    def _rays(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # In the rotating frame (n, t) the ray to pixel d has direction (sin phi, cos phi), normal
        # (cos phi, -sin phi), and passes through the source (-axis_offset, -source_origin):
        # the line's normal is at angle theta - phi and its offset does not depend on theta.
        phi = self._fan_angles()[None, :]
        normal = angles[:, None] - phi
        offset = self.source_origin * np.sin(phi) - self.axis_offset * np.cos(phi)
        return np.cos(normal), np.sin(normal), offset

    def fbp_preweights(self) -> torch.Tensor:
        """FBP's pre-weights: the cosine of each pixel's ray to the central ray, ``(D,)`` float32, times
        Parker's weights ``(A, D)`` on a short scan (see :func:`parker_weights`)."""
        cosine = np.cos(self._fan_angles())
        # Parker's gamma grows the other way along this detector for increasing source angles.
        parker = parker_weights(self.angles, -self._fan_angles())
        return torch.from_numpy((cosine if parker is None else parker * cosine).astype(np.float32))

    def angle_weights(self) -> np.ndarray:
        """Each angle's share of the FBP integral (radians), ``(A,)``; see :func:`angle_weights`."""
        return angle_weights(self.angles)

    def fbp_backproject(self, filtered: torch.Tensor) -> torch.Tensor:
        """Distance-weighted back projection of ``(B, A, D)`` pre-weighted, ramp-filtered sinograms.

        The filter is taken as the one of :func:`~aiax_bench.recon.filter_sinogram`
        (unit detector pixels); the pixel's magnification to the rotation
        axis, the ``1 / U^2`` weight of fan-beam FBP and :meth:`angle_weights`
        are applied here (Kak & Slaney, ch. 3.4.2). Linear interpolation
        between detector pixels; angles are summed in order with elementwise
        operations only, so the bytes do not depend on the number of threads.
        """
        b, a, d = filtered.shape
        n = self.n_pixels
        device = filtered.device
        sod, sdd = self.source_origin, self.source_detector
        # The filter assumed unit pixels: rescale to the detector pixel seen at the rotation axis.
        virtual_spacing = self.det_spacing * sod / sdd
        weights = self.angle_weights() / virtual_spacing
        coords = np.arange(n, dtype=np.float64) - (n - 1) / 2
        # Zeros beside every row (one before, two after): pixels projecting off the detector read zeros.
        width = d + 3
        rows = torch.nn.functional.pad(filtered.to(torch.float32), (1, 2)).permute(1, 2, 0).reshape(a * width, b)
        rows = rows.contiguous()
        flat = rows[:, 0] if b == 1 else None
        out = torch.zeros((n * n, b), dtype=torch.float32, device=device)
        centre = (d - 1) / 2 - self.detector_offset / self.det_spacing + 1  # +1: the padding
        gain = sdd / self.det_spacing

        for k, theta in enumerate(self.angles):
            along, across = source_frame(coords, theta, source_origin=sod, axis_offset=self.axis_offset,
                                         device=device)
            index = across.mul_(gain).div_(along).add_(centre).clamp_(0, d + 1).reshape(-1)
            weight = along.reciprocal_().mul_(sod).square_().mul_(float(weights[k])).reshape(-1)
            low = torch.floor(index)
            frac = index.sub_(low)
            low = low.to(torch.int64).add_(k * width)
            if flat is not None:
                value = torch.lerp(flat.take(low), flat.take(low + 1), frac)
                out[:, 0].addcmul_(value, weight)
            else:
                value = torch.lerp(rows.index_select(0, low), rows.index_select(0, low + 1), frac[:, None])
                out.addcmul_(value, weight[:, None])
        return out.T.reshape(b, n, n)
