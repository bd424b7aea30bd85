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

import math
from dataclasses import dataclass

import numpy as np
import torch

from aiax_bench.errors import InputError
from aiax_bench.recon.fan import angle_weights, parker_weights, source_position
from aiax_bench.recon.fbp import FILTERS, filter_sinogram
from aiax_bench.recon.projector import _positive_int, check_angles, joseph_steps
from aiax_bench.validation import check_finite_number, check_positive

__all__ = ["ConeBeamGeometry", "ConeBeamProjector", "fdk"]


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
        cutoff: float = 1.0, padding: bool = True, slab: int = 16, slices=None) -> np.ndarray:
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
    slices : array_like of int, optional
        Reconstruct only these slices of the volume (indices along its height), in this order: each
        slice is the same as in the whole volume.

    Returns
    -------
    numpy.ndarray
        Attenuation per voxel, float32, ``(n_slices, n_pixels, n_pixels)`` (``(len(slices), ...)`` with ``slices``).

    Notes
    -----
    Each detector pixel is weighted by the cosine of its ray to the central
    ray (and, on a short scan, by Parker's weights of its column, see
    :func:`~aiax_bench.recon.fan.parker_weights`), each row ramp-filtered along the detector, and the result
    back-projected with the ``1 / U^2`` distance weight and bilinear
    interpolation (Feldkamp et al., JOSA A 1984). In the orbit's plane it is
    fan-beam FBP (:class:`~aiax_bench.recon.FanBeamProjector`), the same
    weights (:func:`~aiax_bench.recon.fan.angle_weights`). The back projection
    is a compiled loop in float64 (:mod:`aiax_bench.recon._cone_kernel`): each
    voxel sums the angles in order, so the bytes do not depend on the number
    of threads.
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
    # A short scan shares its twice-measured lines by their in-plane fan angle (the fan-beam convention).
    parker = parker_weights(angles, -np.arctan2(u, sdd))
    preweights = cosine[None] if parker is None else cosine[None] * parker[:, None, :]
    filtered = filter_sinogram(data * torch.from_numpy(preweights.astype(np.float32)), filter=filter,
                               padding=padding, cutoff=cutoff)
    # Unit-pixel filter rescaled to the column width seen at the axis; the 1/U^2 weight and the angles' shares.
    weights = angle_weights(angles) / (g.det_spacing * sod / sdd)
    # Zeros around every image (one before, two after each axis): voxels projecting off the detector read zeros.
    padded = torch.nn.functional.pad(filtered.to(torch.float32), (1, 2, 1, 2)).contiguous().numpy()
    coords = np.arange(n_pixels, dtype=np.float64) - (n_pixels - 1) / 2
    heights = np.arange(n_slices, dtype=np.float64) - (n_slices - 1) / 2
    if slices is not None:
        index = np.asarray(slices)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or (index.size and (
                index.min() < 0 or index.max() >= n_slices)):
            raise InputError("slices", f"is {slices!r}", f"slice indices in [0, {n_slices})")
        heights = heights[index]
    col_centre = (cols - 1) / 2 - g.detector_offset / g.det_spacing + 1
    row_centre = (rows - 1) / 2 - g.row_offset / g.row_spacing + 1
    out = np.empty((heights.size, n_pixels, n_pixels), dtype=np.float32)
    # A compiled loop, one thread per row of voxels summing the angles in order: the bytes do not
    # depend on the thread count, and no per-angle temporaries of the volume's size are made.
    from aiax_bench.recon._cone_kernel import fdk_backproject

    for z0 in range(0, heights.size, slab):
        fdk_backproject(padded, np.cos(angles), np.sin(angles), np.asarray(weights, dtype=np.float64), coords,
                        heights[z0:z0 + slab], float(sod), float(sdd), float(g.axis_offset), float(g.det_spacing),
                        float(g.row_spacing), float(col_centre), float(row_centre), out[z0:z0 + slab])
    return out


class ConeBeamProjector:
    """Forward and back projection of a volume in a circular cone-beam geometry, matrix-free.

    Each ray runs from the source to a detector pixel's centre through the
    volume with Joseph's model in three dimensions: it steps over the image
    axis its in-plane direction is closest to (one step per column or row, as
    the fan-beam projector does in the orbit's plane) and interpolates
    bilinearly in the other in-plane axis and along the rotation axis;
    each sample weighs the ray's length per step. ``backward`` applies the same
    weights transposed, so it is ``forward``'s adjoint (to float32 rounding).
    Weights are computed angle by angle and kept within ``cache_bytes``.

    Parameters
    ----------
    geometry : ConeBeamGeometry
        Distances and detector layout (voxel units).
    angles : array_like
        Source angles in radians.
    n_pixels, n_slices : int
        The volume ``(n_slices, n_pixels, n_pixels)``.
    n_rows, n_detector : int
        Detector rows and columns.
    device : str or torch.device, optional
        Where the products run (CPU by default).
    cache_bytes : int
        Memory the per-angle sample indices and weights may be kept in (12 bytes per sample, four samples
        per step of every ray); angles beyond it are recomputed at each call.

    Notes
    -----
    Projections are ``(A, R, D)`` images, as :func:`fdk` takes them. In the
    orbit's plane a ray is the fan-beam ray of
    :class:`~aiax_bench.recon.FanBeamProjector` with the same distances, and a
    volume's middle slice projects onto the middle detector row as that
    projector projects it. The forward sum over steps runs in a fixed order
    with elementwise operations (its bytes do not depend on the thread count);
    the back projection accumulates with ``index_add_``, whose order may.
    """

    def __init__(self, geometry: ConeBeamGeometry, angles, *, n_pixels: int, n_slices: int, n_rows: int,
                 n_detector: int, device: str | torch.device | None = None, cache_bytes: int = 1 << 30) -> None:
        from aiax_bench.recon.fan import FanBeamProjector

        if not isinstance(geometry, ConeBeamGeometry):
            raise InputError("geometry", f"is {type(geometry).__name__}", "a ConeBeamGeometry")
        self.geometry = geometry
        self.angles = check_angles(angles)
        self.n_pixels = _positive_int(n_pixels, "n_pixels", "volume width in voxels")
        self.n_slices = _positive_int(n_slices, "n_slices", "volume height in voxels")
        self.n_rows = _positive_int(n_rows, "n_rows", "detector rows")
        self.n_detector = _positive_int(n_detector, "n_detector", "detector columns")
        self.device = torch.device(device or "cpu")
        per_angle = 12 * 4 * self.n_pixels * self.n_rows * self.n_detector
        self._cached = min(self.angles.size, int(cache_bytes) // per_angle)
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # The in-plane rays are the fan-beam projector's: one definition of the geometry.
        self._fan = FanBeamProjector(self.n_pixels, self.angles, n_detector=self.n_detector,
                                     det_spacing=geometry.det_spacing, source_origin=geometry.source_origin,
                                     origin_detector=geometry.origin_detector,
                                     detector_offset=geometry.detector_offset, axis_offset=geometry.axis_offset,
                                     lazy=True)

    @property
    def volume_shape(self) -> tuple[int, int, int]:
        return (self.n_slices, self.n_pixels, self.n_pixels)

    @property
    def data_shape(self) -> tuple[int, int, int]:
        return (self.angles.size, self.n_rows, self.n_detector)

    def _samples(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat voxel indices ``(N, 4, R, D)`` and weights of angle ``k``'s rays (kept for the first angles)."""
        if k in self._cache:
            return self._cache[k]
        samples = self._compute_samples(k)
        if k < self._cached:
            self._cache[k] = samples
        return samples

    def _ray_geometry(self, k: int) -> tuple[np.ndarray, ...]:
        """Angle ``k``'s rays: ``pos``, ``depth`` (N, D); ``slope``, ``step_len`` (R, D); ``by_column`` (D,).

        ``pos`` is each step's position along the interpolated in-plane axis (pixel index), ``depth``
        its in-plane distance from the source, ``slope`` the ray's height per in-plane length and
        ``step_len`` its length per step.
        """
        g, n = self.geometry, self.n_pixels
        cos, sin, u = (np.broadcast_to(t, (1, self.n_detector))[0]
                       for t in self._fan._rays(self.angles[k:k + 1]))
        by_column, main, pos = joseph_steps(n, cos, sin, u)
        pos = pos.T  # position along the interpolated in-plane axis (pixel index), (N steps, D)
        centre = (n - 1) / 2.0
        steps = np.arange(n, dtype=np.float64) - centre
        # The step's point in the plane, to place it along the ray from the source.
        px = np.where(by_column[None, :], steps[:, None], pos - centre)
        py = np.where(by_column[None, :], pos - centre, steps[:, None])
        sx, sy = source_position(self.angles[k], source_origin=g.source_origin, axis_offset=g.axis_offset)
        depth = np.hypot(px - sx, py - sy)  # in-plane distance from the source, (N, D)
        in_plane = np.hypot(g.source_detector, self._fan.detector_positions())  # source to pixel, (D,)
        v = (np.arange(self.n_rows) - (self.n_rows - 1) / 2) * g.row_spacing + g.row_offset  # (R,)
        slope = v[:, None] / in_plane[None, :]  # height per in-plane length, (R, D)
        step_len = (1.0 / np.abs(main))[None, :] * np.sqrt(1.0 + slope**2)  # (R, D)
        return (np.ascontiguousarray(pos), np.ascontiguousarray(depth), np.ascontiguousarray(slope),
                np.ascontiguousarray(step_len), np.ascontiguousarray(by_column))

    def _compute_samples(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, nz = self.n_pixels, self.n_slices
        pos, depth, slope, step_len, by_column = self._ray_geometry(k)
        zpos = slope[None] * depth[:, None, :] + (nz - 1) / 2.0  # (N, R, D)
        p_low = np.floor(pos)
        fp = pos - p_low
        z_low = np.floor(zpos)
        fz = zpos - z_low
        p_low = p_low.astype(np.int64)[:, None, :]
        z_low = z_low.astype(np.int64)
        stride = np.where(by_column, n, 1)[None, None, :]  # interpolated axis: rows when stepping over columns
        step_stride = np.where(by_column, 1, n)[None, None, :]
        k_index = np.arange(n)[:, None, None]
        indices, weights = [], []
        for dz, wz in ((0, 1.0 - fz), (1, fz)):
            for dp, wp in ((0, 1.0 - fp[:, None, :]), (1, fp[:, None, :])):
                zi, pi = z_low + dz, p_low + dp
                valid = (zi >= 0) & (zi < nz) & (pi >= 0) & (pi < n)
                flat = zi * (n * n) + pi * stride + k_index * step_stride
                indices.append(np.where(valid, flat, 0))
                weights.append(np.where(valid, wz * wp * step_len[None], 0.0))
        index = torch.from_numpy(np.stack(indices, axis=1)).to(self.device)  # (N, 4, R, D)
        weight = torch.from_numpy(np.stack(weights, axis=1).astype(np.float32)).to(self.device)
        return index, weight

    def forward(self, volume) -> torch.Tensor | np.ndarray:
        """Line integrals ``(A, R, D)`` of a volume ``(n_slices, n_pixels, n_pixels)`` (attenuation per voxel)."""
        as_numpy = not isinstance(volume, torch.Tensor)
        x = torch.as_tensor(np.asarray(volume) if as_numpy else volume, dtype=torch.float32).to(self.device)
        if tuple(x.shape) != self.volume_shape:
            raise InputError("volume", f"has shape {tuple(x.shape)}", f"expected {self.volume_shape}")
        flat = x.reshape(-1)
        # On the CPU a compiled loop computes the samples where it uses them: the same bytes, far less time.
        out = self._forward_compiled(flat) if self.device.type == "cpu" else self._forward_tensor(flat)
        return out.cpu().numpy() if as_numpy else out

    def _forward_compiled(self, flat: torch.Tensor) -> torch.Tensor:
        from aiax_bench.recon._cone_kernel import cone_forward_angle

        out = torch.empty(self.data_shape, dtype=torch.float32)
        volume, target = flat.contiguous().numpy(), out.numpy()
        for k in range(self.angles.size):
            pos, depth, slope, step_len, by_column = self._ray_geometry(k)
            cone_forward_angle(volume, self.n_pixels, self.n_slices, pos, depth, slope, step_len, by_column,
                               target[k])
        return out

    def _forward_tensor(self, flat: torch.Tensor) -> torch.Tensor:
        out = torch.empty(self.data_shape, dtype=torch.float32, device=flat.device)
        for k in range(self.angles.size):
            index, weight = self._samples(k)
            total = torch.zeros(self.data_shape[1:], dtype=torch.float32, device=flat.device)
            for step in range(index.shape[0]):  # a fixed order of elementwise sums
                for corner in range(4):
                    total += flat.take(index[step, corner]) * weight[step, corner]
            out[k] = total
        return out

    def backward(self, projections) -> torch.Tensor | np.ndarray:
        """The adjoint: projections ``(A, R, D)`` spread back over the volume ``(n_slices, n_pixels, n_pixels)``."""
        as_numpy = not isinstance(projections, torch.Tensor)
        p = torch.as_tensor(np.asarray(projections) if as_numpy else projections,
                            dtype=torch.float32).to(self.device)
        if tuple(p.shape) != self.data_shape:
            raise InputError("projections", f"have shape {tuple(p.shape)}", f"expected {self.data_shape}")
        flat = torch.zeros(math.prod(self.volume_shape), dtype=torch.float32, device=self.device)
        for k in range(self.angles.size):
            index, weight = self._samples(k)
            flat.index_add_(0, index.reshape(-1), (weight * p[k][None, None]).reshape(-1))
        volume = flat.reshape(self.volume_shape)
        return volume.cpu().numpy() if as_numpy else volume
