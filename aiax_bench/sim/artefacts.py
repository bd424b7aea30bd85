"""Detector artefacts of real scans, on line integrals: rings, blur, zingers and a finite flat field.

Each function takes noise-free line integrals ``p = -log(I / I0)`` of shape
``(Z, A, D)`` (detector rows, angles, columns) and returns what the
detector records after flat-field correction and log, ``float32``, counting
noise included (``photons`` incident per pixel per projection, Poisson):

* :func:`ring_scan`: a fraction of the detector's pixels have a gain the flat
  field does not know (constant over the scan): stripes in the sinogram,
  rings in the reconstruction;
* :func:`blurred_scan`: the scintillator's point-spread function, a Gaussian
  of ``sigma_px`` detector pixels over rows and columns, spreads each
  projection's intensity before it is counted;
* :func:`zinger_scan`: scattered or direct hits on the camera, single pixels
  of a projection far brighter than the beam;
* :func:`flat_noise_scan`: the flat field is the mean of ``n_flats`` noisy
  open-beam images, so each pixel's normalisation carries its own error,
  constant over the scan (faint rings that fewer flats make stronger).

The random draws of each function come from the one generator it is given, in
a fixed order: the same generator state gives the same bytes.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.sim.acquire import poisson_noise
from aiax_bench.validation import check_positive, check_positive_int

__all__ = ["DETECTOR_ARTEFACTS", "blurred_scan", "detector_artefact_scan", "flat_noise_scan", "ring_scan",
           "zinger_scan"]


def _stack(line_integrals) -> np.ndarray:
    p = np.asarray(line_integrals)
    if p.ndim != 3:
        raise InputError("line_integrals", f"have shape {p.shape}", "expected (Z, A, D): rows, angles, columns")
    return p


def _counted(intensity: np.ndarray, photons: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts of ``photons * intensity`` (relative intensity), as float64."""
    return rng.poisson(photons * intensity).astype(np.float64)


def ring_scan(line_integrals, *, photons: float, defective_fraction: float, gain_sigma: float,
              rng: np.random.Generator) -> np.ndarray:
    """A scan whose defective detector pixels have gains the flat field does not correct.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        Noise-free ``-log(I / I0)``, ``(Z, A, D)``.
    photons : float
        Incident photons per pixel per projection.
    defective_fraction : float
        Fraction of the detector's pixels (rows x columns) with a gain error, in ``[0, 1]``.
    gain_sigma : float
        Relative spread of a defective pixel's gain (log-normal, mean 1), in ``[0, 1)``.
    rng : numpy.random.Generator
        Draws the defective pixels, their gains, then the counting noise.

    Returns
    -------
    numpy.ndarray
        Recorded ``-log(N / I0)`` (zero counts clipped to one photon), float32, ``(Z, A, D)``.
    """
    p = _stack(line_integrals)
    if not 0.0 <= defective_fraction <= 1.0:
        raise InputError("defective_fraction", f"is {defective_fraction}", "a fraction in [0, 1]")
    if not (np.isfinite(gain_sigma) and 0.0 <= gain_sigma < 1.0):
        raise InputError("gain_sigma", f"is {gain_sigma}", "a relative gain error in [0, 1)")
    rows, _, cols = p.shape
    defective = rng.random((rows, 1, cols)) < defective_fraction
    gains = np.where(defective, np.exp(gain_sigma * rng.standard_normal((rows, 1, cols)) - gain_sigma**2 / 2), 1.0)
    # Gain errors act on the recorded intensity: log-offsets of the noise-free integrals, then counting.
    return poisson_noise((p - np.log(gains)).astype(np.float64), photons, rng=rng)


def blurred_scan(line_integrals, *, photons: float, sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """A scan through a detector whose point-spread function is a Gaussian of ``sigma_px`` pixels (rows, columns).

    The intensity ``exp(-p)`` of each projection is blurred (reflecting at the detector's edges), then counted.
    """
    p = _stack(line_integrals)
    sigma_px = check_positive("sigma_px", sigma_px, "detector pixels")
    intensity = ndimage.gaussian_filter(np.exp(-np.asarray(p, dtype=np.float64)), sigma=(sigma_px, 0.0, sigma_px),
                                        mode="reflect")
    return poisson_noise(-np.log(np.maximum(intensity, 1e-300)), photons, rng=rng)


def zinger_scan(line_integrals, *, photons: float, zingers_per_projection: float, brightness: tuple[float, float],
                rng: np.random.Generator) -> np.ndarray:
    """A counted scan with zingers: single pixels whose counts gain ``brightness`` times the open beam's photons.

    ``zingers_per_projection`` is the mean number per projection (Poisson); each zinger's extra counts are
    drawn uniformly in ``brightness`` (in units of ``photons``). Line integrals come out negative there.
    """
    p = _stack(line_integrals)
    check_positive("photons", photons, "photons per pixel per projection")
    if not (np.isfinite(zingers_per_projection) and zingers_per_projection >= 0):
        raise InputError("zingers_per_projection", f"is {zingers_per_projection}", "a non-negative mean count")
    low, high = (float(b) for b in brightness)
    if not 0 < low <= high:
        raise InputError("brightness", f"is {brightness}", "(low, high) with 0 < low <= high, in open-beam units")
    rows, angles, cols = p.shape
    counts = _counted(np.exp(-np.asarray(p, dtype=np.float64)), photons, rng)
    n = rng.poisson(zingers_per_projection, size=angles)
    for a in range(angles):
        r = rng.integers(0, rows, size=n[a])
        c = rng.integers(0, cols, size=n[a])
        counts[r, a, c] += photons * rng.uniform(low, high, size=n[a])
    return (-np.log(np.maximum(counts, 1.0) / photons)).astype(np.float32)


def flat_noise_scan(line_integrals, *, photons: float, n_flats: int, rng: np.random.Generator) -> np.ndarray:
    """A counted scan normalised by the mean of ``n_flats`` counted open-beam images (not by the exact ``photons``)."""
    p = _stack(line_integrals)
    n_flats = check_positive_int("n_flats", n_flats, "open-beam images")
    check_positive("photons", photons, "photons per pixel per projection")
    rows, _, cols = p.shape
    flat = rng.poisson(photons * n_flats, size=(rows, 1, cols)) / n_flats  # the sum of n Poisson draws
    counts = _counted(np.exp(-np.asarray(p, dtype=np.float64)), photons, rng)
    return (-np.log(np.maximum(counts, 1.0) / np.maximum(flat, 1.0))).astype(np.float32)


#: Each detector artefact's recipe kind: its scan function and the recipe keys it takes, as keyword arguments.
DETECTOR_ARTEFACTS = {
    "rings": (ring_scan, lambda p: {"defective_fraction": p["defective_fraction"], "gain_sigma": p["gain_sigma"]}),
    "blur": (blurred_scan, lambda p: {"sigma_px": p["psf_sigma_px"]}),
    "zingers": (zinger_scan, lambda p: {"zingers_per_projection": p["zingers_per_projection"],
                                        "brightness": tuple(p["brightness"])}),
    "flat-noise": (flat_noise_scan, lambda p: {"n_flats": p["n_flats"]}),
}


def detector_artefact_scan(params: dict, line_integrals, *, photons: float, rng: np.random.Generator) -> np.ndarray:
    """The scan of a recipe split whose ``kind`` is one of :data:`DETECTOR_ARTEFACTS`, on ``(Z, A, D)`` line
    integrals: the one place that reads the recipe keys of every detector artefact, for every beam geometry."""
    scan, keywords = DETECTOR_ARTEFACTS[params["kind"]]
    return scan(line_integrals, photons=photons, rng=rng, **keywords(params))
