"""The Evaluator: strict input checks, per-volume records, aggregates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.evaluation import metrics

__all__ = ["EVALUATOR_VERSION", "Evaluator"]

#: Changes whenever any number the Evaluator produces could change.
EVALUATOR_VERSION = "1.0"

TARGETS = ("reference", "truth")


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

    Notes
    -----
    Every metric is taken inside the sample mask (the cylinder eroded by the
    dataset's ``mask_erosion``) with the dataset's fixed ``data_range``,
    against the reference reconstruction and against the exact phantom.
    """

    version = EVALUATOR_VERSION

    def __init__(self, dataset, split: str, *, part: str = "test") -> None:
        self.dataset = dataset
        self.split = dataset.split(split)
        self.part = part
        self.samples = {s.id: s for s in self.split.part(part)}
        spec = dataset.spec.evaluation
        self.data_range = float(spec["data_range"])
        self.mask_kind = spec["mask"]
        self.mask_erosion = int(spec.get("mask_erosion", 0))

    @property
    def sample_ids(self) -> list[str]:
        return list(self.samples)

    def check(self, sample_id: str, prediction: Any) -> np.ndarray:
        """Validate one prediction and return it as a float array, or raise InputError."""
        if sample_id not in self.samples:
            raise InputError("sample id", f"{sample_id!r} is not a {self.part} sample of this split",
                             f"expected one of {self.sample_ids}")
        if not isinstance(prediction, np.ndarray):
            raise InputError(f"prediction for {sample_id}", f"is a {type(prediction).__name__}",
                             "expected a numpy.ndarray")
        expected = self.samples[sample_id].shape
        if prediction.shape != expected:
            raise InputError(f"prediction for {sample_id}", f"has shape {prediction.shape}",
                             f"expected {expected} (z, y, x) like the sample's reconstruction")
        if not np.issubdtype(prediction.dtype, np.floating):
            raise InputError(f"prediction for {sample_id}", f"has dtype {prediction.dtype}",
                             "expected a floating-point volume in 1/cm")
        bad = ~np.isfinite(prediction)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"prediction for {sample_id}",
                             f"has {int(bad.sum())} NaN or infinite voxel(s), first at (z, y, x) = {first}",
                             "expected finite values everywhere")
        return prediction

    def mask(self, sample) -> np.ndarray | None:
        if self.mask_kind == "none":
            return None
        mask = sample.read("mask").astype(bool)
        if self.mask_erosion:
            # Erode in-plane only: the sample continues above and below the volume.
            structure = np.zeros((3, 3, 3), dtype=bool)
            structure[1] = ndimage.generate_binary_structure(2, 1)
            mask = ndimage.binary_erosion(mask, structure, iterations=self.mask_erosion)
        return mask

    def evaluate_volume(self, sample_id: str, prediction: np.ndarray) -> dict[str, Any]:
        """Metrics of one test volume as a flat record (``metric/target`` keys)."""
        prediction = self.check(sample_id, prediction)
        sample = self.samples[sample_id]
        mask = self.mask(sample)
        record: dict[str, Any] = {"sample_id": sample_id}
        for target in TARGETS:
            ref = sample.read("high" if target == "reference" else "truth")
            record[f"mse/{target}"] = metrics.mse(prediction, ref, mask=mask)
            record[f"psnr/{target}"] = metrics.psnr(prediction, ref, data_range=self.data_range, mask=mask)
            record[f"ssim/{target}"] = metrics.ssim(prediction, ref, data_range=self.data_range, mask=mask)
            record[f"ssim_slices/{target}"] = metrics.ssim_slices(prediction, ref,
                                                                  data_range=self.data_range, mask=mask)
        return record

    def evaluate(self, predictions: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Score a prediction for every sample: all are checked before any is scored."""
        missing = sorted(set(self.sample_ids) - set(predictions))
        if missing:
            raise InputError("predictions", f"lack sample(s) {missing}", f"expected all of {self.sample_ids}")
        for sid, pred in predictions.items():
            self.check(sid, pred)
        records = [self.evaluate_volume(sid, predictions[sid]) for sid in self.sample_ids]
        return {"records": records, "aggregate": self.aggregate(records)}

    @staticmethod
    def aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
        """Mean and standard deviation of every metric over the volumes."""
        keys = [k for k in records[0] if k != "sample_id"]
        out = {}
        for key in keys:
            values = np.array([r[key] for r in records], dtype=np.float64)
            out[key] = {"mean": float(values.mean()), "std": float(values.std()), "n": int(values.size)}
        return out
