"""Input validators shared by every package (simulation, training, evaluation, data).

Each helper raises :class:`~aiax_bench.errors.InputError` naming the field at
fault, what is wrong and what was expected, so that a user sees one clear line
instead of a NumPy broadcasting error three calls deeper.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiax_bench.errors import InputError

__all__ = ["check_finite", "check_finite_number", "check_label_volume", "check_mask", "check_positive",
           "check_positive_int", "check_same_shape", "check_volume"]


def check_positive(name: str, value: Any, unit: str) -> float:
    """Return ``value`` as a float, or raise if it is not a finite positive number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"is {value!r}", f"expected a positive number of {unit}") from None
    if not np.isfinite(number) or number <= 0:
        raise InputError(name, f"is {value!r}", f"expected a positive number of {unit}")
    return number


def check_finite_number(name: str, value: Any, unit: str) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number (a bool or a string is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) \
            or not np.isfinite(value):
        raise InputError(name, f"is {value!r}", f"expected a finite number of {unit}")
    return float(value)


def check_positive_int(name: str, value: Any, what: str = "") -> int:
    """Return ``value`` as an int, or raise if it is not a whole number of at least 1 (``what`` says of what)."""
    whole = (not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)
             and np.isfinite(value) and float(value).is_integer() and value >= 1)
    if not whole:
        raise InputError(name, f"is {value!r}", "expected a positive integer" + (f" ({what})" if what else ""))
    return int(value)


def check_same_shape(name: str, array: Any, shape: tuple[int, ...], like: str) -> None:
    """Raise if ``array.shape`` differs from ``shape`` (the shape of ``like``)."""
    if tuple(array.shape) != tuple(shape):
        raise InputError(name, f"has shape {tuple(array.shape)}", f"expected {tuple(shape)} like {like}")


def check_finite(name: str, array: np.ndarray) -> None:
    """Raise if ``array`` holds NaN or infinite values, giving the count and the first position."""
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        axes = "(z, y, x)" if array.ndim == 3 else "index"
        raise InputError(name, f"has {int(bad.sum())} NaN or infinite voxel(s), first at {axes} = {first}",
                         "expected finite values everywhere")


def check_volume(name: str, volume: Any, *, shape: tuple[int, ...] | None = None, like: str = "the reference",
                 ndim: int | None = 3, finite: bool = True) -> np.ndarray:
    """Check an intensity volume: a floating-point ``numpy.ndarray`` of the right shape, finite.

    Parameters
    ----------
    name : str
        How the volume is named in the error message (e.g. ``"prediction for test-000"``).
    volume : numpy.ndarray
        The array to check; it is returned unchanged (no copy).
    shape : tuple of int, optional
        The required shape.
    like : str
        What ``shape`` comes from, for the message.
    ndim : int, optional
        The required number of dimensions when ``shape`` is not given.
    finite : bool
        Also reject NaN and infinite values (a full pass over the data).
    """
    if not isinstance(volume, np.ndarray):
        raise InputError(name, f"is a {type(volume).__name__}", "expected a numpy.ndarray")
    if shape is not None:
        check_same_shape(name, volume, shape, like)
    elif ndim is not None and volume.ndim != ndim:
        raise InputError(name, f"has {volume.ndim} dimension(s) (shape {volume.shape})",
                         f"expected a {ndim}D volume (z, y, x)")
    if not np.issubdtype(volume.dtype, np.floating):
        raise InputError(name, f"has dtype {volume.dtype}", "expected a floating-point volume in 1/cm")
    if finite:
        check_finite(name, volume)
    return volume


def check_label_volume(name: str, labels: Any, *, shape: tuple[int, ...] | None = None,
                       n_classes: int | None = None, like: str = "the reference") -> np.ndarray:
    """Check a label volume: an integer (or boolean) ``numpy.ndarray`` with values in ``[0, n_classes)``."""
    if not isinstance(labels, np.ndarray):
        raise InputError(name, f"is a {type(labels).__name__}", "expected a numpy.ndarray of labels")
    if shape is not None:
        check_same_shape(name, labels, shape, like)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise InputError(name, f"has dtype {labels.dtype}",
                         "expected an integer label volume (one phase index per voxel)")
    if n_classes is not None and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            raise InputError(name, f"has labels in [{lo}, {hi}]",
                             f"expected phase indices in [0, {n_classes - 1}]")
    return labels


def check_mask(name: str, mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Return ``mask`` as a boolean array of ``shape`` (or ``None``), or raise."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    check_same_shape(name, mask, shape, "the volume")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer):
            raise InputError(name, f"has dtype {mask.dtype}", "expected a boolean mask")
        mask = mask.astype(bool)
    if not mask.any():
        raise InputError(name, "selects no voxel", "expected a mask with at least one True voxel")
    return mask
