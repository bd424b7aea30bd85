"""Filtered back-projection: tuned on validation volumes, and ramp-only as the named reference row."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from aiax_bench.baselines._classical import ClassicalReconstruction
from aiax_bench.errors import InputError
from aiax_bench.methods.base import Method

__all__ = ["FBP", "FBPRamp"]

#: Cut-offs tried, as fractions of the Nyquist frequency.
CUTOFFS = (1.0, 0.8, 0.65, 0.5, 0.4, 0.3)
#: Stripe-removal windows tried with ``remove_rings`` (detector pixels): from a narrow detector's to algotom's default.
RING_SIZES = (3, 5, 11, 21)
#: Fractions of the material's ``delta / beta`` tried with ``paganin``: below 1 the retrieval blurs less and
#: leaves more fringes and noise, the trade users tune by eye.
PAGANIN_SCALES = (1.0, 0.3, 0.1, 0.03, 0.01)


class FBP(ClassicalReconstruction):
    """Filtered back-projection with its filter window and cut-off chosen on the validation volumes.

    Tries every window of :data:`aiax_bench.recon.FILTERS` (ramp, Shepp–Logan,
    cosine, Hann) at every cut-off of :data:`CUTOFFS` and keeps the pair with the
    lowest validation error (see :mod:`aiax_bench.baselines._classical` for the
    ``tune`` modes). ``tune='none'`` reconstructs with ``filter`` and ``cutoff``.
    On a cone-beam dataset it is FDK (:func:`aiax_bench.recon.fdk`) with the same
    windows and cut-offs, tuned on the validation volumes' scored slices only.
    """

    name = "fbp"
    beams = ("parallel", "fan", "cone")

    @dataclasses.dataclass
    class Config:
        """FBP options.

        Attributes
        ----------
        tune : {'reference', 'truth', 'self', 'none'}
            What the window and cut-off are chosen against on the validation volumes; ``none`` keeps
            ``filter`` and ``cutoff``. It is the entry's supervision protocol.
        filter : str
            Window used without tuning (``ramp``, ``shepp-logan``, ``cosine``, ``hann``).
        cutoff : float
            Cut-off used without tuning, fraction of the Nyquist frequency (0, 1].
        tune_slices : int
            Slices per validation volume the error is taken on.
        linearise : bool
            Correct beam hardening before filtering: each polychromatic line integral is mapped to the
            path it means at the material's effective attenuation (:func:`aiax_bench.sim.spectrum.linearise`),
            with the sample's recorded tube spectrum and material (``meta['beam_hardening'][split]``, a
            parallel-beam recipe's beam-hardening split, or ``meta['spectrum']``, a lab scan's);
            the single-material correction of lab CT software.
        remove_rings : bool
            Remove the sinogram's stripes (each detector row's) before filtering: the sorting-based
            stripe removal of Vo, Atwood & Drakopoulos (Opt. Express 2018), as algotom implements it
            (:func:`aiax_bench.ingest.preprocess.remove_rings`, the import pipeline's step). Its window
            is tuned with the filter (:data:`RING_SIZES`), or ``ring_size`` without tuning.
        ring_size : int
            Stripe-removal window (detector pixels) used without tuning.
        paganin : bool
            Paganin's single-material phase retrieval of each projection before filtering
            (:func:`aiax_bench.recon.phase.paganin_filter`), with the energy and distance the phase-contrast
            scan records and the material's ``delta / beta`` (``meta['phase_contrast']``) times a scale
            tuned with the filter (:data:`PAGANIN_SCALES`), or ``paganin_scale`` without tuning.
        paganin_scale : float
            Fraction of the material's ``delta / beta`` used without tuning.
        """

        tune: str = "reference"
        filter: str = "hann"
        cutoff: float = 1.0
        tune_slices: int = 16
        linearise: bool = False
        remove_rings: bool = False
        ring_size: int = 21
        paganin: bool = False
        paganin_scale: float = 1.0

    def measured_sinogram(self, sample) -> np.ndarray:
        sinogram = super().measured_sinogram(sample)
        if self.config.paganin:
            self._phase_setup = self._recorded_phase_contrast(sample)
            self._last_measured = sinogram  # _problem retrieves it whole: read once, not twice
            return sinogram
        if not self.config.linearise:
            return sinogram
        from aiax_bench.sim.spectrum import TubeSpectrum, linearise

        # A parallel-beam recipe records the spectrum of its beam-hardening split, a lab recipe the scan's own.
        spectrum = (sample.meta.get("beam_hardening") or {}).get(getattr(sample, "split", None)) \
            or sample.meta.get("spectrum")
        if not spectrum:
            raise InputError(f"sample {sample.id}: meta spectrum", "is missing",
                             "a scan that records its tube spectrum and material attenuation, for linearise=true")
        tube = TubeSpectrum(energies_kev=np.asarray(spectrum["energies_kev"]), fluence=np.asarray(spectrum["weights"]))
        # The recorded weights are the detector's already: counted as they are.
        return linearise(sinogram, tube, np.asarray(spectrum["attenuation_per_cm"]), detector="photon-counting")

    @staticmethod
    def _recorded_phase_contrast(sample) -> dict[str, float]:
        split = getattr(sample, "split", None)
        setup = (sample.meta.get("phase_contrast") or {}).get(split)
        if not setup:
            raise InputError(f"sample {sample.id}: meta phase_contrast", f"has no entry for split {split!r}",
                             "a phase-contrast scan (its energy, distance and delta/beta), for paganin=true")
        return setup

    def _problem(self, sample):
        problem = super()._problem(sample)
        if self.config.paganin:
            if self.config.tune == "self":
                raise InputError("config tune", "is 'self' with paganin=true",
                                 "'reference' or 'truth': the odd half's ramp FBP is no target for a retrieval")
            # The retrieval filters whole projections (rows too): retrieve, then take the tuning rows.
            full = self._last_measured  # super()._problem has just read this sample's sinogram
            self._last_measured = None
            rows = self._slices(sample.shape[0])
            self._tuning_retrievals[id(problem.sinogram)] = {
                scale: np.ascontiguousarray(self._phase_retrieved(full, scale)[rows]) for scale in PAGANIN_SCALES}
        return problem

    def fit(self, train, val, **kwargs) -> None:
        self._tuning_retrievals: dict[int, dict[float, np.ndarray]] = {}
        try:
            super().fit(train, val, **kwargs)
        finally:
            self._tuning_retrievals = {}
            self._paganin_cache = None

    def _phase_retrieved(self, sinogram: np.ndarray, scale: float) -> np.ndarray:
        """Paganin's retrieval of every projection of a ``(Z, A, D)`` phase-contrast sinogram at ``scale`` times the
        material's ``delta / beta``, as line integrals; kept for the next call on the same sinogram."""
        from aiax_bench.recon.phase import paganin_filter

        cached = getattr(self, "_paganin_cache", None)
        if cached is not None and cached[0] is sinogram and cached[1] == scale:
            return cached[2]
        setup = self._phase_setup
        intensity = np.exp(-np.asarray(sinogram, dtype=np.float64)).transpose(1, 0, 2)  # one image per angle
        retrieved = paganin_filter(intensity, delta_beta=setup["delta_beta"] * scale, distance_m=setup["distance_m"],
                                   wavelength_m=setup["wavelength_m"], pixel_size_m=setup["pixel_size_um"] * 1e-6)
        out = np.ascontiguousarray(retrieved.transpose(1, 0, 2))
        self._paganin_cache = (sinogram, scale, out)
        return out

    def default_settings(self) -> dict[str, Any]:
        settings = {"filter": self.config.filter, "cutoff": self.config.cutoff}
        if self.config.paganin:
            settings["paganin_scale"] = self.config.paganin_scale
        return {**settings, "ring_size": self.config.ring_size} if self.config.remove_rings else settings

    def candidates(self, problem) -> Iterable[dict[str, Any]]:
        from aiax_bench.recon import FILTERS

        if self.config.paganin:
            # Scale first: the retrieval at one scale serves every filter (see _phase_retrieved).
            for scale, window, cutoff in itertools.product(PAGANIN_SCALES, FILTERS, CUTOFFS):
                yield {"filter": window, "cutoff": cutoff, "paganin_scale": scale}
            return
        if self.config.remove_rings:
            # Window first: the stripe removal of one window serves every filter (see _destriped).
            for size, window, cutoff in itertools.product(RING_SIZES, FILTERS, CUTOFFS):
                yield {"filter": window, "cutoff": cutoff, "ring_size": size}
            return
        for window, cutoff in itertools.product(FILTERS, CUTOFFS):
            yield {"filter": window, "cutoff": cutoff}

    def _destriped(self, sinogram: np.ndarray, size: int) -> np.ndarray:
        """The sinogram without stripes (window ``size``), kept for the next call on the same sinogram."""
        from aiax_bench.ingest.preprocess import remove_rings

        cached = getattr(self, "_destripe_cache", None)
        if cached is not None and cached[0] is sinogram and cached[1] == size:
            return cached[2]
        if self._geometry is not None and self._geometry["beam"] == "cone":  # (A, R, D): the rows second
            out = np.ascontiguousarray(remove_rings(sinogram.transpose(1, 0, 2), size=size).transpose(1, 0, 2))
        else:
            out = remove_rings(sinogram, size=size)
        self._destripe_cache = (sinogram, size, out)
        return out

    def reconstruct(self, sinogram: np.ndarray, angles: np.ndarray, n_pixels: int,
                    settings: Mapping[str, Any], *, slices: np.ndarray | None = None) -> np.ndarray:
        """FBP of a ``(Z, A, D)`` sinogram stack, or FDK of a cone-beam scan ``(A, R, D)`` (only ``slices``, if
        given), with ``settings``' window and cut-off (1/voxel)."""
        from aiax_bench.recon import fbp

        if settings.get("ring_size"):
            sinogram = self._destriped(sinogram, int(settings["ring_size"]))
        if settings.get("paganin_scale"):
            scale = float(settings["paganin_scale"])
            tuning = getattr(self, "_tuning_retrievals", {}).get(id(sinogram))
            sinogram = tuning[scale] if tuning else self._phase_retrieved(sinogram, scale)
        if self._geometry is not None and self._geometry["beam"] == "cone":
            from aiax_bench.recon import fdk

            return fdk(sinogram, angles, self.cone_geometry(), n_pixels=n_pixels,
                       n_slices=self._geometry["n_slices"], filter=settings["filter"], cutoff=settings["cutoff"],
                       slices=slices)
        projector = self.projector(n_pixels, angles, sinogram.shape[-1])
        return fbp(sinogram, projector=projector, filter=settings["filter"], cutoff=settings["cutoff"])


class FBPRamp(Method):
    """Ramp-only filtered back-projection: the split's stored reconstruction, the named reference row.

    No window, no tuning, nothing learned: what a learned method is most often
    compared with, and a strawman on its own (a tuned window gains several dB on
    noisy data). The board shows it beside every protocol group as a reference.
    """

    name = "fbp-ramp"
    task = "enhance"
    inputs = ("reconstruction",)

    def predict(self, sample) -> np.ndarray:
        return np.asarray(sample.read("low"), dtype=np.float32)
