"""UNet 3+'s classification-guided module (CGM) loss: segmentation loss + BCE on "patch has foreground".

The CGM predicts, per patch, two logits (no foreground, foreground) from the deepest features; it is
trained with binary cross entropy against the one-hot of "the target patch contains foreground". The
network returns only segmentation outputs (nnU-Net's loss and predictor expect that), so this loss
reads the classification logits of the network's last forward through a callable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nnunet_ext.losses.input_checks import check_non_negative


def patch_contains_foreground(labels: torch.Tensor, ignore_label: int | None = None) -> torch.Tensor:
    """(B,) bool: whether each sample of labels (B, 1, *spatial) has a voxel of a foreground class.

    Foreground = label > 0 and not the ignore label (nnU-Net's -1 outside the nonzero mask is background).
    """
    foreground = labels > 0
    if ignore_label is not None:
        foreground &= labels != ignore_label
    return foreground.flatten(1).any(1)


class ClassificationGuidedLoss(nn.Module):
    """``segmentation_loss(output, target) + weight * BCE(classification logits, [no fg, fg])``.

    Args:
        segmentation_loss: called with the network output and the target unchanged (deep-supervision
            lists included).
        classification_logits: returns the (B, 2) logits of the network's last forward.
        weight: weight of the BCE term (finite, >= 0).
        ignore_label: label that counts as neither foreground nor background.

    The target (or the first, full-resolution target of a deep-supervision list) is (B, K, *spatial)
    with the class labels in channel 0.
    """

    def __init__(self, segmentation_loss: nn.Module, classification_logits: Callable[[], torch.Tensor | None],
                 weight: float = 1.0, ignore_label: int | None = None) -> None:
        super().__init__()
        self.segmentation_loss = segmentation_loss
        self.classification_logits = classification_logits
        self.weight = check_non_negative("weight", weight, "the weight of the CGM's BCE")
        self.ignore_label = ignore_label

    def extra_repr(self) -> str:
        return f"weight={self.weight}, ignore_label={self.ignore_label}"

    def forward(self, output: torch.Tensor | list[torch.Tensor], target: torch.Tensor | list[torch.Tensor]
                ) -> torch.Tensor:
        loss = self.segmentation_loss(output, target)
        logits = self.classification_logits()
        if logits is None:
            raise RuntimeError("the network produced no classification logits: build UNet3Plus with cgm=True to "
                               "train with ClassificationGuidedLoss")
        full_res = target[0] if isinstance(target, (list, tuple)) else target
        has_fg = patch_contains_foreground(full_res[:, :1], self.ignore_label)
        if logits.shape != (has_fg.shape[0], 2):
            raise ValueError(f"classification logits must be (B, 2) = {(has_fg.shape[0], 2)}, "
                             f"got {tuple(logits.shape)}")
        cls_target = torch.stack([~has_fg, has_fg], 1).to(logits.dtype)
        return loss + self.weight * F.binary_cross_entropy_with_logits(logits, cls_target)
