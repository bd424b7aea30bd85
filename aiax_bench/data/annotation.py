"""The annotated-k protocol of the segmentation task: training labels on k slices only.

Annotating a tomogram by hand costs person-hours per slice, so the users'
question is how few labelled slices a segmenter needs. Under ``annotated-k``
the harness hands every method the training and validation volumes through
:class:`AnnotatedSample`: the input arrays whole, the labels only on ``k``
slices evenly spaced in z and :data:`UNLABELLED` everywhere else. Test
volumes are scored on all their voxels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError

__all__ = ["UNLABELLED", "AnnotatedSample", "annotated_slice_indices", "check_annotated"]

UNLABELLED = 255
"""Label value of voxels without annotation (no phase uses it)."""


def check_annotated(k: int | None) -> int | None:
    """``k`` if it is a valid number of annotated slices (a positive integer) or None (all slices)."""
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError("annotated slices", f"is {k!r}", "expected a positive whole number of slices (1, 5, 10, ...)")
    return int(k)


def annotated_slice_indices(nz: int, k: int | None) -> np.ndarray:
    """Indices of the ``k`` annotated slices of a volume of ``nz`` slices: centres of ``k`` equal slabs.

    All slices when ``k`` is None or not smaller than ``nz``.
    """
    if k is None or k >= nz:
        return np.arange(nz)
    return np.unique(np.floor((np.arange(k) + 0.5) * nz / k).astype(np.int64))


class AnnotatedSample:
    """A sample whose ``labels`` exist on ``k`` slices only (:data:`UNLABELLED` elsewhere).

    Every other array and attribute passes through; :func:`annotated_slice_indices`
    gives the labelled slices (z).
    """

    def __init__(self, sample: SampleLike, k: int | None) -> None:
        object.__setattr__(self, "_sample", sample)
        object.__setattr__(self, "k", check_annotated(k))

    def __getattr__(self, name: str) -> Any:
        if name == "_sample":  # not yet set (copy, unpickling): no recursion
            raise AttributeError(name)
        if name == "labels":
            return self.read("labels")
        return getattr(self._sample, name)

    def read(self, name: str) -> np.ndarray:
        """Load one array fully; ``labels`` carry :data:`UNLABELLED` outside the annotated slices."""
        arr = self._sample.read(name)
        if name != "labels":
            return arr
        out = np.full(arr.shape, UNLABELLED, dtype=np.uint8)
        z = annotated_slice_indices(arr.shape[0], self.k)
        out[z] = arr[z]
        return out

    def __repr__(self) -> str:
        return f"AnnotatedSample({getattr(self._sample, 'id', '?')!r}, k={self.k})"
