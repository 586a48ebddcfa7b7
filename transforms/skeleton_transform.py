"""Skeleton Recall target for batchgeneratorsv2 pipelines (nnU-Net v2).

``SkeletonTransform`` appends the tubed skeleton of the label map as channel 1 of
the segmentation: (1, X, Y[, Z]) -> (2, X, Y[, Z]). Channel 0 stays the labels,
channel 1 is the skeleton target the Skeleton Recall loss reads
(``nnunet_ext.losses``). Because the skeleton travels inside the segmentation,
nnU-Net's ``DownsampleSegForDSTransform`` carries it to every deep-supervision
scale without further changes.
"""

from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform

from nnunet_ext.skeleton import tubed_skeleton

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


class SkeletonTransform(SegOnlyTransform):
    """Append the tubed skeleton of a single-channel label map as segmentation channel 1.

    Per sample: ``segmentation`` (1, X, Y[, Z]) -> (2, X, Y[, Z]) with the input's dtype;
    channel 0 is the unchanged label map, channel 1 ``tubed_skeleton(segmentation[0])``
    (class label on the tube, 0 elsewhere). Accepts a torch tensor or a numpy array and
    returns the same type. For region-based (overlapping, multi-channel) targets use
    ``RegionSkeletonTransform`` after nnU-Net's region conversion.

    Args:
        tube_radius: dilations of the skeleton with the 1-step cross (2 = the paper's tube).
        per_class: skeletonize each class separately (see ``tubed_skeleton``).
        fallback: repair objects that 3D thinning deletes entirely (see ``tubed_skeleton``).
        ignore_label: nnU-Net's ignore label; treated as background, never on the skeleton.
    """

    def __init__(self, tube_radius: int = 2, per_class: bool = False, fallback: bool = True,
                 ignore_label: int | None = None) -> None:
        super().__init__()
        self.tube_radius = check_tube_radius(tube_radius)
        self.per_class = bool(per_class)
        self.fallback = bool(fallback)
        self.ignore_label = check_ignore_label(ignore_label)

    def _skeleton(self, labels: np.ndarray) -> np.ndarray:
        """(X, Y[, Z]) label map -> int16 tubed skeleton of the same shape."""
        try:
            return tubed_skeleton(labels, tube_radius=self.tube_radius, per_class=self.per_class,
                                  fallback=self.fallback, ignore_label=self.ignore_label)
        except ValueError as e:
            raise ValueError(f"SkeletonTransform: {e}") from e

    def _apply_to_segmentation(self, segmentation: torch.Tensor | np.ndarray,
                               **params) -> torch.Tensor | np.ndarray:
        """(1, X, Y[, Z]) label map -> (2, X, Y[, Z]): labels, tubed skeleton; same type and dtype."""
        if segmentation.ndim not in (3, 4):
            raise ValueError(
                "SkeletonTransform expects one sample's segmentation of shape (C, X, Y) or (C, X, Y, Z) "
                f"with C == 1, got shape {tuple(segmentation.shape)}. batchgeneratorsv2 transforms run per "
                "sample; use ClassicSkeletonTransform for (B, C, X, Y[, Z]) batches.")
        if segmentation.shape[0] != 1:
            raise ValueError(
                "SkeletonTransform needs a single-channel label map (C == 1), got "
                f"{segmentation.shape[0]} channels (shape {tuple(segmentation.shape)}): it must see the plain label "
                "map (for region-based targets use RegionSkeletonTransform after the region conversion). "
                + PLACEMENT_HINT)
        if isinstance(segmentation, torch.Tensor):
            labels = segmentation[0].detach().cpu().numpy()
            tube = torch.from_numpy(self._skeleton(labels)).to(device=segmentation.device,
                                                               dtype=segmentation.dtype)
            return torch.cat([segmentation, tube[None]], 0)
        segmentation = np.asarray(segmentation)
        tube = self._skeleton(segmentation[0]).astype(segmentation.dtype, copy=False)
        return np.concatenate([segmentation, tube[None]], 0)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(tube_radius={self.tube_radius}, per_class={self.per_class}, "
                f"fallback={self.fallback}, ignore_label={self.ignore_label})")
