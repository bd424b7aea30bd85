"""Acquisition models: which projections are taken and how many photons they count."""

from __future__ import annotations

import numpy as np

from aiax_bench.errors import InputError

__all__ = ["angle_subset", "poisson_noise", "reference_angles"]


def reference_angles(n_angles: int) -> np.ndarray:
    """Equally spaced angles over 180 degrees (radians), the reference scan."""
    if int(n_angles) < 1:
        raise InputError("n_angles", f"is {n_angles}", "expected at least one projection")
    return np.linspace(0.0, np.pi, int(n_angles), endpoint=False)


def angle_subset(n_reference: int, n_angles: int) -> np.ndarray:
    """Indices of ``n_angles`` projections spread evenly over the ``n_reference`` ones.

    A sparse scan is a subset of the reference scan (same exposure per
    projection), so it shares the reference's noise realisation.
    """
    if not 1 <= int(n_angles) <= int(n_reference):
        raise InputError("n_angles", f"is {n_angles}",
                         f"expected between 1 and the {n_reference} reference projections")
    idx = np.round(np.arange(n_angles) * (n_reference / n_angles)).astype(np.int64)
    return np.unique(np.minimum(idx, n_reference - 1))


def poisson_noise(line_integrals: np.ndarray, photons: float, *, rng: np.random.Generator) -> np.ndarray:
    """Counting noise of a transmission measurement, after flat-field and log.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        Noise-free ``-log(I / I0)`` (dimensionless).
    photons : float
        Incident photons per detector pixel per projection (``I0``).
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible datasets).

    Returns
    -------
    numpy.ndarray
        ``-log(max(N, 1) / I0)`` with ``N ~ Poisson(I0 exp(-p))``, ``float32``.
        Zero counts are clipped to one photon, as detector software does.
    """
    if not np.isfinite(photons) or photons <= 0:
        raise InputError("photons", f"is {photons}", "expected a positive photon count per detector pixel")
    counts = rng.poisson(photons * np.exp(-np.asarray(line_integrals, dtype=np.float64)))
    return (-np.log(np.maximum(counts, 1) / photons)).astype(np.float32)
