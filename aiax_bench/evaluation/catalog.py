"""The metric catalog: what every score key means, how it is shown, which way is better, what values are possible.

Every place that shows, checks or ranks a score reads it from here: the
``evaluate`` table, the Evaluator's result files, the leaderboard's entry
checks, its ranking and both renderers. A key is ``family/target``:
``psnr/truth``, ``jaccard/pore``, ``porosity/rel_error_truth``, and, for the
blobs of a DCT frame stack (task ``dct``), ``f1/blobs``, ``recall_small/blobs``.

Directions:

* ``higher``: larger is better (PSNR, SSIM, Jaccard, Dice);
* ``lower``: smaller is better (MSE, Wasserstein distance);
* ``zero``: a signed error; closer to zero is better, so it ranks on the
  absolute value of every volume's error (a −3 % error is not better than +1 %);
* ``none``: a descriptive value (a statistic of the method, the reference or the
  truth, the threshold used); it is reported, never ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from aiax_bench.errors import InputError

__all__ = [
    "DIRECTIONS",
    "MetricSpec",
    "format_value",
    "is_rankable",
    "metric_spec",
    "rank_values",
]

Direction = Literal["higher", "lower", "zero", "none"]
DIRECTIONS: tuple[str, ...] = ("higher", "lower", "zero", "none")
#: PSNR above this (dB) means a float32 copy of the target, not a reconstruction: no entry can claim it.
PSNR_MAX_DB = 150.0


@dataclass(frozen=True)
class MetricSpec:
    """One metric family.

    Attributes
    ----------
    family : str
        The key's part before ``/``.
    label : str
        Human name.
    unit : str
        Unit of the value ('' when dimensionless).
    fmt : str
        ``format`` spec of a value.
    direction : {'higher', 'lower', 'zero', 'none'}
        Which way is better (see the module notes).
    signed : bool
        Whether the value carries a sign that ranking must not reward (a relative error).
    low, high : float
        The possible range, inclusive; a value outside it is not a score this evaluator can produce.
    """

    family: str
    label: str
    unit: str
    fmt: str
    direction: Direction
    signed: bool = False
    low: float = -math.inf
    high: float = math.inf

    def check(self, key: str, value: float, where: str) -> None:
        """Refuse a value this metric cannot take, with one line naming ``where``."""
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise InputError(where, f"is {value!r}",
                             f"{key} ({self.label}) lies in [{self.low:g}, {self.high:g}]"
                             + (f" {self.unit}" if self.unit else ""))


_IMAGE = {
    "mse": MetricSpec("mse", "MSE", "(1/cm)²", ".3e", "lower", low=0.0),
    "psnr": MetricSpec("psnr", "PSNR", "dB", ".2f", "higher", high=PSNR_MAX_DB),
    # SSIM is a correlation-like index: [-1, 1] by definition (anti-correlated images score below 0).
    "ssim": MetricSpec("ssim", "SSIM 3D", "", ".4f", "higher", low=-1.0, high=1.0),
    "ssim_slices": MetricSpec("ssim_slices", "SSIM slice-mean", "", ".4f", "higher", low=-1.0, high=1.0),
}
_SEGMENTATION = {
    "jaccard": MetricSpec("jaccard", "Jaccard", "", ".4f", "higher", low=0.0, high=1.0),
    "dice": MetricSpec("dice", "Dice", "", ".4f", "higher", low=0.0, high=1.0),
    # The HTC2022 challenge's score: a correlation of two binary images, -1 .. 1 (0 where a class is empty).
    "mcc": MetricSpec("mcc", "Matthews correlation", "", ".4f", "higher", low=-1.0, high=1.0),
    "dice_small": MetricSpec("dice_small", "Dice, small pores or lesions", "", ".4f", "higher", low=0.0, high=1.0),
    "dice_medium": MetricSpec("dice_medium", "Dice, medium pores or lesions", "", ".4f", "higher", low=0.0, high=1.0),
    "dice_large": MetricSpec("dice_large", "Dice, large pores or lesions", "", ".4f", "higher", low=0.0, high=1.0),
    "wasserstein_log_diameter": MetricSpec("wasserstein_log_diameter", "Wasserstein distance of log pore "
                                           "diameters", "", ".4f", "lower", low=0.0),
}
#: Porosity statistics: the value of method, reference or truth is descriptive; their relative errors rank.
_POROSITY = {
    "porosity": MetricSpec("porosity", "pore volume fraction", "", ".4f", "none", low=0.0, high=1.0),
    "pore_count": MetricSpec("pore_count", "pore count", "", ".0f", "none", low=0.0),
    "pore_density_per_mm3": MetricSpec("pore_density_per_mm3", "pores per mm³", "1/mm³", ".4g", "none", low=0.0),
    "mean_pore_diameter_mm": MetricSpec("mean_pore_diameter_mm", "mean pore diameter", "mm", ".4g", "none",
                                        low=0.0),
    "specific_surface_per_mm": MetricSpec("specific_surface_per_mm", "specific surface", "1/mm", ".4g", "none",
                                          low=0.0),
    "mean_local_thickness_mm": MetricSpec("mean_local_thickness_mm", "mean local thickness", "mm", ".4g", "none",
                                          low=0.0),
}
_OTHER = {
    "segmentation_threshold": MetricSpec("segmentation_threshold", "pore threshold", "1/cm", ".4g", "none"),
}


def _blob_families() -> dict[str, MetricSpec]:
    """The blob scores of a DCT frame stack (:func:`aiax_bench.dct.blob_scores`), target ``blobs``."""
    families = {
        "f1": MetricSpec("f1", "blob F1", "", ".4f", "higher", low=0.0, high=1.0),
        "precision": MetricSpec("precision", "blob precision", "", ".4f", "higher", low=0.0, high=1.0),
        "recall": MetricSpec("recall", "blob recall", "", ".4f", "higher", low=0.0, high=1.0),
        "mean_iou": MetricSpec("mean_iou", "mean IoU of the true blobs with their match", "", ".4f", "higher",
                               low=0.0, high=1.0),
        "pixel_jaccard": MetricSpec("pixel_jaccard", "Jaccard of the blobs' voxels", "", ".4f", "higher",
                                    low=0.0, high=1.0),
        # (predicted - true) / true blobs: no fewer than none predicted (-1), no bound above.
        "count_error": MetricSpec("count_error", "blob count: relative error", "", "+.2%", "zero", signed=True,
                                  low=-1.0),
        "n_true": MetricSpec("n_true", "true blobs", "", ".0f", "none", low=0.0),
        "n_pred": MetricSpec("n_pred", "predicted blobs", "", ".0f", "none", low=0.0),
        "n_matched": MetricSpec("n_matched", "matched blobs", "", ".0f", "none", low=0.0),
    }
    # Strata of the true blobs: by size (terciles of the sample's sizes) and by extent in psi.
    strata = {"small": "small blobs", "medium": "medium blobs", "large": "large blobs",
              "psi_short": "blobs short in psi", "psi_medium": "blobs of medium extent in psi",
              "psi_long": "blobs long in psi"}
    for stratum, words in strata.items():
        for base in ("recall", "mean_iou"):
            spec = families[base]
            families[f"{base}_{stratum}"] = MetricSpec(f"{base}_{stratum}", f"{spec.label}, {words}", "", ".4f",
                                                       "higher", low=0.0, high=1.0)
        families[f"n_true_{stratum}"] = MetricSpec(f"n_true_{stratum}", f"true {words}", "", ".0f", "none",
                                                   low=0.0)
    return families


_BLOBS = _blob_families()
_FAMILIES: dict[str, MetricSpec] = {**_IMAGE, **_SEGMENTATION, **_POROSITY, **_OTHER, **_BLOBS}


def _relative_error(stat: MetricSpec, target: str) -> MetricSpec:
    against = target.removeprefix("floor_").removeprefix("rel_error_")
    who = "reference" if target.startswith("floor_") else "method"
    # A relative error of a non-negative statistic cannot fall below -100 %.
    return MetricSpec(stat.family, f"{stat.label}: relative error of the {who} vs the {against}", "", "+.2%",
                      "zero", signed=True, low=-1.0)


def metric_spec(key: str) -> MetricSpec:
    """The catalog entry of a score key (``family/target`` or a bare family).

    Raises
    ------
    InputError
        For a key no evaluator version writes.
    """
    family, _, target = key.partition("/")
    spec = _FAMILIES.get(family)
    if spec is None:
        raise InputError(f"metric {key!r}", "is not in the metric catalog",
                         f"expected FAMILY/TARGET with FAMILY one of {', '.join(sorted(_FAMILIES))}")
    if family in _POROSITY and target.startswith(("rel_error_", "floor_rel_error_")):
        return _relative_error(spec, target)
    return spec


def is_rankable(key: str) -> bool:
    """Whether ``key`` has a direction (descriptive statistics do not)."""
    return metric_spec(key).direction != "none"


def rank_values(key: str, values):
    """Values made "lower is better" for ranking: negated when higher is better, absolute for signed errors.

    Works elementwise on floats and numpy arrays.
    """
    import numpy as np

    spec = metric_spec(key)
    if spec.direction == "none":
        raise InputError("--metric", f"{key!r} is descriptive ({spec.label})", "rank on a metric with a direction, "
                         "e.g. psnr/truth or porosity/rel_error_truth")
    values = np.asarray(values, dtype=np.float64)
    return {"higher": -values, "lower": values, "zero": np.abs(values)}[spec.direction]


def format_value(key: str, value: float | None) -> str:
    """A value as the catalog formats it; '—' for an undefined one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, metric_spec(key).fmt)


def label(key: str) -> str:
    """``PSNR (dB) vs truth``, ``Jaccard (mean over phases)``, ``pores per mm³: relative error …``."""
    spec = metric_spec(key)
    family, _, target = key.partition("/")
    unit = f" ({spec.unit})" if spec.unit else ""
    if family in _SEGMENTATION and family != "wasserstein_log_diameter":
        return f"{spec.label} ({'mean over phases' if target == 'mean' else target})"
    if family in _BLOBS:  # one target: the blobs, already in the label
        return spec.label
    if spec.signed or not target:
        return spec.label + unit
    return f"{spec.label}{unit} vs {target}"
