"""Parallel-beam projector as a sparse matrix, batched over slices.

The geometry is the one of a synchrotron or a lab CT with a parallel beam:
the rotation axis is the volume's first axis (``z``), each slice ``vol[z]``
is projected independently onto detector row ``z``. Within a slice, pixel
``(i, j)`` has centre ``(x, y) = (j - (N-1)/2, i - (N-1)/2)`` in pixel units
and the detector coordinate of a point is ``u = x cos(theta) + y sin(theta)``.

The system matrix uses Joseph's linear-interpolation ray model, the model of
astra-toolbox's ``linear`` parallel projector. Storing it explicitly costs
memory (about 12 bytes per non-zero, two copies) but turns projection into
one multi-threaded sparse-dense product for a whole stack of slices, which is
what makes it fast on CPUs; on CUDA the same matrices run on the GPU.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from aiax_bench.errors import InputError
from aiax_bench.recon.device import default_device

__all__ = ["ParallelBeamProjector", "operator_nbytes"]


def operator_nbytes(n_pixels: int, n_angles: int, n_detector: int | None = None) -> int:
    """Memory of the stored operator in bytes (forward and transposed matrix).

    Parameters
    ----------
    n_pixels : int
        Slice width and height (voxels).
    n_angles : int
        Number of projection angles.
    n_detector : int, optional
        Detector width (pixels); defaults to ``n_pixels``.
    """
    n_detector = n_pixels if n_detector is None else n_detector
    nnz = 2 * n_angles * n_detector * n_pixels
    # values float32 + column index int32 per non-zero, plus row pointers; two copies.
    return 2 * (nnz * 8 + (n_angles * n_detector + 1) * 4)


def _check_angles(angles: np.ndarray) -> np.ndarray:
    angles = np.asarray(angles, dtype=np.float64).ravel()
    if angles.size == 0:
        raise InputError("angles", "got zero projection angles", "pass at least one angle (radians)")
    if not np.all(np.isfinite(angles)):
        raise InputError("angles", "contain NaN or infinite values", "pass finite angles in radians")
    return angles


def _joseph_coo(n: int, angles: np.ndarray, n_det: int, det_spacing: float):
    """Rows, columns and weights of Joseph's model for a chunk of angles."""
    centre = (n - 1) / 2.0
    det_u = (np.arange(n_det) - (n_det - 1) / 2.0) * det_spacing
    steps = np.arange(n, dtype=np.float64) - centre
    rows, cols, vals = [], [], []
    for local, theta in enumerate(angles):
        c, s = math.cos(theta), math.sin(theta)
        ray_ids = (local * n_det + np.arange(n_det))[:, None]
        if abs(s) >= abs(c):
            # The ray crosses every column once: step over x, interpolate in y.
            pos = (det_u[:, None] - steps[None, :] * c) / s + centre
            step_idx = np.broadcast_to(np.arange(n), pos.shape)
            weight = 1.0 / abs(s)
            column_major = True
        else:
            pos = (det_u[:, None] - steps[None, :] * s) / c + centre
            step_idx = np.broadcast_to(np.arange(n), pos.shape)
            weight = 1.0 / abs(c)
            column_major = False
        lo = np.floor(pos).astype(np.int64)
        frac = pos - lo
        for idx, w in ((lo, 1.0 - frac), (lo + 1, frac)):
            ok = (idx >= 0) & (idx < n) & (w > 0)
            r = np.broadcast_to(ray_ids, pos.shape)[ok]
            if column_major:
                pix = idx[ok] * n + step_idx[ok]
            else:
                pix = step_idx[ok] * n + idx[ok]
            rows.append(r)
            cols.append(pix)
            vals.append((w[ok] * weight).astype(np.float32))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def _csr(rows, cols, vals, shape) -> torch.Tensor:
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    crow = np.zeros(shape[0] + 1, dtype=np.int64)
    np.add.at(crow, rows + 1, 1)
    crow = np.cumsum(crow)
    index_dtype = torch.int32 if len(vals) < 2**31 else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow).to(index_dtype),
            torch.from_numpy(cols).to(index_dtype),
            torch.from_numpy(vals),
            size=shape,
            check_invariants=False,
        )


@dataclass
class ParallelBeamProjector:
    """Forward and back projection of slice stacks in parallel-beam geometry.

    Parameters
    ----------
    n_pixels : int
        Slice width and height in voxels (slices are square).
    angles : array_like
        Projection angles in radians.
    n_detector : int, optional
        Detector width in pixels; defaults to ``n_pixels``.
    det_spacing : float
        Detector pixel size in voxel units.
    device : str or torch.device, optional
        Where the operator lives; CUDA when available, else CPU.
    angle_chunk : int
        Angles per block when building the matrix (bounds temporary memory).

    Notes
    -----
    ``forward`` maps ``(..., N, N)`` slices to ``(..., A, D)`` sinograms and
    ``backward`` is its exact adjoint (the transpose of the same matrix), so
    ``<A x, y> == <x, A^T y>`` to float32 rounding.
    """

    n_pixels: int
    angles: np.ndarray
    n_detector: int | None = None
    det_spacing: float = 1.0
    device: str | torch.device | None = None
    angle_chunk: int = 64
    _matrix: torch.Tensor = field(init=False, repr=False)
    _matrix_t: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if int(self.n_pixels) < 1:
            raise InputError("n_pixels", f"is {self.n_pixels}", "use a positive slice size in voxels")
        self.angles = _check_angles(self.angles)
        self.n_detector = int(self.n_detector or self.n_pixels)
        if self.det_spacing <= 0:
            raise InputError("det_spacing", f"is {self.det_spacing}", "use a positive detector pixel size")
        self.device = torch.device(self.device) if self.device is not None else default_device()
        n, d = int(self.n_pixels), self.n_detector
        parts = [
            _joseph_coo(n, self.angles[a : a + self.angle_chunk], d, self.det_spacing)
            for a in range(0, self.angles.size, self.angle_chunk)
        ]
        offsets = np.cumsum([0] + [min(self.angle_chunk, self.angles.size - a) * d
                                   for a in range(0, self.angles.size, self.angle_chunk)])
        rows = np.concatenate([p[0] + off for p, off in zip(parts, offsets)])
        cols = np.concatenate([p[1] for p in parts])
        vals = np.concatenate([p[2] for p in parts])
        del parts
        shape = (self.angles.size * d, n * n)
        self._matrix = _csr(rows, cols, vals, shape).to(self.device)
        self._matrix_t = _csr(cols, rows, vals, shape[::-1]).to(self.device)

    @property
    def shape(self) -> tuple[int, int]:
        """(rays, pixels) of the system matrix."""
        return tuple(self._matrix.shape)

    @property
    def nbytes(self) -> int:
        """Memory held by the operator in bytes."""
        total = 0
        for m in (self._matrix, self._matrix_t):
            total += sum(t.numel() * t.element_size()
                         for t in (m.crow_indices(), m.col_indices(), m.values()))
        return total

    def _apply(self, matrix: torch.Tensor, data, in_shape: tuple[int, int], out_shape: tuple[int, int]):
        as_numpy = isinstance(data, np.ndarray)
        x = torch.as_tensor(data, dtype=torch.float32, device=self.device)
        if tuple(x.shape[-2:]) != in_shape:
            raise InputError("input", f"has trailing shape {tuple(x.shape[-2:])}",
                             f"expected (..., {in_shape[0]}, {in_shape[1]})")
        lead = x.shape[:-2]
        flat = x.reshape(-1, in_shape[0] * in_shape[1]).T.contiguous()
        out = (matrix @ flat).T.reshape(*lead, *out_shape)
        return out.cpu().numpy() if as_numpy else out

    def forward(self, slices):
        """Project slices ``(..., N, N)`` to sinograms ``(..., A, D)``.

        Numpy in gives numpy out; a tensor stays a tensor on the operator's device.
        """
        n = int(self.n_pixels)
        return self._apply(self._matrix, slices, (n, n), (self.angles.size, self.n_detector))

    def backward(self, sinograms):
        """Back-project sinograms ``(..., A, D)`` to slices ``(..., N, N)`` (adjoint of ``forward``)."""
        n = int(self.n_pixels)
        return self._apply(self._matrix_t, sinograms, (self.angles.size, self.n_detector), (n, n))
