"""Edge positions in reconstructed slices, for the geometry tests (fan beam, cone beam)."""

from __future__ import annotations

import numpy as np


def bilinear(image: np.ndarray, x, y) -> np.ndarray:
    """Values of a square ``image`` at points ``(x, y)`` (pixel units, centre at 0), bilinear."""
    n = image.shape[0]
    col, row = np.asarray(x, dtype=float) + (n - 1) / 2, np.broadcast_to(y, np.shape(x)) + (n - 1) / 2
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    fc, fr = col - c0, row - r0
    return ((1 - fr) * ((1 - fc) * image[r0, c0] + fc * image[r0, c0 + 1])
            + fr * ((1 - fc) * image[r0 + 1, c0] + fc * image[r0 + 1, c0 + 1]))


def half_maximum_radius(image: np.ndarray, cx: float, cy: float, radius: float, direction: float,
                        margin: float) -> float:
    """Where the profile from a disc's centre along ``direction`` (±1 in x) first crosses half its contrast.

    The contrast is the centre's value against the value ``radius + margin`` away, outside the disc.
    """
    r = np.linspace(0, radius + margin, 600)
    outside = bilinear(image, np.array([cx + direction * (radius + margin)]), cy)[0]
    profile = bilinear(image, cx + direction * r, cy) - outside
    return float(r[np.flatnonzero(np.sign(profile - profile[0] / 2) != np.sign(profile[0]))[0]])
