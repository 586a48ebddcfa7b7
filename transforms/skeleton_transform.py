"""Skeleton Recall target for batchgeneratorsv2 pipelines (nnU-Net v2).

``SkeletonTransform`` appends the tubed skeleton of the label map as channel 1 of
the segmentation: (1, X, Y[, Z]) -> (2, X, Y[, Z]). Channel 0 stays the labels,
channel 1 is the skeleton target the Skeleton Recall loss reads
(``nnunet_ext.losses``). Because the skeleton travels inside the segmentation
(``ExtraTargetTransform``), nnU-Net's ``DownsampleSegForDSTransform`` carries it to every
deep-supervision scale without further changes.
"""

from __future__ import annotations

import numpy as np
import torch

from nnunet_ext.skeleton import tubed_skeleton
from nnunet_ext.transforms.extra_target_transform import ExtraTargetTransform

PLACEMENT_HINT = (
    "Insert SkeletonTransform after the label clean-up / cascade transforms (e.g. RemoveLabelTansform, "
    "MoveSegAsOneHotToDataTransform) and before ConvertSegmentationToRegionsTransform and "
    "DownsampleSegForDSTransform."
)


def check_tube_radius(tube_radius: int) -> int:
    """Return ``tube_radius`` as int; ValueError unless it is an integer >= 0."""
    if isinstance(tube_radius, bool) or not isinstance(tube_radius, (int, np.integer)) or tube_radius < 0:
        raise ValueError(f"tube_radius must be an integer >= 0, got {tube_radius!r}")
    return int(tube_radius)


def check_ignore_label(ignore_label: int | None) -> int | None:
    """Return ``ignore_label`` as int (or None); ValueError for anything else."""
    if ignore_label is None:
        return None
    if isinstance(ignore_label, bool) or not isinstance(ignore_label, (int, np.integer)):
        raise ValueError(f"ignore_label must be an integer or None, got {ignore_label!r}")
    return int(ignore_label)


class SkeletonTransform(ExtraTargetTransform):
    """Append the tubed skeleton of a single-channel label map as the ``skeleton`` target block.

    Per sample: ``segmentation`` (1, X, Y[, Z]) -> (2, X, Y[, Z]) with the input's dtype;
    channel 0 is the unchanged label map, channel 1 ``tubed_skeleton(segmentation[0])``
    (class label on the tube, 0 elsewhere). Accepts a torch tensor or a numpy array and
    returns the same type. For region-based (overlapping, multi-channel) targets use
    ``RegionSkeletonTransform`` after nnU-Net's region conversion. (After other target blocks,
    ``placed_after(n)``: (n, ...) -> (n + 1, ...), the skeleton of channel 0.)

    Args:
        tube_radius: dilations of the skeleton with the 1-step cross (2 = the paper's tube).
        per_class: skeletonize each class separately (see ``tubed_skeleton``).
        fallback: repair objects that 3D thinning deletes entirely (see ``tubed_skeleton``).
        ignore_label: nnU-Net's ignore label; treated as background, never on the skeleton.
    """

    block_name = "skeleton"

    def __init__(self, tube_radius: int = 2, per_class: bool = False, fallback: bool = True,
                 ignore_label: int | None = None) -> None:
        super().__init__(label_channels=1, block_channels=1)
        self.tube_radius = check_tube_radius(tube_radius)
        self.per_class = bool(per_class)
        self.fallback = bool(fallback)
        self.ignore_label = check_ignore_label(ignore_label)

    def _compute(self, labels: np.ndarray) -> np.ndarray:
        """(1, X, Y[, Z]) label map -> (1, X, Y[, Z]) int16 tubed skeleton."""
        try:
            return tubed_skeleton(labels[0], tube_radius=self.tube_radius, per_class=self.per_class,
                                  fallback=self.fallback, ignore_label=self.ignore_label)[None]
        except ValueError as e:
            raise ValueError(f"SkeletonTransform: {e}") from e

    def _check_segmentation(self, segmentation: torch.Tensor | np.ndarray) -> None:
        if segmentation.ndim not in (3, 4):
            raise ValueError(
                "SkeletonTransform expects one sample's segmentation of shape (C, X, Y) or (C, X, Y, Z) "
                f"with C == {self.input_channels}, got shape {tuple(segmentation.shape)}. batchgeneratorsv2 "
                "transforms run per sample; use ClassicSkeletonTransform for (B, C, X, Y[, Z]) batches.")
        if segmentation.shape[0] != self.input_channels:
            expected = ("a single-channel label map (C == 1)" if self.input_channels == 1 else
                        f"the label map followed by {self.input_channels - 1} earlier target channel(s) "
                        f"(C == {self.input_channels})")
            raise ValueError(
                f"SkeletonTransform needs {expected}, got {segmentation.shape[0]} channels (shape "
                f"{tuple(segmentation.shape)}): it must see the plain label map (for region-based targets use "
                "RegionSkeletonTransform after the region conversion). " + PLACEMENT_HINT)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(tube_radius={self.tube_radius}, per_class={self.per_class}, "
                f"fallback={self.fallback}, ignore_label={self.ignore_label})")
