"""Boundary distance fields of ground-truth masks with scipy (numpy, on the CPU: the data-loader workers).

The same quantity as ``torch_edt.boundary_distance``: every voxel's Euclidean distance to the boundary of a
mask, ``edt(mask) + edt(~mask)`` (inside: to the nearest outside voxel; outside: to the nearest inside voxel),
0 for an empty or a full mask, in the units of ``spacing``. Voxels of ``unknown`` (nnU-Net's ignore label) are
no boundary: inside distances run to the nearest *known* outside voxel, and unknown voxels get 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import distance_transform_edt


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    spacing = (1.0,) * ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must give {ndim} positive values (one per spatial axis), got {spacing}")
    return spacing


def _inside_distance(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance of each mask voxel to the nearest non-mask voxel (0 elsewhere), computed on the mask's bounding
    box grown by one voxel: the nearest outside voxel of an inside voxel is never farther than that box's rim,
    which lies outside the mask."""
    coords = np.nonzero(mask)
    box = tuple(slice(max(int(c.min()) - 1, 0), int(c.max()) + 2) for c in coords)
    out = np.zeros(mask.shape, dtype=np.float64)
    out[box] = distance_transform_edt(mask[box], sampling=spacing)
    return out


def boundary_distance_field(mask: np.ndarray, spacing: Sequence[float] | None = None,
                            unknown: np.ndarray | None = None) -> np.ndarray:
    """Unsigned distance of every voxel to the boundary of ``mask`` (X, Y[, Z]); float32 of the same shape.

    Args:
        mask: bool (or 0/1) mask.
        spacing: voxel size per axis (default 1): distances in those units.
        unknown: voxels that are neither inside nor outside (ignore label); 0 there, and no boundary.
    """
    mask = np.asarray(mask).astype(bool)
    spacing = _check_spacing(spacing, mask.ndim)
    known_outside = ~mask if unknown is None else ~(mask | unknown)
    if unknown is not None:
        mask = mask & ~unknown
    if not mask.any() or not known_outside.any():
        return np.zeros(mask.shape, dtype=np.float32)
    if unknown is None or not unknown.any():
        inside = _inside_distance(mask, spacing)
    else:  # unknown voxels are not boundary: they count as inside for the inside distances
        inside = np.where(mask, distance_transform_edt(~known_outside, sampling=spacing), 0.0)
    outside = np.where(known_outside, distance_transform_edt(~mask, sampling=spacing), 0.0)
    return (inside + outside).astype(np.float32)


def class_boundary_distances(labels: np.ndarray, classes: Sequence[int], spacing: Sequence[float] | None = None,
                             ignore_label: int | None = None) -> np.ndarray:
    """One boundary distance field per class: (len(classes), X, Y[, Z]) float32 for a label map (X, Y[, Z]).

    Field k is ``boundary_distance_field(labels == classes[k])``; voxels holding ``ignore_label`` are unknown.
    """
    labels = np.asarray(labels)
    unknown = None if ignore_label is None else labels == ignore_label
    fields = np.empty((len(classes), *labels.shape), dtype=np.float32)
    for k, c in enumerate(classes):
        fields[k] = boundary_distance_field(labels == c, spacing, unknown)
    return fields
