"""Adapted Rand error of two binary masks (ISBI 2012 EM challenge, foreground-restricted).

Each mask is turned into an instance labeling: its connected components, foreground
8-connected in 2D / 26-connected in 3D (background 4- / 6-connected; it plays no
role in the labeling). The Rand split/merge scores are then computed from the
contingency table n_ij = number of voxels in ground-truth component i and predicted
component j.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nnunet_ext.metrics._validation import as_mask_pair


def _instances(mask: np.ndarray) -> np.ndarray:
    """Connected components of a bool mask (full connectivity), 0 = background."""
    structure = np.ones((3,) * mask.ndim, dtype=bool)
    return ndimage.label(mask, structure=structure)[0]


def _pairs(counts: np.ndarray) -> float:
    """Σ n(n−1)/2: the number of unordered voxel pairs sharing a segment, for segment sizes ``counts``."""
    counts = counts.astype(np.float64)
    return float(np.sum(counts * (counts - 1.0)) / 2.0)


def rand_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """Foreground-restricted Rand F-score, precision and recall of two binary masks.

    Counted voxels: the ground-truth foreground only (the ground-truth background,
    label 0, is excluded, as in the challenge). A counted voxel that the prediction
    calls background is its own singleton segment (the convention of Arganda-Carreras
    et al. 2015 / SNEMI3D), so missing voxels are never "merged" through the
    prediction's background. With S = number of voxel pairs in the same gt component
    *and* the same predicted component, A = pairs in the same gt component, B = pairs
    in the same predicted component (over counted voxels):
    precision = S / B (merge score), recall = S / A (split score),
    F = 2·precision·recall / (precision + recall) = 2S / (A + B).

    ``skimage.metrics.adapted_rand_error(gt_instances, pred_instances)`` computes the same
    F (it counts ordered pairs n(n−1), which cancels) with the same exclusion of the
    ground-truth background, but treats the prediction's background as one ordinary
    segment; both agree whenever the prediction covers the ground-truth foreground.
    Note also that scikit-image's returned "precision" divides by the ground-truth pairs
    (our recall) and vice versa.

    Edge cases: both masks empty -> (NaN, NaN, NaN); exactly one empty -> (0, 0, 0);
    no pair at all (A = B = 0: every gt component and every counted piece of a
    predicted component is a single voxel) -> (1, 1, 1), nothing disagrees. A
    precision or recall that is 0/0 otherwise is reported as 1 (no pair to get wrong).

    Args:
        pred, gt: (X, Y) or (X, Y, Z) masks of the same shape, nonzero = foreground.

    Returns:
        (F, precision, recall).
    """
    p, g = as_mask_pair(pred, gt)
    p_any, g_any = bool(p.any()), bool(g.any())
    if not p_any and not g_any:
        nan = float("nan")
        return nan, nan, nan
    if not p_any or not g_any:
        return 0.0, 0.0, 0.0
    gt_ids = _instances(g)[g]
    pred_ids = _instances(p)[g]
    n_gt, n_pred = int(gt_ids.max()) + 1, int(pred_ids.max()) + 1
    joint = np.bincount(gt_ids.astype(np.int64) * n_pred + pred_ids, minlength=n_gt * n_pred)
    joint = joint.reshape(n_gt, n_pred)  # contingency table, row 0 (gt background) stays empty
    joint[:, 0] = 0  # predicted background: singletons, they share no pair
    s = _pairs(joint)
    a = _pairs(np.bincount(gt_ids))
    b = _pairs(joint.sum(axis=0))
    if a + b == 0:
        return 1.0, 1.0, 1.0
    precision = s / b if b > 0 else 1.0
    recall = s / a if a > 0 else 1.0
    return 2.0 * s / (a + b), precision, recall


def rand_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Adapted Rand error: 1 − the foreground-restricted Rand F-score (see ``rand_scores``).

    The challenge takes the maximal F-score over thresholds of a probability map; for
    binary masks there is one threshold. Instance labelings: connected components,
    foreground 8-connected in 2D / 26-connected in 3D (background 4- / 6-connected).
    Ground-truth background excluded; predicted background inside the gt foreground
    counts as singletons.

    Args:
        pred, gt: (X, Y) or (X, Y, Z) masks of the same shape, nonzero = foreground.

    Returns:
        error in [0, 1]; NaN when both masks are empty, 1.0 when exactly one is empty,
        0.0 when no voxel pair is counted (see ``rand_scores``).
    """
    return 1.0 - rand_scores(pred, gt)[0]
