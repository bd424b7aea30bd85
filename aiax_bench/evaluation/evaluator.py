"""The Evaluator: strict input checks, per-volume records, aggregates.

A record is flat, ``metric/target`` keys with float values (plus the sample
id and the two version strings), so that the harness can log it to MLflow as
it is. Per-pore sizes and histograms do not belong there: they travel in the
nested ``"distributions"`` entry of :meth:`Evaluator.evaluate_volume`, which
:meth:`Evaluator.evaluate` moves to its own ``"distributions"`` result
(one entry per sample id), meant to be stored as an artifact.

Record keys (``enhance`` task; ``segment`` has no image metrics)
------------------------------------------------------------------
- ``mse/T``, ``psnr/T`` (dB), ``ssim/T`` (3D), ``ssim_slices/T`` (mean of
  2D), for ``T`` in :attr:`Evaluator.targets`: ``truth`` (the exact
  phantom: what ranks), ``clean`` (FBP of the noise-free projections, the
  ceiling of methods trained on noisy data; datasets from 2.0 on) and
  ``reference`` (the reference scan, itself noisy);
- ``segmentation_threshold`` (1/cm: fixed by the recipe, or Otsu on the
  reference for datasets without one, see :mod:`~aiax_bench.evaluation.porosity`);
- for each of ``porosity``, ``pore_count``, ``pore_density_per_mm3``,
  ``mean_pore_diameter_mm``, ``specific_surface_per_mm``,
  ``mean_local_thickness_mm``: ``S/method``, ``S/reference``, ``S/truth``,
  ``S/rel_error_reference`` and ``S/rel_error_truth`` (method vs each), and
  ``S/floor_rel_error_truth``: the reference's own error against the truth,
  the protocol's floor;
- ``wasserstein_log_diameter/reference`` and ``/truth`` (method's pore-size
  distribution vs each);
- ``jaccard/C`` and ``dice/C`` per class ``C`` against the exact labels, and
  ``jaccard/mean``, ``dice/mean`` over the classes;
- ``dice_small/pore``, ``dice_medium/pore``, ``dice_large/pore`` (Dice by
  pore size, :mod:`~aiax_bench.evaluation.segmentation`).

Datasets without a pore space (``evaluation.porosity: false``, the mouse)
have no porosity statistics; ``segment`` then scores ``jaccard/C``,
``dice/C`` and their means, and where the dataset scores lesions
(``evaluation.lesions``, :class:`LesionSpec`) ``dice/L`` (every lesion phase
as one) and ``dice_small/L``, ``dice_medium/L``, ``dice_large/L`` with the
lesions' fixed size strata (``L`` the lesion name, e.g. ``tumour``).

Record keys (``dct`` task: blob labels of a frame stack, no porosity)
----------------------------------------------------------------------
The scores of :func:`aiax_bench.dct.blob_scores` against the sample's blob
labels, blobs matched one to one at the dataset's ``iou_threshold``, each as
``family/blobs``: ``f1``, ``precision``, ``recall``, ``mean_iou``,
``pixel_jaccard``, ``count_error``, ``n_true``, ``n_pred``, ``n_matched``;
by a true blob's size (terciles of the sample's true sizes)
``recall_small``, ``recall_medium``, ``recall_large``, ``mean_iou_small``, ...,
``n_true_small``, ...; and by its extent in psi ``recall_psi_short``,
``recall_psi_medium``, ``recall_psi_long``, ``mean_iou_psi_short``, ...,
``n_true_psi_short``, ....
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.data.registry import REFERENCE_SPLIT
from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError, StoreError
from aiax_bench.evaluation import metrics
from aiax_bench.evaluation import porosity as pz
from aiax_bench.evaluation.catalog import metric_spec
from aiax_bench.evaluation.segmentation import (
    SIZE_STRATA,
    class_scores_record,
    confusion_matrix,
    dice_by_lesion_stratum,
    dice_by_size,
    matthews_correlation,
    scores_from_confusion,
    size_strata,
)
from aiax_bench.validation import check_label_volume, check_positive, check_volume

__all__ = [
    "BLOB_TARGET",
    "DISTRIBUTIONS_KEY",
    "EVALUATOR_VERSION",
    "OTSU_PER_IMAGE_PROTOCOL",
    "PORE_STATISTICS",
    "REFERENCE_PROTOCOL",
    "TASKS",
    "ArraySample",
    "EvaluationSpec",
    "Evaluator",
    "LesionSpec",
    "evaluate_arrays",
    "reference_data_range",
]

#: Changes whenever any number the Evaluator produces could change.
EVALUATOR_VERSION = "3.0"

#: Image-metric targets and the array each is read from, in report order: the first ranks.
TARGET_ARRAYS = {"truth": "truth", "clean": "clean", "reference": "high"}
#: Targets of the porosity statistics' relative errors.
TARGETS = ("reference", "truth")
#: The porosity protocol of samples without a truth: Otsu on the reference's values present.
REFERENCE_PROTOCOL = "reference-otsu"
#: Every image segmented by Otsu's threshold of its own values in the mask (``EvaluationSpec.otsu_per_image``).
OTSU_PER_IMAGE_PROTOCOL = "otsu-per-image"
TASKS = ("enhance", "segment", "dct")
#: The target of every score of task ``dct``: ``f1/blobs``, ``recall_small/blobs``, ...
BLOB_TARGET = "blobs"
#: Porosity statistics reported for the method, the reference and the truth.
PORE_STATISTICS = ("porosity", "pore_count", "pore_density_per_mm3", "mean_pore_diameter_mm",
                   "specific_surface_per_mm", "mean_local_thickness_mm")
#: Where per-pore distributions go (nested in a record, a separate entry of ``evaluate``'s result).
DISTRIBUTIONS_KEY = "distributions"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


#: Scores a dataset may add to the default ones (registry ``evaluation.extra_scores``).
EXTRA_SCORES = ("mcc",)


@dataclass(frozen=True)
class LesionSpec:
    """Lesions scored one by one, in fixed size strata (the registry's ``evaluation.lesions``).

    Pores are stratified by the terciles of each sample's own sizes; lesions
    by fixed bounds, as clinicians report them: the area of a lesion's largest
    axial cross-section (mm², from the phantom's continuous shape, stored per
    sample in ``meta['lesions']``).

    Attributes
    ----------
    name : str
        The target of the scores' keys (``dice_small/tumour``).
    phases : tuple of str
        The phases that are lesions; they are scored as one.
    strata_mm2 : tuple of float
        Bounds between the strata (mm²): small below the first, medium up to
        the second, large above it (the biomedical users' 50 and 100 mm²).
    """

    name: str
    phases: tuple[str, ...]
    strata_mm2: tuple[float, float]

    def __post_init__(self) -> None:
        lo, hi = self.strata_mm2
        if not 0 < lo < hi:
            raise InputError("evaluation lesions.strata_mm2", f"is {list(self.strata_mm2)}",
                             "two increasing positive areas (mm²)")
        if not self.phases:
            raise InputError("evaluation lesions.phases", "is empty", "the phases that are lesions")

    def strata(self, areas_mm2: Sequence[float]) -> np.ndarray:
        """Stratum (0 small, 1 medium, 2 large) of each lesion of these areas (mm²)."""
        areas = np.asarray(areas_mm2, dtype=np.float64)
        lo, hi = self.strata_mm2
        return ((areas >= lo).astype(np.int8) + (areas > hi).astype(np.int8)).astype(np.int8)


@dataclass(frozen=True)
class EvaluationSpec:
    """How a dataset is scored: the registry's ``evaluation`` block, typed.

    Attributes
    ----------
    data_range : float or None
        Fixed intensity range (1/cm) of PSNR and SSIM; None for frame stacks (task ``dct``), whose blobs
        are matched by overlap, not compared by intensity.
    mask : {'sample', 'none'}
        Score inside the sample mask, or everywhere.
    mask_erosion : int
        In-plane erosion of the mask (voxels).
    pore_phases : tuple of str
        Phases counted as voids by the porosity statistics.
    pore_threshold : float, optional
        Fixed pore threshold (1/cm, protocol 2.0); Otsu of the reference (1.0) if None.
    truth : bool
        Whether the samples have an exact truth (simulations). Without one (a
        user's own scans) everything is scored against the reference, and the
        pores are those below Otsu's threshold of the reference's values
        present (protocol ``reference-otsu``).
    otsu_per_image : bool
        Segment every image (prediction, reference) by Otsu's threshold of its
        own values over the whole image, as the HTC2022 challenge did (protocol
        ``otsu-per-image``): a limited-angle reconstruction has no fixed
        intensity scale to threshold. The truth's pores are its labels.
    extra_scores : tuple of str
        Scores beyond the default ones, where a dataset's community ranks by
        them: ``mcc`` (Matthews correlation of pore against the rest inside the
        mask, ``mcc/pore``; HTC2022's challenge score).
    iou_threshold : float
        Least IoU (voxels over voxels, in ``(0, 1]``) of a predicted blob matched to a true one (task ``dct``).
    porosity : bool
        Whether the samples have a pore space to measure (porosity statistics, Dice by pore size);
        False for anatomy (the mouse).
    lesions : LesionSpec, optional
        Lesions scored one by one in fixed size strata (task ``segment``).
    """

    data_range: float | None
    mask: str = "sample"
    mask_erosion: int = 0
    pore_phases: tuple[str, ...] = ("pore",)
    pore_threshold: float | None = None
    truth: bool = True
    otsu_per_image: bool = False
    extra_scores: tuple[str, ...] = ()
    iou_threshold: float = 0.5
    porosity: bool = True
    lesions: LesionSpec | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.extra_scores) - set(EXTRA_SCORES))
        if unknown:
            raise InputError("evaluation extra_scores", f"name {unknown}", f"expected some of {list(EXTRA_SCORES)}")
        if self.data_range is not None:
            check_positive("data_range", self.data_range, "1/cm")
        if isinstance(self.iou_threshold, bool) or not 0 < self.iou_threshold <= 1:
            raise InputError("evaluation iou_threshold", f"is {self.iou_threshold!r}", "expected a number in (0, 1]")
        if self.mask not in ("sample", "none"):
            raise InputError("evaluation mask", f"is {self.mask!r}", "expected 'sample' or 'none'")
        if self.mask_erosion < 0:
            raise InputError("mask_erosion", f"is {self.mask_erosion}", "expected 0 or more voxels")

    @classmethod
    def from_registry(cls, evaluation: Mapping[str, Any]) -> EvaluationSpec:
        """The spec of a registry ``evaluation`` block."""
        fixed = evaluation.get("pore_threshold")
        data_range = evaluation.get("data_range")
        lesions = evaluation.get("lesions")
        if lesions is not None:
            lesions = LesionSpec(name=str(lesions["name"]), phases=tuple(lesions["phases"]),
                                 strata_mm2=tuple(float(b) for b in lesions["strata_mm2"]))
        return cls(data_range=None if data_range is None else float(data_range), mask=evaluation.get("mask", "sample"),
                   mask_erosion=int(evaluation.get("mask_erosion", 0)),
                   pore_phases=tuple(evaluation.get("pore_phases", ["pore"])),
                   pore_threshold=None if fixed is None else float(fixed), truth=bool(evaluation.get("truth", True)),
                   otsu_per_image=bool(evaluation.get("otsu_per_image", False)),
                   extra_scores=tuple(evaluation.get("extra_scores", ())),
                   iou_threshold=float(evaluation.get("iou_threshold", 0.5)),
                   porosity=bool(evaluation.get("porosity", True)), lesions=lesions)


class Evaluator:
    """Scores predictions on the test samples of one dataset split.

    Parameters
    ----------
    dataset : aiax_bench.data.loader.Dataset
        An opened dataset (``aiax_bench.load(...)``).
    split : str
        Split name, e.g. ``"100proj"``.
    part : str
        Which samples are scored: ``"test"`` (default) or ``"ood-test"``.
    task : str
        ``"enhance"``: predictions are volumes in 1/cm (image metrics, and
        porosity after thresholding at the reference's Otsu threshold);
        ``"segment"``: predictions are phase labels (porosity from them);
        ``"dct"``: predictions are blob labels of a frame stack (blob scores only).
    porosity : bool
        Compute the porosity and segmentation metrics (the costly part); never for ``"dct"``.
    workers : int, optional
        Threads for SSIM and the distance transform; every core (at most 8) by default.

    Notes
    -----
    Every metric is taken inside the sample mask (the cylinder eroded by the
    dataset's ``mask_erosion``) with the dataset's fixed ``data_range``,
    against the reference reconstruction and against the exact phantom.
    What does not depend on the prediction (mask, threshold, the reference's
    and the truth's pore statistics) is computed once per sample and kept.
    """

    version = EVALUATOR_VERSION

    def __init__(self, dataset, split: str, *, part: str = "test", task: str = "enhance", porosity: bool = True,
                 workers: int | None = None) -> None:
        if split == REFERENCE_SPLIT and task != "segment":
            raise InputError("split", f"is {split!r} (the reference scan as input) for task {task!r}",
                             "a degraded split (see `aiax-bench datasets splits`); 'reference' is for task 'segment'")
        self._setup(dataset.split(split).part(part), EvaluationSpec.from_registry(dataset.spec.evaluation),
                    part=part, task=task, porosity=porosity, workers=workers)

    @classmethod
    def of_samples(cls, samples: Sequence[SampleLike], spec: EvaluationSpec, *, task: str = "enhance",
                   porosity: bool = True, workers: int | None = None) -> Evaluator:
        """An evaluator of samples that belong to no stored dataset (arrays, a user's own scans).

        The core the dataset-bound constructor calls too: the same checks, the
        same records, from ``samples`` and an explicit :class:`EvaluationSpec`.
        """
        evaluator = cls.__new__(cls)
        evaluator._setup(samples, spec, part="test", task=task, porosity=porosity, workers=workers)
        return evaluator

    def _setup(self, samples: Sequence[SampleLike], spec: EvaluationSpec, *, part: str, task: str, porosity: bool,
               workers: int | None) -> None:
        if task not in TASKS:
            raise InputError("task", f"is {task!r}", f"expected one of {list(TASKS)}")
        if task != "dct" and spec.data_range is None:
            raise InputError("evaluation data_range", f"is missing for task {task!r}",
                             "the dataset's fixed intensity range (1/cm): task 'dct' scores frame stacks without one")
        self.part = part
        self.task = task
        # Blobs of a frame stack have no pore statistics: their scores are detections and overlaps.
        self.porosity = porosity and task != "dct" and spec.porosity
        self.workers = metrics.default_workers() if workers is None else max(1, int(workers))
        self.samples = {s.id: s for s in samples}
        self.spec = spec
        self.data_range = spec.data_range
        self.mask_kind = spec.mask
        self.mask_erosion = spec.mask_erosion
        #: Phases that are voids (pores of every kind) for the porosity statistics.
        self.pore_phases = list(spec.pore_phases)
        self.pore_threshold = spec.pore_threshold
        self.protocol = pz.LEGACY_PROTOCOL if spec.pore_threshold is None else pz.SEGMENTATION_PROTOCOL
        if spec.otsu_per_image:
            self.protocol = OTSU_PER_IMAGE_PROTOCOL
        if not spec.truth:
            if task != "enhance":
                raise InputError("task", f"is {task!r} on samples without a truth", "'enhance'")
            self.protocol = REFERENCE_PROTOCOL
        self.targets = self._available_targets()
        self._context: dict[str, dict[str, Any]] = {}

    def _available_targets(self) -> tuple[str, ...]:
        """``truth``, ``clean`` where the dataset stores it (2.0 on), ``reference``.

        Asked of the store's metadata (``Sample.has``), nothing is read; a sample
        object that cannot say is scored against the truth and the reference.
        """
        if not self.spec.truth:
            return ("reference",)
        if self.task == "dct":
            return (BLOB_TARGET,)
        first = next(iter(self.samples.values()), None)
        if first is None or not getattr(first, "has", lambda name: False)("clean"):
            return ("truth", "reference")
        return tuple(TARGET_ARRAYS)

    @property
    def sample_ids(self) -> list[str]:
        return list(self.samples)

    # ------------------------------------------------------------------ checks

    def check(self, sample_id: str, prediction: Any) -> np.ndarray:
        """Validate one prediction and return it unchanged, or raise InputError naming the fault."""
        if sample_id not in self.samples:
            raise InputError("sample id", f"{sample_id!r} is not a {self.part} sample of this split",
                             f"expected one of {self.sample_ids}")
        sample = self.samples[sample_id]
        name = f"prediction for {sample_id}"
        if self.task == "enhance":
            return check_volume(name, prediction, shape=sample.shape, like="the sample's reconstruction")
        if self.task == "dct":
            labels = check_label_volume(name, prediction, shape=sample.shape, like="the sample's frames (psi, y, x)")
            if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
                raise InputError(name, f"has a negative label ({int(labels.min())})",
                                 "expected blob ids >= 0 (0 for the background)")
            return labels
        return check_label_volume(name, prediction, shape=sample.shape, n_classes=len(self._phases(sample)),
                                  like="the sample's labels")

    def check_sample(self, sample_id: str) -> None:
        """Make sure every array and attribute the scoring needs exists, before anything is scored."""
        sample = self.samples[sample_id]
        if self.task == "dct":
            needed = ["labels"]
        else:
            needed = sorted({"high", *(["truth"] if self.spec.truth else []),
                             *(TARGET_ARRAYS[t] for t in self.targets)})
        if self.mask_kind != "none":
            needed.append("mask")
        if self.spec.truth and (self.porosity or self.task == "segment") and "labels" not in needed:
            needed.append("labels")
        if self._scores_lesions:
            needed.append("lesions")
            if "lesions" not in sample.meta:
                raise StoreError(f"sample {sample_id}", "metadata lacks its lesions' areas (meta['lesions'])",
                                 "rebuild the store with `aiax-bench datasets build --force`")
        for name in needed:
            getattr(sample, name)  # raises StoreError naming the missing array
        if self.porosity:
            meta = sample.meta
            if "voxel_size_um" not in meta:
                raise StoreError(f"sample {sample_id}", "metadata lacks voxel_size_um",
                                 "rebuild the store with `aiax-bench datasets build --force`")
            missing = [p for p in self.pore_phases if p not in self._phases(sample)] if self.spec.truth else []
            if missing:
                raise InputError(f"sample {sample_id}", f"has phases {self._phases(sample)} without {missing}",
                                 "evaluate with porosity=False, or list its void phases in the registry's "
                                 "evaluation.pore_phases")

    @property
    def _scores_lesions(self) -> bool:
        return self.task == "segment" and self.spec.truth and self.spec.lesions is not None

    @staticmethod
    def _phases(sample) -> list[str]:
        return list(sample.meta.get("phases", ["air", "solid", "pore"]))

    # ------------------------------------------------------------------ per-sample context

    def mask(self, sample) -> np.ndarray | None:
        """The evaluation mask of a sample (cylinder eroded in-plane), or None."""
        if self.mask_kind == "none":
            return None
        mask = sample.read("mask").astype(bool)
        if self.mask_erosion:
            # Erode in-plane only: the sample continues above and below the volume.
            structure = np.zeros((3, 3, 3), dtype=bool)
            structure[1] = ndimage.generate_binary_structure(2, 1)
            mask = ndimage.binary_erosion(mask, structure, iterations=self.mask_erosion)
        return mask

    def context(self, sample_id: str) -> dict[str, Any]:
        """What scoring a sample needs that does not depend on the prediction (computed once)."""
        if sample_id in self._context:
            return self._context[sample_id]
        sample = self.samples[sample_id]
        ctx: dict[str, Any] = {"mask": self.mask(sample)}
        if self.porosity:
            mask = ctx["mask"]
            ctx["voxel_size_um"] = float(sample.meta["voxel_size_um"])
            ctx["rim"] = pz.mask_rim(mask, sample.shape)
            high = sample.read("high")
            if self.pore_threshold is not None:
                ctx["threshold"] = self.pore_threshold
            elif self.spec.otsu_per_image:
                ctx["threshold"] = self.threshold(sample_id, high)
            elif not self.spec.truth:
                from skimage.filters import threshold_otsu

                # Real intensities: Otsu on the values present, not on a fixed [0, data_range] histogram.
                ctx["threshold"] = float(threshold_otsu(np.asarray(high if mask is None else high[mask],
                                                                   dtype=np.float64), nbins=256))
            else:
                ctx["threshold"] = pz.otsu_threshold(high, data_range=self.data_range, mask=mask)
            ref_pores = pz.segment_pores(high, threshold=ctx["threshold"], mask=mask)
            del high
            ctx["reference"] = self._statistics(ref_pores, ctx, keep_labels=not self.spec.truth)
            if not self.spec.truth:
                ctx["strata"], ctx["strata_bounds"] = size_strata(ctx["reference"].all_volumes)
                self._context[sample_id] = ctx
                return ctx
            phases = self._phases(sample)
            ctx["pore_indices"] = [phases.index(p) for p in self.pore_phases]
            ctx["pore_index"] = ctx["pore_indices"][0]
            if self.pore_threshold is not None and self.task == "enhance":
                # Protocol 2.0: the phantom goes through the same threshold as everything it judges.
                truth_pores = pz.segment_pores(sample.read("truth"), threshold=ctx["threshold"], mask=mask)
            else:
                truth_pores = np.isin(sample.read("labels"), ctx["pore_indices"])
                truth_pores = truth_pores if mask is None else truth_pores & mask
            ctx["truth_pores"] = truth_pores
            ctx["truth"] = self._statistics(truth_pores, ctx, keep_labels=True)
            ctx["strata"], ctx["strata_bounds"] = size_strata(ctx["truth"].all_volumes)
        self._context[sample_id] = ctx
        return ctx

    def _statistics(self, pores: np.ndarray, ctx: dict[str, Any], *, keep_labels: bool) -> pz.PoreStatistics:
        return pz.pore_statistics(pores, voxel_size_um=ctx["voxel_size_um"], mask=ctx["mask"], rim=ctx["rim"],
                                  keep_labels=keep_labels, workers=self.workers)

    def threshold(self, sample_id: str, prediction: np.ndarray) -> float:
        """The pore threshold a prediction is segmented at (1/cm): the protocol's, or its own Otsu's."""
        if not self.spec.otsu_per_image:
            return self.context(sample_id)["threshold"]
        from skimage.filters import threshold_otsu

        # Over the whole image, as the challenge did: the air around the sample and the sample make the
        # two classes, and holes fall below. Inside the mask alone a few holes would be no class of their
        # own, and Otsu would split the material.
        return float(threshold_otsu(np.asarray(prediction, dtype=np.float64), nbins=256))

    def segment(self, sample_id: str, prediction: np.ndarray) -> np.ndarray:
        """The method's pore phase under the protocol (before the speck floor), boolean."""
        ctx = self.context(sample_id)
        if self.task == "enhance":
            return pz.segment_pores(prediction, threshold=self.threshold(sample_id, prediction), mask=ctx["mask"])
        pores = np.isin(prediction, ctx["pore_indices"])
        return pores if ctx["mask"] is None else pores & ctx["mask"]

    # ------------------------------------------------------------------ scoring

    def evaluate_volume(self, sample_id: str, prediction: np.ndarray) -> dict[str, Any]:
        """Metrics of one test volume as a flat record, with per-pore data under ``"distributions"``."""
        prediction = self.check(sample_id, prediction)
        self.check_sample(sample_id)
        sample = self.samples[sample_id]
        ctx = self.context(sample_id)
        mask = ctx["mask"]
        record: dict[str, Any] = {"sample_id": sample_id, "evaluator_version": self.version}
        if self.task == "dct":
            record.update(self._blob_record(sample, prediction))
        if self.task == "enhance":
            for target in self.targets:
                ref = sample.read(TARGET_ARRAYS[target])
                record[f"mse/{target}"] = metrics.mse(prediction, ref, mask=mask)
                record[f"psnr/{target}"] = metrics.psnr(prediction, ref, data_range=self.data_range, mask=mask)
                slices = metrics.ssim_slices(prediction, ref, data_range=self.data_range, mask=mask,
                                             workers=self.workers)
                # A stack thinner than SSIM's window (a measured slice, as HTC2022's) has no 3D SSIM: its
                # slices' SSIM stands for it.
                record[f"ssim/{target}"] = (metrics.ssim(prediction, ref, data_range=self.data_range, mask=mask,
                                                         workers=self.workers)
                                            if prediction.shape[0] >= metrics.SSIM_WINDOW else slices)
                record[f"ssim_slices/{target}"] = slices
        if self.porosity:
            record.update(self._porosity_record(sample, prediction, ctx))
        elif self.task == "segment" and self.spec.truth:
            record.update(self._class_scores(sample, prediction, sample.read("labels"), mask))
        if self._scores_lesions:
            record.update(self._lesion_record(sample, prediction, mask))
        return record

    @staticmethod
    def _class_scores(sample, prediction: np.ndarray, labels: np.ndarray, mask: np.ndarray | None,
                      names: Sequence[str] | None = None) -> dict[str, float]:
        """``jaccard/C``, ``dice/C`` of every class but air (inside and outside the field of view), and their
        means."""
        names = list(Evaluator._phases(sample) if names is None else names)
        j, d = scores_from_confusion(confusion_matrix(prediction, labels, n_classes=len(names), mask=mask))
        return class_scores_record(j, d, names, [i for i, n in enumerate(names) if n not in ("air", "air_fov")])

    def _lesion_record(self, sample, prediction: np.ndarray, mask: np.ndarray | None) -> dict[str, float]:
        """Dice of the lesion phases as one, and by lesion size stratum (:class:`LesionSpec`)."""
        lesions = self.spec.lesions
        phases = self._phases(sample)
        predicted = np.isin(prediction, [phases.index(p) for p in lesions.phases if p in phases])
        instances = np.asarray(sample.read("lesions"))
        if mask is not None:
            predicted &= mask
            instances = np.where(mask, instances, 0)
        true = instances > 0
        both = np.count_nonzero(predicted) + np.count_nonzero(true)
        name = lesions.name
        out = {f"dice/{name}": float(2 * np.count_nonzero(predicted & true) / both) if both else float("nan")}
        records = sorted(sample.meta["lesions"], key=lambda r: r["id"])
        if [r["id"] for r in records] != list(range(1, len(records) + 1)):
            raise StoreError(f"sample {sample.id}", "meta['lesions'] ids are not 1..K",
                             "rebuild the store with `aiax-bench datasets build --force`")
        by_size = dice_by_lesion_stratum(predicted, instances, lesions.strata([r["area_mm2"] for r in records]))
        for stratum, value in zip(SIZE_STRATA, by_size, strict=True):
            out[f"dice_{stratum}/{name}"] = float(value)
        return out

    def _blob_record(self, sample, prediction: np.ndarray) -> dict[str, float]:
        """:func:`aiax_bench.dct.blob_scores` of a frame stack's predicted blobs, as ``family/blobs`` keys."""
        from aiax_bench.dct import blob_scores

        scores = blob_scores(prediction, sample.read("labels"), iou_threshold=self.spec.iou_threshold)
        # ``recall/size_small`` becomes ``recall_small/blobs``, ``recall/psi_short`` ``recall_psi_short/blobs``.
        out = {}
        for key, value in scores.items():
            family, _, stratum = key.partition("/")
            name = f"{family}_{stratum.removeprefix('size_')}" if stratum else family
            out[f"{name}/{BLOB_TARGET}"] = value
        return out

    def _porosity_record(self, sample, prediction: np.ndarray, ctx: dict[str, Any]) -> dict[str, Any]:
        pores = self.segment(sample.id, prediction)
        truth = self.spec.truth
        stats = {"method": self._statistics(pores, ctx, keep_labels=True), "reference": ctx["reference"],
                 **({"truth": ctx["truth"]} if truth else {})}
        out: dict[str, Any] = {"segmentation_protocol": self.protocol}
        if self.task == "enhance":
            out["segmentation_threshold"] = self.threshold(sample.id, prediction)
        out.update(pz.porosity_record(stats, names=PORE_STATISTICS, targets=TARGETS if truth else ("reference",),
                                      floor=truth))
        if truth:
            out.update(self._segmentation_metrics(sample, prediction, pores, stats, ctx))
        voxel_mm = ctx["voxel_size_um"] / 1000
        out[DISTRIBUTIONS_KEY] = {
            **{who: s.distribution() for who, s in stats.items()},
            "size_strata": list(SIZE_STRATA),
            "size_strata_bounds_diameter_mm": pz.equivalent_diameter(ctx["strata_bounds"],
                                                                     voxel_size=voxel_mm).tolist(),
            "segmentation_protocol": self.protocol,
        }
        return out

    def _segmentation_metrics(self, sample, prediction, pores, stats, ctx) -> dict[str, float]:
        mask = ctx["mask"]
        out: dict[str, float] = {}
        if self.task == "enhance":
            # Two classes from a threshold: pore, and everything else inside the mask ("solid").
            names = ["solid", "pore"]
            pred_cls = pores.astype(np.uint8)
            true_cls = ctx["truth_pores"].astype(np.uint8)
        else:
            names = self._phases(sample)
            pred_cls, true_cls = prediction, sample.read("labels")
        out.update(self._class_scores(sample, pred_cls, true_cls, mask, names))
        if "mcc" in self.spec.extra_scores:
            out["mcc/pore"] = matthews_correlation(pores, ctx["truth_pores"] if self.task == "enhance"
                                                   else np.isin(true_cls, ctx["pore_indices"]), mask=mask)
        by_size = dice_by_size(stats["method"].labels, stats["truth"].labels, ctx["strata"])
        for name, value in zip(SIZE_STRATA, by_size, strict=True):
            out[f"dice_{name}/pore"] = float(value)
        return out

    def evaluate(self, predictions: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Score a prediction for every sample: all are checked before any is scored.

        Returns
        -------
        dict
            ``records`` (flat, one per sample), ``aggregate`` (mean, std, n per
            metric) and ``distributions`` (per sample id: per-pore sizes and
            histograms; store it as an artifact, e.g. ``distributions.json``).
        """
        missing = sorted(set(self.sample_ids) - set(predictions))
        if missing:
            raise InputError("predictions", f"lack sample(s) {missing}", f"expected all of {self.sample_ids}")
        for sid, pred in predictions.items():
            self.check(sid, pred)
        for sid in self.sample_ids:
            self.check_sample(sid)
        records, distributions = [], {}
        for sid in self.sample_ids:
            record = self.evaluate_volume(sid, predictions[sid])
            distributions[sid] = record.pop(DISTRIBUTIONS_KEY, None)
            records.append(record)
        # Every score this evaluator writes is a metric of the catalog, which says how to show and rank it.
        for key, value in records[0].items():
            if _is_number(value):
                metric_spec(key)
        out = {"records": records, "aggregate": self.aggregate(records)}
        if self.porosity:
            out[DISTRIBUTIONS_KEY] = distributions
        return out

    def evaluate_volume_chunked(self, sample_id: str, prediction: Any, *, chunks: int | None = None,
                                complete: bool = False, progress: bool = False) -> dict[str, Any]:
        """Score a volume larger than memory block by block (see :mod:`~aiax_bench.evaluation.chunked`).

        ``prediction`` is a zarr array (or its path) of the sample's shape. The
        record has no ``distributions``; without ``complete`` it also leaves
        out local thickness, Dice by pore size, the reference's errors against
        the truth and the scores against the clean reconstruction, as the
        frozen chunked record of evaluator 3.0 does. With ``complete`` its
        keys are :meth:`evaluate_volume`'s.
        """
        from aiax_bench.evaluation.chunked import evaluate_chunked, open_volume

        if self.task != "enhance":
            raise InputError("task", f"is {self.task!r}", "expected 'enhance' for chunked evaluation")
        if sample_id not in self.samples:
            raise InputError("sample id", f"{sample_id!r} is not a {self.part} sample of this split",
                             f"expected one of {self.sample_ids}")
        name = f"prediction for {sample_id}"
        prediction = open_volume(prediction, name)
        sample = self.samples[sample_id]
        if tuple(prediction.shape) != sample.shape:
            raise InputError(name, f"has shape {tuple(prediction.shape)}",
                             f"expected {sample.shape} (z, y, x) like the sample's reconstruction")
        self.check_sample(sample_id)
        meta = sample.meta
        record: dict[str, Any] = {"sample_id": sample_id, "evaluator_version": self.version}
        record.update(evaluate_chunked(
            prediction, sample.high, data_range=self.data_range, voxel_size_um=float(meta["voxel_size_um"]),
            mask=None if self.mask_kind == "none" else sample.mask, mask_erosion=self.mask_erosion,
            truth=sample.truth, truth_labels=sample.labels,
            clean=sample.clean if complete and "clean" in self.targets else None,
            pore_index=self._phases(sample).index(self.pore_phases[0]),
            threshold=self.pore_threshold, truth_by_threshold=self.pore_threshold is not None,
            chunks=chunks, workers=self.workers, complete=complete, progress=progress))
        return record

    @staticmethod
    def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
        """Mean and sample standard deviation (``ddof=1``, as everywhere) of every numeric metric over the volumes.

        NaN values (an undefined metric, e.g. a size stratum with no pore) are
        left out; ``n`` says how many volumes the mean is over; the standard
        deviation of fewer than two values is NaN.
        """
        from aiax_bench.results import sample_std

        keys = [k for k, v in records[0].items() if k != "sample_id" and _is_number(v)]
        out = {}
        for key in keys:
            values = np.array([r.get(key, np.nan) for r in records], dtype=np.float64)
            defined = values[~np.isnan(values)]
            with np.errstate(invalid="ignore"):  # an exact match scores PSNR ∞, whose spread is undefined
                mean = float(defined.mean()) if defined.size else float("nan")
                std = sample_std(defined)
            out[key] = {"mean": mean, "std": float("nan") if std is None else std, "n": int(defined.size)}
        return out

    # ------------------------------------------------------------------ figures

    def write_figures(self, sample_id: str, prediction: np.ndarray, outdir: str | Path, *,
                      distributions: Mapping[str, Any] | None = None) -> dict[str, Path]:
        """Write the figures of one scored volume into ``outdir`` (see :func:`~.figures.write_figures`).

        Pass the sample's entry of ``evaluate(...)["distributions"]`` to avoid
        measuring the pores again.
        """
        from aiax_bench.evaluation.figures import write_figures

        prediction = self.check(sample_id, prediction)
        sample = self.samples[sample_id]
        ctx = self.context(sample_id)
        if distributions is None and self.porosity:
            distributions = self.evaluate_volume(sample_id, prediction)[DISTRIBUTIONS_KEY]
        return write_figures(sample, prediction, outdir, data_range=self.data_range, mask=ctx["mask"],
                             threshold=ctx.get("threshold"), distributions=distributions, task=self.task,
                             pore_index=ctx.get("pore_index", 2))


class ArraySample:
    """A sample held as in-memory arrays, with the loader's ``Sample`` interface."""

    part = "test"

    def __init__(self, sample_id: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.id, self._arrays, self.meta = sample_id, arrays, meta

    def _get(self, name: str) -> np.ndarray:
        if self._arrays.get(name) is None:
            raise StoreError(f"{self.id}/{name}", "was not given", f"pass {name}= to evaluate_arrays")
        return self._arrays[name]

    high = property(lambda self: self._get("high"))
    clean = property(lambda self: self._get("clean"))
    truth = property(lambda self: self._get("truth"))
    labels = property(lambda self: self._get("labels"))
    mask = property(lambda self: self._get("mask"))
    low = property(lambda self: self._get("low"))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._get("high").shape)

    def read(self, name: str) -> np.ndarray:
        return np.asarray(self._get(name))

    def has(self, name: str) -> bool:
        return self._arrays.get(name) is not None


def reference_data_range(reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """The intensity range of a volume without a recipe: the 0.1–99.9 % quantile spread of ``reference``
    inside ``mask`` (robust to a few hot or dead voxels)."""
    values = np.asarray(reference if mask is None else reference[np.asarray(mask, dtype=bool)], dtype=np.float64)
    lo, hi = np.quantile(values[np.isfinite(values)], [0.001, 0.999])
    if not hi > lo:
        raise InputError("reference", f"has no contrast (values {lo:.4g} to {hi:.4g})", "a reconstructed volume")
    return float(hi - lo)


def evaluate_arrays(prediction: np.ndarray, reference: np.ndarray, *, truth: np.ndarray | None = None,
                    labels: np.ndarray | None = None, data_range: float | None = None, voxel_size_um: float,
                    mask: np.ndarray | None = None, mask_erosion: int = 0,
                    phases: tuple[str, ...] = ("air", "solid", "pore"), low: np.ndarray | None = None,
                    task: str = "enhance", porosity: bool = True, workers: int | None = None,
                    clean: np.ndarray | None = None, pore_threshold: float | None = None,
                    sample_id: str = "volume") -> dict[str, Any]:
    """Score one prediction given as arrays, exactly as the :class:`Evaluator` scores a dataset sample.

    Parameters
    ----------
    prediction : numpy.ndarray
        Method output (1/cm) or labels (``task="segment"``).
    reference : numpy.ndarray
        Reference reconstruction (1/cm).
    truth, labels : numpy.ndarray, optional
        Exact attenuation (1/cm) and phase labels (indices into ``phases``) of
        a simulation. Without them (a user's own scan) everything is scored
        against the reference, and the record says how (``segmentation_protocol``
        ``reference-otsu``, ``data_range_rule``).
    data_range : float, optional
        Fixed intensity range (1/cm); without a truth, the 0.1–99.9 % quantile
        spread of the reference inside the mask if omitted
        (:func:`reference_data_range`).
    voxel_size_um : float
        Voxel edge (µm).
    mask : numpy.ndarray, optional
        Sample mask, eroded in-plane by ``mask_erosion`` voxels.
    low : numpy.ndarray, optional
        Low-quality input (only used by figures).
    clean : numpy.ndarray, optional
        FBP of noise-free projections: adds the ``clean`` image-metric target.
    pore_threshold : float, optional
        Fixed pore threshold (1/cm, protocol 2.0); Otsu on ``reference`` (protocol 1.0) if omitted.

    Returns
    -------
    dict
        The record of :meth:`Evaluator.evaluate_volume` (with ``"distributions"``).
    """
    arrays = {"high": reference, "truth": truth, "labels": labels, "mask": mask, "low": low, "clean": clean}
    meta = {"voxel_size_um": float(voxel_size_um), "phases": list(phases)}
    has_truth = truth is not None
    if has_truth and labels is None:
        raise InputError("labels", "are missing", "the exact phase labels that go with truth=")
    rule = "given"
    if data_range is None:
        if has_truth:
            raise InputError("data_range", "is missing", "the dataset's fixed intensity range (1/cm)")
        data_range = reference_data_range(reference, mask)
        rule = f"0.1-99.9 % quantile spread of the reference inside the mask: {data_range:.6g}"
    spec = EvaluationSpec(data_range=float(data_range), mask="none" if mask is None else "sample",
                          mask_erosion=int(mask_erosion),
                          pore_threshold=None if pore_threshold is None else float(pore_threshold), truth=has_truth)
    evaluator = Evaluator.of_samples([ArraySample(sample_id, arrays, meta)], spec, task=task, porosity=porosity,
                                     workers=workers)
    record = evaluator.evaluate_volume(sample_id, prediction)
    if not has_truth:
        record["data_range_rule"] = rule
    return record
