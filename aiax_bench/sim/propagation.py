"""Propagation-based phase contrast: exit wave, free-space propagation, detector.

Conventions (those of syris): a monochromatic wave ``exp(i (k z - omega t))``
with ``k = 2 pi / lambda``, and the refractive index ``n = 1 - delta + i beta``
of :mod:`aiax_bench.sim.materials`. In the projection approximation a sample
multiplies the incident wave by the transmission function::

    T(x, y) = exp(-i k D(x, y)) exp(-k B(x, y)),  D = integral of delta dz,  B = integral of beta dz

(the constant ``exp(i k thickness)`` of vacuum left out). Free space over a
distance ``z`` then multiplies the wave's 2D spectrum by the paraxial
(Fresnel) transfer function::

    H(fx, fy) = exp(-i pi lambda z (fx^2 + fy^2))

with ``f`` in cycles per metre, the constant ``exp(i k z)`` again left out:
it changes no intensity. The opposite time convention ``exp(-i (k z - omega
t))`` conjugates both ``T`` and ``H`` and gives the same intensities.

A typical pipeline::

    wave = transmission(D, B, wavelength_m=lam)            # on a grid finer than the detector
    intensity = abs(fresnel_propagate(wave, distance_m=z, wavelength_m=lam, pixel_size_m=p)) ** 2
    image = detector_image(intensity, psf_sigma_px=2.0, binning=4)  # flat-field-corrected I / I0
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.ndimage

from aiax_bench.errors import InputError
from aiax_bench.recon.phase import _image_stack, _pad_edge, _padded_length, _squared_frequency
from aiax_bench.validation import check_finite_number, check_positive, check_positive_int

__all__ = ["detector_image", "fresnel_number", "fresnel_propagate", "phase_contrast_scan", "transmission"]


def transmission(projected_delta, projected_beta, *, wavelength_m: float) -> np.ndarray:
    """Exit wave of a thin sample under a unit plane wave (projection approximation).

    Parameters
    ----------
    projected_delta : array_like
        ``D``, the line integral of ``delta`` along the beam (m), e.g. ``delta``
        times the projected thickness.
    projected_beta : array_like
        ``B``, the line integral of ``beta`` along the beam (m), at least 0;
        it broadcasts against ``projected_delta``.
    wavelength_m : float
        X-ray wavelength (m).

    Returns
    -------
    numpy.ndarray
        ``complex128`` wave ``exp(-i k D) exp(-k B)`` with ``k = 2 pi / lambda``
        (dimensionless; intensity ``exp(-2 k B) = exp(-mu t)``), of the
        broadcast shape.

    Raises
    ------
    aiax_bench.errors.InputError
        If the inputs do not broadcast, are not finite, ``projected_beta`` is
        negative, or ``wavelength_m`` is not positive.
    """
    wavelength = check_positive("wavelength_m", wavelength_m, "metres")
    arrays = {}
    for name, value in (("projected_delta", projected_delta), ("projected_beta", projected_beta)):
        a = np.asarray(value)
        if a.dtype.kind not in "fiu":
            raise InputError(name, f"has dtype {a.dtype}", "expected a real array (metres)")
        if not np.isfinite(a).all():
            raise InputError(name, "has NaN or infinite values", "expected finite line integrals (metres)")
        arrays[name] = a.astype(np.float64, copy=False)
    if (arrays["projected_beta"] < 0).any():
        raise InputError("projected_beta", "has negative values", "expected line integrals of beta >= 0 (metres)")
    try:
        d, b = np.broadcast_arrays(arrays["projected_delta"], arrays["projected_beta"])
    except ValueError:
        raise InputError("projected_beta", f"has shape {arrays['projected_beta'].shape}",
                         f"expected a shape that broadcasts with projected_delta's "
                         f"{arrays['projected_delta'].shape}") from None
    k = 2.0 * math.pi / wavelength
    return np.exp(-k * (b + 1j * d))


def fresnel_propagate(wavefield, *, distance_m: float, wavelength_m: float, pixel_size_m: float,
                      pad: bool = True) -> np.ndarray:
    """Propagate a wave through free space with the Fresnel (paraxial) transfer function.

    Parameters
    ----------
    wavefield : array_like
        Complex (or real) wave of shape ``(..., rows, cols)``, sampled on
        square pixels; leading axes are a batch.
    distance_m : float
        Propagation distance (m); negative propagates backwards, 0 returns a copy.
    wavelength_m : float
        X-ray wavelength (m).
    pixel_size_m : float
        Pixel size of the wave's grid (m).
    pad : bool
        Propagate each image padded to about twice its size with its border
        values, so that the fringes of one edge do not wrap onto the opposite
        one (the FFT's convolution is circular); the result is cropped back.
        Without padding the propagation is periodic and exactly unitary.

    Returns
    -------
    numpy.ndarray
        The wave at ``distance_m``, of the input's shape: ``complex64`` for
        ``complex64`` or ``float32`` input, else ``complex128``.

    Raises
    ------
    aiax_bench.errors.InputError
        If ``wavefield`` is not a finite numeric array of at least two
        dimensions or a parameter is out of range.

    Notes
    -----
    Multiplies the spectrum by ``exp(-i pi lambda z (fx² + fy²))`` (see the
    module's docstring for the conventions). The transfer function is well
    sampled, and the result free of aliasing, when ``lambda |z| <= N p²`` for
    the FFT length ``N`` (twice the image with ``pad``) and pixel size ``p``;
    beyond that, sample the wave on finer pixels or a larger field.
    """
    u = _image_stack("wavefield", wavefield, allow_complex=True)
    distance = check_finite_number("distance_m", distance_m, "metres")
    wavelength = check_positive("wavelength_m", wavelength_m, "metres")
    pixel = check_positive("pixel_size_m", pixel_size_m, "metres")
    dtype = np.complex64 if u.dtype in (np.complex64, np.float32, np.float16) else np.complex128
    if distance == 0:
        return u.astype(dtype, copy=True)

    rows, cols = u.shape[-2:]
    shape = (_padded_length(rows, bool(pad)), _padded_length(cols, bool(pad)))
    # Built in float64 whatever the input: the chirp's phase reaches thousands of radians at high frequency.
    response = np.exp(-1j * math.pi * wavelength * distance * _squared_frequency(shape, pixel, half=False))
    frames = u.reshape(-1, rows, cols)
    out = np.empty(frames.shape, dtype=dtype)
    for i, frame in enumerate(frames):
        padded, crop = _pad_edge(frame.astype(np.complex128), shape)
        out[i] = scipy.fft.ifft2(scipy.fft.fft2(padded) * response)[crop]
    return out.reshape(u.shape)


def fresnel_number(feature_size_m: float, distance_m: float, wavelength_m: float) -> float:
    """Fresnel number ``a² / (lambda z)`` (dimensionless) of a feature of size ``a``.

    Above about 1 (near field) a feature's edges show as thin fringes and
    Paganin's retrieval applies; about 1 and below, as interference patterns
    of the whole feature (holographic regime).

    Parameters
    ----------
    feature_size_m : float
        Feature size ``a`` (m), e.g. the pixel size or a sphere's radius.
    distance_m : float
        Propagation distance ``z`` (m).
    wavelength_m : float
        X-ray wavelength ``lambda`` (m).

    Returns
    -------
    float
        ``a² / (lambda z)``.
    """
    a = check_positive("feature_size_m", feature_size_m, "metres")
    z = check_positive("distance_m", distance_m, "metres")
    wavelength = check_positive("wavelength_m", wavelength_m, "metres")
    return a * a / (wavelength * z)


def detector_image(intensity, *, psf_sigma_px: float, binning: int) -> np.ndarray:
    """What an indirect detector records of an intensity: scintillator blur, then pixel integration.

    Parameters
    ----------
    intensity : array_like
        Flat-field-corrected intensity ``I / I0`` (dimensionless) of shape
        ``(..., rows, cols)`` on a grid ``binning`` times finer than the
        detector; leading axes are a batch.
    psf_sigma_px : float
        Standard deviation of the Gaussian point spread function of the
        scintillator and optics, in pixels of ``intensity`` (the fine grid),
        at least 0 (0: no blur).
    binning : int
        Fine pixels per detector pixel along each axis; it must divide
        ``rows`` and ``cols``.

    Returns
    -------
    numpy.ndarray
        ``float32`` image of shape ``(..., rows / binning, cols / binning)``:
        the blurred intensity averaged over each detector pixel's
        ``binning x binning`` fine pixels, so that the background stays 1 (for
        photon counts, multiply by the incident photons per detector pixel).

    Raises
    ------
    aiax_bench.errors.InputError
        If ``intensity`` is not a finite real array of at least two
        dimensions, ``psf_sigma_px`` is negative, or ``binning`` does not divide
        the image.

    Notes
    -----
    The blur treats the image as continued by its border values beyond the
    edges (a flat background there).
    """
    a = _image_stack("intensity", intensity, allow_complex=False)
    sigma = check_finite_number("psf_sigma_px", psf_sigma_px, "pixels")
    if sigma < 0:
        raise InputError("psf_sigma_px", f"is {psf_sigma_px!r}", "expected a standard deviation of at least 0 pixels")
    b = check_positive_int("binning", binning, "fine pixels per detector pixel and axis")
    rows, cols = a.shape[-2:]
    if rows % b or cols % b:
        raise InputError("binning", f"of {b} does not divide the image ({rows} rows x {cols} columns)",
                         "expected a common divisor of both")
    frames = a.reshape(-1, rows, cols)
    out = np.empty((frames.shape[0], rows // b, cols // b), dtype=np.float32)
    for i, frame in enumerate(frames):
        frame = frame.astype(np.float64)
        if sigma > 0:
            frame = scipy.ndimage.gaussian_filter(frame, sigma, mode="nearest")
        out[i] = frame.reshape(rows // b, b, cols // b, b).mean(axis=(1, 3))
    return out.reshape((*a.shape[:-2], rows // b, cols // b))


def _spectral_lines(wavelength_m, delta_beta, weights, attenuation_scale) -> list[tuple[float, float, float, float]]:
    """``(wavelength, delta / beta, weight, beta scale)`` of each energy of a beam, checked."""
    wavelengths = np.atleast_1d(np.asarray(wavelength_m, dtype=np.float64))
    count = wavelengths.size
    if wavelengths.ndim != 1:
        raise InputError("wavelength_m", f"has shape {wavelengths.shape}", "expected a number or a 1D sequence (m)")
    columns = {"wavelength_m": wavelengths}
    for name, value, default in (("delta_beta", delta_beta, None), ("weights", weights, 1.0),
                                 ("attenuation_scale", attenuation_scale, 1.0)):
        if value is None and default is not None and count == 1:
            value = default
        array = None if value is None else np.atleast_1d(np.asarray(value, dtype=np.float64))
        if array is None or array.shape != (count,):
            raise InputError(name, f"has {0 if array is None else array.size} values",
                             f"expected one per energy ({count}, as wavelength_m)")
        columns[name] = array
    for name, unit in (("wavelength_m", "metres"), ("delta_beta", "delta / beta (dimensionless)"),
                       ("attenuation_scale", "dimensionless")):
        for value in columns[name]:
            check_positive(name, float(value), unit)
    w = columns["weights"]
    if not np.all(np.isfinite(w)) or np.any(w < 0) or abs(math.fsum(w) - 1.0) > 1e-6:
        raise InputError("weights", f"are {w.tolist()}", "expected shares >= 0 of the signal, summing to 1")
    return [tuple(float(columns[k][i]) for k in ("wavelength_m", "delta_beta", "weights", "attenuation_scale"))
            for i in range(count)]


def phase_contrast_scan(line_integrals, *, photons: float, wavelength_m, delta_beta, distance_m: float,
                        pixel_size_m: float, psf_sigma_px: float, rng: np.random.Generator,
                        upsample: int = 2, weights=None, attenuation_scale=None,
                        phase_line_integrals=None) -> np.ndarray:
    """A propagation-based phase-contrast scan of a single-material sample, as ``-ln(I / I0)`` with counting noise.

    Each projection's attenuation line integrals ``mu T`` give the projected
    ``beta`` (``B = mu T lambda / (4 pi)``) and ``delta`` (``D = (delta / beta) B``,
    one material and vacuum); the exit wave (:func:`transmission`) travels
    ``distance_m`` (:func:`fresnel_propagate`) and is recorded by an indirect
    detector (:func:`detector_image`: the scintillator's Gaussian blur, then
    each pixel's integral of the intensity). The wave is sampled ``upsample``
    times finer than the detector, the line integrals interpolated linearly
    onto that grid (the phantom's projections are sampled at the detector's
    pixels). The intensity is then counted (Poisson, ``photons`` per pixel).

    A polychromatic (pink) beam is a list of energies: ``wavelength_m``,
    ``delta_beta``, ``weights`` and ``attenuation_scale`` then hold one value per
    energy, and the detector records the weighted sum of the energies'
    intensities (each propagated on its own: the beam is incoherent across
    energies). ``attenuation_scale`` turns the line integrals ``mu T``, given
    at one energy, into each energy's: ``mu(E) T = attenuation_scale(E) mu T``.

    A sample of several materials gives its phase separately:
    ``phase_line_integrals`` are the line integrals of ``(delta / beta) mu``,
    each material's attenuation times its own ratio, so that
    ``D = lambda / (4 pi)`` times them (one energy only; ``delta_beta`` is then
    not used).

    Parameters
    ----------
    line_integrals : numpy.ndarray
        Noise-free ``mu T`` (dimensionless), ``(Z, A, D)``: detector rows, angles, columns.
    photons : float
        Incident photons per detector pixel per projection.
    wavelength_m : float or sequence of float
        X-ray wavelength (m): one for a monochromatic beam, or one per energy.
    delta_beta : float or sequence of float
        ``delta / beta`` of the material (e.g. :func:`aiax_bench.sim.materials.delta_beta_ratio`),
        at each wavelength.
    distance_m : float
        Sample-to-detector distance (m), at least 0 (0: an absorption image).
    pixel_size_m : float
        Detector pixel at the sample (m).
    psf_sigma_px : float
        Scintillator blur, Gaussian sigma in detector pixels (at least 0).
    rng : numpy.random.Generator
        Source of the counting noise, drawn once over the whole scan in C order.
    upsample : int
        Wave samples per detector pixel and axis.
    weights : sequence of float, optional
        Each energy's share of the detector signal (dimensionless, summing to
        1), e.g. spectrum times scintillator absorption times energy; for one
        energy, omitted (1).
    attenuation_scale : sequence of float, optional
        ``mu(E) / mu(E0)`` per energy, ``E0`` the energy of
        ``line_integrals``; for one energy, omitted (1).
    phase_line_integrals : numpy.ndarray, optional
        Noise-free line integrals of ``(delta / beta) mu`` (dimensionless), of
        the shape of ``line_integrals``: a sample of several materials, at
        one energy.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(Z, A, D)``: ``-ln(N / photons)`` with ``N ~ Poisson(photons I / I0)``.
    """
    from aiax_bench.sim.acquire import poisson_noise

    p = np.asarray(line_integrals)
    if p.ndim != 3:
        raise InputError("line_integrals", f"have shape {p.shape}", "expected (Z, A, D): rows, angles, columns")
    phase = None
    if phase_line_integrals is not None:
        phase = np.asarray(phase_line_integrals)
        if phase.shape != p.shape:
            raise InputError("phase_line_integrals", f"have shape {phase.shape}",
                             f"expected {p.shape}, the shape of line_integrals")
        if np.atleast_1d(np.asarray(wavelength_m)).size != 1:
            raise InputError("phase_line_integrals", "are given with a beam of several energies",
                             "one energy: each material's delta / beta varies with energy on its own")
        delta_beta = 1.0  # not used: the phase comes from phase_line_integrals
    lines = _spectral_lines(wavelength_m, delta_beta, weights, attenuation_scale)
    sigma = check_finite_number("psf_sigma_px", psf_sigma_px, "detector pixels")
    if sigma < 0:
        raise InputError("psf_sigma_px", f"is {psf_sigma_px!r}", "expected a standard deviation of at least 0 pixels")
    up = check_positive_int("upsample", upsample, "wave samples per detector pixel and axis")
    pixel = check_positive("pixel_size_m", pixel_size_m, "metres")
    intensity = np.empty(p.shape, dtype=np.float64)
    for a in range(p.shape[1]):  # one projection (rows x columns) at a time
        fine = scipy.ndimage.zoom(np.asarray(p[:, a, :], dtype=np.float64), up, order=1, mode="nearest",
                                  grid_mode=True)
        fine_phase = None if phase is None else scipy.ndimage.zoom(
            np.asarray(phase[:, a, :], dtype=np.float64), up, order=1, mode="nearest", grid_mode=True)
        fine_intensity = None
        for wavelength, ratio, weight, scale in lines:
            projected_beta = fine * (wavelength / (4 * math.pi))
            if scale != 1.0:
                projected_beta = projected_beta * scale
            projected_delta = (ratio * projected_beta if fine_phase is None
                               else fine_phase * (wavelength / (4 * math.pi)))
            wave = transmission(projected_delta, projected_beta, wavelength_m=wavelength)
            if distance_m:
                wave = fresnel_propagate(wave, distance_m=distance_m, wavelength_m=wavelength,
                                         pixel_size_m=pixel / up)
            # One energy: its intensity as it is (weight 1), so a monochromatic scan keeps its bytes.
            term = np.abs(wave) ** 2 if weight == 1.0 else weight * np.abs(wave) ** 2
            fine_intensity = term if fine_intensity is None else fine_intensity + term
        intensity[:, a, :] = detector_image(fine_intensity, psf_sigma_px=sigma * up, binning=up)
    # Counted as any scan is: the detector's -ln of the counts (poisson_noise takes -ln(I / I0)).
    return poisson_noise(-np.log(np.maximum(intensity, 1e-12)), photons, rng=rng)
