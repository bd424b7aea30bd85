"""Filtered back-projection: the classical reference every learned method must beat."""

from __future__ import annotations

import dataclasses

import numpy as np

from aiax_bench.methods.base import Method

__all__ = ["FBP"]


class FBP(Method):
    """Filtered back-projection of the split's own projections (no learning).

    With the default config it returns the split's stored low-quality
    reconstruction, which is the dataset recipe's FBP. With another ``filter``
    it reconstructs the split's sinogram again with that window.
    """

    name = "fbp"
    task = "enhance"
    inputs = ("reconstruction", "sinogram")

    @dataclasses.dataclass
    class Config:
        """FBP options.

        Attributes
        ----------
        filter : str, optional
            Window of the ramp filter (``ramp``, ``shepp-logan``, ``cosine``, ``hann``);
            ``None`` uses the dataset's stored reconstruction.
        """

        filter: str | None = None

    def predict(self, sample) -> np.ndarray:
        if self.config.filter is None:
            return sample.read("low")
        from aiax_bench.recon import fbp

        voxel_cm = sample.meta["voxel_size_um"] * 1e-4
        n = sample.shape[-1]
        return fbp(sample.read("sinogram"), sample.angles, filter=self.config.filter, n_pixels=n) / voxel_cm
