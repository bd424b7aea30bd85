"""Image metrics with a fixed data range, restricted to a mask.

SSIM follows Wang et al. (2004) with the conventions users can compare
across papers: a 3D Gaussian window with σ = 1.5 voxels truncated at 3.5 σ
(11 taps), K1 = 0.01, K2 = 0.03, population covariances, and the border of
5 voxels that the window cannot cover left out. Without a mask it equals
``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=L)``. ``ssim_slices`` is
the mean of 2D SSIMs over z-slices, the number many users quote: it differs
from the 3D value, so the two are always labelled separately.

How it is computed, and why it is fast and exact
------------------------------------------------
Only voxels at least 5 voxels from the border are averaged, and the window
of those voxels never leaves the volume: the Gaussian filters can therefore
be taken in *valid* mode (no padding at all). The same sums then come out of
any block of the volume that carries a 5-voxel halo, which is what makes the
chunked path (:mod:`aiax_bench.evaluation.chunked`) exact. The volume is
processed in z-slabs (cache-sized, in parallel threads) with a separable,
symmetric 11-tap filter in float32; to keep float32 variances accurate the
second moments are taken about the constant ``data_range / 2`` (an exact
identity). The result agrees with scikit-image's float64 computation to
about 1e-6.

Volumes of :data:`FUSED_MIN_VOXELS` or more go through one compiled kernel
per slab (:mod:`aiax_bench.evaluation._ssim_kernel`), several times faster;
smaller ones through NumPy, because loading the compiled kernel costs a
second or two once per process, more than the whole SSIM of a 128³ volume.
Both agree with scikit-image to 1e-6.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.validation import check_mask, check_positive

__all__ = ["SSIM_SIGMA", "SSIM_TRUNCATE", "mse", "psnr", "ssim", "ssim_map", "ssim_slices", "ssim_sums"]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
K1, K2 = 0.01, 0.03
#: Output z-slices per tile, and the working set a tile aims at (bytes): tiles that stay in
#: cache run 2-3x faster than whole slices of large planes.
SLAB = 4
TILE_BYTES = 4 << 20
#: Volumes (whole, not blocks) from this many voxels on take the compiled kernel.
FUSED_MIN_VOXELS = 1 << 24


def _pad() -> int:
    return int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)


def _kernel() -> np.ndarray:
    """The normalised Gaussian taps of ``scipy.ndimage.gaussian_filter`` (what scikit-image uses)."""
    r = _pad()
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / SSIM_SIGMA) ** 2)
    return (taps / taps.sum()).astype(np.float32)


_TAPS = _kernel()
#: Voxels the Gaussian window spans along each axis: the thinnest volume a 3D SSIM is defined on.
SSIM_WINDOW = 2 * _pad() + 1


def default_workers() -> int:
    """Threads used for slabs: every core, at most 8 (the filters are memory-bound beyond)."""
    return max(1, min(8, os.cpu_count() or 1))


def _check_pair(x: np.ndarray, y: np.ndarray, data_range: float) -> None:
    if x.shape != y.shape:
        raise InputError("prediction", f"has shape {x.shape}", f"expected {y.shape} like the reference")
    if not data_range > 0:
        raise InputError("data_range", f"is {data_range}", "expected a positive intensity range")


def _check_window(shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    need = 2 * _pad() + 1
    if any(shape[a] < need for a in axes):
        raise InputError("volume", f"has shape {shape}",
                         f"expected at least {need} voxels along each axis the SSIM window covers")


def _select(diff: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return diff if mask is None else diff[mask]


def _sq_error_sums(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None) -> tuple[float, int]:
    """Sum of squared differences (float64) and voxel count, slab by slab to bound memory."""
    total, count = 0.0, 0
    step = max(1, (1 << 22) // max(1, int(np.prod(x.shape[1:]))))  # about 4 M voxels per slab
    for z0 in range(0, x.shape[0], step):
        diff = np.asarray(x[z0:z0 + step], dtype=np.float64) - np.asarray(y[z0:z0 + step], dtype=np.float64)
        sel = _select(diff, None if mask is None else mask[z0:z0 + step])
        total += float(np.dot(sel.ravel(), sel.ravel()))
        count += sel.size
    return total, count


def mse(x: np.ndarray, y: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Mean squared error of ``x`` against the reference ``y`` (within ``mask``), in squared intensity units."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise InputError("prediction", f"has shape {x.shape}", f"expected {y.shape} like the reference")
    mask = check_mask("mask", mask, y.shape)
    total, count = _sq_error_sums(x, y, mask)
    return total / count


def psnr(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB) with a fixed ``data_range`` (never taken from the data)."""
    _check_pair(np.asarray(x), np.asarray(y), data_range)
    err = mse(x, y, mask=mask)
    return float("inf") if err == 0 else float(10 * np.log10(data_range**2 / err))


def ssim_map(x: np.ndarray, y: np.ndarray, *, data_range: float) -> np.ndarray:
    """Local SSIM at every voxel (float64, Gaussian window over all axes, reflecting borders).

    The reference implementation, kept for pictures of the SSIM map: the border
    values depend on the reflection and are left out of :func:`ssim`.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    _check_pair(x, y, data_range)

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _valid_blur(a: np.ndarray, axis: int) -> np.ndarray:
    """Gaussian filter of ``a`` along ``axis`` in valid mode: the axis shrinks by 10 voxels.

    Along the last (contiguous) axis scipy's C loop is about 2× faster than
    shifted NumPy sums; it filters the whole line and the 5 voxels at each end,
    the only ones its boundary rule touches, are cropped. Every output value
    depends only on its own 11 inputs, whatever block it is computed in.
    """
    r = _pad()
    n = a.shape[axis] - 2 * r
    if axis == a.ndim - 1:
        return ndimage.correlate1d(a, _TAPS, axis=axis, mode="constant")[..., r:r + n]

    def part(i: int) -> tuple[slice, ...]:
        index = [slice(None)] * a.ndim
        index[axis] = slice(i, i + n)
        return tuple(index)

    out = a[part(r)] * _TAPS[r]
    tmp = np.empty_like(out)
    for i in range(r):  # symmetric taps: one multiply per pair
        np.add(a[part(i)], a[part(2 * r - i)], out=tmp)
        tmp *= _TAPS[i]
        out += tmp
    return out


def _valid_ssim_map(x: np.ndarray, y: np.ndarray, *, data_range: float, axes: tuple[int, ...]) -> np.ndarray:
    """SSIM map (float32) on the valid region of a block: every axis in ``axes`` loses 5 voxels per side.

    The arithmetic is done in place on few buffers: at slab size the cost is
    memory traffic, not floating-point work.
    """
    shift = np.float32(data_range / 2)  # second moments about a constant: less float32 cancellation
    stack = np.empty((4, *np.shape(x)), dtype=np.float32)
    xs, ys, sq, xy = stack
    np.subtract(x, shift, out=xs, casting="same_kind")
    np.subtract(y, shift, out=ys, casting="same_kind")
    np.multiply(xs, xs, out=sq)
    np.multiply(ys, ys, out=xy)
    sq += xy  # only the sum of the two variances enters SSIM
    np.multiply(xs, ys, out=xy)
    for axis in axes:  # z first where present: it shrinks the slab before the other axes
        stack = _valid_blur(stack, axis + 1)
    ux, uy, sq, xy = stack  # blurred: shifted means, sum of second moments, cross moment
    tmp = ux * ux
    sq -= tmp
    np.multiply(uy, uy, out=tmp)
    sq -= tmp  # var_x + var_y
    num = ux * uy
    xy -= num  # covariance
    ux += shift  # back to the true means for the luminance term
    uy += shift
    c1, c2 = np.float32((K1 * data_range) ** 2), np.float32((K2 * data_range) ** 2)
    np.multiply(ux, uy, out=num)
    num *= 2
    num += c1
    xy *= 2
    xy += c2
    num *= xy
    np.multiply(ux, ux, out=tmp)
    np.multiply(uy, uy, out=ux)
    tmp += ux
    tmp += c1
    sq += c2
    tmp *= sq
    num /= tmp
    return num


def ssim_sums(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None = None,
              slices: bool = False, fused: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of local SSIM over the valid region of one block (the chunked path's kernel).

    Parameters
    ----------
    x, y : numpy.ndarray
        A block of the prediction and of the reference, including a 5-voxel halo
        along every windowed axis (z, y, x for 3D; y, x for ``slices``).
    data_range : float
        Fixed intensity range (same unit as ``x``).
    mask : numpy.ndarray, optional
        Boolean mask of the *valid* region (the block without its halo).
    slices : bool
        2D windows in each z-slice (sums per slice) instead of 3D windows.
    fused : bool
        Use the compiled kernel instead of NumPy.

    Returns
    -------
    sums, counts : numpy.ndarray
        float64 sum of the SSIM map and the number of voxels averaged, as
        0-d arrays (3D) or one value per z-slice of the valid region (``slices``).
    """
    if fused:
        from aiax_bench.evaluation._ssim_kernel import fused_ssim_sums

        sums, counts = fused_ssim_sums(x, y, mask=mask, taps=_TAPS, zhalo=0 if slices else _pad(),
                                       shift=data_range / 2, c1=(K1 * data_range) ** 2, c2=(K2 * data_range) ** 2)
        return (sums, counts) if slices else (np.asarray(sums.sum()), np.asarray(counts.sum()))
    axes = (1, 2) if slices else (0, 1, 2)
    smap = _valid_ssim_map(x, y, data_range=data_range, axes=axes)
    reduce_axes = (1, 2) if slices else None
    if mask is None:
        sums = smap.sum(axis=reduce_axes, dtype=np.float64)
        counts = np.full(np.shape(sums), smap[0].size if slices else smap.size, dtype=np.int64)
    else:
        sums = np.sum(smap, axis=reduce_axes, dtype=np.float64, where=mask)
        counts = np.count_nonzero(mask, axis=reduce_axes)
    return np.asarray(sums), np.asarray(counts, dtype=np.int64)


def _slab_sums(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None, slices: bool,
               workers: int | None, fused: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run :func:`ssim_sums` over cache-sized tiles (z-slabs × y-bands) of whole volumes, in threads.

    A tile of :data:`SLAB` output slices and as many rows as fit :data:`TILE_BYTES`
    keeps the four filtered channels in cache; NumPy releases the GIL, so tiles
    run in parallel. Tiles only change the order of the (float64) sums.
    ``fused`` (default: by the size of ``x``) picks the compiled kernel.
    """
    if fused is None:
        fused = x.size >= FUSED_MIN_VOXELS
    p = _pad()
    zhalo = 0 if slices else p
    nz, ny = x.shape[0] - 2 * zhalo, x.shape[1] - 2 * p
    if fused:  # the kernel keeps four channels of one slice of the tile: more rows fit, deeper slabs amortise
        slab, rows = 4 * SLAB, max(16, TILE_BYTES // (x.shape[2] * 16) - 2 * p)
    else:
        slab, rows = SLAB, max(16, TILE_BYTES // ((SLAB + 2 * zhalo) * x.shape[2] * 16) - 2 * p)
    inner_x = slice(p, x.shape[2] - p)

    def one(tile: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray]:
        z0, y0 = tile
        z1, y1 = min(z0 + slab, nz), min(y0 + rows, ny)
        m = None if mask is None else mask[z0 + zhalo:z1 + zhalo, y0 + p:y1 + p, inner_x]
        block = (slice(z0, z1 + 2 * zhalo), slice(y0, y1 + 2 * p))
        s, c = ssim_sums(x[block], y[block], data_range=data_range, mask=m, slices=slices, fused=fused)
        return z0, s, c

    tiles = [(z0, y0) for z0 in range(0, nz, slab) for y0 in range(0, ny, rows)]
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1:
        parts = [one(t) for t in tiles]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(one, tiles))
    if slices:
        sums, counts = np.zeros(nz), np.zeros(nz, dtype=np.int64)
        for z0, s, c in parts:
            sums[z0:z0 + s.size] += s
            counts[z0:z0 + c.size] += c
        return sums, counts
    return np.sum([s for _, s, _ in parts]), np.sum([c for _, _, c in parts])


def _prepare(x, y, data_range: float, mask, axes: tuple[int, ...]):
    x, y = np.asarray(x), np.asarray(y)
    _check_pair(x, y, data_range)
    check_positive("data_range", data_range, "intensity units")
    if x.ndim != 3:
        raise InputError("volume", f"has {x.ndim} dimension(s)", "expected a 3D volume (z, y, x)")
    _check_window(x.shape, axes)
    return x, y, check_mask("mask", mask, y.shape)


#: ``kernel`` choices of :func:`ssim` and :func:`ssim_slices`: by size, or forced.
KERNELS = {"auto": None, "numpy": False, "compiled": True}


def _fused(kernel: str) -> bool | None:
    if kernel not in KERNELS:
        raise InputError("kernel", f"is {kernel!r}", f"one of {', '.join(KERNELS)}")
    return KERNELS[kernel]


def ssim(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None = None,
         workers: int | None = None, kernel: str = "auto") -> float:
    """3D SSIM of ``x`` against the reference ``y``, averaged inside ``mask`` and away from the border.

    Parameters
    ----------
    x, y : numpy.ndarray
        Prediction and reference, same 3D shape, at least 11 voxels along each axis.
    data_range : float
        Fixed intensity range ``L`` of the dataset (never taken from the data).
    mask : numpy.ndarray, optional
        Voxels averaged (the 5-voxel border is always left out).
    workers : int, optional
        Threads over z-slabs; every core (at most 8) by default. The value does not depend on it.
    kernel : {'auto', 'numpy', 'compiled'}
        NumPy or the compiled kernel; ``'auto'`` takes the compiled one from
        :data:`FUSED_MIN_VOXELS` voxels on. They agree to 1e-6.

    Returns
    -------
    float
        Mean SSIM (dimensionless, at most 1); NaN when the mask leaves no voxel away from the border.
    """
    x, y, mask = _prepare(x, y, data_range, mask, (0, 1, 2))
    total, count = _slab_sums(x, y, data_range=data_range, mask=mask, slices=False, workers=workers,
                              fused=_fused(kernel))
    return float(total / count) if count else float("nan")


def ssim_slices(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None = None,
                workers: int | None = None, kernel: str = "auto") -> float:
    """Mean of 2D SSIMs over the z-slices (axis 0), each with the same Gaussian window in 2D.

    Each slice's SSIM is the mean over its voxels inside ``mask`` and 5 voxels
    away from the in-plane border; slices with no such voxel are skipped.
    """
    x, y, mask = _prepare(x, y, data_range, mask, (1, 2))
    sums, counts = _slab_sums(x, y, data_range=data_range, mask=mask, slices=True, workers=workers,
                              fused=_fused(kernel))
    keep = counts > 0
    return float(np.mean(sums[keep] / counts[keep])) if keep.any() else float("nan")
