"""Classical segmentation reference: (multi-)Otsu thresholds inside the sample mask.

Written from Otsu, "A threshold selection method from gray-level histograms",
IEEE Trans. SMC 9(1):62-66, 1979, and its multi-level extension (Liao, Chen &
Chung, J. Inf. Sci. Eng. 17:713-727, 2001) as implemented by scikit-image
(``threshold_otsu`` / ``threshold_multiotsu``); no code copied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from aiax_bench.data.annotation import UNLABELLED
from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError
from aiax_bench.methods.base import Budget, Method

__all__ = ["Threshold", "otsu_thresholds"]

#: Phase names whose voxels are empty space: the lowest attenuation (used when no training data orders the phases).
_EMPTY_PHASES = ("air", "pore", "pores", "void", "voids", "porosity", "background")


def otsu_thresholds(values: np.ndarray, n_classes: int, *, bins: int = 256) -> np.ndarray:
    """The ``n_classes - 1`` Otsu (2 classes) or multi-Otsu (more) thresholds of ``values``, ascending."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or n_classes < 2:
        return np.zeros(0)
    if n_classes == 2:
        return np.array([threshold_otsu(values, nbins=bins)])
    return np.asarray(threshold_multiotsu(values, classes=n_classes, nbins=bins), dtype=np.float64)


def _best_split(low: np.ndarray, high: np.ndarray) -> float:
    """The threshold ``t`` minimising ``#(low >= t) + #(high < t)`` (midpoint of the means if a class is empty)."""
    if low.size == 0 or high.size == 0:
        return float(np.mean(np.concatenate([low, high]))) if low.size + high.size else 0.0
    candidates = np.unique(np.concatenate([low, high]))
    errors = (low.size - np.searchsorted(np.sort(low), candidates, side="left")
              + np.searchsorted(np.sort(high), candidates, side="left"))
    return float(candidates[int(np.argmin(errors))])


def _most_frequent_phase(values: np.ndarray, labels: np.ndarray, phases: Sequence[int], *,
                         bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of ``bins`` equal intensity bins over the 0.1-99.9 % range of ``values``, and the phase (of
    ``phases``) most frequent in each; a bin no training voxel falls in takes the next filled bin's above it."""
    lo, hi = np.quantile(values, [0.001, 0.999])
    edges = np.linspace(lo, hi, bins + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    counts = np.stack([np.bincount(index[labels == p], minlength=bins) for p in phases])
    filled = np.flatnonzero(counts.sum(axis=0) > 0)
    best = np.asarray(phases)[np.argmax(counts, axis=0)]
    nearest = filled[np.clip(np.searchsorted(filled, np.arange(bins)), 0, filled.size - 1)]
    return edges, best[np.where(counts.sum(axis=0) > 0, np.arange(bins), nearest)].astype(np.uint8)


class Threshold(Method):
    """Otsu / multi-Otsu thresholding of the reconstruction inside the sample mask (classical reference).

    The number of classes is the number of phases inside the sample, i.e. the
    dataset's ``meta['phases']`` without ``'air'`` (foam: solid, pore → 2
    classes, Otsu; composite: matrix, fibre, pore → 3 classes, multi-Otsu).
    Intensity classes are mapped to phases by increasing attenuation. The
    thresholds are computed on each predicted volume itself (inside its mask):
    nothing about the thresholds is learned. ``fit`` only orders the phases by
    their mean attenuation in the training volume(s) (from their labels);
    without ``fit`` the order is: empty phases (pore, void, ...) lowest, the
    others in their ``meta['phases']`` order. With ``thresholds='train'``,
    ``fit`` also computes the thresholds once on the training volumes (pooled,
    inside their masks) and applies them unchanged to every volume; with
    ``thresholds='labels'`` (a supervised reference, not Otsu), ``fit`` puts
    each threshold where it misclassifies the fewest training voxels of the two
    phases it separates (from the training labels, inside the masks); with
    ``thresholds='bayes'`` each intensity bin goes to the phase most frequent
    in it among the training voxels: the intervals of a supervised classifier
    of the intensity alone, for many phases whose attenuations overlap (the
    mouse's soft tissues), where ordered thresholds leave phases empty.
    ``smoothing`` (a Gaussian of that sigma, voxels) filters the input first.

    Voxels outside the mask are labelled 0 (air). An optional clean-up per
    class (binary opening and/or closing with a ball of ``morphology_radius``,
    then removal of connected components smaller than ``min_object_size``
    voxels, which take the label of their surroundings) follows.

    Presets (``config={"preset": name}``): ``otsu`` (default, no clean-up) and
    ``clean`` (opening + closing, radius 1, objects of fewer than 8 voxels removed).
    """

    name = "threshold"
    supervision = "truth"  # fit orders the phases by their labelled mean attenuation (phantom labels)
    task = "segment"
    inputs = ("reconstruction",)
    trainable = False

    @dataclasses.dataclass
    class Config:
        """Threshold hyper-parameters.

        Attributes
        ----------
        thresholds : {'sample', 'train', 'labels', 'bayes'}
            Otsu thresholds from each predicted volume (default), Otsu once on the
            training volumes, the thresholds that best separate the training labels,
            or each intensity bin given to its most frequent training phase.
        smoothing : float
            Sigma (voxels) of a Gaussian filter applied to the input first; 0 for none.
        bins : int
            Histogram bins of the Otsu criterion.
        opening, closing : bool
            Morphological opening / closing of every class (in label order) after thresholding.
        morphology_radius : int
            Radius (voxels) of the 3D ball of the opening / closing.
        min_object_size : int
            Connected components (6-connectivity) of any class smaller than this are
            relabelled to their most frequent neighbouring class; 0 keeps all.
        """

        thresholds: str = "sample"
        smoothing: float = 0.0
        bins: int = 256
        opening: bool = False
        closing: bool = False
        morphology_radius: int = 1
        min_object_size: int = 0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "otsu": {},
        "clean": {"opening": True, "closing": True, "morphology_radius": 1, "min_object_size": 8},
    }

    def __init__(self, config: Config | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        if c.thresholds not in ("sample", "train", "labels", "bayes"):
            raise InputError("thresholds", f"is {c.thresholds!r}", "expected 'sample', 'train', 'labels' or 'bayes'")
        if not c.smoothing >= 0:
            raise InputError("smoothing", f"is {c.smoothing!r}", "a Gaussian sigma of 0 or more voxels")
        if c.bins < 2 or c.morphology_radius < 0 or c.min_object_size < 0:
            raise InputError("bins / morphology_radius / min_object_size",
                             f"are {c.bins} / {c.morphology_radius} / {c.min_object_size}",
                             "expected bins >= 2 and non-negative sizes")
        #: Phase indices (dataset's) of the intensity classes, lowest attenuation first; set by fit.
        self.phase_order: list[int] | None = None
        #: Thresholds fitted on the training volumes (``thresholds='train'``).
        self.fitted_thresholds: np.ndarray | None = None
        #: Bin edges and the phase of each bin (``thresholds='bayes'``).
        self.bin_edges: np.ndarray | None = None
        self.bin_phases: np.ndarray | None = None

    # -- phases ----------------------------------------------------------------------------------

    @staticmethod
    def inner_phases(phases: Sequence[str]) -> list[int]:
        """Indices of the phases inside the sample (all but ``'air'``)."""
        return [i for i, p in enumerate(phases) if str(p).lower() != "air"]

    @staticmethod
    def default_order(phases: Sequence[str]) -> list[int]:
        """Inner phases ordered by a name rule: empty phases (pore, void, ...) first."""
        inner = Threshold.inner_phases(phases)
        return sorted(inner, key=lambda i: (str(phases[i]).lower() not in _EMPTY_PHASES, inner.index(i)))

    def _input(self, sample: SampleLike) -> np.ndarray:
        x = np.asarray(sample.read("low"), dtype=np.float32)
        return ndimage.gaussian_filter(x, self.config.smoothing) if self.config.smoothing > 0 else x

    @staticmethod
    def _mask(sample: SampleLike, shape: tuple[int, ...]) -> np.ndarray:
        try:
            return np.asarray(sample.read("mask"), dtype=bool)
        except Exception:  # a dataset without a mask: the whole volume is sample
            return np.ones(shape, dtype=bool)

    def fit(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int = 0,
            budget: Budget | None = None, tracker: Any = None, context: Mapping[str, Any] | None = None) -> None:
        """Order the phases by mean attenuation in the training volumes (and fit thresholds if asked)."""
        if not train:
            return
        phases = list(train[0].meta["phases"])
        inner = self.inner_phases(phases)
        sums, counts, pooled, pooled_labels = np.zeros(len(phases)), np.zeros(len(phases)), [], []
        for sample in train:
            x = self._input(sample)
            mask = self._mask(sample, x.shape)
            labels = np.asarray(sample.read("labels"))
            known = mask & (labels != UNLABELLED)  # annotated-k: labels on some slices only
            sums += np.bincount(labels[known], weights=x[known], minlength=len(phases))[:len(phases)]
            counts += np.bincount(labels[known], minlength=len(phases))[:len(phases)]
            pooled.append(x[mask])
            pooled_labels.append((x[known], labels[known]))
        present = [i for i in inner if counts[i] > 0]
        absent = [i for i in self.default_order(phases) if counts[i] == 0]
        self.phase_order = sorted(present, key=lambda i: sums[i] / counts[i]) + absent
        if self.config.thresholds == "train":
            self.fitted_thresholds = otsu_thresholds(np.concatenate(pooled), len(self.phase_order),
                                                     bins=self.config.bins)
        elif self.config.thresholds == "labels":
            values = np.concatenate([v for v, _ in pooled_labels])
            labels = np.concatenate([lab for _, lab in pooled_labels])
            splits = np.array([_best_split(values[labels == lo], values[labels == hi])
                               for lo, hi in zip(self.phase_order[:-1], self.phase_order[1:], strict=True)])
            # Phases of nearly equal attenuation (soft tissues) can put a split below the one before it:
            # the phase between them then gets an empty interval, since no threshold can find it.
            self.fitted_thresholds = np.maximum.accumulate(splits) if splits.size else splits
        elif self.config.thresholds == "bayes":
            values = np.concatenate([v for v, _ in pooled_labels]).astype(np.float64)
            labels = np.concatenate([lab for _, lab in pooled_labels]).astype(np.int64)
            self.bin_edges, self.bin_phases = _most_frequent_phase(values, labels, inner, bins=self.config.bins)

    # -- prediction ------------------------------------------------------------------------------

    def predict(self, sample: SampleLike) -> np.ndarray:
        """Phase labels (uint8, the dataset's phase indices, ``(Z, Y, X)``) of a sample."""
        x = self._input(sample)
        mask = self._mask(sample, x.shape)
        phases = list(sample.meta["phases"])
        order = self.phase_order if self.phase_order is not None else self.default_order(phases)
        if not order:
            return np.zeros(x.shape, dtype=np.uint8)
        if self.bin_edges is not None:
            bins = np.clip(np.searchsorted(self.bin_edges, x, side="right") - 1, 0, self.bin_phases.size - 1)
            labels = self.bin_phases[bins]
            labels[~mask] = phases.index("air") if "air" in phases else 0
            return self.clean_up(labels, mask, order)
        if self.config.thresholds != "sample" and self.fitted_thresholds is not None:
            thresholds = self.fitted_thresholds
        else:
            thresholds = otsu_thresholds(x[mask], len(order), bins=self.config.bins)
        classes = np.digitize(x, thresholds)  # 0 .. len(order) - 1, lowest attenuation first
        labels = np.asarray(order, dtype=np.uint8)[classes]
        air = phases.index("air") if "air" in phases else 0
        labels[~mask] = air
        return self.clean_up(labels, mask, order)

    def clean_up(self, labels: np.ndarray, mask: np.ndarray, order: Sequence[int]) -> np.ndarray:
        """Opening / closing per class and removal of small objects, inside ``mask``."""
        c = self.config
        if c.opening or c.closing:
            from skimage.morphology import ball

            footprint = ball(c.morphology_radius) if c.morphology_radius > 0 else np.ones((1, 1, 1), bool)
            for phase in order:
                region = labels == phase
                new = region
                if c.opening:
                    new = ndimage.binary_opening(new, structure=footprint)
                if c.closing:
                    new = ndimage.binary_closing(new, structure=footprint)
                grown = new & ~region & mask
                labels[grown] = phase
                # Voxels the opening removed go to the most frequent other class among their neighbours.
                lost = region & ~new
                if lost.any():
                    labels[lost] = self._neighbour_majority(labels, lost, exclude=phase, classes=order)
        if c.min_object_size > 0:
            for phase in order:
                comp, n = ndimage.label(labels == phase)
                if n == 0:
                    continue
                sizes = np.bincount(comp.ravel())
                small = (sizes < c.min_object_size) & (np.arange(n + 1) > 0)
                lost = small[comp]
                if lost.any():
                    labels[lost] = self._neighbour_majority(labels, lost, exclude=phase, classes=order)
        return labels

    @staticmethod
    def _neighbour_majority(labels: np.ndarray, where: np.ndarray, *, exclude: int,
                            classes: Sequence[int]) -> np.ndarray:
        """For each voxel of ``where``: the class among ``classes`` (not ``exclude``) most frequent in its 3³ box."""
        others = [k for k in classes if k != exclude]
        if not others:
            return labels[where]
        counts = np.stack([ndimage.uniform_filter((labels == k).astype(np.float32), size=3)[where] for k in others])
        return np.asarray(others, dtype=labels.dtype)[np.argmax(counts, axis=0)]
