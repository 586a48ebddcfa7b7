"""Skeletons of label maps: the Skeleton Recall target and the thinning behind it."""

from nnunet_ext.skeleton.tubed import (
    dilate_diamond,
    principal_axis_centreline,
    skeletonize_mask,
    tubed_skeleton,
)

__all__ = [
    "tubed_skeleton",
    "principal_axis_centreline",
    "skeletonize_mask",
    "dilate_diamond",
]
