"""Boundary distance fields of ground-truth label maps, numpy on the CPU (the data-loader workers).

The same quantity as ``torch_edt.boundary_distance``: every voxel's Euclidean distance to the boundary of a
mask, ``edt(mask) + edt(~mask)`` (inside: to the nearest outside voxel; outside: to the nearest inside voxel),
0 for an empty or a full mask, in the units of ``spacing``. Voxels of ``unknown`` (nnU-Net's ignore label) are
no boundary: inside distances run to the nearest *known* outside voxel, and unknown voxels get 0.

The transforms are the ``edt`` package's (exact, anisotropic, float32; several times faster than
``scipy.ndimage.distance_transform_edt`` on 3D patches). For a label map, one multi-label pass gives the inside
distances of every class at once (each voxel's distance to the nearest voxel of another label), so only the
outside distances take one pass per class.
"""

from __future__ import annotations

from collections.abc import Sequence

import edt
import numpy as np


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    spacing = (1.0,) * ndim if spacing is None else tuple(float(s) for s in spacing)
    if len(spacing) != ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must give {ndim} positive values (one per spatial axis), got {spacing}")
    return spacing


def euclidean_distances(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance of every nonzero voxel of ``mask`` to the nearest zero voxel (0 on zero voxels); float32.

    ``mask``: bool or integer (X, Y[, Z]); for an integer label map, a voxel's distance to the nearest voxel
    holding another label. The mask must hold a zero voxel (else the distances are unbounded).
    """
    mask = np.ascontiguousarray(mask)
    if mask.dtype == bool:  # edt is several times faster on the same bytes read as uint8
        mask = mask.view(np.uint8)
    return edt.edt(mask, anisotropy=spacing, black_border=False, parallel=1)


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
    # unknown voxels are not boundary: they count as inside for the inside distances
    inside = euclidean_distances(~known_outside, spacing)
    outside = euclidean_distances(~mask, spacing)
    return np.where(mask, inside, np.where(known_outside, outside, np.float32(0)))


def class_boundary_distances(labels: np.ndarray, classes: Sequence[int], spacing: Sequence[float] | None = None,
                             ignore_label: int | None = None) -> np.ndarray:
    """One boundary distance field per class: (len(classes), X, Y[, Z]) float32 for a label map (X, Y[, Z]).

    Field k is ``boundary_distance_field(labels == classes[k])``; voxels holding ``ignore_label`` are unknown.
    """
    labels = np.asarray(labels)
    spacing = _check_spacing(spacing, labels.ndim)
    fields = np.zeros((len(classes), *labels.shape), dtype=np.float32)
    unknown = None if ignore_label is None else labels == ignore_label
    if unknown is not None and unknown.any():  # inside distances run past unknown voxels: per class
        for k, c in enumerate(classes):
            fields[k] = boundary_distance_field(labels == c, spacing, unknown)
        return fields
    inside = None  # every class's inside distances, from one multi-label pass when first needed
    for k, c in enumerate(classes):
        mask = labels == c
        if not mask.any() or mask.all():
            continue
        if inside is None:
            inside = euclidean_distances(_as_edt_labels(labels), spacing)
        np.copyto(fields[k], euclidean_distances(~mask, spacing))
        np.copyto(fields[k], inside, where=mask)
    return fields


def _as_edt_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` for edt's multi-label pass: every label <= 0 (background, nnU-Net's -1) becomes 0, which edt
    skips (0 distance; no class needs the background's inside distances, the most expensive ones on sparse
    structures), the classes keep their values in the smallest unsigned type that holds them."""
    positive = np.maximum(labels, 0)
    top = int(positive.max())
    return positive.astype(np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32)
