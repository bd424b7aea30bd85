"""Classical reconstructions whose settings are chosen on the validation volumes, never on the test ones.

A classical baseline is only as strong as its settings: ramp-only FBP is a
strawman against a trained network. Each method here tunes its settings in
``fit`` on the validation volumes, with the information its ``tune`` mode
allows, and that mode is its supervision protocol on the leaderboard:

* ``reference``: mean squared error against the validation volumes' reference
  scans (what a reference-supervised network trains on);
* ``truth``: against the exact phantom;
* ``self``: hold-out projections only (no clean volume): the even-angle half of
  the split's own sinogram is reconstructed with each candidate and compared
  with the ramp FBP of the odd-angle half. Their noise and streaks are
  independent, so the criterion is the error against the truth plus a constant
  (the Noise2Inverse argument); it picks the settings for half the angles, a
  known bias towards smoothing;
* ``none``: no tuning, the configured settings.

Errors are taken inside the sample's region of interest, on ``tune_slices``
evenly spaced slices per validation volume.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError
from aiax_bench.methods.base import Budget, Method

__all__ = ["TUNE_MODES", "ClassicalReconstruction"]

TUNE_MODES = ("reference", "truth", "self", "none")
_TARGETS = {"reference": "high", "truth": "truth"}


@dataclasses.dataclass
class _Problem:
    """One validation volume's tuning problem: a sinogram stack, its geometry, the target and the mask."""

    sinogram: np.ndarray  # (Z, A, D) line integrals
    angles: np.ndarray
    n_pixels: int
    voxel_cm: float
    target: np.ndarray  # (Z, N, N) 1/cm
    mask: np.ndarray  # (Z, N, N) bool
    geometry: dict[str, Any] | None = None  # the sample's beam geometry (meta['geometry']); parallel if None
    #: Cone beam: the sinogram is the whole scan ``(A, R, D)`` and these are the slices scored (target, mask).
    slices: np.ndarray | None = None


class ClassicalReconstruction(Method):
    """Base of the tuned classical reconstructions (FBP, SIRT, TV): tuning in ``fit``, reconstruction in ``predict``.

    Subclasses define ``Config`` (with ``tune`` and ``tune_slices``), :meth:`candidates`
    and :meth:`reconstruct`; SIRT overrides :meth:`score_candidates` to read a
    whole early-stopping curve from one run.
    """

    task = "enhance"
    inputs: ClassVar[tuple[str, ...]] = ("sinogram",)
    beams: ClassVar[tuple[str, ...]] = ("parallel", "fan")
    trainable = False

    def __init__(self, config=None) -> None:
        super().__init__(config)
        if self.config.tune not in TUNE_MODES:
            raise InputError(f"config of method {self.name}: key tune", f"is {self.config.tune!r}",
                             f"expected one of {', '.join(TUNE_MODES)}")
        if self.config.tune_slices < 1:
            raise InputError(f"config of method {self.name}: key tune_slices", f"is {self.config.tune_slices}",
                             "expected a positive number of slices per validation volume")
        self.selected: dict[str, Any] = self.default_settings()
        self._summary: dict[str, Any] = {}
        self._projectors: dict[tuple, Any] = {}
        #: The geometry of the sinograms being reconstructed: the current sample's (see :meth:`projector`).
        self._geometry: dict[str, Any] | None = None

    @property
    def supervision(self) -> str:  # type: ignore[override]
        """The tune mode: what the settings were chosen against."""
        return self.config.tune

    # -- what subclasses define ------------------------------------------------------------------

    def default_settings(self) -> dict[str, Any]:
        """The settings used without tuning (``tune='none'``)."""
        raise NotImplementedError

    def candidates(self, problem: _Problem) -> Iterable[dict[str, Any]]:
        """The settings tried on a validation volume."""
        raise NotImplementedError

    def reconstruct(self, sinogram: np.ndarray, angles: np.ndarray, n_pixels: int,
                    settings: Mapping[str, Any]) -> np.ndarray:
        """Reconstruction (1/voxel) of a ``(Z, A, D)`` sinogram stack with ``settings``."""
        raise NotImplementedError

    def score_candidates(self, problem: _Problem) -> list[tuple[dict[str, Any], float]]:
        """Mean squared error (1/cm)² inside the mask of every candidate on one problem.

        A cone-beam problem's candidates reconstruct its scored slices only (``reconstruct(..., slices=)``).
        """
        only = {} if problem.slices is None else {"slices": problem.slices}
        return [(settings, self.error(problem, self.reconstruct(problem.sinogram, problem.angles,
                                                                  problem.n_pixels, settings, **only)))
                for settings in self.candidates(problem)]

    def projector(self, n_pixels: int, angles: np.ndarray, n_detector: int):
        """The system matrix of a geometry, built once (it is the expensive part) and kept for the next call.

        Parallel beam, or the fan beam the current sample's ``meta['geometry']`` records (lengths in voxels).
        """
        from aiax_bench.recon import FanBeamProjector, ParallelBeamProjector

        geometry = self._geometry or {"beam": "parallel"}
        key = (n_pixels, n_detector, angles.size, angles.tobytes(), tuple(sorted(geometry.items())))
        if key not in self._projectors:
            if len(self._projectors) >= 3:  # tuning halves, the full scan: a fourth geometry evicts the oldest
                self._projectors.pop(next(iter(self._projectors)))
            if geometry["beam"] == "fan":
                self._projectors[key] = FanBeamProjector(
                    n_pixels, angles, n_detector=n_detector, det_spacing=float(geometry["det_spacing"]),
                    source_origin=float(geometry["source_origin"]),
                    origin_detector=float(geometry["origin_detector"]), lazy=True)
            else:
                self._projectors[key] = ParallelBeamProjector(n_pixels, angles, n_detector=n_detector)
        return self._projectors[key]

    # -- tuning ----------------------------------------------------------------------------------

    @staticmethod
    def error(problem: _Problem, volume_per_voxel: np.ndarray) -> float:
        diff = np.asarray(volume_per_voxel, dtype=np.float64) / problem.voxel_cm - problem.target
        return float(np.mean(diff[problem.mask] ** 2))

    def _slices(self, depth: int) -> np.ndarray:
        k = min(self.config.tune_slices, depth)
        # Evenly spaced inside the central 80 %: the caps of a cylinder hold little sample.
        return np.unique(np.linspace(0.1 * (depth - 1), 0.9 * (depth - 1), k).round().astype(int))

    def _problem(self, sample: SampleLike) -> _Problem:
        self._geometry = _geometry(sample)
        z = self._slices(sample.shape[0])
        cone = self._geometry is not None and self._geometry["beam"] == "cone"
        # A cone-beam scan does not split into slices: the whole scan is reconstructed at the slices scored.
        sinogram = self.measured_sinogram(sample)
        sinogram = sinogram if cone else sinogram[z]
        angles = np.asarray(sample.angles, dtype=np.float64)
        n = sample.shape[-1]
        voxel_cm = float(sample.meta["voxel_size_um"]) * 1e-4
        mask = np.asarray(sample.read("mask"), dtype=bool)[z]
        if self.config.tune == "self":
            # Even angles are reconstructed by the candidates; the odd half, by ramp FBP, is the noisy target.
            if cone:
                from aiax_bench.recon import fdk

                target = fdk(sinogram[1::2], angles[1::2], self.cone_geometry(), n_pixels=n,
                             n_slices=self._geometry["n_slices"], slices=z) / voxel_cm
                sinogram = sinogram[0::2]
            else:
                from aiax_bench.recon import fbp

                target = fbp(sinogram[:, 1::2], projector=self.projector(n, angles[1::2], sinogram.shape[-1]))
                target /= voxel_cm
                sinogram = sinogram[:, 0::2]
            angles = angles[0::2]
        else:
            target = np.asarray(sample.read(_TARGETS[self.config.tune]), dtype=np.float64)[z]
        return _Problem(np.ascontiguousarray(sinogram), angles, n, voxel_cm, target, mask, self._geometry,
                        slices=z if cone else None)

    def measured_sinogram(self, sample: SampleLike) -> np.ndarray:
        """The line integrals the method reconstructs from a sample (float32); a subclass may correct them."""
        return np.asarray(sample.read("sinogram"), dtype=np.float32)

    def cone_geometry(self):
        """The current cone-beam sample's :class:`~aiax_bench.recon.ConeBeamGeometry` (from ``meta['geometry']``)."""
        from aiax_bench.recon import ConeBeamGeometry

        g = self._geometry or {}
        return ConeBeamGeometry(**{k: float(g[k]) for k in ("source_origin", "origin_detector", "det_spacing",
                                                             "row_spacing")})

    def fit(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int, budget: Budget | None = None,
            tracker: Any = None, context: Mapping[str, Any] | None = None) -> None:
        """Choose the settings with the lowest mean error over the validation volumes (see the module notes)."""
        self.selected = self.default_settings()
        if self.config.tune == "none":
            self._summary = {"tune": "none", "selected": self.selected}
            return
        if not val:
            raise InputError(f"method {self.name}", "got no validation volumes",
                             "tuned classical methods choose their settings on the validation volumes")
        problems = [self._problem(sample) for sample in val]
        table = self.score_all(problems)
        table = self.extend(problems, table)
        scored = self.rank(table)
        best_err, self.selected = scored[0]
        self._summary = {
            "tune": self.config.tune,
            "criterion": {"reference": "MSE vs the validation reference scans", "truth": "MSE vs the exact phantom",
                          "self": "MSE of the even-angle half vs the ramp FBP of the odd-angle half"}[self.config.tune],
            "validation_volumes": [s.id for s in val],
            "slices_per_volume": len(self._slices(val[0].shape[0])),
            "selected": self.selected,
            "selected_mse": best_err,
            "candidates": [{"settings": s, "mse": e} for e, s in scored],
        }
        if tracker is not None:
            tracker.log_params({f"selected.{k}": v for k, v in self.selected.items()})

    def score_all(self, problems: Sequence[_Problem]) -> dict[str, list]:
        """``{key: [settings, [error per problem]]}`` of every candidate on every validation problem."""
        table: dict[str, list] = {}
        for problem in problems:
            self._geometry = problem.geometry
            for settings, err in self.score_candidates(problem):
                table.setdefault(_key(settings), [settings, []])[1].append(err)
        return table

    def extend(self, problems: Sequence[_Problem], table: dict[str, list]) -> dict[str, list]:
        """More candidates when the best lies on the edge of the grid; none by default."""
        return table

    @staticmethod
    def rank(table: dict[str, list]) -> list[tuple[float, dict[str, Any]]]:
        """(mean error, settings), best first; ties broken by the settings' text, so the choice is reproducible."""
        return sorted(((float(np.mean(errs)), settings) for settings, errs in table.values()),
                      key=lambda t: (t[0], _key(t[1])))

    def fit_summary(self) -> dict[str, Any]:
        return self._summary

    def predict(self, sample: SampleLike) -> np.ndarray:
        self._geometry = _geometry(sample)
        voxel_cm = float(sample.meta["voxel_size_um"]) * 1e-4
        volume = self.reconstruct(self.measured_sinogram(sample),
                                  np.asarray(sample.angles, dtype=np.float64), sample.shape[-1], self.selected)
        return (volume / voxel_cm).astype(np.float32)


def _geometry(sample: SampleLike) -> dict[str, Any] | None:
    """The sample's beam geometry (``meta['geometry']``: HTC2022's fan beam, a lab scan's cone beam), or None for
    parallel beam; a cone beam's carries the volume's height (``n_slices``) too."""
    geometry = sample.meta.get("geometry")
    if geometry is None or geometry.get("beam", "parallel") == "parallel":
        return None
    if geometry["beam"] == "cone":
        return {**{k: geometry[k] for k in ("beam", "source_origin", "origin_detector", "det_spacing",
                                            "row_spacing")}, "n_slices": int(sample.shape[0])}
    if geometry["beam"] != "fan":
        raise InputError(f"sample {sample.id}: geometry beam", f"is {geometry['beam']!r}",
                         "parallel, fan or cone for the classical reconstructions")
    return {k: geometry[k] for k in ("beam", "source_origin", "origin_detector", "det_spacing")}


def _key(settings: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={settings[k]}" for k in sorted(settings))
