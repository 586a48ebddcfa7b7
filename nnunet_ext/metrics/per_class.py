"""All topology metrics for every class of a pair of label maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_ext.metrics._validation import as_label_map
from nnunet_ext.metrics.betti import betti_errors
from nnunet_ext.metrics.overlap import cldice, dice, pixel_error
from nnunet_ext.metrics.rand import rand_error
from nnunet_ext.metrics.warping import warping_error


def _class_or_region(entry: int | Sequence[int]) -> int | tuple[int, ...]:
    """An entry of ``labels`` as an int class or a tuple region (hashable, usable as a key)."""
    if np.ndim(entry) == 0:
        return int(entry)
    region = tuple(int(c) for c in np.asarray(entry).ravel())
    if not region:
        raise ValueError("a region must hold at least one label value, got an empty one")
    return region


def topology_metrics(pred_labels: np.ndarray, gt_labels: np.ndarray, labels: Sequence[int | Sequence[int]],
                     ignore_label: int | None = None) -> dict[int | tuple[int, ...], dict[str, float]]:
    """Dice, clDice, Betti errors, pixel, Rand and warping error of each class or region.

    Class c (an int) is compared as the binary masks ``pred_labels == c`` and ``gt_labels == c``;
    a region r (a tuple/list of ints, as in nnU-Net's region-based dataset.json, e.g. ``(1, 2)``)
    as ``np.isin(pred_labels, r)`` and ``np.isin(gt_labels, r)``, so regions may overlap.
    Voxels where ``gt_labels == ignore_label`` count as background in *both* masks (so
    they never count as errors, but they do take part in the topology, as background).
    Connectivity everywhere: foreground 8-connected in 2D / 26-connected in 3D,
    background 4-connected in 2D / 6-connected in 3D.

    Empty classes/regions: when the mask is empty in both maps (after the ignore label),
    Dice, clDice and rand_error are NaN, and the Betti errors, pixel_error and
    warping_error are 0. When it is empty in exactly one map, Dice = clDice = 0 and
    rand_error = 1.

    Args:
        pred_labels, gt_labels: (X, Y) or (X, Y, Z) integer-valued label maps of the same shape.
        labels: the classes (ints) and/or regions (tuples/lists of ints) to evaluate, e.g.
            ``[1, 2]`` or ``[(1, 2), 2]``; no class or region may contain ``ignore_label``.
        ignore_label: nnU-Net's ignore label of the ground truth, or None.

    Returns:
        {class or region: {"Dice", "clDice", "Betti0_error", "Betti1_error", ("Betti2_error"
        in 3D), "pixel_error", "rand_error", "warping_error"}}, values as float; keyed by the
        int class, or the region as a tuple of ints (a list region is keyed as its tuple).
    """
    pred_labels, gt_labels = np.asarray(pred_labels), np.asarray(gt_labels)
    if pred_labels.shape != gt_labels.shape:
        raise ValueError(f"pred_labels and gt_labels must have the same shape, got pred_labels "
                         f"{pred_labels.shape} and gt_labels {gt_labels.shape}")
    pred = as_label_map(pred_labels, "pred_labels")
    gt = as_label_map(gt_labels, "gt_labels")
    classes = [_class_or_region(c) for c in labels]
    if ignore_label is not None and any(int(ignore_label) in (c if isinstance(c, tuple) else (c,))
                                        for c in classes):
        raise ValueError(f"labels {classes} contain the ignore label {ignore_label}")
    ignored = gt == ignore_label if ignore_label is not None else np.zeros(gt.shape, dtype=bool)
    results: dict[int | tuple[int, ...], dict[str, float]] = {}
    for c in classes:
        p = (np.isin(pred, c) if isinstance(c, tuple) else pred == c) & ~ignored
        g = (np.isin(gt, c) if isinstance(c, tuple) else gt == c) & ~ignored
        metrics = {"Dice": dice(p, g), "clDice": cldice(p, g)}
        for k, error in enumerate(betti_errors(p, g)):
            metrics[f"Betti{k}_error"] = float(error)
        metrics["pixel_error"] = pixel_error(p, g)
        metrics["rand_error"] = rand_error(p, g)
        metrics["warping_error"] = warping_error(p, g)
        results[c] = metrics
    return results
