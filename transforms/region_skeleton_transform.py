"""Skeleton Recall target for region-based nnU-Net (dataset.json ``regions``, sigmoid outputs).

In region-based training nnU-Net's ``ConvertSegmentationToRegionsTransform`` replaces the label map
by R binary (possibly overlapping) region masks. ``RegionSkeletonTransform`` runs right after it and
appends one tubed skeleton per region: (R, X, Y[, Z]) -> (2R, X, Y[, Z]). Region r's skeleton is the
centreline of the whole region (e.g. of the full vessel tree for a region made of trunk + branch
labels), not of its labels one by one. nnU-Net's ``DownsampleSegForDSTransform`` then carries all 2R
channels to every deep-supervision scale.
"""

from __future__ import annotations

import numpy as np
import torch

from nnunet_ext.skeleton import tubed_skeleton
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform
from nnunet_ext.transforms.skeleton_transform import check_tube_radius

REGION_PLACEMENT_HINT = (
    "Insert it directly after nnU-Net's ConvertSegmentationToRegionsTransform and before "
    "DownsampleSegForDSTransform.")


def check_binary_regions(regions: np.ndarray, transform_name: str) -> None:
    """ValueError unless ``regions`` holds only 0/1 (or bool): a label map reached a region transform."""
    if not np.isin(regions, (0, 1)).all():
        raise ValueError(
            f"{transform_name} expects binary region masks (0/1 or bool), found other values: it saw a label map, "
            "not regions. " + REGION_PLACEMENT_HINT)


def check_region_segmentation(segmentation: torch.Tensor | np.ndarray, transform: ExtraTargetTransform) -> None:
    """ValueError unless ``segmentation`` is one sample's R region masks (plus earlier target blocks)."""
    regions = transform.label_channels
    if segmentation.ndim not in (3, 4) or segmentation.shape[0] != transform.input_channels:
        earlier = transform.input_channels - regions
        extra = f" followed by {earlier} earlier target channel(s)" if earlier else ""
        raise ValueError(
            f"{type(transform).__name__} expects one sample's {regions} region masks{extra} shaped "
            f"({transform.input_channels}, X, Y[, Z]), got shape {tuple(segmentation.shape)}. Check that the "
            f"regions match dataset.json. " + REGION_PLACEMENT_HINT)


class RegionSkeletonTransform(ExtraTargetTransform):
    """Append the tubed skeleton of each of ``num_regions`` binary region masks (the ``skeleton`` block).

    Per sample: ``segmentation`` (R, X, Y[, Z]) binary (bool or 0/1) -> (2R, X, Y[, Z]) with the
    input's type and dtype; channels [0, R) are the unchanged regions, channel R + r the tubed
    skeleton of region r (1/True on the tube, which lies inside the region).

    Args:
        num_regions: R, the number of region channels nnU-Net's region conversion produces.
        tube_radius: dilations of the skeleton with the 1-step cross (2 = the paper's tube).
        fallback: repair objects that 3D thinning deletes entirely (see ``tubed_skeleton``).
    """

    block_name = "skeleton"

    def __init__(self, num_regions: int, tube_radius: int = 2, fallback: bool = True) -> None:
        if isinstance(num_regions, bool) or not isinstance(num_regions, (int, np.integer)) or num_regions < 1:
            raise ValueError(f"num_regions must be an integer >= 1, got {num_regions!r}")
        super().__init__(label_channels=int(num_regions), block_channels=int(num_regions))
        self.num_regions = int(num_regions)
        self.tube_radius = check_tube_radius(tube_radius)
        self.fallback = bool(fallback)

    def _compute(self, regions: np.ndarray) -> np.ndarray:
        """(R, X, Y[, Z]) binary masks -> (R, X, Y[, Z]) bool tubed skeletons."""
        check_binary_regions(regions, type(self).__name__)
        return np.stack([tubed_skeleton(region.astype(np.uint8), tube_radius=self.tube_radius,
                                        fallback=self.fallback) > 0 for region in regions])

    def _check_segmentation(self, segmentation: torch.Tensor | np.ndarray) -> None:
        check_region_segmentation(segmentation, self)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(num_regions={self.num_regions}, tube_radius={self.tube_radius}, "
                f"fallback={self.fallback})")
