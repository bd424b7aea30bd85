"""Cone-beam geometry with a flat detector on a circular orbit, and its FDK reconstruction.

The geometry is the fan-beam one (:mod:`aiax_bench.recon.fan`) swept along
the rotation axis: volume ``(Z, N, N)``, axis along ``z`` (the first index),
voxel ``(k, i, j)`` centred on ``(z, y, x) = (k - (Z-1)/2, i - (N-1)/2,
j - (N-1)/2)``, all lengths in voxel units. The source turns in the plane
``z = 0``; detector row ``r`` is centred ``(r - (R-1)/2) row_spacing +
row_offset`` above that plane at the detector, so a flat detector centred on
the orbit's plane sees the mid-plane in its middle row. Voxels away from the
mid-plane are seen at an angle: the cone-beam artefacts FDK leaves there are
part of what a method must remove.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aiax_bench.errors import InputError
from aiax_bench.recon.fan import angle_weights, source_frame
from aiax_bench.recon.fbp import FILTERS, filter_sinogram
from aiax_bench.recon.projector import _positive_int, check_angles
from aiax_bench.validation import check_finite_number, check_positive

__all__ = ["ConeBeamGeometry", "fdk"]


@dataclass(frozen=True)
class ConeBeamGeometry:
    """A circular cone-beam scan with a flat detector, lengths in voxel units.

    Parameters
    ----------
    source_origin, origin_detector : float
        Distances from the source to the rotation axis and from the axis to the detector.
    det_spacing, row_spacing : float
        Detector pixel width (across the axis) and height (along it), physical size.
    detector_offset : float
        Sideways shift of the detector's centre from the central ray.
    axis_offset : float
        Distance of the rotation axis from the central ray (a centre-of-rotation error).
    row_offset : float
        Shift of the detector's centre along the axis from the orbit's plane.
    """

    source_origin: float
    origin_detector: float
    det_spacing: float = 1.0
    row_spacing: float = 1.0
    detector_offset: float = 0.0
    axis_offset: float = 0.0
    row_offset: float = 0.0

    def __post_init__(self) -> None:
        for name in ("source_origin", "origin_detector", "det_spacing", "row_spacing"):
            check_positive(name, getattr(self, name), "voxels")
        for name in ("detector_offset", "axis_offset", "row_offset"):
            check_finite_number(name, getattr(self, name), "voxels")

    @property
    def source_detector(self) -> float:
        return self.source_origin + self.origin_detector


def fdk(projections, angles, geometry: ConeBeamGeometry, *, n_pixels: int, n_slices: int, filter: str = "ramp",
        cutoff: float = 1.0, padding: bool = True, slab: int = 16) -> np.ndarray:
    """Feldkamp–Davis–Kress reconstruction of a circular cone-beam scan.

    Parameters
    ----------
    projections : array_like
        Line integrals ``(A, R, D)``: ``A`` angles, ``R`` detector rows, ``D`` columns.
    angles : array_like
        Source angles in radians (a full turn for an exact mid-plane).
    geometry : ConeBeamGeometry
        Distances and detector layout.
    n_pixels, n_slices : int
        The volume's width and height ``(n_slices, n_pixels, n_pixels)`` in voxels.
    filter, cutoff, padding
        As for :func:`~aiax_bench.recon.fbp`.
    slab : int
        Slices back-projected together (bounds memory).

    Returns
    -------
    numpy.ndarray
        Attenuation per voxel, float32, ``(n_slices, n_pixels, n_pixels)``.

    Notes
    -----
    Each detector pixel is weighted by the cosine of its ray to the central
    ray, each row ramp-filtered along the detector, and the result
    back-projected with the ``1 / U^2`` distance weight and bilinear
    interpolation (Feldkamp et al., JOSA A 1984). In the orbit's plane it is
    fan-beam FBP (:class:`~aiax_bench.recon.FanBeamProjector`), the same
    weights (:func:`~aiax_bench.recon.fan.angle_weights`). Angles are summed
    in order with elementwise operations: the bytes do not depend on the
    number of threads.
    """
    if filter not in FILTERS:
        raise InputError("filter", f"is {filter!r}", f"expected one of {sorted(FILTERS)}")
    if not isinstance(geometry, ConeBeamGeometry):
        raise InputError("geometry", f"is {type(geometry).__name__}", "a ConeBeamGeometry")
    n_pixels = _positive_int(n_pixels, "n_pixels", "volume width in voxels")
    n_slices = _positive_int(n_slices, "n_slices", "volume height in voxels")
    slab = _positive_int(slab, "slab", "slices per back projection")
    angles = check_angles(angles)
    data = torch.as_tensor(np.asarray(projections, dtype=np.float32))
    if data.ndim != 3 or data.shape[0] != angles.size:
        raise InputError("projections", f"have shape {tuple(data.shape)} for {angles.size} angles",
                         "expected (A, R, D): one detector image per angle")
    _, rows, cols = data.shape
    g = geometry
    sod, sdd = g.source_origin, g.source_detector
    u = (np.arange(cols) - (cols - 1) / 2) * g.det_spacing + g.detector_offset
    v = (np.arange(rows) - (rows - 1) / 2) * g.row_spacing + g.row_offset
    cosine = sdd / np.sqrt(sdd**2 + u[None, :] ** 2 + v[:, None] ** 2)
    filtered = filter_sinogram(data * torch.from_numpy(cosine.astype(np.float32)), filter=filter, padding=padding,
                               cutoff=cutoff)
    # Unit-pixel filter rescaled to the column width seen at the axis; the 1/U^2 weight and the angles' shares.
    weights = angle_weights(angles) / (g.det_spacing * sod / sdd)
    # Zeros around every image (one before, two after each axis): voxels projecting off the detector read zeros.
    padded = torch.nn.functional.pad(filtered.to(torch.float32), (1, 2, 1, 2)).contiguous()
    width, height = cols + 3, rows + 3
    flat = padded.reshape(-1)
    coords = np.arange(n_pixels, dtype=np.float64) - (n_pixels - 1) / 2
    z_all = np.arange(n_slices, dtype=np.float64) - (n_slices - 1) / 2
    col_centre = (cols - 1) / 2 - g.detector_offset / g.det_spacing + 1
    row_centre = (rows - 1) / 2 - g.row_offset / g.row_spacing + 1
    out = np.empty((n_slices, n_pixels, n_pixels), dtype=np.float32)

    for z0 in range(0, n_slices, slab):
        z = torch.from_numpy(z_all[z0:z0 + slab].astype(np.float32))[:, None]
        acc = torch.zeros((z.shape[0], n_pixels * n_pixels), dtype=torch.float32)
        for k, theta in enumerate(angles):
            along, across = (t.reshape(1, -1) for t in source_frame(coords, theta, source_origin=sod,
                                                                     axis_offset=g.axis_offset))
            magnify = along.reciprocal() * sdd  # detector length per voxel length at this pixel's depth
            col = (across * magnify / g.det_spacing + col_centre).clamp_(0, cols + 1)
            row = (z * magnify / g.row_spacing + row_centre).clamp_(0, rows + 1)
            weight = (along.reciprocal() * sod).square_().mul_(float(weights[k]))
            col_low, row_low = torch.floor(col), torch.floor(row)
            fc, fr = col - col_low, row - row_low
            base = (row_low.to(torch.int64) * width + col_low.to(torch.int64)).add_(k * height * width)
            top = torch.lerp(flat.take(base), flat.take(base + 1), fc)
            bottom = torch.lerp(flat.take(base + width), flat.take(base + width + 1), fc)
            acc.addcmul_(torch.lerp(top, bottom, fr), weight)
        out[z0:z0 + slab] = acc.reshape(-1, n_pixels, n_pixels).numpy()
    return out
