"""Input checks shared by the metrics."""

from __future__ import annotations

import numpy as np


def as_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """A 2D or 3D array as a bool mask (nonzero = foreground)."""
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D (X, Y) or 3D (X, Y, Z) array, got shape {mask.shape}")
    if mask.size == 0:
        raise ValueError(f"{name} is empty (shape {mask.shape})")
    return mask != 0


def as_mask_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two same-shaped 2D or 3D arrays as bool masks (nonzero = foreground)."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got pred {pred.shape} and gt {gt.shape}")
    return as_mask(pred, "pred"), as_mask(gt, "gt")


def as_label_map(labels: np.ndarray, name: str) -> np.ndarray:
    """A 2D or 3D integer-valued label map as an int64 array."""
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D (X, Y) or 3D (X, Y, Z) label map, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"{name} is empty (shape {labels.shape})")
    if labels.dtype == bool or np.issubdtype(labels.dtype, np.integer):
        return labels.astype(np.int64)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{name} must hold integer class labels, but it holds non-integer or non-finite "
                             "values (pass the label map, e.g. the argmax of probabilities)")
        return labels.astype(np.int64)
    raise ValueError(f"{name} must be an integer label map, got dtype {labels.dtype}")
