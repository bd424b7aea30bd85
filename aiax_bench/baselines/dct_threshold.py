"""Classical DCT spot segmentation: preprocessing, then a 3D double threshold fitted on the training stacks.

The pipeline of :mod:`aiax_bench.dct.threshold`: each stack is
dark-subtracted, normalised by the mean of a ring around the direct beam,
freed of its per-pixel moving median over psi and median-filtered frame by
frame (:func:`~aiax_bench.dct.threshold.preprocess`); blobs are seeds above
a threshold grown down to a per-blob threshold
(:func:`~aiax_bench.dct.threshold.double_threshold`). ``fit`` chooses the
thresholds (:class:`~aiax_bench.dct.threshold.ThresholdParams`) with the best
mean blob F1 over the training stacks, against their labels, from the grid of
:func:`~aiax_bench.dct.threshold.default_threshold_grid`; the validation stacks
are only scored with the chosen settings (in ``fit_summary``). Test stacks are
never seen before ``predict``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError
from aiax_bench.methods.base import Budget, Method
from aiax_bench.validation import check_positive_int

__all__ = ["DCTThreshold", "preprocessed_frames"]


def preprocessed_frames(sample: SampleLike, *, window: int, refresh: int, median_size: int,
                        margin: int) -> np.ndarray:
    """A frame-stack sample's preprocessed frames ``(psi, y, x)`` (float32, in units of the margin ring's mean).

    Reads the sample's raw frames (``low``), ``dark`` and ``direct_beam`` and
    applies :func:`aiax_bench.dct.preprocess` with these settings: what every
    ``dct`` baseline segments.
    """
    from aiax_bench.dct import preprocess

    return preprocess(sample.read("low"), dark=sample.read("dark"),
                      direct_beam=np.asarray(sample.read("direct_beam"), dtype=bool), window=window,
                      refresh=refresh, median_size=median_size, margin=margin)


class DCTThreshold(Method):
    """Moving-median preprocessing and a 3D double threshold of DCT frame stacks, thresholds fitted on training stacks.

    The thresholds are fitted against the training stacks' exact blob labels
    (supervision ``truth``); the preprocessing settings are the config's.
    """

    name = "dct-threshold"
    task = "dct"
    inputs = ("frames",)
    trainable = False
    supervision = "truth"  # the thresholds maximise the blob F1 against the training stacks' labels

    @dataclasses.dataclass
    class Config:
        """Preprocessing settings (see :func:`aiax_bench.dct.preprocess`).

        Attributes
        ----------
        window : int
            Frames of each per-pixel moving median over psi (the whole stack when it has fewer):
            several times a blob's extent in psi, so that the median is the background's.
        refresh : int
            Consecutive frames sharing one moving median.
        median_size : int
            Side (pixels) of each frame's 2D median filter (zingers, hot pixels); 1 applies none.
        margin : int
            Width (pixels) of the ring around the direct beam whose mean normalises each frame.
        iou_threshold : float
            Least IoU of a matched blob pair while the thresholds are fitted, in ``(0, 1]``.
        """

        window: int = 51
        refresh: int = 4
        median_size: int = 3
        margin: int = 4
        iou_threshold: float = 0.5

    def __init__(self, config: Config | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        for key, unit in (("window", "frames"), ("refresh", "frames"), ("median_size", "pixels"),
                          ("margin", "pixels")):
            check_positive_int(f"config of method {self.name}: key {key}", getattr(c, key), unit)
        if not 0 < c.iou_threshold <= 1:
            raise InputError(f"config of method {self.name}: key iou_threshold", f"is {c.iou_threshold!r}",
                             "expected a number in (0, 1]")
        self.params = None  # ThresholdParams, set by fit
        self._summary: dict[str, Any] = {}

    def preprocessed(self, sample: SampleLike) -> np.ndarray:
        """The preprocessed frames ``(psi, y, x)`` of a sample (float32, in units of the ring's mean)."""
        c = self.config
        return preprocessed_frames(sample, window=c.window, refresh=c.refresh, median_size=c.median_size,
                                   margin=c.margin)

    def _mean_f1(self, stacks: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
        from aiax_bench.dct import blob_scores, segment_blobs

        return float(np.mean([blob_scores(segment_blobs(s, self.params), t, iou_threshold=self.config.iou_threshold)
                              ["f1"] for s, t in zip(stacks, labels, strict=True)]))

    def fit(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int = 0,
            budget: Budget | None = None, tracker: Any = None, context: Mapping[str, Any] | None = None) -> None:
        """Fit the thresholds on the training stacks (against their blob labels); score the validation stacks."""
        from aiax_bench.dct import fit_threshold_params

        if not train:
            raise InputError(f"method {self.name}", "got no training stack", "a split with training samples")
        stacks = [self.preprocessed(s) for s in train]
        labels = [np.asarray(s.read("labels")) for s in train]
        self.params = fit_threshold_params(stacks, labels, iou_threshold=self.config.iou_threshold)
        train_f1 = self._mean_f1(stacks, labels)
        del stacks
        val_f1 = (self._mean_f1([self.preprocessed(s) for s in val], [np.asarray(s.read("labels")) for s in val])
                  if val else None)
        params = dataclasses.asdict(self.params)
        # JSON has no infinity: an unbounded growth threshold is recorded as null.
        params["c_max"] = None if math.isinf(params["c_max"]) else params["c_max"]
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
        self._summary = {"threshold_params": params, "train_f1": round(train_f1, 6),
                         "val_f1": None if val_f1 is None else round(val_f1, 6)}
        if tracker is not None:
            tracker.log_metric("fit/train_f1", train_f1)
            if val_f1 is not None:
                tracker.log_metric("fit/val_f1", val_f1)

    def predict(self, sample: SampleLike) -> np.ndarray:
        """Blob labels ``(psi, y, x)`` (int32, 0 for the background) of a sample's frames."""
        from aiax_bench.dct import segment_blobs

        if self.params is None:
            raise InputError(f"method {self.name}", "was not fitted", "call fit on training stacks first")
        return segment_blobs(self.preprocessed(sample), self.params)

    def fit_summary(self) -> dict[str, Any]:
        """The fitted thresholds and the blob F1 they reach on the training and validation stacks."""
        return dict(self._summary)
