"""Exact projections of phantoms, free of the inverse crime.

Projections are never computed with the discrete operator that reconstructs:
phantoms made of spheres in a cylinder are projected analytically (chord
lengths); other phantoms are rendered from their continuous description on a
grid finer than the reconstruction grid and projected there
(:func:`project_voxels`). Either way each detector pixel is sampled several
times across and along the rotation axis, and the detector averages transmitted
*intensity* over each pixel, as a real one does (this is what makes
partial-volume edges non-linear in the line integral).

The projections are the same bytes whatever the number of threads: every sum
over sub-rays or phases is written out in a fixed order (torch's reductions
and BLAS group terms by thread count and CPU), and the projector's products
do not depend on threads either (see :mod:`aiax_bench.recon.projector`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from aiax_bench.errors import InputError
from aiax_bench.mkl_mode import use_compatible_mkl
from aiax_bench.recon.projector import ParallelBeamProjector, check_angles, operator_nbytes
from aiax_bench.sim._sphere_kernel import subtract_void_chords
from aiax_bench.sim.phantoms import Phantom, render_fractions
from aiax_bench.validation import check_positive_int

__all__ = ["PROJECTION_METHODS", "FineOperators", "project_phantom", "project_voxels"]


def _detector_average(line_integrals: torch.Tensor, sz: int, su: int) -> np.ndarray:
    """``-log`` of the mean transmitted intensity over each pixel's ``sz x su`` sub-rays.

    Parameters
    ----------
    line_integrals : torch.Tensor
        Sub-ray line integrals ``(rows * sz, A, D * su)``, float64 (float32 is widened).
    sz, su : int
        Sub-rays per detector pixel along and across the rotation axis.

    Returns
    -------
    numpy.ndarray
        ``float32`` line integrals ``(rows, A, D)``.

    Notes
    -----
    The sum runs over the sub-rays one at a time in a fixed order, with
    elementwise additions only: ``Tensor.mean`` would group the terms by
    thread count and vector width, and the bytes would follow the machine.
    Computing in float64 keeps the last float32 bit away from the few-ulp
    differences of ``exp`` and ``log`` between CPUs, except where the mean
    transmission is close to 1 (grazing rays): there MKL's compatible code
    path decides it (:mod:`aiax_bench.mkl_mode`).
    """
    use_compatible_mkl()  # torch's exp and log are MKL's: its compatible path, the published bytes
    rows_sub, n_angles, cols_sub = line_integrals.shape
    t = torch.exp(-line_integrals.to(torch.float64)).reshape(rows_sub // sz, sz, n_angles, cols_sub // su, su)
    total = t[:, 0, :, :, 0].clone()
    for k in range(1, sz * su):
        total += t[:, k // su, :, :, k % su]
    return (-torch.log(total / (sz * su))).to(torch.float32).numpy()


def _angle_groups(n_angles: int) -> list[np.ndarray]:
    """Consecutive angle indices, one group per thread (``torch.get_num_threads()``): each angle is one thread's,
    whole, so the bytes do not depend on how many there are."""
    return np.array_split(np.arange(n_angles), max(1, min(torch.get_num_threads(), n_angles)))


def _sub_rows_and_voids(z0: int, z1: int, sz: int, spheres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sub-ray heights of detector rows ``[z0, z1)`` (``sz`` per row, voxel indices) and the voids that reach
    them, C-ordered for the compiled kernels."""
    z_sub = (np.arange(z0 * sz, z1 * sz) + 0.5) / sz - 0.5
    near = spheres[(spheres[:, 0] - spheres[:, 3] < z_sub[-1]) & (spheres[:, 0] + spheres[:, 3] > z_sub[0])]
    return z_sub, np.ascontiguousarray(near)


def _subtract_voids(path: np.ndarray, u: np.ndarray, z_sub: np.ndarray, spheres: np.ndarray, cos: np.ndarray,
                    sin: np.ndarray, *, centre: float, su: int) -> None:
    """:func:`~aiax_bench.sim._sphere_kernel.subtract_void_chords` on groups of angles in threads.

    Angles are independent and each is computed whole by one thread, so the
    bytes do not depend on the number of threads (``torch.get_num_threads()``).
    """
    from concurrent.futures import ThreadPoolExecutor

    groups = _angle_groups(cos.size)

    def run(angles: np.ndarray) -> None:
        a0, a1 = int(angles[0]), int(angles[-1]) + 1
        subtract_void_chords(path[:, a0:a1], u, z_sub, spheres, cos[a0:a1], sin[a0:a1], centre, su)

    if len(groups) == 1:
        run(groups[0])
        return
    with ThreadPoolExecutor(len(groups)) as pool:
        list(pool.map(run, groups))


#: How :func:`project_phantom` may project (recipe ``acquisition.projection``).
PROJECTION_METHODS = ("auto", "analytic", "voxels")


def _analytic_voids(phantom: Phantom) -> tuple[np.ndarray, float]:
    """The voids ``(S, 4)`` (``z, y, x``, radius in voxels) of a phantom of empty spheres in a cylinder, and the
    radius their chords are clipped to: the cylinder's for a cut sample, ``inf`` for a closed one."""
    from aiax_bench.sim.phantoms.shapes import Spheres

    if phantom.spheres is not None:
        return np.ascontiguousarray(phantom.spheres, dtype=np.float64), math.inf
    groups, mu = phantom.inclusions, phantom.attenuation
    # Air (phase 0) and voids empty, everything else the one solid of phase 1: the chords' model.
    one_solid = len(mu) >= 2 and mu[0] == 0 and all(m in (0, mu[1]) for m in mu)
    empty_balls = bool(groups) and all(isinstance(g, Spheres) and mu[g.label] == 0 for g in groups)
    if not (one_solid and empty_balls and "cylinder_radius" in phantom.params):
        raise InputError("method", "is 'analytic'",
                         "a phantom of empty spherical voids in one solid cylinder; project this one as 'voxels'")
    centres = np.concatenate([g.centres for g in groups])
    radii = np.concatenate([g.radii for g in groups])
    spheres = np.ascontiguousarray(np.column_stack([centres, radii]), dtype=np.float64)
    cut = phantom.params.get("surface") == "cut"
    return spheres, float(phantom.params["cylinder_radius"]) * phantom.shape[2] if cut else math.inf


def _chord_geometry(phantom: Phantom, su: int) -> tuple[int, int, float, float, float, np.ndarray]:
    """Rows ``Z`` and width ``N`` of the detector, the solid's attenuation (1/voxel), the cylinder's radius and
    the slice centre (voxels), and the ``N * su`` sub-ray positions across the detector from the centre."""
    n_z, n, _ = phantom.shape
    centre = (n - 1) / 2
    return (n_z, n, phantom.attenuation[1] * phantom.voxel_size_um * 1e-4,
            float(phantom.params["cylinder_radius"]) * n, centre, ((np.arange(n * su) + 0.5) / su - 0.5) - centre)


def _project_chords(phantom: Phantom, angles: np.ndarray, *, su: int, sz: int, row_batch: int,
                    progress=None) -> np.ndarray:
    """``method="analytic"`` of :func:`project_phantom`: :func:`~aiax_bench.sim._sphere_kernel.project_void_chords`
    on groups of angles in threads, a batch of rows at a time (each angle is one thread's, whole)."""
    from concurrent.futures import ThreadPoolExecutor

    from aiax_bench.sim._sphere_kernel import project_void_chords

    spheres, clip_radius = _analytic_voids(phantom)
    n_z, n, mu, radius, centre, u = _chord_geometry(phantom, su)
    cos, sin = np.cos(angles), np.sin(angles)
    out = np.empty((n_z, angles.size, n), dtype=np.float32)
    groups = _angle_groups(angles.size)
    with ThreadPoolExecutor(len(groups)) as pool:
        for z0 in range(0, n_z, row_batch):
            z1 = min(z0 + row_batch, n_z)
            z_sub, near = _sub_rows_and_voids(z0, z1, sz, spheres)

            def run(group: np.ndarray, z0: int = z0, z1: int = z1, z_sub: np.ndarray = z_sub,
                    near: np.ndarray = near) -> None:
                a0, a1 = int(group[0]), int(group[-1]) + 1
                project_void_chords(out[z0:z1, a0:a1], u, z_sub, near, cos[a0:a1], sin[a0:a1], centre, su,
                                    radius, clip_radius, mu)

            list(pool.map(run, groups))
            if progress is not None:
                progress(z1 - z0)
    return out


def project_phantom(
    phantom: Phantom,
    angles,
    *,
    supersample_u: int = 4,
    supersample_z: int = 2,
    row_batch: int = 16,
    progress=None,
    device=None,
    operators: FineOperators | None = None,
    method: str = "auto",
) -> np.ndarray:
    """Line integrals of the phantom's attenuation, as a detector measures them.

    Phantoms made of spherical voids in a cylinder can be projected
    analytically (chord lengths); any phantom can be passed to
    :func:`project_voxels` with a grid ``supersample_z`` times finer than its
    voxels. ``method`` chooses (see :data:`PROJECTION_METHODS`).

    Parameters
    ----------
    phantom : Phantom
        The phantom; rows of the detector are its ``z`` slices.
    angles : array_like
        Projection angles (radians).
    supersample_u, supersample_z : int
        Sub-rays per detector pixel across and along the rotation axis.
    row_batch : int
        Detector rows computed together (bounds memory).
    progress : callable, optional
        Called with the number of rows finished after each batch.
    device : str or torch.device, optional
        Where voxel phantoms are projected (see :func:`project_voxels`); analytic projection runs on the CPU.
    operators : FineOperators, optional
        Where :func:`project_voxels` keeps its operators between calls.
    method : {"auto", "analytic", "voxels"}
        ``"analytic"``: chord lengths through the cylinder less its voids, for
        a phantom of empty spherical voids in a cylinder, voids a cut sample's
        surface opens clipped to it; the pixel average is computed in one
        compiled pass with :mod:`aiax_bench.sim._ieee_math`'s ``exp`` and
        ``log``. ``"voxels"``: :func:`project_voxels`. ``"auto"``: what the
        recipes before ``acquisition.projection`` were built with: chords
        where ``phantom.spheres`` is set (a closed sample), averaged with
        torch's ``exp`` and ``log``, else voxels.

    Returns
    -------
    numpy.ndarray
        ``float32`` line integrals ``-log(I / I0)`` (dimensionless), shape ``(Z, A, D)``
        with ``D`` the volume width; detector row ``z`` sees slice ``z``.
    """
    angles = check_angles(angles)
    su, sz = check_positive_int("supersample_u", supersample_u), check_positive_int("supersample_z", supersample_z)
    row_batch = check_positive_int("row_batch", row_batch)
    if method not in PROJECTION_METHODS:
        raise InputError("method", f"is {method!r}", f"expected one of {', '.join(PROJECTION_METHODS)}")
    if method == "voxels" or (method == "auto" and phantom.spheres is None):
        return project_voxels(phantom, angles, supersample=sz, supersample_u=su, row_batch=row_batch,
                              progress=progress, device=device, operators=operators)
    if method == "analytic":
        return _project_chords(phantom, angles, su=su, sz=sz, row_batch=row_batch, progress=progress)
    n_z, n, mu_solid, radius, centre, u = _chord_geometry(phantom, su)
    cos, sin = np.cos(angles), np.sin(angles)
    spheres = np.ascontiguousarray(phantom.spheres, dtype=np.float64)
    # numpy's float64 square root is correctly rounded, so these bytes do not follow the CPU.
    cylinder = 2.0 * np.sqrt(np.maximum(radius * radius - u * u, 0.0))
    out = np.empty((n_z, angles.size, n), dtype=np.float32)
    for z0 in range(0, n_z, row_batch):
        z1 = min(z0 + row_batch, n_z)
        z_sub, near = _sub_rows_and_voids(z0, z1, sz, spheres)
        path = np.repeat(np.repeat(cylinder[None, None], z_sub.size, axis=0), angles.size, axis=1)
        _subtract_voids(path, u, z_sub, near, cos, sin, centre=centre, su=su)
        out[z0:z1] = _detector_average(torch.from_numpy(mu_solid * np.maximum(path, 0.0)), sz, su)
        if progress is not None:
            progress(z1 - z0)
    return out


def project_voxels(
    phantom: Phantom,
    angles,
    *,
    supersample: int = 2,
    supersample_u: int | None = None,
    partial_volume: int = 2,
    row_batch: int = 8,
    angle_batch: int = 64,
    progress=None,
    device=None,
    operators: FineOperators | None = None,
) -> np.ndarray:
    """Line integrals of a phantom projected on a grid finer than its voxels.

    The phantom is rendered from its continuous description (inclusions in a
    cylinder, see :func:`aiax_bench.sim.phantoms.render_fractions`) on a grid
    ``supersample`` times finer than its voxels, with partial-volume fractions,
    and projected there with Joseph's model on a detector sampled
    ``supersample`` times per pixel along the rotation axis and
    ``supersample_u`` times across it. Each detector pixel averages the
    transmitted intensity of its sub-rays. A reconstruction on the phantom's own
    grid therefore never uses the operator that made its data (no inverse crime).
    A phantom known only as voxels has each voxel repeated on the fine grid.

    Parameters
    ----------
    phantom : Phantom
        The phantom (square slices); detector row ``z`` sees slice ``z``.
    angles : array_like
        Projection angles (radians).
    supersample : int
        Refinement of the projection grid and sub-rays per pixel along ``z``.
    supersample_u : int, optional
        Sub-rays per detector pixel across; defaults to ``supersample``.
    partial_volume : int
        Sub-samples per fine-voxel edge where a boundary crosses it.
    row_batch : int
        Detector rows projected together (bounds memory; on CPUs the sparse
        product is fastest with about 16 fine slices at a time).
    angle_batch : int
        Angles per operator: the operator on the fine grid takes about
        ``24 * angle_batch * (Y * supersample) * (X * supersample_u)`` bytes.
    progress : callable, optional
        Called with the number of detector rows finished, as they finish.
    device : str or torch.device, optional
        Where to project; see :class:`aiax_bench.recon.ParallelBeamProjector`.
    operators : FineOperators, optional
        Where the fine grid's operators are kept between calls of one geometry
        (a dataset build projects every sample at the same angles); by default
        each call builds its own.

    Returns
    -------
    numpy.ndarray
        ``float32`` line integrals ``-log(I / I0)`` (dimensionless), shape ``(Z, A, X)``.

    Notes
    -----
    The fine attenuation volume takes ``4 * Z * Y * X * supersample³`` bytes
    (64 MiB for 128³ at ``supersample=2``, 4 GiB for 512³): up to
    :data:`FINE_GRID_MEMORY_BYTES` it is kept in memory, beyond that in a
    temporary file read back one batch of rows at a time. Operators are built
    per block of angles, at most :data:`OPERATOR_BLOCK_BYTES` each (64 angles
    at 128³, 21 at 512³ with 4 sub-rays across a pixel), holding the forward
    matrix only, and kept for the next call where ``operators`` allows. Neither
    changes a bit of the result: every ray is summed alone, whatever its block.
    """
    angles = check_angles(angles)
    s = check_positive_int("supersample", supersample)
    su = s if supersample_u is None else check_positive_int("supersample_u", supersample_u)
    pv = check_positive_int("partial_volume", partial_volume)
    row_batch, angle_batch = check_positive_int("row_batch", row_batch), check_positive_int("angle_batch", angle_batch)
    n_z, n_y, n = phantom.shape
    if n_y != n:
        raise InputError("phantom", f"has slices of {n_y} x {n} voxels", "expected square slices")
    mu = np.asarray(phantom.attenuation, dtype=np.float32) * np.float32(phantom.voxel_size_um * 1e-4 / s)
    fine = _FineGrid((n_z * s, n * s, n * s))  # attenuation per fine voxel
    for z0 in range(0, n_z, row_batch):
        z1 = min(z0 + row_batch, n_z)
        fractions = render_fractions(phantom, scale=s, supersample=pv, rows=(z0, z1))
        # Phase by phase in a fixed order, not np.tensordot: BLAS picks its kernel (and rounding) by CPU.
        part = np.multiply(mu[0], fractions[0])
        for mu_k, fraction in zip(mu[1:], fractions[1:], strict=True):
            part += mu_k * fraction
        fine.write(z0 * s, part)
        del fractions, part
    # Each ray's sum is its own, so fewer angles per operator change no bit of the result.
    angle_batch = min(angle_batch, max(1, OPERATOR_BLOCK_BYTES // (24 * (n * s) * (n * su))))
    out = np.empty((n_z, angles.size, n), dtype=np.float32)
    operators = FineOperators(0) if operators is None else operators
    try:
        for a0, a1, proj in operators.blocks(n * s, angles, n_detector=n * su, det_spacing=s / su,
                                             angle_batch=angle_batch, device=device):
            last = a1 == angles.size
            for z0 in range(0, n_z, row_batch):
                z1 = min(z0 + row_batch, n_z)
                sino = proj.forward(torch.from_numpy(fine.read(z0 * s, z1 * s))).cpu()
                out[z0:z1, a0:a1] = _detector_average(sino, s, su)
                if progress is not None and last:
                    progress(z1 - z0)
            del proj
    finally:
        fine.close()
    return out


class FineOperators:
    """The fine grid's forward operators of :func:`project_voxels`, kept between calls within ``max_bytes``.

    A call's operators are kept whole or not at all: a dataset build projects
    sample after sample at the same angles, so a part kept of a set too large
    for the budget would be dropped before its next use. Those that fit are
    kept for the cache's life, first come first kept. An operator is a
    function of its geometry alone, so keeping one changes time, never bytes.
    One cache serves one thread (a build process projects one phantom at a time).

    Parameters
    ----------
    max_bytes : int
        Most memory the kept operators may take (bytes); 0 keeps none.

    Attributes
    ----------
    kept : dict
        The kept blocks ``(a0, a1, projector)`` of each geometry and set of angles.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.kept: dict[tuple, list[tuple[int, int, ParallelBeamProjector]]] = {}

    @property
    def nbytes(self) -> int:
        """Memory held by the kept operators (bytes)."""
        return sum(proj.nbytes for blocks in self.kept.values() for _, _, proj in blocks)

    def blocks(self, n_pixels: int, angles: np.ndarray, *, n_detector: int, det_spacing: float, angle_batch: int,
               device: str | torch.device | None = None) -> Iterator[tuple[int, int, ParallelBeamProjector]]:
        """The forward operators of ``angles`` on an ``n_pixels``² grid, block by block.

        Parameters
        ----------
        n_pixels : int
            Fine grid's slice width (fine voxels).
        angles : numpy.ndarray
            Projection angles (radians).
        n_detector : int
            Sub-rays across the detector.
        det_spacing : float
            Sub-ray spacing (fine voxels).
        angle_batch : int
            Angles per block.
        device : str or torch.device, optional
            Where the operators live.

        Yields
        ------
        tuple
            ``(a0, a1, projector)``: the block's angles ``[a0, a1)`` and its projector, kept or built now.
        """
        key = (n_pixels, np.asarray(angles).tobytes(), n_detector, det_spacing, angle_batch, str(device))
        if key in self.kept:
            yield from self.kept[key]
            return
        whole = operator_nbytes(n_pixels, angles.size, n_detector, matrices="forward")
        keep = whole <= self.max_bytes - self.nbytes
        built = []
        for a0 in range(0, angles.size, angle_batch):
            a1 = min(a0 + angle_batch, angles.size)
            # Projecting only: the forward matrix alone (the transposed one took as long to build).
            proj = ParallelBeamProjector(n_pixels, angles[a0:a1], n_detector=n_detector, det_spacing=det_spacing,
                                         device=device, matrices="forward")
            if keep:
                built.append((a0, a1, proj))
            yield a0, a1, proj
            del proj
        if keep:
            self.kept[key] = built


#: Largest fine attenuation grid :func:`project_voxels` keeps in memory (bytes); a larger one goes to a
#: temporary file (4 GiB at 512³ with ``supersample=2``).
FINE_GRID_MEMORY_BYTES = 1 << 30
#: Most memory one block of angles' operator on the fine grid may take (bytes).
OPERATOR_BLOCK_BYTES = 1 << 30


class _FineGrid:
    """A float32 volume written and read by slabs of rows: in memory, or in a temporary file when large.

    The file is read with plain reads, not memory-mapped, so its pages stay in
    the page cache and never count as the process's resident memory.
    """

    def __init__(self, shape: tuple[int, int, int]) -> None:
        import tempfile

        self.shape = shape
        self.row_bytes = 4 * shape[1] * shape[2]
        self.array = self.file = None
        if self.row_bytes * shape[0] <= FINE_GRID_MEMORY_BYTES:
            self.array = np.empty(shape, dtype=np.float32)
        else:
            self.file = tempfile.TemporaryFile(prefix="aiax-fine-grid-")  # removed when closed

    def write(self, z0: int, part: np.ndarray) -> None:
        if self.array is not None:
            self.array[z0 : z0 + part.shape[0]] = part
        else:
            self.file.seek(z0 * self.row_bytes)
            self.file.write(np.ascontiguousarray(part, dtype=np.float32).tobytes())

    def read(self, z0: int, z1: int) -> np.ndarray:
        if self.array is not None:
            return self.array[z0:z1]
        self.file.seek(z0 * self.row_bytes)
        data = np.frombuffer(self.file.read((z1 - z0) * self.row_bytes), dtype=np.float32)
        return data.reshape(z1 - z0, *self.shape[1:]).copy()  # writable, as torch.from_numpy wants

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.array = None
