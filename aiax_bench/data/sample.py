"""What every sample a method sees provides: the one protocol behind the stored, sealed and annotated views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["SampleLike"]


@runtime_checkable
class SampleLike(Protocol):
    """A volume of a split and its arrays, as :class:`~aiax_bench.data.loader.Sample` (stored),
    :class:`~aiax_bench.data.sealed.SealedSample` (the test view, where the truth raises) and
    :class:`~aiax_bench.data.annotation.AnnotatedSample` (labels on k slices) give it.

    Attributes
    ----------
    id : str
        Sample id within its split (``train-000``, ``test-003``, ...).
    meta : mapping
        Acquisition and phantom metadata (``voxel_size_um``, ``phases``, ...).
    """

    id: str
    meta: Mapping[str, Any]

    def read(self, name: str) -> np.ndarray:
        """The array ``name`` (``low``, ``high``, ``mask``, ``sinogram``, ...) as a NumPy array."""
        ...
