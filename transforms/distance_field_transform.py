"""Hausdorff-DT target: the ground-truth boundary distance fields, appended as the ``distance`` target block.

``DistanceFieldTransform`` (label maps): (1, X, Y[, Z]) -> (1 + C - 1, X, Y[, Z]) float32, channel k the
boundary distance field of class k (``nnunet_ext.distance.class_boundary_distances``); ``RegionDistanceFieldTransform``
(after nnU-Net's region conversion): (R, ...) -> (2R, ...), one field per region. Distances are in the units of
``spacing`` (nnU-Net: mm, the configuration's spacing). nnU-Net's deep-supervision downsampling then samples the
full-resolution fields (nearest neighbour) at every scale: the same voxels as the labels there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nnunet_ext.distance import boundary_distance_field, class_boundary_distances
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform, check_channel_count
from nnunet_ext.transforms.region_skeleton_transform import check_binary_regions, check_region_segmentation
from nnunet_ext.transforms.skeleton_transform import check_ignore_label


def check_spacing(spacing: Sequence[float] | None) -> tuple[float, ...] | None:
    """``spacing`` as a tuple of floats (or None); ValueError unless every value is finite and > 0."""
    if spacing is None:
        return None
    values = tuple(float(s) for s in spacing)
    if len(values) not in (2, 3) or not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must give 2 or 3 positive values (one per spatial axis), got {spacing!r}")
    return values


def _spacing_for(spacing: tuple[float, ...] | None, shape: Sequence[int], name: str) -> tuple[float, ...] | None:
    if spacing is not None and len(spacing) != len(shape):
        raise ValueError(f"{name} has spacing {spacing} for a patch with {len(shape)} spatial axes {tuple(shape)}: "
                         f"give one value per spatial axis (the configuration's spacing)")
    return spacing


class DistanceFieldTransform(ExtraTargetTransform):
    """Append one boundary distance field per foreground class of a single-channel label map.

    Per sample: ``segmentation`` (1, X, Y[, Z]) -> (num_classes, X, Y[, Z]) float32 (torch or numpy, as given):
    channel 0 the labels, channel k the distance of every voxel to the boundary of class k (0 for a class absent
    from the patch or filling it), in the units of ``spacing``.

    Args:
        num_classes: C, the network's outputs (background and the classes 1..C-1).
        spacing: voxel size per spatial axis (default 1: voxels).
        ignore_label: voxels with this label are neither inside nor outside any class: no boundary, distance 0.
    """

    block_name = "distance"

    def __init__(self, num_classes: int, spacing: Sequence[float] | None = None,
                 ignore_label: int | None = None) -> None:
        num_classes = check_channel_count(num_classes, "num_classes")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background and at least one class), got {num_classes}")
        super().__init__(label_channels=1, block_channels=num_classes - 1)
        self.num_classes = num_classes
        self.spacing = check_spacing(spacing)
        self.ignore_label = check_ignore_label(ignore_label)

    def _compute(self, labels: np.ndarray) -> np.ndarray:
        spacing = _spacing_for(self.spacing, labels.shape[1:], type(self).__name__)
        return class_boundary_distances(labels[0], range(1, self.num_classes), spacing, self.ignore_label)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_classes={self.num_classes}, spacing={self.spacing}, "
                f"ignore_label={self.ignore_label})")


class RegionDistanceFieldTransform(ExtraTargetTransform):
    """Append the boundary distance field of each of ``num_regions`` binary region masks.

    Per sample: ``segmentation`` (R, X, Y[, Z]) binary -> (2R, X, Y[, Z]) float32: the regions, then the distance
    of every voxel to the boundary of region r (in the units of ``spacing``).
    """

    block_name = "distance"

    def __init__(self, num_regions: int, spacing: Sequence[float] | None = None) -> None:
        num_regions = check_channel_count(num_regions, "num_regions")
        super().__init__(label_channels=num_regions, block_channels=num_regions)
        self.num_regions = num_regions
        self.spacing = check_spacing(spacing)

    def _compute(self, regions: np.ndarray) -> np.ndarray:
        check_binary_regions(regions, type(self).__name__)
        spacing = _spacing_for(self.spacing, regions.shape[1:], type(self).__name__)
        return np.stack([boundary_distance_field(region, spacing) for region in regions])

    def _check_segmentation(self, segmentation: torch.Tensor | np.ndarray) -> None:
        check_region_segmentation(segmentation, self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_regions={self.num_regions}, spacing={self.spacing})"
