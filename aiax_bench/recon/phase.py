"""Phase retrieval of propagation-based phase-contrast projections.

Paganin et al. (J. Microsc. 206, 33-40, 2002) retrieve the projected
thickness ``T`` of a single material from one flat-field-corrected intensity
image ``I`` recorded at distance ``z`` behind the sample, from the transport
of intensity equation linearised in ``z``::

    I(r) = (1 - z delta / mu * laplacian) exp(-mu T(r))

    mu T = -ln F^-1[ F[I] / (1 + z delta / mu * |k|^2) ]

with ``mu = 4 pi beta / lambda`` the attenuation coefficient of the intensity
and ``|k| = 2 pi |f|`` the angular spatial frequency. In the ordinary
frequency ``f`` (cycles per metre) of :func:`scipy.fft.fftfreq`, the form
used here and by :func:`aiax_bench.sim.propagation.fresnel_propagate`::

    z delta / mu * |k|^2 = z delta lambda / (4 pi beta) * 4 pi^2 |f|^2 = pi lambda z (delta / beta) |f|^2

The FFTs are scipy's pocketfft, one image at a time on one thread: the result
is the same bytes whatever the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from aiax_bench.errors import InputError
from aiax_bench.validation import check_finite_number, check_positive

__all__ = ["paganin_filter", "paganin_intensity"]

# Smallest filtered intensity taken to the log: a (non-physical) non-positive value, possible only with
# non-positive input pixels, then gives a large finite line integral instead of NaN or infinity.
_INTENSITY_FLOOR = 1e-30


def _image_stack(name: str, array, *, allow_complex: bool) -> np.ndarray:
    """``array`` as an ndarray of shape (..., rows, cols), numeric and finite, or raise."""
    a = np.asarray(array)
    kinds = "fiuc" if allow_complex else "fiu"
    what = "complex or real" if allow_complex else "real"
    if a.dtype.kind not in kinds:
        raise InputError(name, f"has dtype {a.dtype}", f"expected a {what} numeric array")
    if a.ndim < 2 or a.shape[-2] < 1 or a.shape[-1] < 1:
        raise InputError(name, f"has shape {a.shape}", "expected (..., rows, cols) with at least one row and column")
    if not np.isfinite(a).all():
        raise InputError(name, f"has {int((~np.isfinite(a)).sum())} NaN or infinite value(s)",
                         "expected finite values everywhere")
    return a


def _padded_length(n: int, pad: bool) -> int:
    """FFT length of an axis of ``n`` pixels.

    Twice ``n`` keeps the circular convolution of the FFT from carrying one
    edge's fringes (or filter tail) onto the opposite edge; ``next_fast_len``
    keeps the transform fast.
    """
    return scipy.fft.next_fast_len(2 * n) if pad else n


def _pad_edge(frame: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[slice, slice]]:
    """``frame`` centred in ``shape``, the margin filled with its border values, and the slices that crop it back.

    Border values rather than zeros: beyond the field of view the beam is
    flat (intensity or wave of the background), and a jump to zero would
    itself diffract or ring.
    """
    rows, cols = frame.shape
    top, left = (shape[0] - rows) // 2, (shape[1] - cols) // 2
    if (rows, cols) == shape:
        return frame, (slice(None), slice(None))
    padded = np.pad(frame, ((top, shape[0] - rows - top), (left, shape[1] - cols - left)), mode="edge")
    return padded, (slice(top, top + rows), slice(left, left + cols))


def _squared_frequency(shape: tuple[int, int], pixel_size_m: float, *, half: bool) -> np.ndarray:
    """``fx^2 + fy^2`` (1/m²) on the FFT grid of ``shape``; ``half`` for the columns of an ``rfft2``."""
    fy = scipy.fft.fftfreq(shape[0], d=pixel_size_m)
    fx = (scipy.fft.rfftfreq if half else scipy.fft.fftfreq)(shape[1], d=pixel_size_m)
    return fy[:, None] ** 2 + fx[None, :] ** 2


def paganin_filter(projections, *, delta_beta: float, distance_m: float, wavelength_m: float,
                   pixel_size_m: float, pad: bool = True) -> np.ndarray:
    """Paganin's single-material phase retrieval, as projected attenuation ``mu T``.

    Parameters
    ----------
    projections : array_like
        Flat-field-corrected intensities ``I / I0`` (dimensionless, about 1 in
        the background), shape ``(..., rows, cols)``; leading axes (e.g.
        angles) are a batch.
    delta_beta : float
        ``delta / beta`` of the material (dimensionless, e.g. from
        :func:`aiax_bench.sim.materials.delta_beta_ratio`).
    distance_m : float
        Propagation distance from sample to detector (m), at least 0; for a
        cone beam, the effective distance ``z1 z2 / (z1 + z2)``.
    wavelength_m : float
        X-ray wavelength (m).
    pixel_size_m : float
        Detector pixel size at the sample (m), square pixels.
    pad : bool
        Filter each image padded to about twice its size with its border
        values, so that the filter does not wrap around the edges.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of the shape of ``projections``: the retrieved
        ``-ln`` of the filtered intensity, i.e. ``mu T`` (dimensionless) with
        ``mu = 4 pi beta / lambda`` the attenuation coefficient of the
        material and ``T`` its projected thickness. It is a line integral of
        attenuation like ``-ln(I / I0)``: its FBP gives ``mu`` inside the
        material (in the length unit of the reconstruction's geometry), and
        ``T = (mu T) / mu`` in the length unit of ``1 / mu``. With
        ``distance_m = 0`` it is ``-ln(I / I0)``.

    Raises
    ------
    aiax_bench.errors.InputError
        If ``projections`` is not a finite real array of at least two
        dimensions, or a parameter is not positive (``distance_m``: negative).

    Notes
    -----
    The filter is ``1 / (1 + pi lambda z (delta / beta) (fx² + fy²))`` with
    ``f`` in cycles per metre (see the module's docstring for its derivation
    from Paganin's ``1 / (1 + z delta / mu |k|²)``). It assumes one material
    (or several of the same ``delta / beta``), a near-field distance
    (Fresnel number of the smallest features of interest above about 1) and
    a parallel, monochromatic, coherent beam.
    """
    return _filtered(projections, delta_beta=delta_beta, distance_m=distance_m, wavelength_m=wavelength_m,
                     pixel_size_m=pixel_size_m, pad=pad,
                     then=lambda filtered: -np.log(np.maximum(filtered, _INTENSITY_FLOOR)))


def paganin_intensity(projections, *, delta_beta: float, distance_m: float, wavelength_m: float,
                      pixel_size_m: float, pad: bool = True, floor: float = _INTENSITY_FLOOR) -> np.ndarray:
    """The Paganin-filtered intensity itself, at least ``floor``: what :func:`paganin_filter` takes ``-ln`` of.

    For pipelines that take the logarithm later (an import's preprocessing
    steps); parameters as :func:`paganin_filter`. Returns float32.
    """
    return _filtered(projections, delta_beta=delta_beta, distance_m=distance_m, wavelength_m=wavelength_m,
                     pixel_size_m=pixel_size_m, pad=pad, then=lambda filtered: np.maximum(filtered, floor))


def _filtered(projections, *, delta_beta: float, distance_m: float, wavelength_m: float, pixel_size_m: float,
              pad: bool, then) -> np.ndarray:
    """The checked inputs filtered frame by frame, ``then`` applied to each filtered float64 intensity."""
    p = _image_stack("projections", projections, allow_complex=False)
    delta_beta = check_positive("delta_beta", delta_beta, "delta / beta (dimensionless)")
    distance = check_finite_number("distance_m", distance_m, "metres")
    if distance < 0:
        raise InputError("distance_m", f"is {distance_m!r}", "expected a sample-detector distance of at least 0 m")
    wavelength = check_positive("wavelength_m", wavelength_m, "metres")
    pixel = check_positive("pixel_size_m", pixel_size_m, "metres")
    rows, cols = p.shape[-2:]
    shape = (_padded_length(rows, bool(pad)), _padded_length(cols, bool(pad)))
    response = 1.0 / (1.0 + math.pi * wavelength * distance * delta_beta
                      * _squared_frequency(shape, pixel, half=True))
    frames = p.reshape(-1, rows, cols)
    out = np.empty(frames.shape, dtype=np.float32)
    for i, frame in enumerate(frames):
        # One image at a time bounds the memory of the padded complex spectrum, whatever the stack.
        padded, crop = _pad_edge(frame.astype(np.float64), shape)
        out[i] = then(scipy.fft.irfft2(scipy.fft.rfft2(padded) * response, s=shape)[crop])
    return out.reshape(p.shape)
