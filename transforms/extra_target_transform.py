"""The one way an extra training target reaches a loss: channels appended to nnU-Net's segmentation.

nnU-Net's data loader carries only ``image`` and ``segmentation`` through its transforms, and
``DownsampleSegForDSTransform`` resizes every segmentation channel to every deep-supervision scale (nearest
neighbour, cast back to the segmentation's dtype). An ``ExtraTargetTransform`` reads the labels block of the
segmentation — the first ``label_channels`` channels: nnU-Net's label map, or its region masks after
``ConvertSegmentationToRegionsTransform`` — computes ``block_channels`` more channels from it on the CPU in
the data-loader worker, and appends them. Several of them can run one after the other (each reads only the
labels block); the target then follows a ``nnunet_ext.losses.TargetLayout``: labels, then each transform's
block in order.

Dtype: integer blocks (a skeleton) take the segmentation's dtype; float blocks (distances, weights) make the
whole segmentation float32 (nnU-Net's losses and online Dice read the labels with ``.long()``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform


def check_channel_count(value: object, name: str) -> int:
    """``value`` as int; ValueError unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class ExtraTargetTransform(SegOnlyTransform):
    """Append ``block_channels`` channels computed from the labels block of one sample's segmentation.

    Per sample: ``segmentation`` (input_channels, X, Y[, Z]) -> (input_channels + block_channels, X, Y[, Z]),
    torch tensor or numpy array, returned as the same type; the input channels are unchanged.

    Subclasses set ``block_name`` (a key of ``nnunet_ext.losses.TARGET_BLOCKS``) and implement ``_compute``.

    Args:
        label_channels: channels of the labels block the block is computed from (1, or R regions).
        block_channels: channels appended.
    """

    block_name: ClassVar[str]

    def __init__(self, label_channels: int = 1, block_channels: int = 1) -> None:
        super().__init__()
        self.label_channels = check_channel_count(label_channels, "label_channels")
        self.block_channels = check_channel_count(block_channels, "block_channels")
        self.input_channels = self.label_channels

    def placed_after(self, input_channels: int) -> ExtraTargetTransform:
        """Expect ``input_channels`` channels (the labels plus earlier blocks) instead of the labels alone;
        returns self."""
        self.input_channels = check_channel_count(input_channels, "input_channels")
        if self.input_channels < self.label_channels:
            raise ValueError(f"input_channels ({input_channels}) must include the {self.label_channels} label channels")
        return self

    def _compute(self, labels: np.ndarray) -> np.ndarray:
        """(label_channels, X, Y[, Z]) numpy labels block -> (block_channels, X, Y[, Z]) numpy block."""
        raise NotImplementedError

    def _check_segmentation(self, segmentation: torch.Tensor | np.ndarray) -> None:
        """Raise ValueError unless ``segmentation`` is one sample's (input_channels, X, Y[, Z])."""
        if segmentation.ndim not in (3, 4) or segmentation.shape[0] != self.input_channels:
            raise ValueError(
                f"{type(self).__name__} expects one sample's segmentation shaped ({self.input_channels}, X, Y) or "
                f"({self.input_channels}, X, Y, Z), got shape {tuple(segmentation.shape)}")

    def _apply_to_segmentation(self, segmentation: torch.Tensor | np.ndarray,
                               **params) -> torch.Tensor | np.ndarray:
        """(input_channels, ...) -> (input_channels + block_channels, ...): the input, then the new block."""
        self._check_segmentation(segmentation)
        if isinstance(segmentation, torch.Tensor):
            block = torch.from_numpy(np.ascontiguousarray(
                self._compute(segmentation[:self.label_channels].detach().cpu().numpy())))
            dtype = torch.promote_types(segmentation.dtype, torch.float32) if block.is_floating_point() \
                else segmentation.dtype
            return torch.cat([segmentation.to(dtype), block.to(device=segmentation.device, dtype=dtype)], 0)
        segmentation = np.asarray(segmentation)
        block = self._compute(segmentation[:self.label_channels])
        dtype = np.result_type(segmentation.dtype, np.float32) if np.issubdtype(block.dtype, np.floating) \
            else segmentation.dtype
        return np.concatenate([segmentation.astype(dtype, copy=False), block.astype(dtype, copy=False)], 0)
