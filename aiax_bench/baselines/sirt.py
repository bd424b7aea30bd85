"""SIRT with its number of iterations chosen on the validation volumes (early stopping)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from aiax_bench.baselines._classical import ClassicalReconstruction

__all__ = ["SIRT"]


class SIRT(ClassicalReconstruction):
    """Simultaneous iterative reconstruction (non-negative), stopped at the iteration that validates best.

    Iterating from zero, SIRT first recovers the coarse structure and then fits
    the noise: the number of iterations is its regularisation. ``fit`` runs
    ``max_iter`` iterations on each validation volume, records the error after
    every one, and keeps the iteration count with the lowest mean error.
    """

    name = "sirt"

    @dataclasses.dataclass
    class Config:
        """SIRT options.

        Attributes
        ----------
        tune : {'reference', 'truth', 'self', 'none'}
            What the iteration count is chosen against (see :mod:`aiax_bench.baselines._classical`).
        iterations : int
            Iterations used without tuning.
        max_iter : int
            Longest run tried while tuning.
        tune_slices : int
            Slices per validation volume the error is taken on.
        """

        tune: str = "reference"
        iterations: int = 100
        max_iter: int = 150
        tune_slices: int = 16

    def default_settings(self) -> dict[str, Any]:
        return {"iterations": self.config.iterations}

    def score_candidates(self, problem) -> list[tuple[dict[str, Any], float]]:
        from aiax_bench.recon import sirt

        errors: list[float] = []

        def record(iteration: int, x, residual) -> bool:
            errors.append(self.error(problem, x.cpu().numpy()))
            return False

        projector = self.projector(problem.n_pixels, problem.angles, problem.sinogram.shape[-1])
        sirt(problem.sinogram, projector=projector, n_iter=self.config.max_iter, nonneg=True, callback=record)
        return [({"iterations": k + 1}, err) for k, err in enumerate(errors)]

    def reconstruct(self, sinogram: np.ndarray, angles: np.ndarray, n_pixels: int,
                    settings: Mapping[str, Any]) -> np.ndarray:
        from aiax_bench.recon import sirt

        projector = self.projector(n_pixels, angles, sinogram.shape[-1])
        return sirt(sinogram, projector=projector, n_iter=int(settings["iterations"]), nonneg=True)
