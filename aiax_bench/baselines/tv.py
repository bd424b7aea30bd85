"""Total-variation regularised reconstruction with its weight chosen on the validation volumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from aiax_bench.baselines._classical import ClassicalReconstruction

__all__ = ["TV"]

#: Weights tried first, relative to the number of angles (``A^T A`` grows with it, and so must the weight).
RELATIVE_WEIGHTS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
#: When the best weight is the smallest or largest tried, the grid grows by this factor, up to MAX_EXTENSIONS times.
EXTENSION_FACTOR = 10 ** 0.5
MAX_EXTENSIONS = 4


class TV(ClassicalReconstruction):
    """Least squares + isotropic TV per slice (Chambolle–Pock), weight and iterations tuned on validation.

    Each candidate weight is ``relative weight × number of angles`` (see
    :data:`RELATIVE_WEIGHTS`; when the best lies on the edge of the weights
    tried, the grid is extended beyond it, half a decade at a time, up to
    :data:`MAX_EXTENSIONS` times). Every run starts from the ramp FBP; while tuning,
    the validation error is read every ``check_every`` iterations up to
    ``max_iter``, and the (weight, iterations) pair with the lowest mean error is
    kept. Convergence is checked, not assumed: ``fit_summary`` reports, per
    weight, the relative change of the volume between the last two iterations
    at the chosen count and at ``max_iter``, and whether it fell below ``tol``.
    """

    name = "tv"

    @dataclasses.dataclass
    class Config:
        """TV options.

        Attributes
        ----------
        tune : {'reference', 'truth', 'self', 'none'}
            What the weight and iterations are chosen against (see :mod:`aiax_bench.baselines._classical`).
        relative_weight : float
            Weight per angle used without tuning.
        iterations : int
            Iterations used without tuning.
        max_iter : int
            Longest run tried while tuning.
        check_every : int
            Iterations between two validation errors while tuning.
        tol : float
            Converged when ``||x_k - x_{k-1}|| / ||x_k||`` is below it.
        tune_slices : int
            Slices per validation volume the error is taken on.
        """

        tune: str = "reference"
        relative_weight: float = 1e-3
        iterations: int = 100
        max_iter: int = 100
        check_every: int = 5
        tol: float = 1e-4
        tune_slices: int = 8

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.convergence: list[dict[str, Any]] = []
        self._weights: tuple[float, ...] = RELATIVE_WEIGHTS

    def default_settings(self) -> dict[str, Any]:
        return {"relative_weight": self.config.relative_weight, "iterations": self.config.iterations}

    def _run(self, sinogram: np.ndarray, angles: np.ndarray, n_pixels: int, weight: float, n_iter: int,
             every=None):
        """TV from the ramp FBP; ``every(iteration, x)`` on every ``check_every``-th iteration; relative changes."""
        import torch

        from aiax_bench.recon import fbp, tv_reconstruction

        projector = self.projector(n_pixels, angles, sinogram.shape[-1])
        x0 = fbp(sinogram, projector=projector)
        changes: list[float] = []
        previous = {"x": torch.as_tensor(x0)}

        def callback(iteration: int, x, residual) -> bool:
            if every is not None or iteration == n_iter - 1:
                step = torch.linalg.vector_norm(x - previous["x"])
                changes.append(float(step / torch.linalg.vector_norm(x).clamp(min=1e-30)))
                previous["x"] = x.clone()
            if every is not None and (iteration + 1) % self.config.check_every == 0:
                every(iteration + 1, x)
            return False

        volume = tv_reconstruction(sinogram, projector=projector, weight=weight * angles.size, n_iter=n_iter,
                                   x0=x0, nonneg=True, callback=callback)
        return volume, changes

    def score_candidates(self, problem) -> list[tuple[dict[str, Any], float]]:
        out = []
        for weight in self._weights:
            errors: dict[int, float] = {}
            _, changes = self._run(problem.sinogram, problem.angles, problem.n_pixels, weight, self.config.max_iter,
                                   every=lambda k, x, errors=errors: errors.__setitem__(
                                       k, self.error(problem, x.cpu().numpy())))
            best = min(errors, key=errors.get)
            self.convergence.append({"relative_weight": weight, "best_iterations": best,
                                     "relative_change_at_best": changes[best - 1],
                                     "relative_change_at_max_iter": changes[-1],
                                     "converged_at_max_iter": changes[-1] < self.config.tol})
            out += [({"relative_weight": weight, "iterations": k}, err) for k, err in errors.items()]
        return out

    def candidates(self, problem) -> Iterable[dict[str, Any]]:  # score_candidates reads whole curves instead
        return ()

    def reconstruct(self, sinogram: np.ndarray, angles: np.ndarray, n_pixels: int,
                    settings: Mapping[str, Any]) -> np.ndarray:
        volume, _ = self._run(sinogram, angles, n_pixels, settings["relative_weight"], int(settings["iterations"]))
        return volume

    def extend(self, problems, table):
        """Grow the weight grid past its edge while the best weight lies on it."""
        for _ in range(MAX_EXTENSIONS):
            best = self.rank(table)[0][1]["relative_weight"]
            tried = sorted({settings["relative_weight"] for settings, _ in table.values()})
            if best == tried[0]:
                self._weights = (tried[0] / EXTENSION_FACTOR,)
            elif best == tried[-1]:
                self._weights = (tried[-1] * EXTENSION_FACTOR,)
            else:
                break
            for key, (settings, errors) in self.score_all(problems).items():
                table[key] = [settings, errors]
        return table

    def fit(self, train, val, **kwargs) -> None:
        self.convergence = []
        self._weights = RELATIVE_WEIGHTS
        super().fit(train, val, **kwargs)
        if self._summary:
            self._summary["convergence"] = self.convergence
            chosen = [c for c in self.convergence if c["relative_weight"] == self.selected.get("relative_weight")]
            self._summary["selected_converged"] = bool(chosen) and all(
                c["relative_change_at_best"] < self.config.tol for c in chosen)
