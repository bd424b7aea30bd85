"""Parallel-beam projector as a sparse matrix, batched over slices.

The geometry is the one of a synchrotron or a lab CT with a parallel beam:
the rotation axis is the volume's first axis (``z``), each slice ``vol[z]``
is projected independently onto detector row ``z``. Within a slice, pixel
``(i, j)`` has centre ``(x, y) = (j - (N-1)/2, i - (N-1)/2)`` in pixel units
and the detector coordinate of a point is ``u = x cos(theta) + y sin(theta)``;
detector pixel ``d`` is centred on ``u = (d - (D-1)/2) * det_spacing``.

The system matrix uses Joseph's linear-interpolation ray model, the model of
astra-toolbox's ``linear`` parallel projector (astra's image ``y`` axis points
the other way, so astra's angle ``-theta`` is our ``theta``). Storing it
explicitly costs memory (about 8 bytes per non-zero, two copies) but turns
projection into sparse-dense products over many slices at once, which is what
makes it fast on CPUs; on CUDA the same matrices run on the GPU.

On CPUs the matrix is stored in blocks of a few angles and the slices are
multiplied a few at a time, so that what one product touches stays in cache,
and the products run on ``torch.get_num_threads()`` threads. On CUDA one
product covers all angles. An operator larger than ``max_bytes`` is not
stored: it is rebuilt block by block at every application.

On CPUs the results are the same bytes whatever the number of threads: work
is split so that no sum is ever shared between threads. The forward
projection splits the rays (each block of angles writes its own rows), the
back projection splits the pixels into a fixed number of row ranges, each of
which sums the blocks of angles in angle order. Threads only decide who
computes which part, never how a sum is grouped.
"""

from __future__ import annotations

import itertools
import math
import numbers
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
import torch

from aiax_bench.errors import InputError
from aiax_bench.mkl_mode import compatible_mkl_active
from aiax_bench.recon.device import default_device

__all__ = ["ParallelBeamProjector", "SparseProjector", "check_angles", "operator_nbytes"]

#: Bytes per stored non-zero: a float32 value and an int32 index, in two matrices.
_BYTES_PER_NNZ = 2 * 8
#: Temporary memory (bytes) allowed while generating one chunk of angles.
_BUILD_SCRATCH_BYTES = 256 * 2**20
#: CPU blocking, measured on a 2-core AMD EPYC (1 MB L2 per core, 32 MB L3): angles per
#: stored block, bytes of slices multiplied at once, and the fewest slices per product.
_CPU_BLOCK_ANGLES = 32
_CPU_CACHE_BYTES = 4 * 2**20
_CPU_MIN_SLICES = 8
#: Pixel row ranges the transposed blocks are cut into on CPUs: the units of work of the back
#: projection, shared out among the threads (no sum crosses a range, so the bytes do not depend
#: on how). 16 share out evenly over 1, 2, 4, 8 or 16 threads at no measurable cost.
_CPU_BACK_PARTS = 16
#: Most bytes of slices (or sinograms) in one sparse-dense product on a GPU.
_GPU_PRODUCT_BYTES = 2**30
#: What a projector may keep: both matrices, only the transposed one (back projection, FBP), or only
#: the forward one (simulated projections).
MATRICES = ("both", "backward", "forward")


def operator_nbytes(n_pixels: int, n_angles: int, n_detector: int | None = None, *,
                    matrices: str = "both") -> int:
    """Upper bound of the stored operator's memory in bytes (forward and transposed matrix).

    Parameters
    ----------
    n_pixels : int
        Slice width and height (voxels).
    n_angles : int
        Number of projection angles.
    n_detector : int, optional
        Detector width (pixels); defaults to ``n_pixels``.
    matrices : {'both', 'backward', 'forward'}
        Which matrices are kept (see :class:`SparseProjector`): ``backward``
        counts the transposed one only, ``forward`` the forward one only; each
        is half the memory of both.

    Returns
    -------
    int
        Bytes; Joseph's model has at most two non-zeros per ray and slice column
        (or row), which this counts, so the actual size is a little smaller.
    """
    if matrices not in MATRICES:
        raise InputError("matrices", f"is {matrices!r}", f"one of {list(MATRICES)}")
    n_detector = n_pixels if n_detector is None else n_detector
    nnz = 2 * n_angles * n_detector * n_pixels
    rows = n_angles * n_detector
    if matrices == "backward":
        return nnz * _BYTES_PER_NNZ // 2 + (n_pixels * n_pixels + 1) * 4
    if matrices == "forward":
        return nnz * _BYTES_PER_NNZ // 2 + (rows + 1) * 4
    # values float32 + index int32 per non-zero, plus the row pointers of both copies.
    return nnz * _BYTES_PER_NNZ + (rows + 1 + n_pixels * n_pixels + 1) * 4


def _positive_int(value, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise InputError(name, f"is {value!r}", f"use a positive integer ({what})")
    return int(value)


def check_angles(angles) -> np.ndarray:
    """Projection angles (radians) as a flat float64 array, refusing an empty or non-finite set."""
    angles = np.asarray(angles, dtype=np.float64).ravel()
    if angles.size == 0:
        raise InputError("angles", "got zero projection angles", "pass at least one angle (radians)")
    if not np.all(np.isfinite(angles)):
        raise InputError("angles", "contain NaN or infinite values", "pass finite angles in radians")
    return angles


def joseph_steps(n: int, cos: np.ndarray, sin: np.ndarray, u: np.ndarray):
    """Where Joseph's model samples each ray ``x cos + y sin = u`` of an ``n x n`` slice.

    Rays closer to vertical step over the columns (``x``) and interpolate in
    ``y``, the others the reverse. Returns ``by_column`` and ``main`` (the
    direction cosine of the stepped axis), broadcast like the rays, and the
    position along the interpolated axis in pixel indices at each step,
    shaped ``(*rays, n)``.
    """
    centre = (n - 1) / 2.0
    steps = np.arange(n, dtype=np.float64) - centre
    by_column = np.abs(sin) >= np.abs(cos)
    main = np.where(by_column, sin, cos)
    other = np.where(by_column, cos, sin)
    pos = (u / main + centre)[..., None] - (other / main)[..., None] * steps
    return by_column, main, pos


def _joseph_csr(n: int, cos: np.ndarray, sin: np.ndarray, u: np.ndarray):
    """CSR arrays ``(counts, indices, values)`` of Joseph's model for a set of rays.

    Ray ``(a, d)`` is the line ``x cos + y sin = u`` (pixel units, slice
    centre at 0); ``cos``, ``sin`` and ``u`` broadcast to ``(A, D)``, and the
    rows are the rays in that order. Each ray steps along the image axis it is
    closest to (one step per column or row) and interpolates linearly between
    the two nearest pixels of the other axis, weighting by the step length
    ``1 / max(|cos|, |sin|)``. Entries come out ray by ray, so rows need no
    sorting (columns within a row are not in order).
    """
    n_rays = np.broadcast_shapes(np.shape(cos), np.shape(u))
    by_column, main, pos = joseph_steps(n, cos, sin, u)
    low = np.floor(pos)
    frac = (pos - low).astype(np.float32)
    del pos
    low = low.astype(np.int32)
    step_len = (1.0 / np.abs(main)).astype(np.float32)[..., None, None]
    # Flat pixel index = low * stride + step * step_stride, depending on the stepping axis.
    stride = np.where(by_column, n, 1).astype(np.int32)[..., None]
    step_stride = np.where(by_column, 1, n).astype(np.int32)[..., None]
    pixel_low = low * stride + np.arange(n, dtype=np.int32) * step_stride
    pixel = np.stack((pixel_low, pixel_low + stride), axis=-1)
    valid = np.stack(((low >= 0) & (low < n), (low >= -1) & (low < n - 1)), axis=-1)
    del low, pixel_low
    weight = np.stack((1.0 - frac, frac), axis=-1) * step_len
    del frac
    valid &= weight > 0  # drops exact grid hits, which would store zeros
    counts = valid.reshape(math.prod(n_rays), -1).sum(axis=1)
    return counts, pixel[valid], weight[valid]


def _parallel_rays(angles: np.ndarray, n_det: int, det_spacing: float):
    """``(cos, sin, u)`` of the parallel-beam rays, shapes ``(A, 1)`` and ``(1, D)``."""
    det_u = (np.arange(n_det) - (n_det - 1) / 2.0) * det_spacing
    return np.cos(angles)[:, None], np.sin(angles)[:, None], det_u[None, :]


def _angle_chunk(n: int, n_det: int, limit: int) -> int:
    # About 40 bytes of temporaries per candidate entry (two per ray and step).
    per_angle = 2 * n_det * n * 40
    return max(1, min(limit, _BUILD_SCRATCH_BYTES // per_angle))


def _build_scipy(n: int, angles: np.ndarray, n_det: int, rays, chunk: int):
    """Joseph's matrix for ``angles`` as a scipy CSR matrix (rays x pixels).

    ``rays(angles)`` gives the ``(cos, sin, u)`` of :func:`_joseph_csr` for some angles.
    """
    parts = [_joseph_csr(n, *rays(angles[a : a + chunk])) for a in range(0, angles.size, chunk)]
    counts = np.concatenate([p[0] for p in parts])
    indptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = np.concatenate([p[1] for p in parts])
    values = np.concatenate([p[2] for p in parts])
    del parts
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    matrix = scipy.sparse.csr_matrix((values, indices, indptr), shape=(angles.size * n_det, n * n))
    matrix.has_sorted_indices = False  # the column-stepping rays emit pixels out of order
    return matrix


def _to_torch(matrix: scipy.sparse.csr_matrix, device: torch.device, rows: tuple[int, int] | None = None
              ) -> torch.Tensor:
    """The CSR matrix (or its rows ``[start, stop)``) as a torch CSR tensor on ``device``."""
    start, stop = (0, matrix.shape[0]) if rows is None else rows
    lo, hi = int(matrix.indptr[start]), int(matrix.indptr[stop])
    # int32 indices where they fit: half the memory, and what MKL and cuSPARSE prefer.
    index_dtype = torch.int32 if hi - lo < 2**31 else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr[start : stop + 1] - lo).to(index_dtype),
            torch.from_numpy(matrix.indices[lo:hi]).to(index_dtype),
            torch.from_numpy(matrix.data[lo:hi]),
            size=(stop - start, matrix.shape[1]),
            check_invariants=False,
        ).to(device)


def _transpose(matrix: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
    # CSC of A is CSR of A^T; scipy's counting sort leaves its indices sorted (rays in angle order).
    csc = matrix.tocsc()
    return scipy.sparse.csr_matrix((csc.data, csc.indices, csc.indptr), shape=matrix.shape[::-1])


def _transpose_to_torch(matrix: scipy.sparse.csr_matrix, device: torch.device) -> torch.Tensor:
    return _to_torch(_transpose(matrix), device)


def _workers(device: torch.device, n_tasks: int) -> int:
    # torch's CPU sparse-dense product runs on one thread: independent products are
    # spread over torch's thread count by hand. CUDA queues them on one stream anyway.
    # Callers hand out tasks whose results do not depend on which thread runs them.
    return max(1, min(n_tasks, torch.get_num_threads())) if device.type == "cpu" else 1


def _row_ranges(n_rows: int, n_parts: int) -> list[tuple[int, int]]:
    """``n_parts`` contiguous ranges covering ``[0, n_rows)``, as even as integers allow."""
    n_parts = max(1, min(n_parts, n_rows))
    bounds = [n_rows * k // n_parts for k in range(n_parts + 1)]
    return list(itertools.pairwise(bounds))


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _parallel(fn, items: list, device: torch.device) -> list:
    """``[fn(item) for item in items]``, on threads where that helps (torch releases the GIL)."""
    workers = _workers(device, len(items))
    if workers == 1 or _on_worker.active:
        return [fn(item) for item in items]
    pool = _POOLS.get(workers)
    if pool is None:
        pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="aiax-projector",
                                                    initializer=_mark_worker)
    return list(pool.map(fn, items))


class _WorkerFlag(threading.local):
    active = False


_on_worker = _WorkerFlag()


def _mark_worker() -> None:
    # A projector used from inside a worker (nested) runs serially instead of deadlocking the pool.
    _on_worker.active = True


def _product(matrix: torch.Tensor, dense: torch.Tensor, out: torch.Tensor, *, accumulate: bool = False) -> None:
    """``out = matrix @ dense`` (``+=`` when accumulating) for a CSR ``matrix`` and contiguous tensors.

    On CPUs torch's product calls MKL, whose bytes follow the instruction set (AVX-512 or not), and a
    published store must rebuild to the same bytes on every machine. Where MKL runs its compatible code
    path (a build selects it, :func:`~aiax_bench.mkl_mode.use_compatible_mkl`) torch's product is used:
    it computes what the compiled loops of :mod:`aiax_bench.recon._csr_kernel` do, and faster;
    elsewhere those loops are (``tests/test_recon.py`` checks that the two agree bit for bit).
    """
    if matrix.device.type == "cpu" and not compatible_mkl_active():
        from aiax_bench.recon._csr_kernel import csr_matmul  # numba: loaded where its loops are needed

        csr_matmul(matrix.crow_indices().numpy(), matrix.col_indices().numpy(), matrix.values().numpy(),
                   dense.numpy(), out.numpy(), accumulate=accumulate)
    elif accumulate:
        torch.addmm(out, matrix, dense, out=out)
    else:
        torch.mm(matrix, dense, out=out)


def _csr_nbytes(matrix: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size()
               for t in (matrix.crow_indices(), matrix.col_indices(), matrix.values()))


@dataclass
class _Block:
    """A range of angles ``[start, stop)`` and, when stored, its matrices.

    ``matrix_t`` holds the transposed matrix cut by pixel rows, one piece per
    range of :attr:`ParallelBeamProjector._back_rows` (a single piece on CUDA).
    """

    start: int
    stop: int
    matrix: torch.Tensor | None = None
    matrix_t: list[torch.Tensor] | None = None


@dataclass(eq=False)  # identity equality: fields hold arrays and tensors
class SparseProjector:
    """Forward and back projection of slice stacks through Joseph's model, stored as sparse matrices.

    The geometry's subclasses (:class:`ParallelBeamProjector`,
    :class:`~aiax_bench.recon.FanBeamProjector`) only say where each ray runs;
    storage, blocking, threads and devices are shared.

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
        Where the operator lives; CUDA when available, else CPU (see
        :func:`~aiax_bench.recon.default_device`).
    angle_chunk : int
        Most angles generated together while building (temporary memory is
        also capped at about 256 MB).
    max_bytes : int
        Most memory the stored operator may take (bytes, default 4 GiB). A
        larger operator is applied block by block, each block of angles built
        again at every ``forward`` or ``backward``: slower, but bounded memory.
    lazy : bool
        Build the stored operator at the first ``forward`` or ``backward``
        rather than now (fan-beam FBP, for one, never needs it).
    matrices : {'both', 'backward', 'forward'}
        Keep both matrices, only the transposed one, or only the forward one:
        half the memory for callers that only back-project (FBP; 1.7 GB
        instead of 3.4 GB at 512² × 500 angles) or only project (simulated
        scans), and no time spent building the matrix they never use. The
        other direction then builds each block at every call. Either
        direction's bytes are the same whatever is kept.

    Notes
    -----
    ``forward`` maps ``(..., N, N)`` slices to ``(..., A, D)`` sinograms and
    ``backward`` is its exact adjoint (the transpose of the same matrix), so
    ``<A x, y> == <x, A^T y>`` to float32 rounding. Values are line integrals
    in voxel units: a slice of attenuation per voxel gives dimensionless
    sinograms.
    """

    n_pixels: int
    angles: np.ndarray
    n_detector: int | None = None
    det_spacing: float = 1.0
    device: str | torch.device | None = None
    angle_chunk: int = 64
    max_bytes: int = 4 * 2**30
    lazy: bool = False
    matrices: str = "both"
    _blocks: list[_Block] = field(init=False, repr=False)
    _back_rows: list[tuple[int, int]] = field(init=False, repr=False)
    _keep: bool = field(init=False, repr=False)
    _build_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.n_pixels = _positive_int(self.n_pixels, "n_pixels", "slice size in voxels")
        self.angles = check_angles(self.angles)
        self.n_detector = (self.n_pixels if self.n_detector is None
                           else _positive_int(self.n_detector, "n_detector", "detector width in pixels"))
        if not (isinstance(self.det_spacing, numbers.Real) and math.isfinite(self.det_spacing)
                and self.det_spacing > 0):
            raise InputError("det_spacing", f"is {self.det_spacing!r}",
                             "use a positive detector pixel size (voxel units)")
        self.det_spacing = float(self.det_spacing)
        self.angle_chunk = _positive_int(self.angle_chunk, "angle_chunk", "angles per build chunk")
        self.max_bytes = _positive_int(self.max_bytes, "max_bytes", "operator memory limit in bytes")
        self.device = torch.device(self.device) if self.device is not None else default_device()
        if self.matrices not in MATRICES:
            raise InputError("matrices", f"is {self.matrices!r}", f"one of {list(MATRICES)}")

        n, d, a = self.n_pixels, self.n_detector, self.angles.size
        per_angle = operator_nbytes(n, 1, d)
        self._cpu = self.device.type == "cpu"
        self._back_rows = _row_ranges(n * n, _CPU_BACK_PARTS if self._cpu else 1)
        self._keep = operator_nbytes(n, a, d, matrices=self.matrices) <= self.max_bytes
        if self._keep:
            # On CPUs, back-projecting a few angles at a time keeps the sinogram rows a
            # voxel needs in cache (3x faster at 256^2 x 500 angles); GPUs want one big product.
            size = _CPU_BLOCK_ANGLES if self._cpu else a
            self._blocks = [_Block(s, min(s + size, a)) for s in range(0, a, size)]
            if not self.lazy:
                self._store_all()
        else:
            # Half the limit per block leaves room for the temporaries of building it.
            size = max(1, min(a, self.max_bytes // (2 * per_angle)))
            if per_angle > self.max_bytes:
                warnings.warn(f"one angle's operator ({per_angle / 2**20:.0f} MB) exceeds max_bytes; "
                              "projecting one angle at a time", RuntimeWarning, stacklevel=2)
            self._blocks = [_Block(s, min(s + size, a)) for s in range(0, a, size)]

    def _keeps(self, transposed: bool) -> bool:
        """Whether the matrix of that direction is stored (built once, not at every call)."""
        return self._keep and self.matrices != ("forward" if transposed else "backward")

    def _store_all(self) -> None:
        with self._build_lock:
            for block in self._blocks:  # one by one: building on threads measured slower (GIL)
                if block.matrix is None and block.matrix_t is None:
                    self._store(block)

    def _rays(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cos, sin, u)`` of each ray ``(angle, detector pixel)``: the line ``x cos + y sin = u``."""
        raise NotImplementedError

    def _scipy_block(self, block: _Block) -> scipy.sparse.csr_matrix:
        n, d = self.n_pixels, self.n_detector
        chunk = _angle_chunk(n, d, self.angle_chunk)
        return _build_scipy(n, self.angles[block.start : block.stop], d, self._rays, chunk)

    def _store(self, block: _Block) -> None:
        matrix = self._scipy_block(block)
        if self.matrices != "forward":
            transposed = _transpose(matrix)
            block.matrix_t = [_to_torch(transposed, self.device, rows) for rows in self._back_rows]
            del transposed
        if self.matrices != "backward":
            matrix.sort_indices()  # sorted columns gather the slices in memory order
            block.matrix = _to_torch(matrix, self.device)

    def _matrix(self, block: _Block, transposed: bool) -> torch.Tensor:
        stored = block.matrix_t if transposed else block.matrix
        if stored is not None:
            return stored
        matrix = self._scipy_block(block)
        if transposed:
            return _transpose_to_torch(matrix, self.device)
        matrix.sort_indices()
        return _to_torch(matrix, self.device)

    @property
    def shape(self) -> tuple[int, int]:
        """(rays, pixels) of the system matrix."""
        return (self.angles.size * self.n_detector, self.n_pixels * self.n_pixels)

    @property
    def stored(self) -> bool:
        """Whether the kept matrices (``matrices``) are in memory, not rebuilt at every use; the other
        direction of a ``backward`` or ``forward`` projector is always rebuilt."""
        return self._keep

    @property
    def nbytes(self) -> int:
        """Memory held by the stored operator in bytes (0 when it is rebuilt on the fly or not built yet)."""
        return sum(_csr_nbytes(m) for b in self._blocks
                   for m in ([b.matrix] if b.matrix is not None else []) + (b.matrix_t or []))

    def _slice_batch(self, n_slices: int) -> int:
        if not self._cpu:
            # As many as fit a 1 GiB product: GPUs are fastest with few large products.
            largest = max(self.n_pixels**2, self.angles.size * self.n_detector)
            return max(1, min(n_slices, _GPU_PRODUCT_BYTES // (4 * largest)))
        # Slices multiplied together: enough to amortise the index reads, few enough that the
        # gathered image rows stay in cache (else a 256^2 x 500 forward runs 3x slower).
        return max(_CPU_MIN_SLICES, min(n_slices, _CPU_CACHE_BYTES // (4 * self.n_pixels**2)))

    def _apply(self, data, transposed: bool):
        n, d, a = self.n_pixels, self.n_detector, self.angles.size
        in_shape, out_shape = ((a, d), (n, n)) if transposed else ((n, n), (a, d))
        as_numpy = not isinstance(data, torch.Tensor)
        x = torch.as_tensor(np.asarray(data) if as_numpy else data, dtype=torch.float32, device=self.device)
        if x.ndim < 2 or tuple(x.shape[-2:]) != in_shape:
            raise InputError("input", f"has shape {tuple(x.shape)}",
                             f"expected (..., {in_shape[0]}, {in_shape[1]})")
        lead = tuple(x.shape[:-2])
        x = x.reshape(-1, *in_shape)  # a view even of a strided input (e.g. a cropped filter output)
        out = torch.empty((x.shape[0], out_shape[0] * out_shape[1]), dtype=torch.float32, device=self.device)
        step = self._slice_batch(x.shape[0])
        starts = range(0, x.shape[0], step)

        def columns(z: int) -> torch.Tensor:
            # Slices become columns: each non-zero then reads one contiguous row of all slices.
            return x[z : z + step].permute(1, 2, 0).reshape(in_shape[0] * in_shape[1], -1).contiguous()

        if self._keeps(transposed):
            last = self._blocks[-1]
            # The direction in use: another thread may be storing the last block (transposed matrix first).
            if (last.matrix_t if transposed else last.matrix) is None:
                self._store_all()
            for z in starts:
                cols = columns(z)
                part = self._back_chunk(cols) if transposed else self._forward_chunk(cols)
                out[z : z + cols.shape[1]] = part.T
        else:
            # Each block is built once per call (blocks outside), one at a time (bounded memory).
            chunks = [(z, columns(z)) for z in starts]
            for block in self._blocks:
                matrix = self._matrix(block, transposed)
                rows = slice(block.start * d, block.stop * d)
                for z, cols in chunks:
                    part = torch.empty((matrix.shape[0], cols.shape[1]), dtype=torch.float32, device=self.device)
                    _product(matrix, cols[rows] if transposed else cols, part)
                    if transposed and block.start == 0:
                        out[z : z + cols.shape[1]] = part.T
                    elif transposed:
                        out[z : z + cols.shape[1]] += part.T
                    else:
                        out[z : z + cols.shape[1], rows] = part.T
                del matrix
        out = out.reshape(*lead, *out_shape)
        return out.cpu().numpy() if as_numpy else out

    def _forward_chunk(self, cols: torch.Tensor) -> torch.Tensor:
        d = self.n_detector
        out = torch.empty((self.angles.size * d, cols.shape[1]), dtype=torch.float32, device=self.device)

        def project(block: _Block) -> None:
            # Straight into the block's rows: workers do no torch copies, whose own
            # OpenMP threads would oversubscribe the cores.
            _product(block.matrix, cols, out[block.start * d : block.stop * d])

        _parallel(project, self._blocks, self.device)
        return out

    def _back_chunk(self, cols: torch.Tensor) -> torch.Tensor:
        d = self.n_detector
        out = torch.empty((self.n_pixels**2, cols.shape[1]), dtype=torch.float32, device=self.device)

        def back_project(parts: range) -> None:
            # Each pixel's sum runs over the blocks of angles in angle order, in the pixel range's
            # own rows of ``out``, whichever thread owns the range: the bytes do not depend on the
            # number of threads. (Partial sums per thread, added up at the end, would group the
            # terms by thread count.) Blocks outside: a block's sinogram rows stay in cache while
            # the thread's ranges use them.
            for k, block in enumerate(self._blocks):
                rays = cols[block.start * d : block.stop * d]
                for part in parts:
                    start, stop = self._back_rows[part]
                    _product(block.matrix_t[part], rays, out[start:stop], accumulate=k > 0)

        # Threads only choose which pixel ranges each one computes.
        n_parts = len(self._back_rows)
        workers = _workers(self.device, n_parts)
        _parallel(back_project, [range(n_parts * w // workers, n_parts * (w + 1) // workers)
                                 for w in range(workers)], self.device)
        return out

    def forward(self, slices):
        """Project slices to sinograms.

        Parameters
        ----------
        slices : array_like or torch.Tensor
            Attenuation per voxel, shape ``(..., N, N)``.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Line integrals (dimensionless), shape ``(..., A, D)``; numpy in gives
            numpy out, a tensor gives a tensor on the operator's device.
        """
        return self._apply(slices, transposed=False)

    def backward(self, sinograms):
        """Back-project sinograms to slices (the adjoint of :meth:`forward`).

        Parameters
        ----------
        sinograms : array_like or torch.Tensor
            Shape ``(..., A, D)``.

        Returns
        -------
        numpy.ndarray or torch.Tensor
            Shape ``(..., N, N)``; numpy in gives numpy out, a tensor gives a
            tensor on the operator's device.
        """
        return self._apply(sinograms, transposed=True)


@dataclass(eq=False)
class ParallelBeamProjector(SparseProjector):
    """Forward and back projection of slice stacks in parallel-beam geometry.

    See the module's notes for the geometry; the parameters are those of
    :class:`SparseProjector`, ``det_spacing`` being the detector pixel size in
    voxel units.
    """

    def _rays(self, angles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _parallel_rays(angles, self.n_detector, self.det_spacing)
