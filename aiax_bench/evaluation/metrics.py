"""Image metrics with a fixed data range, restricted to a mask.

SSIM follows Wang et al. (2004) with the conventions users can compare
across papers: a 3D Gaussian window with σ = 1.5 voxels truncated at 3.5 σ
(11 taps), K1 = 0.01, K2 = 0.03, population covariances, and the border of
5 voxels that the window cannot cover left out. Without a mask it equals
``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=L)``. ``ssim_slices`` is
the mean of 2D SSIMs over z-slices, the number many users quote: it differs
from the 3D value, so the two are always labelled separately.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError

__all__ = ["SSIM_SIGMA", "SSIM_TRUNCATE", "mse", "psnr", "ssim", "ssim_map", "ssim_slices"]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
K1, K2 = 0.01, 0.03


def _pad() -> int:
    return int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)


def _check_pair(x: np.ndarray, y: np.ndarray, data_range: float) -> None:
    if x.shape != y.shape:
        raise InputError("prediction", f"has shape {x.shape}", f"expected {y.shape} like the reference")
    if not data_range > 0:
        raise InputError("data_range", f"is {data_range}", "expected a positive intensity range")


def _select(diff: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return diff if mask is None else diff[mask]


def mse(x: np.ndarray, y: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Mean squared error of ``x`` against the reference ``y`` (within ``mask``)."""
    diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return float(np.mean(_select(diff, mask) ** 2))


def psnr(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB) with a fixed ``data_range`` (never taken from the data)."""
    _check_pair(np.asarray(x), np.asarray(y), data_range)
    err = mse(x, y, mask=mask)
    return float("inf") if err == 0 else float(10 * np.log10(data_range**2 / err))


def ssim_map(x: np.ndarray, y: np.ndarray, *, data_range: float) -> np.ndarray:
    """Local SSIM at every voxel (Gaussian window over all axes of the input)."""
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


def _interior(shape: tuple[int, ...]) -> tuple[slice, ...]:
    p = _pad()
    return tuple(slice(p, s - p) for s in shape)


def ssim(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None = None) -> float:
    """3D SSIM of ``x`` against the reference ``y``, averaged inside ``mask`` and away from the border."""
    smap = ssim_map(x, y, data_range=data_range)
    inner = _interior(smap.shape)
    values = smap[inner] if mask is None else smap[inner][np.asarray(mask)[inner]]
    return float(values.mean())


def ssim_slices(x: np.ndarray, y: np.ndarray, *, data_range: float, mask: np.ndarray | None = None) -> float:
    """Mean of 2D SSIMs over the z-slices (axis 0), each with the same window in 2D."""
    x = np.asarray(x)
    y = np.asarray(y)
    _check_pair(x, y, data_range)
    values = []
    for z in range(x.shape[0]):
        smap = ssim_map(x[z], y[z], data_range=data_range)
        inner = _interior(smap.shape)
        sel = smap[inner] if mask is None else smap[inner][np.asarray(mask[z])[inner]]
        if sel.size:
            values.append(sel.mean())
    return float(np.mean(values))
