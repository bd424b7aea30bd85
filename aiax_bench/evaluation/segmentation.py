"""Segmentation metrics: per-class Jaccard and Dice, and Dice stratified by pore size.

Dice by pore size follows the lesion-size strata of the biomedical seed
(small / medium / large tumours), with pores in place of lesions:

- the *target's* pores (after the speck floor) are split into three strata
  by volume at its terciles (every stratum holds a third of the pores, so
  none is empty on any dataset; the bounds are reported as equivalent
  diameters);
- each predicted pore joins the stratum of the target pore it overlaps
  most (predicted pores touching no target pore are false positives that
  lower the overall Dice only);
- ``Dice_s = 2 |P_s ∩ T_s| / (|P_s| + |T_s|)`` with ``P_s`` the predicted
  pores of stratum ``s`` and ``T_s`` the target pores of stratum ``s``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from aiax_bench.validation import check_same_shape

__all__ = ["SIZE_STRATA", "class_scores_record", "confusion_matrix", "dice", "dice_by_lesion_stratum", "dice_by_size",
           "jaccard",
           "matthews_correlation", "scores_from_confusion", "size_strata"]

SIZE_STRATA = ("small", "medium", "large")


def confusion_matrix(prediction: np.ndarray, target: np.ndarray, *, n_classes: int,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """Voxel counts ``C[t, p]`` of target class ``t`` predicted as ``p`` (inside ``mask``)."""
    check_same_shape("prediction", prediction, target.shape, "the target labels")
    p = prediction if mask is None else prediction[mask]
    t = target if mask is None else target[mask]
    key = t.astype(np.int64).ravel() * n_classes + p.astype(np.int64).ravel()
    return np.bincount(key, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def jaccard(prediction: np.ndarray, target: np.ndarray, *, n_classes: int,
            mask: np.ndarray | None = None) -> np.ndarray:
    """Per-class Jaccard index ``|P ∩ T| / |P ∪ T|`` (NaN for a class absent from both)."""
    cm = confusion_matrix(prediction, target, n_classes=n_classes, mask=mask)
    inter = np.diag(cm)
    return _ratio(inter, cm.sum(0) + cm.sum(1) - inter)


def dice(prediction: np.ndarray, target: np.ndarray, *, n_classes: int,
         mask: np.ndarray | None = None) -> np.ndarray:
    """Per-class Dice coefficient ``2 |P ∩ T| / (|P| + |T|)`` (NaN for a class absent from both)."""
    cm = confusion_matrix(prediction, target, n_classes=n_classes, mask=mask)
    return _ratio(2 * np.diag(cm), cm.sum(0) + cm.sum(1))


def scores_from_confusion(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class Jaccard and Dice of a confusion matrix ``C[t, p]`` (NaN for a class absent from both)."""
    inter = np.diag(confusion)
    total = confusion.sum(0) + confusion.sum(1)
    return _ratio(inter, total - inter), _ratio(2 * inter, total)


def class_scores_record(jaccards: np.ndarray, dices: np.ndarray, names: Sequence[str],
                        classes: Sequence[int]) -> dict[str, float]:
    """``jaccard/<phase>`` and ``dice/<phase>`` of each scored class, then their means (``jaccard/mean``)."""
    out: dict[str, float] = {}
    for i in classes:
        out[f"jaccard/{names[i]}"] = float(jaccards[i])
        out[f"dice/{names[i]}"] = float(dices[i])
    out["jaccard/mean"] = float(np.nanmean(jaccards[list(classes)]))
    out["dice/mean"] = float(np.nanmean(dices[list(classes)]))
    return out


def matthews_correlation(prediction: np.ndarray, target: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Matthews correlation coefficient of two binary images (-1 .. 1), inside ``mask`` if given.

    0 where a class is empty in either image (the coefficient is undefined there).
    """
    prediction, target = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    check_same_shape("prediction", prediction, target.shape, "the target")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        check_same_shape("mask", mask, target.shape, "the target")
        prediction, target = prediction[mask], target[mask]
    tp = float(np.count_nonzero(prediction & target))
    tn = float(np.count_nonzero(~prediction & ~target))
    fp = float(np.count_nonzero(prediction & ~target))
    fn = float(np.count_nonzero(~prediction & target))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator > 0 else 0.0


def size_strata(volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratum (0 small, 1 medium, 2 large) of each pore by the terciles of ``volumes`` (voxels).

    Returns
    -------
    strata : numpy.ndarray
        int8 stratum per pore.
    bounds : numpy.ndarray
        The two volume bounds (voxels): small ≤ bounds[0] < medium ≤ bounds[1] < large.
    """
    volumes = np.asarray(volumes, dtype=np.float64)
    if volumes.size == 0:
        return np.zeros(0, dtype=np.int8), np.array([np.nan, np.nan])
    bounds = np.quantile(volumes, [1 / 3, 2 / 3])
    return np.searchsorted(bounds, volumes, side="left").astype(np.int8), bounds


def dice_by_size(pred_labels: np.ndarray, target_labels: np.ndarray, target_strata: np.ndarray
                 ) -> np.ndarray:
    """Dice of the pore phase within each size stratum (see the module notes).

    Parameters
    ----------
    pred_labels, target_labels : numpy.ndarray
        Pore labels (0 background, 1..n consecutive) of the prediction and the target.
    target_strata : numpy.ndarray
        Stratum (0, 1, 2) of each target pore, index ``i`` for label ``i + 1``.

    Returns
    -------
    numpy.ndarray
        Dice of the small, medium and large strata (NaN for an empty stratum).
    """
    check_same_shape("predicted pore labels", pred_labels, target_labels.shape, "the target labels")
    n_pred, n_target = int(pred_labels.max(initial=0)), int(target_labels.max(initial=0))
    strata = np.concatenate([[-1], np.asarray(target_strata, dtype=np.int64)])
    target_sizes = np.bincount(target_labels.ravel(), minlength=n_target + 1)
    pred_sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    both = (pred_labels > 0) & (target_labels > 0)
    p, t = pred_labels[both].astype(np.int64), target_labels[both].astype(np.int64)
    overlap = sparse.csr_matrix((np.ones(p.size, dtype=np.int64), (p, t)), shape=(n_pred + 1, n_target + 1))
    best = np.asarray(overlap.argmax(axis=1)).ravel()  # target pore each predicted pore overlaps most
    pred_stratum = strata[best]  # -1 where the predicted pore overlaps nothing
    pred_stratum[0] = -1
    out = np.full(len(SIZE_STRATA), np.nan)
    for s in range(len(SIZE_STRATA)):
        t_size = target_sizes[1:][strata[1:] == s].sum()
        p_size = pred_sizes[pred_stratum == s].sum()
        inter = np.count_nonzero((pred_stratum[p] == s) & (strata[t] == s))
        if t_size + p_size:
            out[s] = 2 * inter / (t_size + p_size)
    return out


def dice_by_lesion_stratum(predicted: np.ndarray, instances: np.ndarray, strata: np.ndarray) -> np.ndarray:
    """Dice of lesions within each size stratum, predicted voxels attributed one by one.

    Lesions lie close together (a tumour's neighbour is often a voxel away),
    so a predicted object may span two of them. Each predicted voxel inside a
    true lesion counts for that lesion's stratum; one outside every true
    lesion counts for the stratum of the nearest true lesion if its predicted
    object (26-connected) touches a lesion, and for none otherwise (a false
    positive of its own, which lowers the overall Dice only). The exact labels
    therefore score 1 in every stratum, however the lesions touch.

    Parameters
    ----------
    predicted : numpy.ndarray
        Boolean lesion mask of the prediction.
    instances : numpy.ndarray
        True lesion ids (0 elsewhere, ``k`` for lesion ``k``, 1-based).
    strata : numpy.ndarray
        Stratum (0, 1, 2) of each true lesion, index ``k - 1`` for id ``k``.

    Returns
    -------
    numpy.ndarray
        Dice of the small, medium and large strata (NaN for a stratum with no lesion and no prediction).
    """
    from scipy import ndimage

    predicted = np.asarray(predicted, dtype=bool)
    instances = np.asarray(instances).astype(np.int64)
    check_same_shape("predicted lesions", predicted, instances.shape, "the lesion instances")
    of_id = np.concatenate([[-1], np.asarray(strata, dtype=np.int64)])
    true_stratum = of_id[instances]
    inside = predicted & (instances > 0)
    voxel_stratum = np.where(inside, true_stratum, -1)
    outside = predicted & (instances == 0)
    if outside.any() and inside.any():
        components, _ = ndimage.label(predicted, structure=np.ones((3, 3, 3), dtype=bool))
        attached = outside & np.isin(components, np.unique(components[inside]))
        nearest = ndimage.distance_transform_edt(instances == 0, return_distances=False, return_indices=True)
        voxel_stratum[attached] = true_stratum[tuple(i[attached] for i in nearest)]
    out = np.full(len(SIZE_STRATA), np.nan)
    for s in range(len(SIZE_STRATA)):
        p_size = np.count_nonzero(voxel_stratum == s)
        t_size = np.count_nonzero(true_stratum == s)
        inter = np.count_nonzero(inside & (true_stratum == s))
        if p_size + t_size:
            out[s] = 2 * inter / (p_size + t_size)
    return out
