"""Blob-level scores of a DCT spot segmentation against its ground truth.

Both inputs are label volumes ``(psi, y, x)`` of non-negative integers, 0 for
the background and one id per blob (ids need not be contiguous). The overlap
of every predicted blob with every true blob comes from one sparse
contingency table of the (prediction, truth) label pairs over the voxels
where either is foreground; a blob's IoU with another is their intersection
over their union, in voxels.

Matching is one-to-one and greedy: the pairs with IoU at least the threshold,
by IoU descending (ties by predicted id, then true id), each pair kept when
neither blob is already matched. For a threshold above 0.5 at most one pair
per blob can qualify, so the greedy matching is then the only one.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import sparse

from aiax_bench.errors import InputError

__all__ = ["BlobMatch", "blob_scores", "match_blobs"]


@dataclasses.dataclass(frozen=True, eq=False)
class BlobMatch:
    """The one-to-one matching of predicted to true blobs.

    Attributes
    ----------
    pairs : numpy.ndarray
        ``(n_matched, 2)`` int64 ``(predicted id, true id)`` of the matched pairs, by IoU descending.
    pair_iou : numpy.ndarray
        ``(n_matched,)`` float64 IoU of each matched pair.
    true_ids : numpy.ndarray
        ``(n_true,)`` int64 ids of the true blobs, ascending.
    true_iou : numpy.ndarray
        ``(n_true,)`` float64 IoU of each true blob with its match (0 when unmatched).
    true_voxels : numpy.ndarray
        ``(n_true,)`` int64 voxel count of each true blob.
    true_psi_extent : numpy.ndarray
        ``(n_true,)`` int64 frames spanned by each true blob's bounding box.
    pred_ids : numpy.ndarray
        ``(n_pred,)`` int64 ids of the predicted blobs, ascending.
    pred_matched : numpy.ndarray
        ``(n_pred,)`` bool: whether each predicted blob is matched.
    iou_threshold : float
        The least IoU of a matched pair.
    """

    pairs: np.ndarray
    pair_iou: np.ndarray
    true_ids: np.ndarray
    true_iou: np.ndarray
    true_voxels: np.ndarray
    true_psi_extent: np.ndarray
    pred_ids: np.ndarray
    pred_matched: np.ndarray
    iou_threshold: float

    @property
    def n_true(self) -> int:
        """Number of true blobs."""
        return int(self.true_ids.size)

    @property
    def n_pred(self) -> int:
        """Number of predicted blobs."""
        return int(self.pred_ids.size)

    @property
    def n_matched(self) -> int:
        """Number of matched pairs (true positives)."""
        return int(self.pairs.shape[0])


def _check_labels(pred_labels, true_labels) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, labels in (("pred_labels", pred_labels), ("true_labels", true_labels)):
        if not isinstance(labels, np.ndarray):
            raise InputError(name, f"is a {type(labels).__name__}", "expected a numpy.ndarray of blob labels")
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise InputError(name, f"has dtype {labels.dtype}", "expected integer blob labels (0 for the background)")
        if labels.ndim != 3:
            raise InputError(name, f"has shape {labels.shape}", "expected a label volume (psi, y, x)")
        if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and labels.min() < 0:
            raise InputError(name, f"has a negative label ({int(labels.min())})",
                             "expected non-negative labels (0 for the background)")
        arrays.append(labels)
    pred, true = arrays
    if pred.shape != true.shape:
        raise InputError("pred_labels", f"has shape {pred.shape}", f"expected {true.shape} like true_labels")
    return pred, true


def _check_threshold(iou_threshold) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, int | float | np.integer | np.floating) \
            or not 0 < iou_threshold <= 1:
        raise InputError("iou_threshold", f"is {iou_threshold!r}", "expected a number in (0, 1]")
    return float(iou_threshold)


def match_blobs(pred_labels: np.ndarray, true_labels: np.ndarray, *, iou_threshold: float = 0.5) -> BlobMatch:
    """Match predicted blobs to true blobs one to one, greedily by IoU (see the module notes).

    Parameters
    ----------
    pred_labels, true_labels : numpy.ndarray
        ``(psi, y, x)`` integer label volumes of the same shape, 0 for the background.
    iou_threshold : float
        Least IoU (voxels over voxels, in ``(0, 1]``) of a matched pair.

    Returns
    -------
    BlobMatch
        The matched pairs, each true blob's IoU with its match and the counts.
    """
    pred, true = _check_labels(pred_labels, true_labels)
    threshold = _check_threshold(iou_threshold)
    p = pred.ravel()
    t = true.ravel()
    either = np.flatnonzero((p != 0) | (t != 0))
    pred_ids, p_idx = np.unique(p[either], return_inverse=True)
    true_ids, t_idx = np.unique(t[either], return_inverse=True)
    # Column/row 0 of the table stands for the background when it occurs among these voxels.
    table = sparse.coo_matrix((np.ones(either.size, dtype=np.int64), (p_idx, t_idx)),
                              shape=(pred_ids.size, true_ids.size)).tocsr().tocoo()  # duplicates summed
    pred_size = np.bincount(p_idx, minlength=pred_ids.size)
    true_size = np.bincount(t_idx, minlength=true_ids.size)
    rows, cols, inter = table.row, table.col, table.data
    both = (pred_ids[rows] != 0) & (true_ids[cols] != 0)
    rows, cols, inter = rows[both], cols[both], inter[both]
    iou = inter / (pred_size[rows] + true_size[cols] - inter)

    candidate = iou >= threshold
    rows, cols, iou = rows[candidate], cols[candidate], iou[candidate]
    order = np.lexsort((true_ids[cols], pred_ids[rows], -iou))
    pred_used = np.zeros(pred_ids.size, dtype=bool)
    true_used = np.zeros(true_ids.size, dtype=bool)
    true_iou_all = np.zeros(true_ids.size)
    kept = []
    for i in order:
        r, c = rows[i], cols[i]
        if not pred_used[r] and not true_used[c]:
            pred_used[r] = true_used[c] = True
            true_iou_all[c] = iou[i]
            kept.append(i)
    kept = np.asarray(kept, dtype=np.int64)
    pairs = np.stack([pred_ids[rows[kept]], true_ids[cols[kept]]], axis=1).astype(np.int64).reshape(-1, 2)

    # Frames spanned by each true blob: ``either`` is ascending, so is the frame of its voxels.
    frame = either // max(1, true.shape[1] * true.shape[2])
    _, first = np.unique(t_idx, return_index=True)
    _, last = np.unique(t_idx[::-1], return_index=True)
    psi_extent = frame[t_idx.size - 1 - last] - frame[first] + 1

    true_fg = true_ids != 0
    pred_fg = pred_ids != 0
    return BlobMatch(pairs=pairs, pair_iou=iou[kept].astype(np.float64), true_ids=true_ids[true_fg].astype(np.int64),
                     true_iou=true_iou_all[true_fg], true_voxels=true_size[true_fg].astype(np.int64),
                     true_psi_extent=psi_extent[true_fg].astype(np.int64), pred_ids=pred_ids[pred_fg].astype(np.int64),
                     pred_matched=pred_used[pred_fg], iou_threshold=threshold)


def _edges(name: str, bins, values: np.ndarray) -> tuple[float, float]:
    if bins is None:
        if values.size == 0:
            return math.inf, math.inf
        lo, hi = np.quantile(values.astype(np.float64), [1 / 3, 2 / 3])
        return float(lo), float(hi)
    try:
        lo, hi = (float(v) for v in bins)
    except (TypeError, ValueError):
        raise InputError(name, f"is {bins!r}", "expected two bin edges (low, high)") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise InputError(name, f"is {bins!r}", "expected two finite edges with low <= high")
    return lo, hi


def _strata(scores: dict[str, float], prefix: str, names: tuple[str, str, str], values: np.ndarray,
            edges: tuple[float, float], matched: np.ndarray, iou: np.ndarray) -> None:
    which = np.digitize(values, edges, right=False)  # 0: below low, 1: [low, high), 2: at or above high
    for k, name in enumerate(names):
        inside = which == k
        n = int(inside.sum())
        scores[f"n_true/{prefix}_{name}"] = float(n)
        scores[f"recall/{prefix}_{name}"] = float(matched[inside].mean()) if n else math.nan
        scores[f"mean_iou/{prefix}_{name}"] = float(iou[inside].mean()) if n else math.nan


def blob_scores(pred_labels: np.ndarray, true_labels: np.ndarray, *, iou_threshold: float = 0.5,
                size_bins: tuple[float, float] | None = None,
                psi_bins: tuple[float, float] | None = None) -> dict[str, float]:
    """Detection and overlap scores of predicted blobs against true blobs.

    Parameters
    ----------
    pred_labels, true_labels : numpy.ndarray
        ``(psi, y, x)`` integer label volumes of the same shape, 0 for the background.
    iou_threshold : float
        Least IoU of a matched pair (see :func:`match_blobs`).
    size_bins : tuple of float, optional
        Edges ``(low, high)`` (voxels) of the true blobs' size strata: small below ``low``,
        medium in ``[low, high)``, large from ``high``. Default: the terciles of the true sizes.
    psi_bins : tuple of float, optional
        Edges ``(low, high)`` (frames) of the strata by a true blob's extent in psi (frames
        spanned by its bounding box): short, medium, long, as for sizes. Default: the terciles.

    Returns
    -------
    dict of str to float
        * ``precision`` (higher is better): matched predicted blobs over predicted blobs;
          1 when nothing is predicted (no false positive).
        * ``recall`` (higher is better): matched true blobs over true blobs; 1 when there is
          no true blob (nothing missed).
        * ``f1`` (higher is better): harmonic mean of precision and recall (0 when both are 0).
        * ``mean_iou`` (higher is better): mean over the true blobs of the IoU with their match,
          0 for unmatched ones; NaN without true blobs.
        * ``pixel_jaccard`` (higher is better): foreground (label > 0) of the prediction versus
          foreground of the truth, intersection over union in voxels; 1 when both are empty.
        * ``count_error`` (closer to 0 is better; its sign says over- or under-counting):
          ``(n_pred - n_true) / n_true``; NaN without true blobs.
        * ``n_true``, ``n_pred``, ``n_matched`` (counts, no direction): blobs in the truth, in
          the prediction, and matched pairs.
        * ``recall/size_small``, ``recall/size_medium``, ``recall/size_large`` (higher is
          better): the recall among the true blobs of each size stratum; NaN for an empty one.
        * ``mean_iou/size_small``, ``mean_iou/size_medium``, ``mean_iou/size_large`` (higher is
          better): the mean IoU among them; NaN for an empty stratum.
        * ``recall/psi_short``, ``recall/psi_medium``, ``recall/psi_long`` and
          ``mean_iou/psi_short``, ``mean_iou/psi_medium``, ``mean_iou/psi_long`` (higher is
          better): the same by extent in psi.
        * ``n_true/size_*`` and ``n_true/psi_*`` (counts, no direction): true blobs in each stratum.
    """
    match = match_blobs(pred_labels, true_labels, iou_threshold=iou_threshold)
    pred, true = _check_labels(pred_labels, true_labels)
    n_true, n_pred, n_matched = match.n_true, match.n_pred, match.n_matched
    precision = n_matched / n_pred if n_pred else 1.0
    recall = n_matched / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    pred_fg = pred != 0
    true_fg = true != 0
    union = int(np.count_nonzero(pred_fg | true_fg))
    jaccard = np.count_nonzero(pred_fg & true_fg) / union if union else 1.0
    scores = {
        "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "mean_iou": float(match.true_iou.mean()) if n_true else math.nan,
        "pixel_jaccard": float(jaccard),
        "count_error": (n_pred - n_true) / n_true if n_true else math.nan,
        "n_true": float(n_true), "n_pred": float(n_pred), "n_matched": float(n_matched),
    }
    matched = match.true_iou > 0
    sizes = match.true_voxels.astype(np.float64)
    _strata(scores, "size", ("small", "medium", "large"), sizes, _edges("size_bins", size_bins, sizes), matched,
            match.true_iou)
    extents = match.true_psi_extent.astype(np.float64)
    _strata(scores, "psi", ("short", "medium", "long"), extents, _edges("psi_bins", psi_bins, extents), matched,
            match.true_iou)
    return scores
